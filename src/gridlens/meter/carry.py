"""Turning wheel positions into the value a careful person reads off the register.

**The reading convention** (decided on the real photos of ``meter-photos/``, whose labels
were read by eye):

1. *The rightmost wheel* shows the digit that fills more of its window. A wheel read at
   5.97 is sitting on its 6 and counts as 6: the estimate is never floored. A wheel caught
   half-way, with both digits showing equally, counts as the lower digit; the model reads
   positions to a tenth, so the boundary lies between the tenths x.5 (lower digit) and x.6
   (upper digit), at x.55 (:data:`SHOWN_AT`). Near that boundary the frame is ambiguous: the
   other digit is offered as an alternative, and the meter's history (plausibility) or a
   finer wheel settles it.
2. *Every higher wheel* that sits between two digits counts as the lower one, unless the
   wheel below it has already carried it. A register is an odometer: wheel ``k`` advances
   while the wheel below it goes from 9 to 0, so its read position ``r_k`` is its digit
   ``d_k`` *plus* a carry fraction ``e(c_{k+1})`` of the continuous position ``c_{k+1}`` of
   the wheel below::

       e(c) = clip(c - 9, 0, 1)            (0 until the lower wheel passes 9, then 0 -> 1)
       d_k  = round(r_k - e(c_{k+1}))      (mod 10)
       c_k  = d_k + e(c_{k+1})             (where wheel k sits, handed further left)

   Rounding ``r_k - e`` tolerates a wheel that rolls early or late by up to half a digit,
   which real registers do (the wmsc water meter's units wheel runs 0.3-0.4 digit behind
   its dials). A reader that rounds ``r_k`` alone turns 3.9 into 4 while the wheel below
   still reads 9.6, the "+1 jump" users complain about.
3. The two rules meet at the rightmost wheel: the value is the continuous count
   ``V = (d_1 .. d_{n-1}) * 10 + c_n`` rounded by rule 1, so a last wheel showing its 0
   (at 9.7) with the wheel above mid-carry reads as the carried value ("40", not "30"),
   as a person reading both windows does.

**Pointer dials** (``dials`` in the ROI) continue the register to the right of the wheels,
largest factor first, and follow the same rules with two differences:

4. A dial's gearing is continuous: it advances a tenth of a division while the dial (or the
   wheel) below it turns once, so the carry fraction handed up from a dial at ``c``
   is ``c / 10`` (not the wheels' 9 -> 0 step). This is also how the wheel above the first
   dial moves on water meters (the wmsc units wheel turns with the x0.1 dial, ~0.35 digit
   behind it), so a units wheel mid-roll is settled by the x0.1 dial, and a dial just past 0
   means the dial above has carried: the rule "read the lower number, and check a dial on
   a number against the dial to its right" of electricity clock-dial registers.
   A wheel driven by a dial runs *behind* it: its gear has play, and the wmsc units wheel
   sits 0.3-0.55 digit behind the x0.1 dial (laurynas' x0.001 wheel runs with its dial).
   So the last wheel is read as ``d = round(r - c/10 + DIAL_LAG)`` with
   :data:`DIAL_LAG` = 0.25 a digit: a wheel from 0.25 ahead of its dial to 0.75 behind it is
   read right. (Chosen from the mechanics and these two meters, so the wmsc and laurynas
   whole-meter figures are not held out for this rule.)
5. The finest dial reads the number its pointer has passed, unless the pointer is within a
   tenth of a division of the next number (:data:`DIAL_SHOWN_AT`): pointer readings are good
   to about a tenth, so "on the 4" is not floored to 3.

The distance of ``r_k - e`` from the nearest integer is the *carry ambiguity* (0 = certain,
0.5 = a coin toss). An ambiguous or low-confidence wheel yields alternative candidates (its
neighbouring digits), and :mod:`gridlens.meter.plausibility` chooses among them with the
meter's history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridlens.errors import DataFormatError

__all__ = [
    "SHOWN_AT",
    "Candidate",
    "FrameValue",
    "carry_fraction",
    "register_value",
    "resolve_wheels",
]

#: Fraction of a division from which the finest *dial* counts as on its next number.
DIAL_SHOWN_AT = 0.9
#: How far a wheel driven by a dial is expected to run behind it [digits] (rule 4).
DIAL_LAG = 0.25

#: Carry ambiguity above which a wheel's neighbouring digit is offered as an alternative.
AMBIGUOUS = 0.3
#: Digit confidence below which a wheel's neighbours are offered as alternatives.
UNSURE = 0.7
#: Fraction of a turn from which the rightmost wheel shows its next digit (see rule 1).
SHOWN_AT = 0.55
#: Within this distance of :data:`SHOWN_AT` the rightmost wheel offers the other digit.
NEAR_SHOWN = 0.15


def carry_fraction(lower: float) -> float:
    """Expected fractional advance of a wheel whose lower neighbour sits at ``lower``."""
    return min(1.0, max(0.0, float(lower) - 9.0))


@dataclass(frozen=True)
class Candidate:
    """One possible counter value for a frame."""

    value: float
    digits: tuple[int, ...]
    score: float  # frame-only probability (the primary's is the lowest of its shaky wheels)
    wheel: int | None = None  # the wheel that differs from the primary (None: primary)


@dataclass(frozen=True)
class FrameValue:
    """The reading a single frame supports, with its alternatives."""

    primary: Candidate
    alternatives: tuple[Candidate, ...]
    ambiguity: tuple[float, ...]  # per wheel, 0 (certain) .. 0.5
    uncertain_wheels: tuple[int, ...]

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return (self.primary, *self.alternatives)

    def raw(self, decimals: int) -> str:
        s = "".join(str(d) for d in self.primary.digits)
        return s if decimals == 0 else f"{s[: len(s) - decimals]}.{s[len(s) - decimals :]}"


def register_value(reading: float, decimals: int) -> float:
    """The value a careful person reads off a counter whose true reading is ``reading``.

    The rightmost wheel shows its next digit from :data:`SHOWN_AT` of a turn on (rule 1 of
    the module docstring); the higher wheels follow it. This is the truth of every
    whole-meter metric in tests and benchmarks, with no tolerance.

    Parameters
    ----------
    reading : float
        True (continuous) reading. [register units]
    decimals : int
        Wheels after the decimal point.

    Examples
    --------
    >>> register_value(129.95, 1), register_value(129.96, 1), register_value(5.97, 0)
    (129.9, 130.0, 6.0)
    """
    scaled = round(float(reading) * 10**decimals, 6)
    base = math.floor(scaled)
    shown = base + _shows_next(scaled - base)
    return float(round(shown / 10**decimals, decimals))


def _shows_next(frac: float, at: float = SHOWN_AT) -> int:
    """1 when a last wheel (dial: ``at=DIAL_SHOWN_AT``) this far past its digit shows the
    next one (rule 1), else 0."""
    return 1 if frac >= at - 1e-9 else 0


def _count(digits: tuple[int, ...]) -> int:
    """The counter ``digits`` as one integer, in units of the last wheel."""
    v = 0
    for d in digits:
        v = v * 10 + d
    return v


def _value(digits: tuple[int, ...], decimals: int) -> float:
    return round(float(_count(digits)) / 10.0**decimals, decimals)


def _bump(digits: tuple[int, ...], step: int) -> tuple[int, ...]:
    """``digits`` as a counter plus ``step`` units of the last wheel (wrapping)."""
    n = len(digits)
    v = (_count(digits) + step) % 10**n
    return tuple(int(c) for c in str(v).zfill(n))


def resolve_wheels(
    positions: npt.ArrayLike, confidences: npt.ArrayLike, decimals: int, dials: int = 0
) -> FrameValue:
    """Resolve the reading a person sees from wheel positions (left to right) in [0, 10).

    Parameters
    ----------
    positions : array_like
        Continuous wheel positions, e.g. 3.7 = 70 % of the way from 3 to 4. [digits]
    confidences : array_like
        The model's ``P(|error| <= 0.2)`` per wheel.
    decimals : int
        Places after the decimal point (wheels after the point, plus the dials).
    dials : int
        How many of the last positions are pointer dials (rules 4 and 5), largest first.

    Returns
    -------
    FrameValue
        The primary value (the convention of the module docstring) and its alternatives.
    """
    r = np.asarray(positions, float)
    c = np.asarray(confidences, float)
    n = r.size
    if n == 0 or c.size != n:
        raise DataFormatError("need one position and one confidence per wheel")
    if not 0 <= decimals <= n:
        raise DataFormatError(f"decimals must be in [0, {n}], got {decimals}")
    if not 0 <= dials <= n:
        raise DataFormatError(f"dials must be in [0, {n}], got {dials}")
    is_dial = [k >= n - dials for k in range(n)]
    r = np.mod(r, 10.0)
    base = [0] * n  # digits of floor(V), the continuous count
    amb = [0.0] * n
    alt_dir = [0] * n
    last = float(r[-1])
    base[-1] = int(np.floor(last)) % 10
    raw = list(base)
    frac = last - np.floor(last)
    shown_at = DIAL_SHOWN_AT if is_dial[-1] else SHOWN_AT
    shown = _shows_next(frac, shown_at)
    gap = abs(frac - shown_at)
    amb[-1] = 0.5 * float(np.exp(-gap / 0.05)) if gap < NEAR_SHOWN else 0.0
    alt_dir[-1] = -1 if shown else 1
    cont = last
    for k in range(n - 2, -1, -1):
        e = cont / 10.0 if is_dial[k + 1] else carry_fraction(cont)
        lag = DIAL_LAG if is_dial[k + 1] and not is_dial[k] else 0.0
        t = r[k] - e + lag
        d = int(np.round(t))
        amb[k] = float(abs(t - d))
        alt_dir[k] = 1 if t > d else -1
        raw[k] = d  # may be 10 (it has carried) or -1 (rolled early): summed as a counter
        base[k] = d % 10
        cont = d + e - lag  # where the wheel is expected to sit, handed further left
    count = sum(dk * 10 ** (n - 1 - k) for k, dk in enumerate(raw)) % 10**n
    floor_digits = tuple(int(ch) for ch in str(count).zfill(n))
    dig = _bump(floor_digits, shown)
    alts: list[Candidate] = []
    unsure: list[int] = []
    primary_score = 1.0
    for k in range(n):
        near_shown = k == n - 1 and amb[k] > 0
        shaky = amb[k] >= AMBIGUOUS or c[k] < UNSURE or near_shown
        if not shaky:
            continue
        unsure.append(k)
        # frame-only probabilities: an unsure wheel keeps its confidence and splits the rest
        # between its neighbours; an ambiguous carry gives the other digit its ambiguity; a
        # last wheel near SHOWN_AT gives the other digit 0.5·exp(-distance / 0.05)
        if c[k] < UNSURE:
            keep = float(c[k])
            steps = [(alt_dir[k], (1 - keep) / 2), (-alt_dir[k], (1 - keep) / 2)]
        else:
            keep, steps = 1 - amb[k], [(alt_dir[k], amb[k])]
        primary_score = min(primary_score, keep)
        for step, score in steps:
            if k == n - 1:
                a = _bump(dig, step)
            else:
                alt = list(floor_digits)
                alt[k] = (alt[k] + step) % 10
                a = _bump(tuple(alt), shown)
            alts.append(Candidate(_value(a, decimals), a, max(0.01, score), k))
    primary = Candidate(_value(dig, decimals), dig, max(0.01, primary_score))
    return FrameValue(primary, tuple(alts), tuple(amb), tuple(unsure))
