"""Power quality: fundamental power factor under harmonic distortion (gridlens seed S1).

Public API::

    analyze(v, i, fs_hz, f0_hz=60)        windowed IEEE 1459 quantities, three PF methods,
                                          frequency tracking -> PQReport
    power_triangle_pf, time_delay_pf,     the seed's three methods on whole-cycle records,
    dq_fundamental                        vectorised over leading axes
    estimate_frequency(v, fs_hz, f0_hz)   cycle-by-cycle frequency from zero crossings
    recommend_steps(p1_w, q1_var, ...)    capacitor steps from fundamental Q1 (C/k threshold)
    pf_adjustment(pf, TariffParams())     KEPCO-style PF surcharge/discount
    read_waveform(path)                   CSV / .npz / COMTRADE (at most MAX_SAMPLES samples;
                                          sizes written in a file are checked, not trusted)
    synthesize(...), PAPER_CASES          test signals and the seed's three published cases

Sign convention: Q > 0 lagging (inductive), Q < 0 leading (capacitive).
"""

from gridlens.pq.analysis import PQReport, Quantities, analyze, default_window_cycles
from gridlens.pq.capacitor import CapacitorPlan, TariffParams, pf_adjustment, recommend_steps
from gridlens.pq.frequency import FrequencyTrack, estimate_frequency
from gridlens.pq.io import MAX_SAMPLES, read_waveform, write_csv
from gridlens.pq.methods import DQResult, dq_fundamental, power_triangle_pf, time_delay_pf
from gridlens.pq.synth import PAPER_CASES, Harmonic, PaperCase, Waveform, synthesize

__all__ = [
    "MAX_SAMPLES",
    "PAPER_CASES",
    "CapacitorPlan",
    "DQResult",
    "FrequencyTrack",
    "Harmonic",
    "PQReport",
    "PaperCase",
    "Quantities",
    "TariffParams",
    "Waveform",
    "analyze",
    "default_window_cycles",
    "dq_fundamental",
    "estimate_frequency",
    "pf_adjustment",
    "power_triangle_pf",
    "read_waveform",
    "recommend_steps",
    "synthesize",
    "time_delay_pf",
    "write_csv",
]
