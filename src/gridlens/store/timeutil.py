"""Times: UTC epoch seconds inside, ISO 8601 outside."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from gridlens.errors import ParameterError

_EPOCH = re.compile(r"^\d{9,11}(\.\d+)?$")


def iso(t: float | None) -> str | None:
    """``2026-11-21T10:00:00Z`` (milliseconds only when there are any)."""
    if t is None:
        return None
    d = datetime.fromtimestamp(t, UTC)
    spec = "seconds" if d.microsecond == 0 else "milliseconds"
    return d.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_time(text: str, what: str = "time") -> float:
    """ISO 8601 (``Z`` or an offset; naive means UTC) or epoch seconds -> epoch seconds."""
    s = text.strip()
    if _EPOCH.match(s):
        return float(s)
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParameterError(
            f"{what} {text!r} is not a time; use ISO 8601 such as 2026-11-21T10:00:00Z "
            "or epoch seconds"
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    t = d.timestamp()
    if not math.isfinite(t):
        raise ParameterError(f"{what} {text!r} is out of range")
    return t


def day_start(t: float) -> float:
    """Midnight UTC of the day containing ``t``."""
    return math.floor(t / 86400.0) * 86400.0
