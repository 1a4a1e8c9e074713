"""Plausibility with memory: which value of a frame, if any, to accept.

The rules, in order:

1. **Never accept a decrease.**  A counter only counts up; a lower value is a misread.
2. **No impossible rates.**  With the elapsed time known, an increase faster than
   ``Limits.max_rate_per_h`` (units per hour, e.g. kWh/h = kW) is rejected.
3. **Carries from history.**  When a wheel's carry is ambiguous in the frame
   (:mod:`gridlens.meter.carry`), or the model is unsure of a wheel, the candidates are
   weighed by the frame's score times their agreement with the value the history predicts
   (last value + recent rate × elapsed time), instead of a blind +1.  When the frame's
   primary value breaks rule 1 or 2 but one of its alternatives does not, the alternative
   is accepted with a note.
4. **Never lock up.**  Rejected values are remembered.  When the last
   ``Limits.resync_after`` frames agree with each other (rising, at plausible rates between
   themselves) but all sit above a stale accepted value, the latest is accepted and the
   decision says it re-synchronised.  Values *below* the last accepted one re-synchronise only
   with ``resync_on_decrease=True`` (a replaced meter); otherwise rule 1 stands and the
   reason says how to reset.

Every rejection carries a reason a person can act on.  Times are seconds on any clock
(Unix time on the server); ``nan`` means unknown and switches the rate rule off.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gridlens.errors import check_param
from gridlens.meter.carry import SHOWN_AT, UNSURE, Candidate, FrameValue

__all__ = ["Decision", "History", "Limits", "judge"]

#: How far (in units of the last digit) the history's prediction may be off before it
#: outweighs the frame when candidates compete.
HISTORY_SIGMA = 0.5
#: Agreement every candidate keeps however far the prediction is: when the history cannot
#: tell two candidates apart (both far from a stale prediction), the frame decides.
HISTORY_FLOOR = 0.01


@dataclass(frozen=True)
class Limits:
    """Plausibility settings of one meter."""

    max_rate_per_h: float | None = None  # units per hour (kWh/h); None = no rate limit
    min_confidence: float = 0.2  # a wheel read with less confidence rejects the frame
    resync_after: int = 3  # consistent rejected frames that re-synchronise
    resync_on_decrease: bool = False
    keep: int = 16  # accepted / pending values kept in the history

    def __post_init__(self) -> None:
        owner = "Limits"
        r = self.max_rate_per_h
        check_param(r is None or r > 0, "max_rate_per_h", owner, "a positive float or None", r)
        check_param(
            0 <= self.min_confidence < 1, "min_confidence", owner, "in [0, 1)", self.min_confidence
        )
        check_param(self.resync_after >= 2, "resync_after", owner, "an int >= 2", self.resync_after)


@dataclass(frozen=True)
class History:
    """What plausibility remembers about one meter (oldest first)."""

    accepted: tuple[tuple[float, float], ...] = ()  # (time_s, value)
    pending: tuple[tuple[float, float], ...] = ()  # rejected frames' values since then
    #: the first accepted (time_s, value) after the photo, for a photo that arrives late (a
    #: device that kept it while offline): the photo must fit between its neighbours
    later: tuple[float, float] | None = None

    @classmethod
    def single(cls, previous: float, *, elapsed_s: float | None = None) -> History:
        """One previous accepted value, ``elapsed_s`` before now (now = time 0)."""
        t = -float(elapsed_s) if elapsed_s is not None else math.nan
        check_param(elapsed_s is None or elapsed_s >= 0, "elapsed_s", "History", ">= 0", elapsed_s)
        return cls(accepted=((t, float(previous)),))

    @property
    def last(self) -> tuple[float, float] | None:
        return self.accepted[-1] if self.accepted else None

    def predicted(self, now: float) -> float | None:
        """Last value plus the recent mean rate times the elapsed time."""
        if not self.accepted:
            return None
        t1, v1 = self.accepted[-1]
        if len(self.accepted) < 2 or math.isnan(now) or math.isnan(t1):
            return v1
        t0, v0 = self.accepted[max(0, len(self.accepted) - 8)]
        if math.isnan(t0) or t1 <= t0:
            return v1
        return v1 + (v1 - v0) / (t1 - t0) * max(0.0, now - t1)

    def record(self, now: float, decision: Decision, keep: int = 16) -> History:
        """The history after ``decision`` was taken at time ``now``."""
        if decision.status == "ok" and decision.value is not None:
            return History((*self.accepted, (now, decision.value))[-keep:], ())
        if decision.candidate is not None:
            return replace(self, pending=(*self.pending, (now, decision.candidate))[-keep:])
        return self


@dataclass(frozen=True)
class Decision:
    status: str  # "ok" | "rejected"
    value: float | None
    reason: str | None = None
    note: str | None = None
    resynced: bool = False
    candidate: float | None = None  # the frame's value (also when rejected)
    wheel: int | None = None  # the wheel whose alternative was chosen


def _fmt(v: float, decimals: int) -> str:
    return f"{v:.{decimals}f}"


def _rate(v0: float, t0: float, v1: float, t1: float) -> float | None:
    if math.isnan(t0) or math.isnan(t1) or t1 <= t0:
        return None
    return (v1 - v0) / (t1 - t0) * 3600.0


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _problem(
    value: float, now: float, history: History, limits: Limits, decimals: int
) -> str | None:
    """Why ``value`` cannot follow the history, or precede a later reading (None if it can)."""
    late = _late_problem(value, now, history.later, limits, decimals)
    if late is not None:
        return late
    last = history.last
    if last is None:
        return None
    t1, v1 = last
    step = _step(t1, v1, now, value, limits)
    if step is None:
        return None
    kind, rate = step
    if kind == "decrease":
        return (
            f"reading {_fmt(value, decimals)} is below the last accepted "
            f"{_fmt(v1, decimals)}, and a meter only counts up: probably a misread digit "
            "(glare, focus or a shifted camera); check the latest photo"
        )
    return (
        f"reading {_fmt(value, decimals)} means {rate:.3g} units/h since the last "
        f"accepted {_fmt(v1, decimals)} ({_ago(now - t1)} ago), above the limit "
        f"{limits.max_rate_per_h:g}/h: probably a misread digit; if the meter really "
        f"moved on, gridlens re-synchronises after {limits.resync_after} consistent readings"
    )


def _late_problem(
    value: float, now: float, later: tuple[float, float] | None, limits: Limits, decimals: int
) -> str | None:
    """Why ``value``, captured at ``now``, cannot come before the later accepted reading."""
    if later is None:
        return None
    t2, v2 = later
    step = _step(now, value, t2, v2, limits)
    if step is None:
        return None
    kind, rate = step
    if kind == "decrease":
        return (
            f"reading {_fmt(value, decimals)} is above {_fmt(v2, decimals)}, accepted for a "
            f"photo taken {_ago(t2 - now)} later, and a meter only counts up: probably a "
            "misread digit in this late photo"
        )
    return (
        f"reading {_fmt(value, decimals)} would mean {rate:.3g} units/h up to "
        f"{_fmt(v2, decimals)}, accepted for a photo taken {_ago(t2 - now)} later, above "
        f"the limit {limits.max_rate_per_h:g}/h: probably a misread digit in this late photo"
    )


def _step(t0: float, v0: float, t1: float, v1: float, limits: Limits) -> tuple[str, float] | None:
    """What is wrong with a meter going from (t0, v0) to (t1, v1): ``("decrease", 0)``,
    ``("rate", units per hour)`` above the limit, or None."""
    if v1 < v0 - 1e-9:
        return "decrease", 0.0
    rate = _rate(v0, t0, v1, t1)
    if limits.max_rate_per_h is not None and rate is not None and rate > limits.max_rate_per_h:
        return "rate", rate
    return None


def _consistent(points: Sequence[tuple[float, float]], limits: Limits) -> bool:
    return all(
        _step(t0, v0, t1, v1, limits) is None for (t0, v0), (t1, v1) in itertools.pairwise(points)
    )


def judge(
    frame: FrameValue,
    confidences: Sequence[float],
    *,
    now: float,
    history: History | None,
    limits: Limits,
    decimals: int,
    names: Sequence[str] | None = None,
) -> Decision:
    """Decide on one frame given the meter's history (``names``: of the wheels and dials,
    for messages; default "wheel 1", "wheel 2", ...)."""
    primary = frame.primary
    worst = min(range(len(confidences)), key=lambda k: confidences[k])
    if confidences[worst] < limits.min_confidence:
        name = names[worst] if names is not None else f"wheel {worst + 1}"
        what = (
            "dial box that misses its dial"
            if name.startswith("dial")
            else "digit box that misses its wheel"
        )
        return Decision(
            "rejected",
            None,
            reason=(
                f"{name} is unreadable (confidence {confidences[worst]:.2f}): "
                f"check the photo for glare, blur or a {what}"
            ),
        )
    if history is not None and history.last is None and history.later is not None:
        return _before_first(frame, now, history.later, limits, decimals)
    if history is None or history.last is None:
        last_conf = confidences[len(primary.digits) - 1]
        if history is not None and last_conf < UNSURE:
            # the first value anchors every later one: a wrong one blocks the true readings
            return Decision(
                "rejected",
                None,
                reason=(
                    f"the last wheel is unsure (confidence {last_conf:.2f}) and there is no "
                    "accepted reading yet to check it against: waiting for a clearer photo"
                ),
                candidate=primary.value,
            )
        note = None
        carry = [k for k in frame.uncertain_wheels if k < len(primary.digits) - 1]
        if carry:
            note = (
                f"carry at wheel {carry[0] + 1} is uncertain and there is no history to "
                "check it against"
            )
        return Decision("ok", primary.value, note=note, candidate=primary.value)

    n = len(primary.digits)
    last_v = history.accepted[-1][1]

    def unsure_advance(value: float) -> Decision | None:
        # an unsure rightmost wheel does not move the meter on: a wrong advance accepted
        # blocks every true reading below it until the meter catches up, a wait costs a frame
        if value <= last_v + 1e-9 or confidences[n - 1] >= UNSURE:
            return None
        return Decision(
            "rejected",
            None,
            reason=(
                f"the last wheel is unsure (confidence {confidences[n - 1]:.2f}) and would move "
                f"the reading on to {_fmt(value, decimals)}: waiting for a clearer photo"
            ),
            candidate=primary.value,
        )

    problem = _problem(primary.value, now, history, limits, decimals)
    # alternatives worth weighing even when the primary is plausible: an ambiguous carry, or
    # any wheel the model is unsure of (a last wheel merely near a digit change is not)
    shaky = [
        a
        for a in frame.alternatives
        if a.wheel is not None and (a.wheel < n - 1 or confidences[a.wheel] < UNSURE)
    ]
    if problem is None and not shaky:
        return unsure_advance(primary.value) or Decision(
            "ok", primary.value, candidate=primary.value
        )

    # the frame is ambiguous or implausible: choose among the candidates that fit the history
    pool: list[Candidate] = [primary, *shaky] if problem is None else list(frame.candidates)
    valid = [c for c in pool if _problem(c.value, now, history, limits, decimals) is None]
    if valid:
        pred = history.predicted(now)
        assert pred is not None
        unit = 10.0**-decimals

        def support(c: Candidate) -> float:
            # frame score x agreement with the prediction: a register value v stands for a
            # true reading in [v - SHOWN_AT, v + 1 - SHOWN_AT) units (the last wheel shows
            # its next digit from SHOWN_AT of a turn); distance of the prediction to it
            lo, hi = c.value - SHOWN_AT * unit, c.value + (1.0 - SHOWN_AT) * unit
            d = max(0.0, lo - pred, pred - hi) / unit
            return c.score * (math.exp(-0.5 * (d / HISTORY_SIGMA) ** 2) + HISTORY_FLOOR)

        best = max(valid, key=support)
        held = unsure_advance(best.value)
        if held is not None:
            if primary in valid and unsure_advance(primary.value) is None:
                return Decision("ok", primary.value, candidate=primary.value)
            return held
        if best is primary:
            return Decision("ok", primary.value, candidate=primary.value)
        w = best.wheel if best.wheel is not None else 0
        kind = "carry" if w < n - 1 else "last wheel"
        return Decision(
            "ok",
            best.value,
            note=(
                f"{kind} at wheel {w + 1} resolved from history: the frame alone read "
                f"{_fmt(primary.value, decimals)}, the history expects about "
                f"{_fmt(pred, decimals)}"
            ),
            candidate=primary.value,
            wheel=w,
        )

    # nothing fits: re-synchronise if the recent rejected frames agree with this one
    assert problem is not None
    v1 = history.accepted[-1][1]
    recent = [*history.pending[-(limits.resync_after - 1) :], (now, primary.value)]
    above = all(v > v1 for _, v in recent)
    below = all(v < v1 for _, v in recent)
    if (
        history.later is None  # a late photo does not speak for the meter's present
        and len(recent) >= limits.resync_after
        and _consistent(recent, limits)
        and (above or (below and limits.resync_on_decrease))
    ):
        return Decision(
            "ok",
            primary.value,
            note=(
                f"re-synchronised: {len(recent)} consistent readings up to "
                f"{_fmt(primary.value, decimals)} replace the stale last accepted value "
                f"{_fmt(v1, decimals)}"
            ),
            resynced=True,
            candidate=primary.value,
        )
    if below and not limits.resync_on_decrease and len(recent) >= limits.resync_after:
        problem += (
            f" ({len(recent)} readings in a row are below it: if the meter was replaced "
            "or the last accepted value was wrong, reset this meter's history)"
        )
    return Decision("rejected", None, reason=problem, candidate=primary.value)


def _before_first(
    frame: FrameValue, now: float, later: tuple[float, float], limits: Limits, decimals: int
) -> Decision:
    """A late photo older than every accepted reading: it must fit below the first one."""
    primary = frame.primary
    problem = _late_problem(primary.value, now, later, limits, decimals)
    if problem is None:
        return Decision("ok", primary.value, candidate=primary.value)
    valid = [
        c for c in frame.candidates if _late_problem(c.value, now, later, limits, decimals) is None
    ]
    if not valid:
        return Decision("rejected", None, reason=problem, candidate=primary.value)
    best = max(valid, key=lambda c: c.score)
    w = best.wheel if best.wheel is not None else 0
    return Decision(
        "ok",
        best.value,
        note=(
            f"wheel {w + 1} resolved from the later reading {_fmt(later[1], decimals)}: the "
            f"frame alone read {_fmt(primary.value, decimals)}"
        ),
        candidate=primary.value,
        wheel=w,
    )
