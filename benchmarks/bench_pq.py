"""Power-quality throughput and accuracy: gridlens vs a bare numpy DFT vs pqopen-lib.

Ten minutes of 10 kHz single-phase data with the seed's distortion (THD_V 82 %, THD_I 58 %,
true fundamental PF 0.5 lagging), noise and a DC offset, at 60.0, 59.5 and 60.5 Hz.

- gridlens: ``gridlens.pq.analyze`` with frequency tracking (12-cycle windows).
- numpy DFT: the plain baseline -- fixed 2000-sample windows (12 nominal cycles), ``rfft``,
  fundamental from bin 12, THD from bins 24..600.
- pqopen-lib: ``PowerSystem`` fed in 1 s chunks, its fundamental P1_H1/Q1_H1 (if installed:
  ``pip install pqopen-lib``).

Every implementation is warmed up first (imports, pqopen-lib's numba JIT compile, FFT plans),
untimed; then ``--repeat`` rounds run each once, round-robin, and the table shows medians.

Run: ``python benchmarks/bench_pq.py [--seconds 600] [--repeat 3] [--pqopen-chunk 1]``.
Progress goes to stderr; the table (time, throughput, ratio to the numpy baseline, peak memory,
PF1 and frequency errors) and the pqopen-lib / gridlens ratio to stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from gridlens.pq import Harmonic, analyze, synthesize

FS = 10_000.0
F0 = 60.0
V = (Harmonic(1, 220.0), Harmonic(3, 150.0), Harmonic(5, 100.0))
I = (Harmonic(1, 100.0, 60.0), Harmonic(3, 50.0, 30.0), Harmonic(5, 30.0, 30.0))  # noqa: E741
PF_TRUE = 0.5
CHUNK_S = 1.0  # pqopen-lib chunk length [s]


def numpy_dft(v: np.ndarray, i: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    """Fixed-window DFT at the nominal frequency: what a plain numpy script does."""
    n_cyc = round(0.2 * F0)
    win = round(n_cyc * fs / F0)
    m = len(v) // win
    vw, iw = v[: m * win].reshape(m, win), i[: m * win].reshape(m, win)
    vf, if_ = np.fft.rfft(vw, axis=1), np.fft.rfft(iw, axis=1)
    v1, i1 = vf[:, n_cyc], if_[:, n_cyc]
    s1 = 2.0 * v1 * np.conj(i1) / win**2  # complex fundamental power (peak·peak/2)
    p1, q1 = s1.real, s1.imag
    vh = np.sqrt(np.sum(np.abs(vf[:, 2 * n_cyc : 50 * n_cyc + 1 : n_cyc]) ** 2, axis=1))
    return {
        "pf1": p1 / np.hypot(p1, q1),
        "f_hz": np.full(m, F0),
        "thd_v": vh / np.abs(v1),
    }


def gridlens_tracked(v: np.ndarray, i: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    w = analyze(v, i, fs, f0_hz=F0).windows
    return {"pf1": w.pf1, "f_hz": w.f_hz, "thd_v": w.thd_v}


def run_pqopen(v: np.ndarray, i: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    import logging

    from daqopen.channelbuffer import AcqBuffer
    from pqopen.powersystem import PowerSystem

    logging.getLogger().setLevel(logging.ERROR)
    chunk = int(fs * CHUNK_S)
    size = max(200_000, 4 * chunk)
    ch_u, ch_i = AcqBuffer(size=size), AcqBuffer(size=size)
    ps = PowerSystem(
        zcd_channel=ch_u, input_samplerate=fs, zcd_cutoff_freq=F0, zcd_threshold=1.0,
        nominal_frequency=F0, nper=round(0.2 * F0),
    )  # fmt: skip
    ps.add_phase(u_channel=ch_u, i_channel=ch_i)
    ps.enable_harmonic_calculation(num_harmonics=40)
    names = ["P1_H1", "Q1_H1", "Freq", "U1_THD"]
    out: dict[str, list[np.ndarray]] = {k: [] for k in names}
    last = dict.fromkeys(names, -1)
    for s in range(0, len(v), chunk):
        ch_u.put_data(v[s : s + chunk])
        ch_i.put_data(i[s : s + chunk])
        ps.process()
        for k in names:  # results are stamped with the crossing index; read what is new
            vals, sidx = ps.output_channels[k].read_data_by_acq_sidx(
                last[k] + 1, ch_u.sample_count + 1
            )
            if len(vals):
                out[k].append(np.asarray(vals, dtype=np.float64).copy())
                last[k] = int(sidx[-1])
    r = {k: np.concatenate(x)[2:] for k, x in out.items()}  # drop start-up windows
    return {
        "pf1": r["P1_H1"] / np.hypot(r["P1_H1"], r["Q1_H1"]),
        "f_hz": r["Freq"],
        "thd_v": r["U1_THD"] / 100.0,
    }


def measure(
    impls: list[tuple[str, Callable[..., dict[str, np.ndarray]]]],
    v: np.ndarray,
    i: np.ndarray,
    fs: float,
    repeat: int,
) -> list[tuple[list[float], float, dict[str, np.ndarray]]]:
    """Per implementation: (times of the ``repeat`` rounds, tracemalloc peak MiB, result).

    Every implementation is warmed first on the first 5 s (imports, pqopen-lib's numba JIT,
    FFT plans), untimed. The timed runs go round-robin (one run of each per round), so a
    shared machine's load falls on all of them alike.
    """
    warm = int(5 * fs)
    for _, fn in impls:
        fn(v[:warm], i[:warm], fs)
    times: list[list[float]] = [[] for _ in impls]
    res: list[dict[str, np.ndarray]] = [{} for _ in impls]
    for _ in range(repeat):
        for k, (_, fn) in enumerate(impls):
            t0 = time.perf_counter()
            res[k] = fn(v, i, fs)
            times[k].append(time.perf_counter() - t0)
    out = []
    for k, (_, fn) in enumerate(impls):
        tracemalloc.start()
        fn(v, i, fs)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out.append((times[k], peak / 2**20, res[k]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--pqopen-chunk", type=float, default=CHUNK_S, help="pqopen-lib chunk length [s]"
    )
    args = ap.parse_args()
    globals()["CHUNK_S"] = args.pqopen_chunk
    impls: list[tuple[str, Callable[..., dict[str, np.ndarray]]]] = [
        ("numpy fixed-window DFT", numpy_dft),
        ("gridlens (tracked)", gridlens_tracked),
    ]
    try:
        import pqopen  # noqa: F401  (availability check)

        impls.append((f"pqopen-lib {args.pqopen_chunk:g} s chunks", run_pqopen))
    except ImportError:
        print("pqopen-lib not installed: skipped (pip install pqopen-lib)", file=sys.stderr)
    print(f"median of {args.repeat} warm round-robin runs; ratios: median of per-round ratios")
    print(
        "| f [Hz] | implementation | time [s] | Msamples/s | × numpy | peak MiB "
        "| PF1 max err | PF1 mean err | f max err [Hz] | THD_V |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for f in (60.0, 59.5, 60.5):
        print(f"generating {args.seconds:g} s at {f} Hz ...", file=sys.stderr)
        wf = synthesize(V, I, f_hz=f, fs_hz=FS, duration_s=args.seconds,
                        noise_rms_v=1.0, noise_rms_a=0.5, dc_v=2.0, seed=3)  # fmt: skip
        got = measure(impls, wf.v, wf.i, FS, args.repeat)
        base = got[0][0]
        for (name, _), (ts, mem, r) in zip(impls, got, strict=True):
            t = statistics.median(ts)
            rel = statistics.median(x / y for x, y in zip(ts, base, strict=True))
            err = np.abs(r["pf1"] - PF_TRUE)
            ferr = np.max(np.abs(r["f_hz"] - f))
            print(
                f"| {f} | {name} | {t:.3f} | {len(wf.v) / t / 1e6:.1f} | {rel:.2f} "
                f"| {mem:.0f} "
                f"| {err.max():.2e} | {err.mean():.2e} | {ferr:.4f} | {np.median(r['thd_v']):.4f} |"
            )
            print(f"  {name}: {', '.join(f'{x:.3f}' for x in ts)} s", file=sys.stderr)
        if len(got) > 2:
            ratios = [x / y for x, y in zip(got[2][0], got[1][0], strict=True)]
            notes.append(
                f"{f} Hz: pqopen-lib / gridlens = {statistics.median(ratios):.1f}x "
                f"(rounds: {', '.join(f'{x:.1f}' for x in ratios)})"
            )
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
