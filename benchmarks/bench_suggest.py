"""Suggested boxes: does a meter read right with gridlens' proposal and no edits?

For each photo, :func:`gridlens.meter.suggest.suggest_roi` proposes the digit boxes and the
decimals; the photo is then read with exactly that ROI as the setup page's preview and the
saved meter read it (the boxes refined against the photo, :mod:`gridlens.meter.refine`).
A meter counts as right when the suggested decimals are the true ones and the value is
exactly what a person reads (:func:`gridlens.meter.synth.matches_register` for synthetic
meters, the ``digits`` column of ``labels.csv`` for the real ones). No forgiveness: a
missing or extra wheel, a wrong decimal point or one wrong digit is a miss.

- Synthetic: ``--synthetic`` meters from :func:`gridlens.meter.synth.render_meter`, each
  with its own random face design (``layout_seed``), 4-8 wheels, 0-3 decimals, a random
  reading (so wheels are often caught mid-roll) and a random camera size. The seeds start
  at ``--seed``; the default 5000 was never used while the suggester was developed (it was
  developed on seeds 1000-1099), so the default run is held out.
- Real: every photo of ``$GRIDLENS_DATA/meter-photos/*`` (wmsc, laurynas).

Misses are listed by kind (wheel count, decimals, value) on stderr, with the time per
suggestion (median) and the peak memory.

Usage: ``python benchmarks/bench_suggest.py [--synthetic 100] [--seed 5000]``; 2 CPU cores.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections import Counter

import numpy as np

from gridlens.errors import NoCounterError
from gridlens.meter.image import decode_image
from gridlens.meter.model import DigitReader, load_reader
from gridlens.meter.reading import MeterReader
from gridlens.meter.roi import MeterROI
from gridlens.meter.suggest import Suggestion, suggest_roi
from gridlens.meter.synth import matches_register, render_meter

SIZES = ((640, 480), (800, 600), (1024, 768))


def _read(sug: Suggestion, image: np.ndarray, model: DigitReader) -> float | None:
    """What the setup page's preview shows for the proposal: refined against the photo."""
    roi = MeterROI.from_dict(sug.to_roi_dict())
    return MeterReader(roi, reference=image, model=model).read(image).value


def _kind(sug: Suggestion | None, n: int, dec: int) -> str:
    if sug is None:
        return "no counter found"
    if len(sug.digits) != n:
        return "wheel count"
    if sug.decimals != dec:
        return "decimals"
    return "value"


def synthetic(n_meters: int, seed0: int, times: list[float]) -> tuple[int, Counter[str]]:
    reader = load_reader()
    right, misses = 0, Counter[str]()
    for i in range(n_meters):
        seed = seed0 + i
        rng = np.random.default_rng(seed)
        n = int(rng.integers(4, 9))
        dec = int(rng.integers(0, min(4, n - 2)))
        layout = int(rng.integers(0, 1000))
        size = SIZES[int(rng.integers(0, len(SIZES)))]
        reading = float(rng.uniform(0, 10 ** (n - dec)))
        m = render_meter(
            reading, n_digits=n, decimals=dec, layout_seed=layout, seed=seed, size=size
        )
        t0 = time.perf_counter()
        try:
            sug: Suggestion | None = suggest_roi(m.image, model=reader)
        except NoCounterError:
            sug = None
        times.append(time.perf_counter() - t0)
        value = _read(sug, m.image, reader) if sug is not None else None
        ok = sug is not None and sug.decimals == dec and matches_register(value, reading, dec)
        right += ok
        if not ok:
            kind = _kind(sug, n, dec)
            misses[kind] += 1
            got = "-" if sug is None else f"{len(sug.digits)} wheels, {sug.decimals} dec"
            print(
                f"  miss seed {seed}: {kind}: {n} wheels, {dec} dec, layout {layout}, truth "
                f"{reading:.4f}; suggested {got}, read {value}",
                file=sys.stderr,
            )
    return right, misses


def real(times: list[float]) -> list[tuple[str, int, int]]:
    from gridlens.meter.evaluate import _same, load_photo_set, series_folders

    reader = load_reader()
    out = []
    for folder in series_folders():
        ps = load_photo_set(folder)
        right = 0
        for f, truth in zip(ps.files, ps.truth, strict=True):
            img = decode_image(ps.folder / f)
            t0 = time.perf_counter()
            try:
                sug: Suggestion | None = suggest_roi(img, model=reader)
            except NoCounterError:
                sug = None
            times.append(time.perf_counter() - t0)
            value = _read(sug, img, reader) if sug is not None else None
            ok = (
                sug is not None
                and sug.decimals == ps.roi.decimals
                and _same(value, truth, ps.roi.decimals)
            )
            right += ok
            if not ok:
                kind = _kind(sug, ps.roi.n_digits, ps.roi.decimals)
                print(f"  miss {ps.name}/{f}: {kind}: read {value}, truth {truth}", file=sys.stderr)
        out.append((ps.name, right, len(ps.files)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic", type=int, default=100, help="synthetic meters")
    ap.add_argument("--seed", type=int, default=5000, help="first synthetic seed")
    args = ap.parse_args()
    times: list[float] = []
    print("Suggested ROI read right with no edits (exact, decimals included)")
    for name, right, n in real(times):
        print(f"  real {name:10s} {right:3d}/{n:<3d} = {right / n:6.1%}")
    right, misses = synthetic(args.synthetic, args.seed, times)
    n = args.synthetic
    seeds = f"seeds {args.seed}..{args.seed + n - 1}"
    print(f"  synthetic ({seeds}) {right:3d}/{n:<3d} = {right / n:6.1%}")
    for kind, k in misses.most_common():
        print(f"    misses by {kind}: {k}")
    print(f"  median {1000 * statistics.median(times):.0f} ms per suggestion")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
