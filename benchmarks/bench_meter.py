"""Meter-reading benchmarks: the digit model on held-out meters, speed, whole-meter accuracy.

Rows (one run, 2 CPU cores):
1. The shipped digit model on the meter families it never saw (its held-out fold): share of
   crops within ±0.2 / ±0.5 (circular), exact tenth, MAE — and, for comparison with how the
   leading system reports its figures, the same numbers on the crops it trained on.
2. Batched crops/s through ONNX Runtime vs the same network in PyTorch eager (the anchor),
   and peak memory.
3. Whole-meter photos (synthetic, wheels mid-roll, perspective, glare, noise): share exactly
   right, rejected, and time per image including decoding the JPEG and alignment.
4. A simulated month of 1-minute photos of one household meter read with memory
   (plausibility): accepted decreases (target 0), accepted wrong values, rejections.
5. Real photo series (``$GRIDLENS_DATA/meter-photos``): photos read exactly as a person reads
   them, alone and in sequence, accepted decreases; then the box-displacement table (boxes
   moved by 15 % of their height, 20 % too big or small): photos whose reading is unchanged.
6. Meters composed from real wheel crops of the meter families the model never saw.

Every whole-meter metric is exact: the value a person reads
(:func:`gridlens.meter.carry.register_value`), with no tolerance.

Usage: ``python benchmarks/bench_meter.py [--photos 500] [--days 30] [--composed 2000]``;
progress on stderr.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm import tqdm

from gridlens.meter.data import load_digit_set
from gridlens.meter.image import encode_jpeg
from gridlens.meter.model import DigitReader, default_model_path, digit_metrics
from gridlens.meter.plausibility import Limits
from gridlens.meter.reading import MeterReader, MeterSession
from gridlens.meter.synth import matches_register, render_meter, render_reference

N_DIGITS, DECIMALS = 6, 1


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exact(value: float | None, truth: float) -> bool:
    return matches_register(value, truth, DECIMALS)


def row_model() -> dict[str, dict[str, float]]:
    reader = DigitReader()
    fold = int(reader.card["folds"][0]["fold"])
    train, test = load_digit_set().split(fold)
    out = {}
    for name, ds in (("held-out meter models", test), ("training crops", train)):
        pred, conf = reader.predict(ds.images)
        out[name] = digit_metrics(pred, ds.labels, conf)
        m = np.abs(pred - ds.labels) % 10
        out[name]["within_0.1"] = float(np.mean(np.minimum(m, 10 - m) <= 0.1 + 1e-6))
    return out


def row_speed() -> dict[str, float]:
    ds = load_digit_set(limit=8192)
    reader = DigitReader()
    reader.predict(ds.images[:512])
    t0 = time.perf_counter()
    for _ in range(3):
        reader.predict(ds.images)
    onnx_rate = 3 * len(ds) / (time.perf_counter() - t0)
    out = {"onnx_crops_per_s": onnx_rate, "rss_mib_after_onnx": rss_mib()}
    try:
        import torch

        from gridlens.meter.train import DigitNet
    except ImportError:
        return out
    torch.set_num_threads(2)
    net = DigitNet().eval()
    x = torch.from_numpy(ds.images.astype(np.float32))[:, None]
    with torch.no_grad():
        net(x[:512])
        t0 = time.perf_counter()
        for _ in range(3):
            for i in range(0, len(x), 512):
                net(x[i : i + 512])
    out["torch_crops_per_s"] = 3 * len(ds) / (time.perf_counter() - t0)
    return out


def _photo(i: int) -> tuple[float, bytes]:
    rng = np.random.default_rng(10_000 + i)
    # half the photos sit in a carry (lower wheels past 9): the hard case
    base = rng.uniform(0, 99_999.9)
    if i % 2:
        k = int(rng.integers(1, 5))  # wheels 2..5 rolling
        unit = 10.0 ** (k - DECIMALS)
        base = math.floor(base / unit) * unit + unit - rng.uniform(0.001, 0.1) * 10.0**-DECIMALS
    m = render_meter(base, n_digits=N_DIGITS, decimals=DECIMALS, seed=i)
    return base, encode_jpeg(m.image, 85)


def row_photos(n: int) -> dict[str, float]:
    ref, roi = render_reference(N_DIGITS, DECIMALS)
    reader = MeterReader(roi, reference=ref)
    right = rejected = 0
    times = []
    wrong: list[str] = []
    for i in tqdm(range(n), desc="whole-meter photos", file=sys.stderr):
        truth, jpg = _photo(i)
        t0 = time.perf_counter()
        r = reader.read(jpg)
        times.append(time.perf_counter() - t0)
        if r.status != "ok":
            rejected += 1
        elif exact(r.value, truth):
            right += 1
        elif len(wrong) < 5:
            wrong.append(f"{truth:.3f} read {r.value} raw {r.raw}")
    for w in wrong:
        print(f"  wrong: {w}", file=sys.stderr)
    t = np.array(times) * 1e3
    return {
        "n": n,
        "exact": right / n,
        "rejected": rejected / n,
        "wrong_accepted": (n - right - rejected) / n,
        "ms_p50": float(np.median(t)),
        "ms_p95": float(np.percentile(t, 95)),
    }


def household_kw(minute: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A household load: base, morning and evening peaks, random appliance bursts."""
    h = (minute / 60.0) % 24
    kw = 0.25 + 0.8 * np.exp(-(((h - 7.5) / 1.0) ** 2)) + 1.6 * np.exp(-(((h - 19) / 1.8) ** 2))
    bursts = (rng.random(minute.size) < 0.02).astype(float) * rng.uniform(1, 3, minute.size)
    kw += np.convolve(bursts, np.ones(15), mode="same")
    return kw


