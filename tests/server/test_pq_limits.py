"""``POST /pq`` on hostile and degenerate waveform files, through the real app (issue 19).

Finding 1: a 229-byte COMTRADE pair whose .cfg announces 2e8 samples cost 3.45 GB and a 500;
an .npz carrying an unused 500 MB array was loaded whole. Finding 8: a record without current
gave a 500. Each must now be one clear answer, quickly, in bounded memory.
"""

from __future__ import annotations

import functools
import io
import re
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

PASSWORD = "pq-limits-viewer-pw"
ORIGIN = {"Origin": "http://testserver"}

CFG = (
    "x,y,1999\n2,2A,0D\n"
    "1,VA,A,,V,0.01,0,0,-9999999,9999999,1,1,P\n"
    "2,IA,A,,A,0.001,0,0,-9999999,9999999,1,1,P\n"
    "60\n1\n10000,{n}\n01/01/2024,00:00:00.000000\n01/01/2024,00:00:00.000000\nASCII\n1\n"
)
DAT = "".join(f"{k},{100 * (k - 1)},{k},{k}\n" for k in range(1, 6))


@pytest.fixture
def viewer(api_env: dict[str, Any]) -> Any:
    """The TestClient logged in to the dashboard as a viewer."""
    api_env["store"].add_user("pqviewer", role="viewer", password=PASSWORD)
    client = api_env["client"]
    client.cookies.clear()
    r = client.post(
        "/login",
        data={"username": "pqviewer", "password": PASSWORD, "next": "/pq"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[-300:]
    return client


@pytest.fixture
def measured() -> Iterator[Callable[[Callable[[], Any]], tuple[Any, float, float]]]:
    """Run a call; return its result, its wall time [s] and its peak traced memory [MB]."""

    def run(call: Callable[[], Any]) -> tuple[Any, float, float]:
        tracemalloc.start()
        try:
            t0 = time.perf_counter()
            out = call()
            elapsed = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return out, elapsed, peak / 2**20

    yield run


def _post(client: Any, files: list[tuple[str, bytes]], **data: str) -> Any:
    return client.post(
        "/pq",
        files=[("file", (name, body, "application/octet-stream")) for name, body in files],
        data={"f0": "60", "track": "on", **data},
        headers=ORIGIN,
    )


def _error(r: Any) -> str:
    m = re.search(r'id="pq-error">([^<]*)<', r.text)
    assert m is not None, r.text[-400:]
    return m.group(1)


@pytest.mark.parametrize("claim", [200_000_000, 20_000_000, 1_000_000_000])
def test_comtrade_claiming_more_samples_than_it_holds_is_a_quick_4xx(
    viewer: Any, measured: Any, claim: int
) -> None:
    cfg, dat = CFG.format(n=claim).encode(), DAT.encode()
    assert len(cfg) + len(dat) <= 240  # about the reported 229-byte pair
    r, seconds, peak_mb = measured(lambda: _post(viewer, [("a.cfg", cfg), ("a.dat", dat)]))
    assert r.status_code == 422, r.text[-400:]
    assert "announces" in _error(r) and "samples" in _error(r)
    assert peak_mb < 100, f"{peak_mb:.0f} MB"
    assert seconds < 10


def _npy_header(n: int) -> bytes:
    """The .npy header (magic included) of a float64 array of ``n`` values."""
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
    return b.getvalue()


def npz_bytes(arrays: dict[str, Any], *, zeros_mb: int = 0, huge_claim: int = 0) -> bytes:
    """An .npz of ``arrays`` plus, optionally, an unused deflated array of ``zeros_mb`` MB of
    zeros (written in chunks: the test never holds it) and an array 'w' whose header
    announces ``huge_claim`` values but holds none."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            b = io.BytesIO()
            np.save(b, np.asarray(arr))
            zf.writestr(name + ".npy", b.getvalue())
        if zeros_mb:
            with zf.open("unused.npy", "w", force_zip64=True) as fh:
                fh.write(_npy_header(zeros_mb * 2**20 // 8))
                chunk = bytes(2**20)
                for _ in range(zeros_mb):
                    fh.write(chunk)
        if huge_claim:
            zf.writestr("w.npy", _npy_header(huge_claim))
    return out.getvalue()


def _record(i_scale: float) -> dict[str, Any]:
    fs = 6000.0
    t = np.arange(int(0.5 * fs)) / fs
    v = 230.0 * np.sqrt(2) * np.sin(2 * np.pi * 60.0 * t)
    i = i_scale * 10.0 * np.sqrt(2) * np.sin(2 * np.pi * 60.0 * t - 0.5)
    return {"v": v, "i": i, "fs": fs}


@functools.cache
def _with_unused_500_mb() -> bytes:
    return npz_bytes(_record(1.0), zeros_mb=500)


def test_npz_with_an_unused_500_mb_array_is_analysed_without_loading_it(
    viewer: Any, measured: Any
) -> None:
    body = _with_unused_500_mb()
    assert len(body) < 2 * 2**20  # deflated zeros: a small upload
    r, _, peak_mb = measured(lambda: _post(viewer, [("rec.npz", body)]))
    assert r.status_code == 200, _error(r)
    assert peak_mb < 100, f"{peak_mb:.0f} MB"


def test_npz_array_announcing_a_billion_values_is_a_quick_4xx(viewer: Any, measured: Any) -> None:
    rec = _record(1.0)
    body = npz_bytes({"i": rec["i"], "fs": rec["fs"]}, huge_claim=10**9)
    r, seconds, peak_mb = measured(lambda: _post(viewer, [("rec.npz", body)], v_channel="w"))
    assert r.status_code == 422, r.text[-400:]
    assert "1,000,000,000 values" in _error(r)
    assert peak_mb < 100 and seconds < 10


def test_record_without_current_shows_voltage_and_an_undefined_power_factor(
    viewer: Any,
) -> None:
    """Finding 8: no current is a record a PF controller sees every night (load off): the
    page shows the voltage and frequency, and the power factors as undefined ("-")."""
    r = _post(viewer, [("night.npz", npz_bytes(_record(0.0)))])
    assert r.status_code == 200, r.text[-400:]
    pfs = dict(re.findall(r'data-method="(\w+)">([^<]*)<', r.text))
    assert pfs == {"dq": "-", "power_triangle": "-", "time_delay": "-"}, pfs
    assert re.search(r'id="pq-f">60\.00\d+ Hz', r.text)
    assert "undefined" in r.text


def test_a_small_npz_that_inflates_past_the_page_limit_is_a_4xx(viewer: Any, measured: Any) -> None:
    # 4 M samples of zeros deflate to a few kB; the page reads at most PQ_MAX_SAMPLES
    from gridlens.server.dashboard import PQ_MAX_SAMPLES

    n = PQ_MAX_SAMPLES + 1_000_000
    body = npz_bytes({"v": np.zeros(n), "i": np.zeros(n), "fs": 6000.0})
    assert len(body) < 100_000
    r, _, peak_mb = measured(lambda: _post(viewer, [("big.npz", body)]))
    assert r.status_code == 422, r.text[-400:]
    assert "more than the 3,000,000 read at once" in _error(r)
    assert peak_mb < 100, f"{peak_mb:.0f} MB"
