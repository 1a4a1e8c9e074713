"""Coverage-guided fuzzing (atheris) of the readers that take files from users.

Targets:

- ``image``: :func:`gridlens.meter.image.decode_image` on the bytes (JPEG/PNG photos);
- ``roi``: :func:`gridlens.meter.roi.load_roi` on the bytes as an ROI JSON file;
- ``waveform``: :func:`gridlens.pq.read_waveform` on the bytes as a CSV, an ``.npz``, a
  COMTRADE ``.cfg`` + ``.dat`` pair (split at ``\\n--DAT--\\n``) or a ``.cff`` file (the first
  byte picks which).

A *crash* is any exception other than the typed errors the readers document
(:class:`gridlens.errors.GridlensError`: ``InputError`` and its subclasses, which are also
``ValueError``), an input that takes more than ``--input-timeout`` seconds, or one that makes
the process exceed ``--rss-mb``. Each target runs for ``--seconds`` (default 60) in child
processes: when a child finds a crash, its reproducer is saved under
``benchmarks/fuzz_crashes/<target>-crash-<sha1>``, the crash's signature (exception type and
innermost gridlens line) is added to the known ones, and a new child fuzzes on with the
remaining time, so one run lists distinct crashes.

Run: ``python benchmarks/fuzz.py [--seconds 60] [--targets image,roi,waveform]``, and
``python benchmarks/fuzz.py --reproduce FILE --targets TARGET`` for one input's traceback.
Not part of ``make test``: it is bounded by time, not by a verdict.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRASHES = HERE / "fuzz_crashes"
TARGETS = ("image", "roi", "waveform")
SPLIT = b"\n--DAT--\n"
KINDS = (".csv", ".npz", ".cfg", ".cff")


# -------------------------------------------------------------------------------- targets


def _scratch() -> Path:
    """A folder for the files the targets read: the parent's (GRIDLENS_FUZZ_DIR), in memory
    when /dev/shm is writable."""
    given = os.environ.get("GRIDLENS_FUZZ_DIR")
    if given:
        return Path(given)
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="gridlens-fuzz-", dir=base))


def make_target(name: str) -> Callable[[bytes], None]:
    """The function that feeds one input to target ``name`` (imports done by the caller)."""
    scratch = _scratch()
    if name == "image":
        from gridlens.meter.image import decode_image

        def image(data: bytes) -> None:
            decode_image(data)

        return image
    if name == "roi":
        from gridlens.meter.roi import load_roi

        path = scratch / "roi.json"

        def roi(data: bytes) -> None:
            path.write_bytes(data)
            load_roi(path)

        return roi
    if name == "waveform":
        from gridlens.pq import read_waveform

        def waveform(data: bytes) -> None:
            if not data:
                return
            kind = KINDS[data[0] % len(KINDS)]
            body = data[1:]
            path = scratch / f"rec{kind}"
            if kind == ".cfg":
                cfg, _, dat = body.partition(SPLIT)
                path.write_bytes(cfg)
                path.with_suffix(".dat").write_bytes(dat)
            else:
                path.write_bytes(body)
            read_waveform(path, fs_hz=None)

        return waveform
    raise SystemExit(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")


# ---------------------------------------------------------------------------------- seeds


def seeds(name: str) -> list[bytes]:
    """Small valid inputs for target ``name``, so that mutations start from structure."""
    import numpy as np

    if name == "image":
        import cv2

        from gridlens.meter.image import encode_jpeg

        rng = np.random.default_rng(0)
        img = rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
        out = [encode_jpeg(img, 80), bytes(cv2.imencode(".png", img)[1])]
        gray = (img[:, :, 0] // 2).astype(np.uint8)
        out.append(bytes(cv2.imencode(".png", gray)[1]))
        out.append(bytes(cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]))
        return out
    if name == "roi":
        from gridlens.meter.synth import render_reference

        _, roi = render_reference(6, 1)
        d = roi.to_dict()
        small = {"digits": [{"x": 1, "y": 2, "w": 3, "h": 4}], "decimals": 0}
        return [json.dumps(d).encode(), json.dumps(small).encode()]
    if name == "waveform":
        t = np.arange(400) / 4000.0
        v = 230 * np.sqrt(2) * np.sin(2 * np.pi * 50 * t)
        i = 10 * np.sqrt(2) * np.sin(2 * np.pi * 50 * t - 0.5)
        csv = "t,v,i\n" + "".join(
            f"{a:.6f},{b:.3f},{c:.3f}\n" for a, b, c in zip(t, v, i, strict=True)
        )
        buf = io.BytesIO()
        np.savez(buf, v=v, i=i, fs=4000.0)
        cfg = (
            "st,rec,1999\n2,2A,0D\n1,VA,A,,V,0.01,0,0,-32767,32767,1,1,P\n"
            "2,IA,A,,A,0.001,0,0,-32767,32767,1,1,P\n50\n1\n4000,{n}\n"
            "01/01/2024,00:00:00.000000\n01/01/2024,00:00:00.000000\n{ft}\n1\n"
        )
        n = len(t)
        rows_ascii = "".join(
            f"{k + 1},{250 * k},{int(b / 0.01)},{int(c / 0.001)}\n"
            for k, (b, c) in enumerate(zip(v, i, strict=True))
        ).encode()
        rec = np.zeros(n, dtype=[("n", "<u4"), ("t", "<u4"), ("a", "<i2", (2,))])
        rec["n"], rec["t"] = np.arange(1, n + 1), 250 * np.arange(n)
        rec["a"][:, 0], rec["a"][:, 1] = (v / 0.01).astype(int), (i / 0.01).astype(int)
        cfg_a = cfg.format(n=n, ft="ASCII").encode()
        cfg_b = cfg.format(n=n, ft="BINARY").encode()
        cff = b"--- file type: CFG ---\n" + cfg_a + b"--- file type: DAT ASCII ---\n" + rows_ascii
        return [
            bytes([KINDS.index(".csv")]) + csv.encode(),
            bytes([KINDS.index(".npz")]) + buf.getvalue(),
            bytes([KINDS.index(".cfg")]) + cfg_a + SPLIT + rows_ascii,
            bytes([KINDS.index(".cfg")]) + cfg_b + SPLIT + rec.tobytes(),
            bytes([KINDS.index(".cff")]) + cff,
        ]
    raise SystemExit(f"unknown target {name!r}")


# libFuzzer dictionaries: tokens that mutations seldom spell out by themselves
DICTS = {
    "image": [b"\xff\xd8\xff", b"\xff\xc0", b"\xff\xc2", b"\xff\xda", b"\xff\xd9",
              b"\x89PNG\r\n\x1a\n", b"IHDR", b"IDAT", b"IEND", b"\xff\xff\xff\xff"],
    "roi": [b'"digits"', b'"decimals"', b'"reference"', b'"markers"', b'"image"', b'"rotate"',
            b'"refined"', b'"x"', b'"y"', b'"w"', b'"h"', b"[[[[[[[[", b"{", b"}", b"NaN",
            b"Infinity", b"-Infinity", b"1e309", b"99999999999999999999", b"-0", b"true",
            b"null", b'"\\u0000"'],
    "waveform": [b"ASCII", b"BINARY", b"BINARY32", b"FLOAT32", b"1991", b"1999", b"2013",
                 b"--- file type: DAT BINARY ---", b"--- file type: CFG ---", b"\x93NUMPY",
                 b"PK\x03\x04", b"PK\x01\x02", b"'shape': (", b"'descr': '<f8'", b"t,v,i",
                 b"nan", b"inf", b"1e308", b"4294967295", b"2000000000"],
}  # fmt: skip


def write_dict(name: str, folder: Path) -> Path:
    path = folder / f"{name}.dict"
    lines = ['"' + "".join(f"{chr(92)}x{c:02x}" for c in tok) + '"\n' for tok in DICTS[name]]
    path.write_text("".join(lines))
    return path


# ---------------------------------------------------------------------------------- child


def signature(exc: BaseException) -> str:
    """Exception type and the innermost frame in gridlens (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/gridlens/" in f.filename] or frames[-1:]
    where = "?"
    if ours:
        f = ours[-1]
        where = f"{f.filename.split('/gridlens/')[-1]}:{f.lineno}"
    return f"{type(exc).__name__} at {where}"


def child(name: str, seconds: int, corpus: Path, known: set[str], args: argparse.Namespace) -> None:
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["gridlens"]):
        feed = make_target(name)
    from gridlens.errors import GridlensError

    def one(data: bytes) -> None:
        try:
            feed(data)
        except GridlensError:
            return
        except Exception as exc:
            sig = signature(exc)
            if sig in known:
                return
            print(f"FUZZ-CRASH {sig}", file=sys.stderr, flush=True)
            raise

    CRASHES.mkdir(exist_ok=True)
    libfuzzer = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-timeout={args.input_timeout}",
        f"-rss_limit_mb={args.rss_mb}",
        "-max_len=65536",
        "-print_final_stats=1",
        f"-artifact_prefix={CRASHES}/{name}-",
        f"-dict={write_dict(name, corpus.parent)}",
        str(corpus),
    ]
    atheris.Setup(libfuzzer, one)
    atheris.Fuzz()


