from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridlens.pq import Waveform


def write_comtrade(wf: Waveform, stem: Path, *, v_name: str = "VA", i_name: str = "IA") -> Path:
    """Write an ASCII COMTRADE 1999 record (.cfg + .dat) the way a recorder would."""
    a_v, a_i = 0.01, 0.001  # volts / amps per count
    n = len(wf.v)
    cfg = "\n".join(
        [
            "gridlens-test,recorder1,1999",
            "2,2A,0D",
            f"1,{v_name},A,,V,{a_v},0,0,-9999999,9999999,1,1,P",
            f"2,{i_name},A,,A,{a_i},0,0,-9999999,9999999,1,1,P",
            "60",
            "1",
            f"{wf.fs_hz:g},{n}",
            "01/01/2024,00:00:00.000000",
            "01/01/2024,00:00:00.000000",
            "ASCII",
            "1",
            "",
        ]
    )
    stem.with_suffix(".cfg").write_text(cfg)
    t_us = np.round(np.arange(n) / wf.fs_hz * 1e6).astype(np.int64)
    rows = np.column_stack(
        [
            np.arange(1, n + 1),
            t_us,
            np.round(wf.v / a_v).astype(np.int64),
            np.round(wf.i / a_i).astype(np.int64),
        ]
    )
    np.savetxt(stem.with_suffix(".dat"), rows, fmt="%d", delimiter=",")
    return stem.with_suffix(".cfg")


@pytest.fixture
def comtrade_writer():  # type: ignore[no-untyped-def]
    return write_comtrade
