"""The ``gridlens`` command as a user runs it: a real subprocess, stdout JSON, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridlens.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def seed_csv(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    p = tmp_path_factory.mktemp("cli") / "seed.csv"
    r = run(
        "synth", str(p), "--f", "59.7", "--seconds", "1.2",
        "--v", "1:220,3:150,5:100", "--i", "1:100@60,3:50@30,5:30@30",
        "--noise-v", "1", "--dc-v", "3",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return p


def test_pf_json(seed_csv, tmp_path):  # type: ignore[no-untyped-def]
    png = tmp_path / "out.png"
    r = run("pf", str(seed_csv), "--json", "--steps-kvar", "5,10,20", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert doc["f_hz"] == pytest.approx(59.7, abs=2e-3)
    m = doc["methods"]
    assert m["dq"]["pf"] == pytest.approx(0.5, abs=1e-3)
    assert m["time_delay"]["pf"] == pytest.approx(0.7671, abs=2e-3)
    assert m["power_triangle"]["pf"] == pytest.approx(0.6103, abs=2e-3)
    assert m["dq"]["q1_var"] > 0 and doc["displacement"] == "lagging"
    assert doc["thd_v"] == pytest.approx(0.819, abs=3e-3)
    assert doc["windows"] >= 4 and doc["window_cycles"] == 12
    assert doc["capacitor"]["action"] == "switch"
    assert doc["tariff"]["adjustment_now"] == pytest.approx(0.06)
    assert png.stat().st_size > 10_000


def test_pf_human_output(seed_csv):  # type: ignore[no-untyped-def]
    r = run("pf", str(seed_csv), "--f0", "60")
    assert r.returncode == 0, r.stderr
    assert "DQ (fundamental PF1)" in r.stdout and "0.500" in r.stdout


def test_paper_table():  # type: ignore[no-untyped-def]
    r = run("pf", "--paper", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    for case in doc["cases"]:
        for k, published in case["published"].items():
            assert case["reproduced"][k] == pytest.approx(published, abs=1e-4)
    r = run("pf", "--paper")
    assert "76.71%" in r.stdout and "61.03%" in r.stdout and "43.19%" in r.stdout


@pytest.mark.parametrize(
    "content,args",
    [
        ("t,v,i\n0,1,2\n0.001,x,2\n", []),
        ("t,v,i\n0,1,2\n0.0001,1,2\n", []),  # fewer than 2 cycles
        ("t,a,b\n0,1,2\n", []),
        (None, []),  # missing file
        ("t,v,i\n0,1,2\n", ["--f0", "-1"]),
        ("t,v,i\n0,1,2\n", ["--steps-kvar", "a,b"]),
        ("t,v,i\n0,1,2\n", ["--window-cycles", "0"]),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, content, args):  # type: ignore[no-untyped-def]
    p = tmp_path / "in.csv"
    if content is not None:
        p.write_text(content)
    r = run("pf", str(p), *args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "error" in lines[0]


def test_no_file_no_paper():  # type: ignore[no-untyped-def]
    r = run("pf")
    assert r.returncode == 2 and "FILE" in r.stderr


def test_synth_npz_roundtrip(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "w.npz"
    r = run("synth", str(p), "--f", "50.4", "--i", "1:10@-20", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["samples"] == 10_000
    doc = json.loads(run("pf", str(p), "--f0", "50", "--json").stdout)
    assert doc["displacement"] == "leading"
    assert doc["methods"]["dq"]["pf"] == pytest.approx(0.9397, abs=1e-4)


HEAVY = ("scipy", "torch", "fastapi", "sqlalchemy", "onnxruntime", "cv2", "sklearn", "uvicorn")


def _modules_after(code: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys, json\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_nothing_heavy() -> None:
    """`gridlens --help` and every `gridlens SUB --help` only build the parser: no NumPy, SciPy,
    torch, FastAPI or SQLAlchemy (finding 16: the first import of scipy.signal alone took 9x
    as long as NumPy's)."""
    loaded = _modules_after("import gridlens.cli\ngridlens.cli.build_parser()")
    assert loaded.isdisjoint((*HEAVY, "numpy")), loaded & {*HEAVY, "numpy"}


def test_pf_on_a_small_record_loads_numpy_only(tmp_path: Path) -> None:
    """`gridlens pf` needs NumPy and gridlens.pq, and nothing heavier (scipy.signal was imported
    up front for the frequency tracker's band-pass filter)."""
    rec = tmp_path / "small.npz"
    assert run("synth", str(rec), "--seconds", "0.2").returncode == 0
    loaded = _modules_after(
        "import contextlib, io\nfrom gridlens.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['pf', {str(rec)!r}]) == 0"
    )
    assert "numpy" in loaded and loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


@pytest.fixture(scope="module")
def no_current(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    p = tmp_path_factory.mktemp("cli") / "night.csv"
    r = run("synth", str(p), "--seconds", "0.5", "--v", "1:230,5:9", "--i", "1:0")
    assert r.returncode == 0, r.stderr
    return p


def test_pf_without_current_reports_an_undefined_power_factor(no_current) -> None:  # type: ignore[no-untyped-def]
    """Finding 8: `gridlens pf` on a record without current was an internal error (exit 1).
    It is a normal record (a load switched off): the voltage side is reported, the power
    factor is undefined (null), and no capacitor step is switched."""
    r = run("pf", str(no_current), "--json", "--steps-kvar", "5,10", "--demand-charge", "100")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["pf_defined"] is False and doc["displacement"] == "undefined"
    assert {m["pf"] for m in doc["methods"].values()} == {None}
    assert doc["thd_i"] is None and doc["thd_v"] == pytest.approx(9 / 230, rel=1e-2)
    assert doc["ieee1459"]["v1_rms_v"] == pytest.approx(230.0, rel=1e-3)
    assert doc["capacitor"]["switch_kvar"] == [] and "no current" in doc["capacitor"]["action"]
    assert doc["tariff"]["adjustment_now"] is None and "amount_now" not in doc["tariff"]
    assert "no current" in doc["note"]
    text = run("pf", str(no_current), "--steps-kvar", "5,10")
    assert text.returncode == 0, text.stderr
    assert "undefined" in text.stdout and "no current" in text.stdout
    assert text.stderr == ""