# --------------------------------------------------------------------------------- parent


def run_target(name: str, args: argparse.Namespace) -> dict[str, object]:
    work = _scratch()
    try:
        return _run_target(name, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_target(name: str, args: argparse.Namespace, work: Path) -> dict[str, object]:
    corpus = work / "corpus"
    corpus.mkdir()
    for k, seed in enumerate(seeds(name)):
        (corpus / f"seed-{k}").write_bytes(seed)
    known: list[str] = []
    crashes: list[dict[str, str]] = []
    executions = 0
    remaining = float(args.seconds)
    started = time.monotonic()
    while remaining >= 1.0:
        t0 = time.monotonic()
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--child", name,
            "--seconds", str(int(remaining)), "--corpus", str(corpus),
            "--known", json.dumps(known), "--input-timeout", str(args.input_timeout),
            "--rss-mb", str(args.rss_mb),
        ]  # fmt: skip
        env = {**os.environ, "GRIDLENS_FUZZ_DIR": str(work)}
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env)
        if "Dictionary:" not in proc.stderr:
            print(f"  {name}: libFuzzer did not load the dictionary", file=sys.stderr)
        remaining -= time.monotonic() - t0
        err = proc.stderr
        executions += sum(int(m) for m in re.findall(r"stat::number_of_executed_units: (\d+)", err))
        if proc.returncode == 0:
            break
        artifact = re.findall(r"Test unit written to (\S+)", err)
        m = re.search(r"FUZZ-CRASH (.+)", err)
        if m:
            sig = m.group(1).strip()
        elif "out-of-memory" in err:
            sig = "out-of-memory"
        elif "timeout" in err.lower():
            sig = "timeout"
        else:
            sig = f"exit {proc.returncode}"
        print(f"  {name}: {sig} -> {artifact[-1] if artifact else '(no reproducer)'}",
              file=sys.stderr)  # fmt: skip
        crashes.append({"signature": sig, "reproducer": artifact[-1] if artifact else ""})
        if not m or sig in known:
            break  # out of memory, timeouts and the like cannot be skipped in the child
        known.append(sig)
    return {
        "target": name,
        "seconds": round(time.monotonic() - started, 1),
        "executions": executions,
        "corpus": len(list(corpus.iterdir())),
        "crashes": crashes,
    }