def _month_part(args: tuple[int, int, int]) -> dict[str, int]:
    start, stop, seed = args
    rng = np.random.default_rng(seed)
    minutes = np.arange(43_200 * 2)
    energy = 8123.4 + np.cumsum(household_kw(minutes, rng)) / 60.0
    ref, roi = render_reference(N_DIGITS, DECIMALS)
    session = MeterSession(MeterReader(roi, reference=ref), Limits(max_rate_per_h=15.0))
    stats = {"n": 0, "ok": 0, "right": 0, "decreases": 0, "wrong": 0, "rejected": 0, "resync": 0}
    last = -math.inf
    for i in tqdm(range(start, stop), desc=f"month {start}-{stop}", file=sys.stderr, mininterval=5):
        truth = float(energy[i])
        m = render_meter(truth, n_digits=N_DIGITS, decimals=DECIMALS, seed=seed * 1_000_003 + i)
        r = session.feed(m.image, now=60.0 * i)
        stats["n"] += 1
        if r.status != "ok" or r.value is None:
            stats["rejected"] += 1
            continue
        stats["ok"] += 1
        stats["resync"] += int(r.resynced)
        stats["decreases"] += int(r.value < last - 1e-9)
        last = r.value
        if exact(r.value, truth):
            stats["right"] += 1
        else:
            stats["wrong"] += 1
    return stats


