"""Remote-control commands: what a device may be told, and their life in the database.

A command is ``pending`` when created, ``delivered`` once handed to the device (in an upload
answer, a poll, or over MQTT), then ``acked`` by the device or ``expired``. The methods live
in :class:`CommandsMixin`, which :class:`gridlens.store.repo.Store` inherits.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gridlens.errors import ConflictError, NotFoundError, ParameterError
from gridlens.store.models import Command, Device
from gridlens.store.timeutil import iso

__all__ = [
    "COMMANDS",
    "COMMAND_TTL_S",
    "CommandsMixin",
    "check_command",
    "command_dict",
    "device_command",
]

COMMAND_TTL_S = 600.0

# action -> (allowed states, value range or None)
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[int, int] | None]] = {
    "relay": (("on", "off"), None),
    "flash": (("on", "off"), None),
    "capture": (("now",), None),
    "interval": ((), (10, 86400)),
}


def check_command(action: str, state: str | None, value: int | None) -> None:
    """Refuse commands a device would not understand, with the list of valid ones."""
    spec = COMMANDS.get(action)
    valid = "relay on|off, flash on|off, capture now, interval <10..86400 s>"
    if spec is None:
        raise ParameterError(f"unknown command action {action!r}; valid: {valid}")
    states, vrange = spec
    if states:
        if state not in states:
            raise ParameterError(
                f"command {action!r} needs state {'|'.join(states)}, got {state!r}"
            )
        if value is not None:
            raise ParameterError(f"command {action!r} takes no value")
    else:
        if state is not None:
            raise ParameterError(f"command {action!r} takes a value, not a state")
        assert vrange is not None
        if (
            value is None
            or isinstance(value, bool)
            or not isinstance(value, int)
            or not vrange[0] <= value <= vrange[1]
        ):
            raise ParameterError(
                f"command {action!r} needs a whole number of seconds in "
                f"[{vrange[0]}, {vrange[1]}], got {value!r}"
            )


def device_command(c: Command) -> dict[str, Any]:
    """What a device is told about a command (upload response, poll)."""
    return {
        "id": c.id,
        "action": c.action,
        "state": c.state,
        "value": c.value,
        "expires_at": iso(c.expires_at),
    }


def command_dict(c: Command) -> dict[str, Any]:
    return {
        "id": c.id,
        "device_id": c.device_id,
        "action": c.action,
        "state": c.state,
        "value": c.value,
        "status": c.status,
        "created_by": c.created_by,
        "created_at": iso(c.created_at),
        "expires_at": iso(c.expires_at),
        "delivered_at": iso(c.delivered_at),
        "delivered_via": c.delivered_via,
        "acked_at": iso(c.acked_at),
        "ack_ok": c.ack_ok,
        "ack_detail": c.ack_detail,
    }


class CommandsMixin:
    """The command methods of :class:`gridlens.store.repo.Store`."""

    if TYPE_CHECKING:

        def session(self) -> AbstractContextManager[Session]: ...

        def device(self, device_id: int) -> Device: ...

        @staticmethod
        def _audit(
            s: Session,
            actor: str,
            action: str,
            target: str | None = None,
            detail: dict[str, Any] | None = None,
            now: float | None = None,
        ) -> None: ...

    def add_command(
        self,
        device_id: int,
        action: str,
        *,
        state: str | None = None,
        value: int | None = None,
        actor: str,
        ttl_s: float = COMMAND_TTL_S,
    ) -> Command:
        check_command(action, state, value)
        if not 1 <= ttl_s <= 7 * 86400:
            raise ParameterError(f"ttl_s must be in [1, 604800] seconds, got {ttl_s!r}")
        self.device(device_id)
        now = time.time()
        with self.session() as s:
            c = Command(
                device_id=device_id,
                action=action,
                state=state,
                value=value,
                status="pending",
                created_by=actor,
                created_at=now,
                expires_at=now + ttl_s,
            )
            s.add(c)
            s.flush()
            self._audit(
                s,
                actor,
                "command.create",
                f"device:{device_id}",
                {"command": c.id, "action": action, "state": state, "value": value},
                now,
            )
        return c

    @staticmethod
    def _expire(s: Session, now: float, device_id: int | None = None) -> None:
        q = update(Command).where(
            Command.status.in_(("pending", "delivered")), Command.expires_at <= now
        )
        if device_id is not None:
            q = q.where(Command.device_id == device_id)
        s.execute(q.values(status="expired"))

    def _take_pending(self, s: Session, device_id: int, now: float, via: str) -> list[Command]:
        # one SELECT on the hot path (every upload); expiry is decided on the rows found
        found = list(
            s.scalars(
                select(Command)
                .where(Command.device_id == device_id, Command.status == "pending")
                .order_by(Command.id)
                .with_for_update(skip_locked=True)
            )
        )
        cmds = []
        for c in found:
            if c.expires_at <= now:
                c.status = "expired"
                continue
            c.status = "delivered"
            c.delivered_at = now
            c.delivered_via = via
            cmds.append(c)
        if cmds:
            self._audit(
                s,
                f"device:{device_id}",
                "command.delivered",
                f"device:{device_id}",
                {"commands": [c.id for c in cmds], "via": via},
                now,
            )
        return cmds

    def take_pending(self, device_id: int, now: float | None = None) -> list[Command]:
        """The device's pending commands, now marked delivered (HTTP poll)."""
        now = time.time() if now is None else now
        with self.session() as s:
            return self._take_pending(s, device_id, now, "http")

    def ack_command(
        self,
        device_id: int,
        command_id: int,
        *,
        ok: bool = True,
        detail: str | None = None,
        via: str = "http",
    ) -> Command:
        now = time.time()
        with self.session() as s:
            self._expire(s, now, device_id)
            c = s.get(Command, command_id)
            if c is None or c.device_id != device_id:
                raise NotFoundError(f"device {device_id} has no command {command_id}")
            if c.status == "expired":
                raise ConflictError(
                    f"command {command_id} expired at {iso(c.expires_at)}; ask for a new one"
                )
            if c.status != "acked":
                if c.delivered_at is None:
                    c.delivered_at, c.delivered_via = now, via
                c.status, c.acked_at, c.ack_ok = "acked", now, bool(ok)
                c.ack_detail = None if detail is None else str(detail)[:500]
                self._audit(
                    s,
                    f"device:{device_id}",
                    "command.ack",
                    f"device:{device_id}",
                    {"command": command_id, "ok": bool(ok), "detail": c.ack_detail, "via": via},
                    now,
                )
            return c

    def commands(self, device_id: int, limit: int = 50) -> list[Command]:
        now = time.time()
        with self.session() as s:
            self._expire(s, now, device_id)
            return list(
                s.scalars(
                    select(Command)
                    .where(Command.device_id == device_id)
                    .order_by(Command.id.desc())
                    .limit(limit)
                )
            )
