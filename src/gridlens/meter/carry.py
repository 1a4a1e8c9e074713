"""Turning wheel positions into a counter value: carry resolution across wheels.

A mechanical register is an odometer: the rightmost wheel turns continuously and each
higher wheel advances by one digit while the wheel below it goes from 9 to 0.  So the
position ``r_k`` read on wheel ``k`` is its digit ``d_k`` *plus* a carry fraction
``e(c_{k+1})`` that depends on the continuous position ``c_{k+1}`` of the wheel below::

    e(c) = clip(c - 9, 0, 1)            (0 until the lower wheel passes 9, then 0 → 1)
    d_k  = round(r_k - e(c_{k+1}))      (mod 10)
    c_k  = d_k + e(c_{k+1})             (where wheel k physically sits, handed further left)

Rounding ``r_k - e`` tolerates a wheel that rolls early or late by up to half a digit,
which real registers do.  Higher wheels are intermittent (they stand still on their digit
except during a carry), as in electricity-meter registers.  A single-frame reader that
rounds ``r_k`` alone (or floors it) turns 3.9 into 4 while the wheel below still reads 9.6,
the "+1 jump" its users complain about.  The distance of ``r_k - e`` from the nearest
integer is the *carry ambiguity* (0 = certain, 0.5 = a coin toss); an ambiguous or
low-confidence wheel yields alternative candidates (its neighbouring digits) that
:mod:`gridlens.meter.plausibility` can choose from using the meter's history.  The
rightmost wheel contributes ``floor(r)``; near a digit change its neighbour is an
alternative too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridlens.errors import DataFormatError

__all__ = ["Candidate", "FrameValue", "carry_fraction", "resolve_wheels"]

#: Carry ambiguity above which a wheel's neighbouring digit is offered as an alternative.
AMBIGUOUS = 0.3
#: Digit confidence below which a wheel's neighbours are offered as alternatives.
UNSURE = 0.7


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


def _value(digits: tuple[int, ...], decimals: int) -> float:
    v = 0
    for d in digits:
        v = v * 10 + d
    return round(float(v) / 10.0**decimals, decimals)


def resolve_wheels(
    positions: npt.ArrayLike, confidences: npt.ArrayLike, decimals: int
) -> FrameValue:
    """Resolve digits and carries from wheel positions (left to right) in [0, 10)."""
    r = np.asarray(positions, float)
    c = np.asarray(confidences, float)
    n = r.size
    if n == 0 or c.size != n:
        raise DataFormatError("need one position and one confidence per wheel")
    if not 0 <= decimals <= n:
        raise DataFormatError(f"decimals must be in [0, {n}], got {decimals}")
    r = np.mod(r, 10.0)
    digits = [0] * n
    amb = [0.0] * n
    alt_dir = [0] * n
    # rightmost wheel: floor of its position (tenths from the model, so x.95+ counts as x+1)
    last = r[-1]
    digits[-1] = int(np.floor(last + 1e-6)) % 10
    frac = last - np.floor(last + 1e-6)
    amb[-1] = 0.5 - abs(frac - 0.5) if frac < 0.15 or frac > 0.85 else 0.0
    alt_dir[-1] = 1 if frac > 0.5 else -1
    cont = float(last)
    for k in range(n - 2, -1, -1):
        t = r[k] - carry_fraction(cont)
        d = int(np.round(t))
        amb[k] = float(abs(t - d))
        alt_dir[k] = 1 if t > d else -1
        digits[k] = d % 10
        cont = digits[k] + carry_fraction(cont)
    dig = tuple(digits)
    alts: list[Candidate] = []
    unsure: list[int] = []
    primary_score = 1.0
    for k in range(n):
        shaky = amb[k] >= AMBIGUOUS or c[k] < UNSURE or (k == n - 1 and amb[k] > 0)
        if not shaky:
            continue
        unsure.append(k)
        # frame-only probabilities: an unsure wheel keeps its confidence and splits the rest
        # between its neighbours; an ambiguous carry gives the other digit its ambiguity; a
        # last wheel near a digit change gives the neighbour 0.5·exp(-distance / 0.05)
        if c[k] < UNSURE:
            keep = float(c[k])
            steps = [(alt_dir[k], (1 - keep) / 2), (-alt_dir[k], (1 - keep) / 2)]
        elif k == n - 1 and amb[k] < AMBIGUOUS:
            other = 0.5 * float(np.exp(-amb[k] / 0.05))
            keep, steps = 1 - other, [(alt_dir[k], other)]
        else:
            keep, steps = 1 - amb[k], [(alt_dir[k], amb[k])]
        primary_score = min(primary_score, keep)
        for step, score in steps:
            alt = list(dig)
            alt[k] = (alt[k] + step) % 10
            a = tuple(alt)
            alts.append(Candidate(_value(a, decimals), a, max(0.01, score), k))
    primary = Candidate(_value(dig, decimals), dig, max(0.01, primary_score))
    return FrameValue(primary, tuple(alts), tuple(amb), tuple(unsure))