def row_month(days: float) -> dict[str, int]:
    n = int(days * 1440)
    half = n // 2
    parts = [(0, half, 1), (half, n, 1)]
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_month_part, parts))
    return {k: sum(r[k] for r in results) for k in results[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=500)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--skip-month", action="store_true")
    ap.add_argument("--composed", type=int, default=2000, help="composed meters per seed")
    a = ap.parse_args()
    print(f"model: {default_model_path()} ({default_model_path().stat().st_size / 1024:.0f} KiB)")
    print("\n1. Digit model, leave-meter-out (circular error, tenths of a digit)")
    print(
        f"{'crops':24s} {'n':>6s} {'±0.1':>7s} {'±0.2':>7s} {'±0.5':>7s} {'exact':>7s} {'MAE':>6s}"
    )
    for name, m in row_model().items():
        print(
            f"{name:24s} {int(m['n']):6d} {m['within_0.1']:7.2%} {m['within_0.2']:7.2%} "
            f"{m['within_0.5']:7.2%} {m['exact_tenth']:7.2%} {m['mae']:6.3f}"
        )
    s = row_speed()
    print("\n2. Batched inference, 2 threads")
    print(f"gridlens ONNX Runtime   {s['onnx_crops_per_s']:9.0f} crops/s")
    if "torch_crops_per_s" in s:
        ratio = s["onnx_crops_per_s"] / s["torch_crops_per_s"]
        print(f"PyTorch eager (anchor)  {s['torch_crops_per_s']:9.0f} crops/s   ratio {ratio:.2f}x")
    print(f"peak RSS {rss_mib():.0f} MiB (ONNX alone: {s['rss_mib_after_onnx']:.0f} MiB)")
    p = row_photos(a.photos)
    print(f"\n3. Whole-meter synthetic photos (half of them mid-carry), n = {p['n']}")
    print(
        f"exactly right {p['exact']:.2%}, rejected {p['rejected']:.2%}, wrong and accepted "
        f"{p['wrong_accepted']:.2%}; per image p50 {p['ms_p50']:.1f} ms, p95 {p['ms_p95']:.1f} ms"
    )
    if not a.skip_month:
        mo = row_month(a.days)
        print(f"\n4. Simulated {a.days:g} days of 1-minute photos, household load, max rate 15/h")
        print(
            f"photos {mo['n']}, accepted {mo['ok']} (right {mo['right']}, wrong {mo['wrong']}), "
            f"accepted decreases {mo['decreases']}, rejected {mo['rejected']}, "
            f"re-synchronisations {mo['resync']}"
        )

    real_photos(a.composed)


def real_photos(composed: int) -> None:
    from gridlens.meter.evaluate import (
        box_robustness,
        composed_meters,
        evaluate_series,
        load_photo_set,
        series_folders,
    )

    folders = series_folders()
    if not folders:
        print("\n5. Real photo series: none found (set GRIDLENS_DATA)")
        return
    print("\n5. Real photo series, exactly as a person reads them (labels.csv `digits`)")
    print(
        f"{'set':10s} {'photos':>6s} {'alone':>9s} {'rejected':>8s} {'sequence':>9s} {'decr.':>5s}"
    )
    sets = [load_photo_set(f) for f in folders]
    for ps in sets:
        r = evaluate_series(ps)
        print(
            f"{ps.name:10s} {r.n:6d} {r.exact_single:4d}/{r.n:<4d} {r.rejected_single:8d} "
            f"{r.exact_sequence:4d}/{r.n:<4d} {r.accepted_decreases:5d}"
        )
        for m in r.misses:
            print(f"  miss: {m[:160]}", file=sys.stderr)
    print("\n   Boxes drawn off: photos read the same as with the boxes as drawn (both refined)")
    tables = {ps.name: box_robustness(ps) for ps in sets}
    names = list(next(iter(tables.values())))
    print(f"{'boxes':24s} " + " ".join(f"{n:>16s}" for n in tables))
    for case in names:
        cells = []
        for t in tables.values():
            row = t[case]
            cells.append(f"{row['same']:>4d}/{row['n']:<3d} ({row['exact']:>2d} ex)")
        print(f"{case:24s} " + " ".join(f"{c:>16s}" for c in cells))
    tot = sum(t[c]["same"] for t in tables.values() for c in t)
    n = sum(t[c]["n"] for t in tables.values() for c in t)
    print(f"{'all':24s} {tot}/{n} = {tot / n:.1%} the same")
    print("\n6. Meters composed from real crops of unseen meter families (6 wheels, 1 decimal)")
    for seed in range(3):
        c = composed_meters(composed, seed=seed)
        print(f"seed {seed}: exactly right {c['exact']}/{c['n']} = {c['exact'] / c['n']:.2%}")
        for m in c["misses"][:3]:
            print(f"  miss: {m}", file=sys.stderr)


if __name__ == "__main__":
    main()