def reproduce(name: str, path: Path) -> int:
    feed = make_target(name)
    try:
        feed(path.read_bytes())
    except Exception as exc:
        from gridlens.errors import GridlensError

        kind = "typed error (fine)" if isinstance(exc, GridlensError) else "CRASH"
        traceback.print_exc()
        print(f"{kind}: {signature(exc)}")
        return 0 if isinstance(exc, GridlensError) else 1
    print("no error")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time per target [s]")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets")
    ap.add_argument("--input-timeout", type=int, default=20, help="per input [s]")
    ap.add_argument("--rss-mb", type=int, default=2048, help="memory limit of a child [MB]")
    ap.add_argument("--reproduce", type=Path, help="run one input and show its traceback")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--known", default="[]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.seconds, args.corpus, set(json.loads(args.known)), args)
        return 0
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.reproduce:
        return reproduce(targets[0], args.reproduce)
    results = []
    for name in targets:
        print(f"fuzzing {name} for {args.seconds} s ...", file=sys.stderr)
        results.append(run_target(name, args))
    print("| target | seconds | inputs run | corpus | distinct crashes |")
    print("|---|---:|---:|---:|---|")
    for r in results:
        crashes = r["crashes"]
        assert isinstance(crashes, list)
        listed = "; ".join(f"{c['signature']} ({Path(c['reproducer']).name})" for c in crashes)
        print(
            f"| {r['target']} | {r['seconds']} | {r['executions']:,} | {r['corpus']} |"
            f" {len(crashes)}{': ' + listed if listed else ''} |"
        )
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
