"""How fast the synthetic pointer-dial renderer makes training data and test photos.

Rows, each the best of ``--repeat`` runs in one process (single-threaded numpy):

- ``dial_dataset`` (64x64 crops, random styles; 1 and 2 threads) against the anchor, the
  wheel-crop renderer :func:`gridlens.meter.synth.render_digit_crop` (32x48 crops) called
  in a loop;
- ``render_dial_crop`` called once per crop (with its truth dict);
- whole photos: :func:`~gridlens.meter.synth_dial_meters.render_water_meter` (5 wheels, 4 dials)
  and :func:`~gridlens.meter.synth_dial_meters.render_register` (5 dials) against the anchor
  :func:`gridlens.meter.synth.render_meter` (6 wheels), all 640x480 with JPEG.

The ratio column is ours / anchor in crops (or photos) per second, measured in the same run.
Say whether the machine was quiet when quoting it.

Usage: ``python benchmarks/bench_synth_dials.py [--n 2000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

from gridlens.meter.synth import render_digit_crop, render_meter
from gridlens.meter.synth_dial_meters import render_register, render_water_meter
from gridlens.meter.synth_dials import dial_dataset, render_dial_crop


def _rate(fn: Callable[[], object], n: int, repeat: int) -> float:
    fn()  # warm caches (layouts, glyph metrics, noise banks)
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=2000, help="crops per run")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    n, m = a.n, max(20, a.n // 20)

    def wheels() -> None:
        for i in range(n):
            render_digit_crop((i * 0.37) % 10, seed=i)

    def crops() -> None:
        for i in range(n):
            render_dial_crop((i * 0.37) % 10, seed=i)

    def meters() -> None:
        for i in range(m):
            render_meter(1000 + i * 1.7, seed=i)

    def water() -> None:
        for i in range(m):
            render_water_meter(100 + i * 1.7, seed=i)

    def register() -> None:
        for i in range(m):
            render_register(1000 + i * 1.7, seed=i)

    anchor_crop = _rate(wheels, n, a.repeat)
    anchor_meter = _rate(meters, m, a.repeat)
    rows = [
        ("dial_dataset, 64x64", _rate(lambda: dial_dataset(n, seed=1), n, a.repeat), anchor_crop),
        (
            "dial_dataset, 64x64, 2 threads",
            _rate(lambda: dial_dataset(n, seed=1, workers=2), n, a.repeat),
            anchor_crop,
        ),
        ("render_dial_crop, 64x64", _rate(crops, n, a.repeat), anchor_crop),
        ("render_water_meter, 640x480", _rate(water, m, a.repeat), anchor_meter),
        ("render_register, 640x480", _rate(register, m, a.repeat), anchor_meter),
    ]
    print(f"anchor render_digit_crop 32x48: {anchor_crop:8.0f} crops/s")
    print(f"anchor render_meter 640x480:    {anchor_meter:8.0f} photos/s")
    print(f"{'ours':32s} {'per s':>8s} {'ms each':>8s} {'ours/anchor':>12s}")
    for name, rate, anchor in rows:
        print(f"{name:32s} {rate:8.0f} {1000 / rate:8.2f} {rate / anchor:12.2f}")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
