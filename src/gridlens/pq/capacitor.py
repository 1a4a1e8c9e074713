"""Capacitor-bank step selection from the fundamental reactive power, and the KEPCO-style
power-factor tariff adjustment.

Automatic power-factor controllers (APFC) switch capacitor steps on the **fundamental**
reactive power Q1 -- harmonics must not be compensated by capacitors. They do not react to
every deficit: a step is switched only when the reactive deficit exceeds a response threshold,
a fraction ``k`` of the smallest step (the "C/k" setting: C/k is the smallest step's current
referred to the CT secondary; controllers act at about 0.65·C/k, which stops hunting).

:func:`recommend_steps` does the same on one measurement: the deficit is
``ΔQ = Q1 − P1·tan(acos PF_target)``; inside the dead band ``|ΔQ| < k·Q_smallest`` nothing is
switched; otherwise it picks the combination of steps whose total is closest to ΔQ without
driving the installation leading by more than the dead band ("best fit" switching).

References
----------
.. [1] IEEE Std 1036-2020, Guide for the Application of Shunt Power Capacitors, §6.
.. [2] KEPCO Basic Supply Terms (전기공급약관) §43, power-factor charge: 0.2 % of the demand
   charge per 1 % of lagging PF below 90 % (down to 60 %), and a discount of 0.2 % per 1 %
   above 90 % (up to 95 %). The numbers are parameters here, not constants.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridlens.errors import check_param

__all__ = ["CapacitorPlan", "TariffParams", "pf_adjustment", "recommend_steps"]

_MAX_EXHAUSTIVE_STEPS = 16


@dataclass(frozen=True)
class TariffParams:
    """Power-factor tariff: adjustment per 1 % of PF away from the reference.

    Attributes
    ----------
    reference_pf : float
        PF at which no adjustment applies (KEPCO: 0.90). [fraction]
    rate_per_pct : float
        Fraction of the demand charge per 1 % of PF (KEPCO: 0.002 = 0.2 %).
    floor_pf : float
        Surcharge stops growing below this PF (KEPCO: 0.60). [fraction]
    cap_pf : float
        Discount stops growing above this PF (KEPCO: 0.95). [fraction]
    """

    reference_pf: float = 0.90
    rate_per_pct: float = 0.002
    floor_pf: float = 0.60
    cap_pf: float = 0.95

    def __post_init__(self) -> None:
        ok = 0 < self.floor_pf <= self.reference_pf <= self.cap_pf <= 1
        check_param(
            ok,
            "floor/reference/cap_pf",
            "TariffParams",
            "0 < floor <= ref <= cap <= 1",
            (self.floor_pf, self.reference_pf, self.cap_pf),
        )
        check_param(
            self.rate_per_pct >= 0,
            "rate_per_pct",
            "TariffParams",
            "a float >= 0",
            self.rate_per_pct,
        )


def pf_adjustment(pf: float, tariff: TariffParams | None = None) -> float:
    """Demand-charge adjustment for a lagging power factor, as a fraction of the demand charge.

    Positive = surcharge, negative = discount. A leading (capacitive) PF is passed as its
    magnitude; KEPCO bills leading PF separately at night, which is out of scope here.
    """
    t = tariff or TariffParams()
    pf = float(np.clip(abs(pf), t.floor_pf, t.cap_pf))
    return (t.reference_pf - pf) * 100.0 * t.rate_per_pct


@dataclass(frozen=True)
class CapacitorPlan:
    """Recommendation of :func:`recommend_steps`.

    Attributes
    ----------
    switch_kvar : tuple of float
        Rated sizes of the steps to switch on. [kvar]
    q_comp_var : float
        Compensation they give at the measured voltage. [var]
    q_needed_var : float
        Reactive deficit ΔQ to reach the target. [var]
    threshold_var : float
        Response threshold (dead band), k × smallest step. [var]
    pf_before, pf_after : float
        Fundamental power factor before and after switching. [fraction]
    leading_after : bool
        Whether the installation would be leading after switching.
    action : str
        ``"switch"``, ``"none: within dead band"``, ``"none: already leading"``, ...
    target_pf : float
        The target. [fraction]
    target_reached : bool
        Whether the PF after switching is at least the target (or leading). A controller
        settles short of the target when the remaining deficit is inside the dead band.
    """

    switch_kvar: tuple[float, ...]
    q_comp_var: float
    q_needed_var: float
    threshold_var: float
    pf_before: float
    pf_after: float
    leading_after: bool
    action: str
    target_pf: float
    target_reached: bool


def _pf(p: float, q: float) -> float:
    h = float(np.hypot(p, q))
    return abs(p) / h if h > 0 else float("nan")


def recommend_steps(
    p1_w: float,
    q1_var: float,
    *,
    steps_kvar: Sequence[float],
    target_pf: float = 0.95,
    k_threshold: float = 0.65,
    v1_rms_v: float | None = None,
    rated_v: float | None = None,
) -> CapacitorPlan:
    """Choose capacitor steps to bring the fundamental PF to ``target_pf``.

    Parameters
    ----------
    p1_w : float
        Fundamental active power. [W]
    q1_var : float
        Fundamental reactive power, > 0 lagging, measured with no step switched. [var]
    steps_kvar : sequence of float
        Rated sizes of the available steps. [kvar]
    target_pf : float, default 0.95
        Target lagging fundamental power factor. [fraction]
    k_threshold : float, default 0.65
        Response threshold as a fraction of the smallest step (the C/k factor).
    v1_rms_v, rated_v : float, optional
        Measured fundamental voltage and the capacitors' rated voltage [V]: a step delivers
        ``Q_rated·(V1/V_rated)²``. Both or neither.

    Returns
    -------
    CapacitorPlan
    """
    owner = "recommend_steps"
    check_param(0 < target_pf <= 1, "target_pf", owner, "a float in (0, 1]", target_pf)
    check_param(len(steps_kvar) > 0, "steps_kvar", owner, "a non-empty list of kvar", steps_kvar)
    check_param(all(s > 0 for s in steps_kvar), "steps_kvar", owner, "positive sizes", steps_kvar)
    check_param(0 <= k_threshold <= 1, "k_threshold", owner, "a float in [0, 1]", k_threshold)
    scale = 1.0
    if rated_v is not None or v1_rms_v is not None:
        check_param(
            rated_v is not None and v1_rms_v is not None and rated_v > 0,
            "rated_v",
            owner,
            "given with v1_rms_v, and positive",
            rated_v,
        )
        assert rated_v is not None and v1_rms_v is not None
        scale = (v1_rms_v / rated_v) ** 2
    q_steps = np.asarray(steps_kvar, dtype=np.float64) * 1e3 * scale
    threshold = k_threshold * float(q_steps.min())
    q_allowed = abs(p1_w) * float(np.tan(np.arccos(target_pf)))
    need = q1_var - q_allowed
    pf_before = _pf(p1_w, q1_var)

    def plan(chosen: tuple[int, ...], action: str) -> CapacitorPlan:
        qc = float(q_steps[list(chosen)].sum()) if chosen else 0.0
        pf_after = _pf(p1_w, q1_var - qc)
        leading = q1_var - qc < 0
        return CapacitorPlan(
            switch_kvar=tuple(float(steps_kvar[k]) for k in chosen),
            q_comp_var=qc,
            q_needed_var=need,
            threshold_var=threshold,
            pf_before=pf_before,
            pf_after=pf_after,
            leading_after=leading,
            action=action,
            target_pf=target_pf,
            target_reached=leading or pf_after >= target_pf - 1e-12,
        )

    if not np.hypot(p1_w, q1_var) > 0:
        return plan((), "none: no current, the power factor is undefined")
    if q1_var < -threshold:
        return plan((), "none: already leading (switch capacitors off)")
    if need < threshold:
        return plan((), "none: within dead band")
    idx = range(len(q_steps))
    best: tuple[int, ...] = ()
    best_key = (abs(need), 0, 0.0)
    if len(q_steps) <= _MAX_EXHAUSTIVE_STEPS:
        combos: itertools.chain[tuple[int, ...]] = itertools.chain.from_iterable(
            itertools.combinations(idx, r) for r in range(1, len(q_steps) + 1)
        )
    else:  # greedy largest-first for very large banks
        order = sorted(idx, key=lambda k: -q_steps[k])
        greedy: list[int] = []
        for k in order:
            if q_steps[[*greedy, k]].sum() <= need + threshold:
                greedy.append(k)
        combos = itertools.chain([tuple(sorted(greedy))])
    for combo in combos:
        qc = float(q_steps[list(combo)].sum())
        if q1_var - qc < -threshold:
            continue
        key = (abs(need - qc), len(combo), qc)
        if key < best_key:
            best, best_key = combo, key
    if not best:
        return plan((), "none: smallest step would overcompensate")
    return plan(best, "switch")
