"""Cameras the server fetches photos from: their settings, the fetch lease and failure counts.

A pulled camera has a :class:`~gridlens.store.models.PullSource` row. Every server process
runs a puller that asks :func:`claim_due` for due cameras: one atomic
``UPDATE pull_sources SET next_at = next_at + interval, lease_owner = me, lease_until = ...
WHERE device_id = ? AND next_at = <as read> AND (lease_until IS NULL OR lease_until <= now)``
per camera. Of several processes (``serve --workers N``, or hosts sharing one PostgreSQL)
exactly one such UPDATE matches the row, so each due photo is fetched once; the lease also
keeps a slow fetch from overlapping the next one. :func:`finish` counts the outcome and
releases the lease. Works the same on SQLite (one writer at a time) and PostgreSQL (the
second UPDATE waits for the row lock, then re-checks its WHERE against the new row).

The camera's ``auth`` ("user:pass") is a secret: it is sent to the camera and nowhere else;
:func:`pull_dict` says only whether it is set, and URLs are shown with secret-looking
query values masked (:func:`display_url`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Table, case, or_, select, update
from sqlalchemy.orm import Session

from gridlens.errors import ParameterError
from gridlens.store.models import Device, PullSource
from gridlens.store.timeutil import iso

if TYPE_CHECKING:
    from gridlens.store.repo import Store

__all__ = [
    "PULL_INTERVAL_S",
    "Claim",
    "PullChange",
    "apply_pull_change",
    "claim_due",
    "display_url",
    "finish",
    "pull_dict",
    "pull_source",
    "pull_states",
]

PULL_INTERVAL_S = (5, 86400)
"""Allowed fetch intervals of a pulled camera, [min, max] [s]."""
_URL_MAX = 2048
_AUTH_MAX = 512
_ERROR_MAX = 500
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_SECRET_KEY = re.compile(r"pass|pwd|token|secret|key|auth|sig", re.IGNORECASE)


def _table() -> Table:
    """The Core table of :class:`PullSource` (the lease statements skip the ORM layer)."""
    table = PullSource.__table__
    assert isinstance(table, Table)
    return table


def _url_problem(url: str) -> str | None:
    if not isinstance(url, str) or len(url) > _URL_MAX or _CONTROL.search(url):
        return f"pull_url must be an http:// or https:// URL of at most {_URL_MAX} characters"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"pull_url {display_url(url)!r} has an invalid port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"pull_url must be an http:// or https:// URL with a host, got {display_url(url)!r}"
    if parts.username is not None or parts.password is not None:
        return "pull_url must not hold a user or password; give them as pull_auth 'user:pass'"
    return None


def _interval_problem(interval_s: int) -> str | None:
    lo, hi = PULL_INTERVAL_S
    if (
        isinstance(interval_s, bool)
        or not isinstance(interval_s, int)
        or not lo <= interval_s <= hi
    ):
        return (
            f"pull_interval_s must be a whole number of seconds in [{lo}, {hi}], got {interval_s!r}"
        )
    return None


def _auth_problem(auth: str) -> str | None:
    # the value is never repeated in the message: it is a password
    user, sep, _password = auth.partition(":") if isinstance(auth, str) else ("", "", "")
    if not sep or not user or len(auth) > _AUTH_MAX or _CONTROL.search(user):
        return (
            f"pull_auth must be 'user:pass' (a user name, a colon, the password; at most "
            f"{_AUTH_MAX} characters); the value given is not shown"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in auth):
        return "pull_auth must not contain control characters; the value given is not shown"
    return None


@dataclass(frozen=True)
class PullChange:
    """A change of a camera's pull settings, checked once when made.

    Attributes
    ----------
    url : str or None
        The snapshot URL (http or https, no credentials in it); ``""`` stops pulling;
        None keeps it.
    interval_s : int or None
        Seconds between fetches, in :data:`PULL_INTERVAL_S`; None keeps it (60 for a camera
        that starts being pulled).
    auth : str or None
        HTTP basic (or digest) credentials ``"user:pass"``; ``""`` removes them; None keeps
        them. Never shown in ``repr``.
    """

    url: str | None = None
    interval_s: int | None = None
    auth: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problems = []
        if self.url:
            problems.append(_url_problem(self.url))
        if self.interval_s is not None:
            problems.append(_interval_problem(self.interval_s))
        if self.auth:
            problems.append(_auth_problem(self.auth))
        if self.url == "" and (self.interval_s is not None or self.auth):
            problems.append(
                "an empty pull_url stops pulling; do not give pull_interval_s or pull_auth with it"
            )
        found = [p for p in problems if p]
        if found:
            raise ParameterError("; ".join(found))

    @property
    def empty(self) -> bool:
        return self.url is None and self.interval_s is None and self.auth is None


def display_url(url: str) -> str:
    """``url`` as shown on pages, in JSON, errors and logs: a password in it, and the values
    of query parameters that look like secrets (``pwd=``, ``token=``...), replaced by ``***``."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        user, _, host = parts.netloc.rpartition("@")
        name, sep, _password = user.partition(":")
        parts = parts._replace(netloc=f"{name}{sep and ':***'}@{host}")
    if parts.query:
        query = [
            (k, "***" if _SECRET_KEY.search(k) else v) for k, v in parse_qsl(parts.query, True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def pull_dict(p: PullSource | None, now: float | None = None) -> dict[str, Any] | None:
    """The JSON form of a camera's pull settings and state (None: the camera pushes).

    ``auth`` is only true or false: the credentials are never shown.
    """
    if p is None:
        return None
    leased = p.lease_until is not None and (now is None or p.lease_until > now)
    return {
        "url": display_url(p.url),
        "interval_s": p.interval_s,
        "auth": p.auth is not None,
        "next_at": iso(p.next_at),
        "fetching": bool(leased),
        "fetches_total": p.fetches_total,
        "failures": p.failures,
        "failures_total": p.failures_total,
        "last_ok_at": iso(p.last_ok_at),
        "last_error": p.last_error,
        "last_error_at": iso(p.last_error_at),
    }


def apply_pull_change(s: Session, device_id: int, change: PullChange, now: float) -> dict[str, Any]:
    """Apply ``change`` to the device's pull settings in session ``s``; returns what changed
    for the audit log (the credentials only as "set"/"removed").

    A new URL (or a camera that starts being pulled) is fetched at once and its consecutive
    failures start from 0; a shorter interval brings the next fetch forward.
    """
    p = s.get(PullSource, device_id)
    detail: dict[str, Any] = {}
    if change.url == "":
        if p is not None:
            s.delete(p)
            detail["pull"] = "stopped"
        return detail
    if p is None:
        if not change.url:
            raise ParameterError(
                f"device {device_id} is not pulled; give pull_url to start pulling it"
            )
        p = PullSource(
            device_id=device_id,
            url=change.url,
            interval_s=60 if change.interval_s is None else change.interval_s,
            auth=change.auth or None,
            next_at=now,
            fetches_total=0,
            failures=0,
            failures_total=0,
        )
        s.add(p)
        detail["pull"] = {"url": display_url(p.url), "interval_s": p.interval_s}
        if p.auth:
            detail["pull"]["auth"] = "set"
        return detail
    changes: dict[str, Any] = {}
    if change.url and change.url != p.url:
        changes["url"] = [display_url(p.url), display_url(change.url)]
        p.url, p.next_at, p.failures = change.url, now, 0
    if change.interval_s is not None and change.interval_s != p.interval_s:
        changes["interval_s"] = [p.interval_s, change.interval_s]
        p.interval_s = change.interval_s
        p.next_at = min(p.next_at, now + change.interval_s)
    if change.auth is not None and (change.auth or None) != p.auth:
        changes["auth"] = "set" if change.auth else "removed"
        p.auth, p.failures = change.auth or None, 0
    if changes:
        detail["pull"] = changes
    return detail


def pull_source(store: Store, device_id: int) -> PullSource | None:
    """The camera's pull settings and state, or None when it pushes its photos."""
    with store.session() as s:
        return s.get(PullSource, device_id)


def pull_states(store: Store) -> list[tuple[Device, PullSource]]:
    """Every pulled camera with its pull state, by device id (``/metrics``)."""
    with store.session() as s:
        rows = s.execute(
            select(Device, PullSource)
            .join(PullSource, PullSource.device_id == Device.id)
            .order_by(Device.id)
        ).all()
    return [(d, p) for d, p in rows]


@dataclass(frozen=True)
class Claim:
    """A fetch this process holds the lease for.

    ``slot_at`` is the due time that was claimed: the reading's capture id is derived from
    it, so even a fetch repeated after a lost lease stores one reading per slot.
    """

    device_id: int
    url: str
    auth: str | None = field(repr=False)
    slot_at: float

    @property
    def capture_id(self) -> str:
        return f"pull-{round(self.slot_at * 1000)}"


def claim_due(store: Store, owner: str, *, now: float, lease_s: float, limit: int) -> list[Claim]:
    """Take the lease of up to ``limit`` due cameras for ``owner``; returns what was taken.

    Each camera's next fetch moves one interval on (missed slots are skipped, not caught
    up), so a camera is fetched once per interval by whichever process claims it first.
    The lease (``now + lease_s``) keeps another process from fetching it while this one
    does; a process that dies mid-fetch holds it until then.
    """
    if limit <= 0:
        return []
    p = _table().c
    free = or_(p.lease_until.is_(None), p.lease_until <= now)
    with store.engine.connect() as conn:
        due = conn.execute(
            select(p.device_id, p.next_at, p.interval_s)
            .where(p.next_at <= now, free)
            .order_by(p.next_at)
            .limit(limit)
        ).all()
    claims = []
    for device_id, next_at, interval_s in due:
        new_next = next_at + interval_s
        if new_next <= now:
            new_next = now + interval_s
        with store.engine.begin() as conn:
            row = conn.execute(
                update(_table())
                .where(p.device_id == device_id, p.next_at == next_at, free)
                .values(next_at=new_next, lease_owner=owner, lease_until=now + lease_s)
                .returning(p.url, p.auth)
            ).first()
        if row is not None:
            claims.append(Claim(device_id, row.url, row.auth, float(next_at)))
    return claims


def finish(store: Store, claim: Claim, owner: str, *, now: float, error: str | None = None) -> None:
    """Count a fetch (failed when ``error`` is given) and release ``owner``'s lease."""
    p = _table().c
    mine = p.lease_owner == owner
    values: dict[str, Any] = {
        "fetches_total": p.fetches_total + 1,
        "lease_owner": case((mine, None), else_=p.lease_owner),
        "lease_until": case((mine, None), else_=p.lease_until),
    }
    if error is None:
        values.update(failures=0, last_ok_at=now)
    else:
        values.update(
            failures=p.failures + 1,
            failures_total=p.failures_total + 1,
            last_error=error[:_ERROR_MAX],
            last_error_at=now,
        )
    with store.engine.begin() as conn:
        conn.execute(update(_table()).where(p.device_id == claim.device_id).values(**values))
