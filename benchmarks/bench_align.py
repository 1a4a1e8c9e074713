"""Alignment at any rotation: success rate, accuracy and time per photo, real and synthetic.

For each pose (angle counter-clockwise, scale, shift) every photo is turned with
``cv2.warpAffine`` into a frame of its own size (as a camera mounted at that angle sees it;
corners leave the frame) and aligned, without and with the angle given as ``roi.rotate``.

- Real: ``$GRIDLENS_DATA/meter-photos`` (wmsc, 21 frames that align unturned; laurynas, 2).
  The truth is the turn composed with the alignment of the unturned photo.
- Synthetic: :func:`gridlens.meter.synth.render_meter` with the pose as its camera
  transform (glare 0.3, noise 0.02); the truth is that transform.

Columns: share aligned, share within 1.5 px (largest digit-box corner error), the share of
whole reads whose value equals the unturned read (real) or the rendered reading (synthetic),
median ms per alignment and per whole read (``MeterReader.read``: alignment, crop, ONNX
digit model; warm, median over ``--repeat`` runs of each photo). Then the cost of building a
reader and the peak memory.

Usage: ``python benchmarks/bench_align.py [--repeat 3] [--synthetic 12]``; 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import ComputationError
from gridlens.meter.align import Aligner, Alignment
from gridlens.meter.data import data_root
from gridlens.meter.image import decode_image
from gridlens.meter.reading import MeterReader
from gridlens.meter.roi import MeterROI, load_roi
from gridlens.meter.synth import matches_register, render_meter, render_reference

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
T = TypeVar("T")

POSES: list[tuple[float, float, tuple[float, float]]] = [
    (0.0, 1.0, (0.0, 0.0)),
    (35.0, 1.0, (0.0, 0.0)),
    (90.0, 1.0, (0.0, 0.0)),
    (180.0, 1.0, (0.0, 0.0)),
    (270.0, 1.0, (0.0, 0.0)),
    (330.0, 1.0, (0.0, 0.0)),
    (0.0, 0.75, (0.0, 0.0)),
    (0.0, 1.25, (0.0, 0.0)),
    (35.0, 0.75, (20.0, -15.0)),
    (160.0, 1.2, (-15.0, -10.0)),
]


def turn(ang: float, scale: float, shift: tuple[float, float], size: tuple[int, int]) -> F64:
    w, h = size
    a = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), ang, scale)
    a[:, 2] += np.asarray(shift, dtype=np.float64)
    return np.vstack([a, [0.0, 0.0, 1.0]])


def corner_error(matrix: F64, truth: F64, roi: MeterROI) -> float:
    corners = np.array([c for b in roi.digits for c in b.corners()], np.float64)[None]
    p = cv2.perspectiveTransform(corners, matrix)[0]
    q = cv2.perspectiveTransform(corners, truth)[0]
    return float(np.hypot(*(p - q).T).max())


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], T], repeat: int) -> tuple[T, float]:
    """(last result, median ms) of ``fn()``; the first call is a warm-up."""
    out = fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, 1e3 * statistics.median(ts)


def try_align(aligner: Aligner, img: U8) -> Alignment | None:
    try:
        return aligner.align(img)
    except ComputationError:
        return None


@dataclasses.dataclass
class Case:
    """One photo: the image, the truth homography and the value it must read."""

    image: U8
    truth: F64
    value: float | None


def run(
    readers: tuple[MeterReader, MeterReader],
    cases: list[Case],
    repeat: int,
    same_value: Callable[[float | None, float | None], bool],
) -> list[str]:
    """One table cell per reader: aligned, within 1.5 px, same value, ms/align, ms/read."""
    cells = []
    for r in readers:
        assert r.aligner is not None
        ok = close = same = 0
        t_al: list[float] = []
        t_rd: list[float] = []
        for c in cases:
            al, ms = timed(functools.partial(try_align, r.aligner, c.image), repeat)
            t_al.append(ms)
            if al is not None:
                ok += 1
                close += corner_error(al.matrix, c.truth, r.roi) < 1.5
            got, ms = timed(functools.partial(r.read, c.image), repeat)
            t_rd.append(ms)
            same += same_value(got.value, c.value)
        n = len(cases)
        cells.append(
            f"{ok / n:6.0%} {close / n:6.0%} {same / n:6.0%} "
            f"{statistics.median(t_al):6.1f} {statistics.median(t_rd):6.1f}"
        )
    return cells


def header(title: str) -> None:
    print(f"\n{title}")
    cols = "aligned  <1.5px   same   ms/al  ms/read"
    print(f"{'pose':<24} | {'unknown angle':^38} | {'roi.rotate given':^38}")
    print(f"{'':<24} | {cols:^38} | {cols:^38}")


def real(root: Path, repeat: int) -> None:
    for meter in ("wmsc", "laurynas"):
        folder = root / meter
        if not (folder / "roi.json").is_file():
            print(f"\n{meter}: not found under {root} (set GRIDLENS_DATA)")
            continue
        reader = MeterReader(load_roi(folder / "roi.json"))
        assert reader.aligner is not None
        base = []
        for f in sorted(folder.glob("*.jpg")):
            if f.name == "reference.jpg":
                continue
            photo = decode_image(f)
            try:
                h0 = reader.aligner.align(photo).matrix
            except ComputationError:
                continue  # 20190727: black privacy bars, does not align unturned either
            base.append((photo, h0, reader.read(photo).value))
        header(f"real: {meter}, {len(base)} frames")
        for ang, scale, shift in POSES:
            cases = []
            for photo, h0, value in base:
                h, w = photo.shape[:2]
                t = turn(ang, scale, shift, (w, h))
                img = np.asarray(cv2.warpAffine(photo, t[:2], (w, h)), dtype=np.uint8)
                cases.append(Case(img, t @ h0, value))
            hinted = MeterReader(dataclasses.replace(reader.roi, rotate=ang), model=reader.model)
            cells = run((reader, hinted), cases, repeat, lambda a, b: a == b)
            print(f"{ang:5.0f} deg x{scale:<4} {shift!s:<10} | {cells[0]} | {cells[1]}")


def same_synthetic(value: float | None, truth: float | None) -> bool:
    return truth is not None and matches_register(value, truth, 1)


def synthetic(n: int, repeat: int) -> None:
    ref, roi = render_reference(6, 1)
    reader = MeterReader(roi, reference=ref)
    header(f"synthetic: 640x480, {n} photos per pose (glare 0.3, noise 0.02)")
    for ang, scale, shift in POSES:
        cases = []
        for seed in range(n):
            t = turn(ang, scale, shift, (640, 480))
            m = render_meter(17.3 + 83.1 * seed, seed=seed, transform=t, glare=0.3, noise=0.02)
            cases.append(Case(m.image, t, m.reading))
        hinted = MeterReader(
            dataclasses.replace(roi, rotate=ang), reference=ref, model=reader.model
        )
        cells = run((reader, hinted), cases, repeat, same_synthetic)
        print(f"{ang:5.0f} deg x{scale:<4} {shift!s:<10} | {cells[0]} | {cells[1]}")


def build_cost(root: Path) -> None:
    roi_file = root / "wmsc" / "roi.json"
    if not roi_file.is_file():
        return
    roi = load_roi(roi_file)
    ref = decode_image(roi.reference.image_path)  # type: ignore[union-attr, arg-type]
    _, ms = timed(lambda: Aligner(ref, roi), 20)
    al = Aligner(ref, roi)
    t0 = time.perf_counter()
    al._prepare_orb()
    al._prepare_patches()
    lazy = 1e3 * (time.perf_counter() - t0)
    print(f"\nwmsc aligner build: {ms:.1f} ms; ORB + patches on first need: {lazy:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per photo (median)")
    ap.add_argument("--synthetic", type=int, default=12, help="synthetic photos per pose")
    a = ap.parse_args()
    cv2.setNumThreads(2)
    root = data_root()
    print(f"cv2 threads: {cv2.getNumThreads()}, CPU cores: {os.cpu_count()}")
    real(root / "meter-photos", a.repeat)
    synthetic(a.synthetic, a.repeat)
    build_cost(root / "meter-photos")
    print(f"peak RSS: {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
