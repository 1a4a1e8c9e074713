"""Slowing down password guessing, from the audit log.

Every wrong password is audited (``login.failed``, actor ``ip:<address>``, target
``user:<name>``). Before a password is checked, :func:`retry_after` counts the recent
failures from that table, so the back-off holds across every server process and host that
shares the database, with no table of its own:

- for the account, the failures since its last successful login (within
  :data:`WINDOW_S`): the first :data:`FREE_FAILURES` are free, then each further attempt
  waits ``BASE_DELAY_S * 2**(n - FREE_FAILURES)`` after the last failure, at most
  :data:`MAX_DELAY_S`;
- for the client address, its failures within :data:`WINDOW_S` on any account, the same
  way above :data:`ADDRESS_FREE_FAILURES` (one address trying many names).

A refused attempt checks no password and records nothing, so waiting out the back-off is
enough: the right password works again (and a success starts the account's count over).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from gridlens.store.models import AuditEntry

if TYPE_CHECKING:
    from gridlens.store.repo import Store

__all__ = [
    "ADDRESS_FREE_FAILURES",
    "BASE_DELAY_S",
    "FREE_FAILURES",
    "MAX_DELAY_S",
    "WINDOW_S",
    "backoff_s",
    "record_failure",
    "retry_after",
]

#: Wrong passwords in a row an account may have before attempts are spaced out.
FREE_FAILURES = 10
#: Wrong passwords (any account) one client address may have per window before the same.
ADDRESS_FREE_FAILURES = 50
#: The first wait, doubled with every further failure. [s]
BASE_DELAY_S = 1.0
#: The longest wait between two attempts. [s]
MAX_DELAY_S = 300.0
#: Failures older than this are forgotten. [s]
WINDOW_S = 3600.0

FAILED = "login.failed"
SUCCEEDED = "login"


def backoff_s(failures: int, free: int = FREE_FAILURES) -> float:
    """The wait after the last of ``failures`` failures. [s]"""
    if failures < free:
        return 0.0
    return min(BASE_DELAY_S * 2.0 ** min(failures - free, 30), MAX_DELAY_S)


def _actor(address: str | None) -> str:
    return f"ip:{address or 'unknown'}"[:80]


def _target(name: str) -> str:
    return f"user:{name}"[:80]


def record_failure(store: Store, name: str, address: str | None, now: float | None = None) -> None:
    """Audit one wrong password for ``name`` from ``address``."""
    at = time.time() if now is None else now
    with store.session() as s:
        s.add(AuditEntry(at=at, actor=_actor(address), action=FAILED, target=_target(name)))


def retry_after(store: Store, name: str, address: str | None, now: float | None = None) -> float:
    """Seconds until ``name`` may try a password from ``address`` (0: now)."""
    now = time.time() if now is None else now
    since = now - WINDOW_S
    target = _target(name)
    with store.session() as s:
        last_ok = s.scalar(
            select(func.max(AuditEntry.at)).where(
                AuditEntry.at > since,
                AuditEntry.action == SUCCEEDED,
                AuditEntry.target == target,
            )
        )
        n_user, last_user = s.execute(
            select(func.count(AuditEntry.id), func.max(AuditEntry.at)).where(
                AuditEntry.at > (since if last_ok is None else max(since, last_ok)),
                AuditEntry.action == FAILED,
                AuditEntry.target == target,
            )
        ).one()
        n_addr, last_addr = s.execute(
            select(func.count(AuditEntry.id), func.max(AuditEntry.at)).where(
                AuditEntry.at > since,
                AuditEntry.action == FAILED,
                AuditEntry.actor == _actor(address),
            )
        ).one()
    wait = 0.0
    for n, last, free in (
        (n_user, last_user, FREE_FAILURES),
        (n_addr, last_addr, ADDRESS_FREE_FAILURES),
    ):
        backoff = backoff_s(int(n), free)
        if backoff > 0 and last is not None:
            wait = max(wait, last + backoff - now)
    return wait
