"""CLI start-up: ``gridlens --help``, every ``gridlens SUB --help`` and ``gridlens pf`` on a
small record, as a ratio to ``python -c "import numpy"`` (issue 19: each at most 6x).

Every command runs as a fresh process, warm (one untimed run first, so the files are in the page
cache and the bytecode is compiled), ``--repeats`` times; the table shows the median wall time,
its ratio to the median of ``python -c "import numpy"`` measured in the same run, and the peak
resident memory of the process (``wait4``'s ``ru_maxrss``).

Run: ``python benchmarks/bench_cli.py [--repeats 9]``. The table goes to stdout (Markdown);
exit code 1 if any command is above the limit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT = 6.0


def gridlens_cmd() -> list[str]:
    """The installed ``gridlens`` script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("gridlens")
    if script.exists():
        return [str(script)]
    found = shutil.which("gridlens")
    return [found] if found else [sys.executable, "-m", "gridlens.cli"]


def run_once(cmd: list[str]) -> tuple[float, float]:
    """Wall time [s] and peak RSS [MB] of one run of ``cmd`` (output discarded)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
    return elapsed, usage.ru_maxrss / 1024.0


def measure(cmd: list[str], repeats: int) -> tuple[float, float]:
    """Median wall time [s] over ``repeats`` warm runs, and the largest peak RSS [MB]."""
    run_once(cmd)  # warm-up
    runs = [run_once(cmd) for _ in range(repeats)]
    return statistics.median(t for t, _ in runs), max(m for _, m in runs)


def write_comtrade(stem: Path, *, seconds: float, fs_hz: float) -> str:
    """A small ASCII COMTRADE 1999 record (.cfg + .dat): 230 V, 10 A at 60 Hz, PF 0.87."""
    import math

    n = round(seconds * fs_hz)
    cfg = (
        "bench,rec,1999\n2,2A,0D\n1,VA,A,,V,0.01,0,0,-99999,99999,1,1,P\n"
        "2,IA,A,,A,0.001,0,0,-99999,99999,1,1,P\n60\n1\n"
        f"{fs_hz:g},{n}\n01/01/2024,00:00:00.000000\n01/01/2024,00:00:00.000000\nASCII\n1\n"
    )
    rows = []
    for k in range(n):
        w = 2 * math.pi * 60.0 * k / fs_hz
        v, i = 325.0 * math.sin(w), 14.1 * math.sin(w - 0.5)
        rows.append(f"{k + 1},{round(k * 1e6 / fs_hz)},{round(v / 0.01)},{round(i / 0.001)}\n")
    stem.with_suffix(".cfg").write_text(cfg)
    stem.with_suffix(".dat").write_text("".join(rows))
    return str(stem.with_suffix(".cfg"))


def subcommands() -> list[list[str]]:
    """Every subcommand path, nested ones included (``meter train``, ``device add`` ...)."""
    from gridlens.cli import build_parser

    out: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    out.append([*path, name])
                    walk(child, [*path, name])

    walk(build_parser(), [])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9, help="timed runs per command (default 9)")
    args = ap.parse_args()
    gl = gridlens_cmd()
    with tempfile.TemporaryDirectory() as tmp:
        small = str(Path(tmp) / "small.npz")
        subprocess.run([*gl, "synth", small, "--seconds", "0.2"], check=True, capture_output=True)
        small_csv = str(Path(tmp) / "small.csv")
        subprocess.run(
            [*gl, "synth", small_csv, "--seconds", "0.2"], check=True, capture_output=True
        )
        small_cfg = write_comtrade(Path(tmp) / "small", seconds=0.2, fs_hz=10_000.0)
        cases: list[tuple[str, list[str]]] = [
            ("gridlens --help", [*gl, "--help"]),
            ("gridlens pf small.npz (0.2 s at 10 kHz)", [*gl, "pf", small]),
            ("gridlens pf small.csv (0.2 s at 10 kHz)", [*gl, "pf", small_csv]),
            ("gridlens pf small.cfg (COMTRADE, 0.2 s at 10 kHz)", [*gl, "pf", small_cfg]),
            ("gridlens pf --paper", [*gl, "pf", "--paper"]),
        ]
        cases += [(f"gridlens {' '.join(p)} --help", [*gl, *p, "--help"]) for p in subcommands()]
        print(f"measuring {len(cases) + 1} commands x {args.repeats} runs ...", file=sys.stderr)
        base_t, base_m = measure([sys.executable, "-c", "import numpy"], args.repeats)
        rows = [(name, *measure(cmd, args.repeats)) for name, cmd in cases]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"median of {args.repeats} warm runs each\n")
    print("| command | median [s] | ratio to `import numpy` | peak RSS [MB] |")
    print("|---|---:|---:|---:|")
    print(f'| `python -c "import numpy"` | {base_t:.3f} | 1.00 | {base_m:.0f} |')
    worst = 0.0
    for name, t, m in rows:
        worst = max(worst, t / base_t)
        print(f"| `{name}` | {t:.3f} | {t / base_t:.2f} | {m:.0f} |")
    print(f"\nworst ratio {worst:.2f} (limit {LIMIT:g})")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
