"""Remote-control commands: what a device may be told, and their life in the database.

A command is ``pending`` when created and ``delivered`` once handed to its device: in an
upload answer or a poll (``via="http"``), or published to the MQTT broker (``via="mqtt"``,
see :meth:`CommandsMixin.mark_sent`). The device then acks it (``acked``) or it ``expired``.
A command published over MQTT and not acked is offered again with the device's next poll
(and with an upload answer that has new commands too): a device that missed the MQTT message
still gets it, and executes it once, by its nonce. One handed over in an HTTP answer is not
offered again.

Each command carries a ``nonce``: 128 random bits issued with it to its device only. An ack
that arrives over MQTT counts only when it names the command, comes from the command's
device, repeats the nonce, says ``ok`` as a JSON boolean and carries the device's signature
(:func:`ack_signature`); anything else is refused and audited as refused, with the MQTT
topic as the actor, never the device. Commands published over MQTT carry the server's
signature (:func:`command_signature`), so a device can tell them from forged ones.

Both signatures are HMAC-SHA256 [1]_ keyed with the SHA-256 (hex) of the device's live upload
token: the device knows its token, the server stores exactly that hash, and no one else knows
either. The messages are the fields joined by newlines, as the reference firmware
(``devices/esp32cam/main.py``) builds them.

References
----------
.. [1] H. Krawczyk, M. Bellare and R. Canetti, "HMAC: Keyed-Hashing for Message
   Authentication", RFC 2104, IETF, 1997. DOI: 10.17487/RFC2104.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from gridlens.errors import ConflictError, NotFoundError, ParameterError
from gridlens.store.mixin import StoreMixin
from gridlens.store.models import Command, Token
from gridlens.store.timeutil import iso

__all__ = [
    "COMMANDS",
    "COMMAND_TTL_S",
    "CommandsMixin",
    "ack_signature",
    "check_command",
    "command_dict",
    "command_signature",
    "device_command",
    "new_nonce",
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


NONCE = re.compile(r"^[0-9a-f]{32}$")
"""What a nonce looks like: 32 lower-case hex digits (128 bits)."""


def new_nonce() -> str:
    """A fresh command nonce (:data:`NONCE`)."""
    return secrets.token_hex(16)


def _hmac(key: str, *fields: object) -> str:
    msg = "\n".join("" if f is None else str(f) for f in fields)
    return hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()


def command_signature(key: str, device_id: int, command: Mapping[str, Any]) -> str:
    """The server's signature of a command as a device receives it (hex HMAC-SHA256).

    Parameters
    ----------
    key : str
        The device's key: SHA-256 (hex) of its upload token.
    device_id : int
        The device the command is for.
    command : mapping
        :func:`device_command` of the command (``id``, ``action``, ``state``, ``value``,
        ``expires_at``, ``nonce``).

    Returns
    -------
    str
        HMAC-SHA256 of ``gridlens-command``, device id, id, action, state, value, expiry
        (ISO text) and nonce, joined by newlines (``None`` as an empty field).
    """
    c = command
    return _hmac(key, "gridlens-command", device_id, c["id"], c["action"], c["state"],
                 c["value"], c["expires_at"], c["nonce"])  # fmt: skip


def ack_signature(
    key: str, device_id: int, command_id: int, nonce: str, ok: bool, detail: str | None
) -> str:
    """The device's signature of its ack (hex HMAC-SHA256).

    The message is ``gridlens-ack``, device id, command id, nonce, ``1``/``0`` for ``ok`` and
    the detail text (empty for none), joined by newlines; ``key`` as for
    :func:`command_signature`.
    """
    return _hmac(key, "gridlens-ack", device_id, command_id, nonce, "1" if ok else "0", detail)


def device_command(c: Command) -> dict[str, Any]:
    """What a device is told about a command (upload answer, poll, MQTT)."""
    return {
        "id": c.id,
        "action": c.action,
        "state": c.state,
        "value": c.value,
        "expires_at": iso(c.expires_at),
        "nonce": c.nonce,
    }


def command_dict(c: Command) -> dict[str, Any]:
    """What people see of a command (API, dashboard): everything but the nonce."""
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


def _ack_fields(payload: Any) -> tuple[int | None, str | None]:
    """(command id, why the ack's shape is refused) of an MQTT ack payload."""
    if not isinstance(payload, dict):
        return None, "not a JSON object"
    cid = payload.get("id")
    if not isinstance(cid, int) or isinstance(cid, bool) or not 0 < cid < 2**63:
        return None, "no integer command id"
    if not isinstance(payload.get("ok"), bool):
        return cid, "no boolean 'ok'"
    nonce = payload.get("nonce")
    if not isinstance(nonce, str) or not NONCE.match(nonce):
        return cid, "no nonce"
    detail = payload.get("detail")
    if detail is not None and not isinstance(detail, str):
        return cid, "'detail' is not text"
    if not isinstance(payload.get("sig"), str):
        return cid, "no signature"
    return cid, None


class CommandsMixin(StoreMixin):
    """The command methods of :class:`gridlens.store.repo.Store`."""

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
                nonce=new_nonce(),
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

    @staticmethod
    def _device_key(s: Session, device_id: int, now: float) -> str | None:
        """The signing key of a device: SHA-256 (hex) of its newest live upload token."""
        return s.scalar(
            select(Token.token_hash)
            .where(
                Token.device_id == device_id,
                Token.kind == "device",
                Token.revoked.is_(False),
                or_(Token.expires_at.is_(None), Token.expires_at > now),
            )
            .order_by(Token.created_at.desc(), Token.id.desc())
            .limit(1)
        )

    def command_key(self, device_id: int) -> str | None:
        """The key that signs commands to ``device_id`` and its acks (:func:`command_signature`);
        ``None`` when the device has no live upload token."""
        now = time.time()
        with self.session() as s:
            return self._device_key(s, device_id, now)

    def mark_sent(self, command_id: int, *, via: str = "mqtt", now: float | None = None) -> bool:
        """Mark a pending command ``delivered`` after it was published to the device (MQTT).

        Returns False when it was no longer pending (an HTTP poll took it meanwhile, or it
        expired); then nothing changes.
        """
        now = time.time() if now is None else now
        with self.session() as s:
            c = s.get(Command, command_id, with_for_update=True)
            if c is None or c.status != "pending":
                return False
            if c.expires_at <= now:
                c.status = "expired"
                return False
            c.status, c.delivered_at, c.delivered_via = "delivered", now, via
            self._audit(
                s,
                "server",
                "command.delivered",
                f"device:{c.device_id}",
                {"commands": [c.id], "via": via},
                now,
            )
            return True

    def _take_pending(self, s: Session, device_id: int, now: float, via: str) -> list[Command]:
        # one SELECT on the hot path (every upload); expiry is decided on the rows found
        found = list(
            s.scalars(
                select(Command)
                .where(
                    Command.device_id == device_id,
                    Command.status.in_(("pending", "delivered")),
                )
                .order_by(Command.id)
                .with_for_update(skip_locked=True)
            )
        )
        cmds = []
        for c in found:
            if c.expires_at <= now:
                c.status = "expired"
                continue
            if c.status == "delivered" and c.delivered_via != "mqtt":
                continue  # handed over in an HTTP answer already
            if c.delivered_at is None:
                c.delivered_at = now
            c.status, c.delivered_via = "delivered", via
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
        """The device's pending commands, and those sent over MQTT but not acked, now marked
        delivered over HTTP (a poll)."""
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
        """Record the ack of a device that proved who it is (its token, over HTTP)."""
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
                self._record_ack(s, c, bool(ok), detail, via, now)
            return c

    def _record_ack(
        self, s: Session, c: Command, ok: bool, detail: str | None, via: str, now: float
    ) -> None:
        if c.delivered_at is None:
            c.delivered_at, c.delivered_via = now, via
        c.status, c.acked_at, c.ack_ok = "acked", now, ok
        # PostgreSQL keeps no NUL in text: an MQTT ack's detail is not checked by the API
        c.ack_detail = None if detail is None else str(detail)[:500].replace("\x00", "")
        self._audit(
            s,
            f"device:{c.device_id}",
            "command.ack",
            f"device:{c.device_id}",
            {"command": c.id, "ok": ok, "detail": c.ack_detail, "via": via},
            now,
        )

    def mqtt_ack(
        self,
        device_id: int | None,
        payload: Any,
        *,
        source: str,
        audit_refusal: bool = True,
        now: float | None = None,
    ) -> tuple[Command | None, str | None]:
        """Record an ack that arrived over MQTT, if it proves itself.

        Parameters
        ----------
        device_id : int or None
            The device whose ack topic it came on (``None``: the topic is no device's).
        payload : any
            The decoded JSON: ``{"id": 17, "nonce": "…", "ok": true, "detail": "…",
            "sig": "…"}``; ``sig`` is :func:`ack_signature`.
        source : str
            Who sent it as far as the server knows (``mqtt:<topic>``): the actor of a refusal.
        audit_refusal : bool
            Write a refusal to the audit log (the caller may throttle a flood).

        Returns
        -------
        (Command or None, str or None)
            The acked command and ``None``; or ``None`` and why the ack was refused. A
            repeated valid ack returns the command unchanged.
        """
        now = time.time() if now is None else now
        cid, reason = _ack_fields(payload)
        if device_id is None and reason is None:
            reason = "the topic is no device's"
        cmd: Command | None = None
        if reason is None:
            assert device_id is not None and cid is not None and isinstance(payload, dict)
            with self.session() as s:
                self._expire(s, now, device_id)
                c = s.get(Command, cid)
                key = self._device_key(s, device_id, now)
                nonce, ok, detail = payload["nonce"], payload["ok"], payload.get("detail")
                if c is None or c.device_id != device_id:
                    reason = "not a command of this device"
                elif c.nonce is None or not hmac.compare_digest(c.nonce, nonce):
                    reason = "wrong nonce"
                elif key is None or not hmac.compare_digest(
                    payload["sig"], ack_signature(key, device_id, cid, nonce, ok, detail)
                ):
                    reason = "wrong signature"
                elif c.status == "expired":
                    reason = "expired"
                else:
                    if c.status != "acked":
                        self._record_ack(s, c, ok, detail, "mqtt", now)
                    cmd = c
        if reason is not None and audit_refusal:
            with self.session() as s:
                self._audit(
                    s,
                    source[:80],
                    "command.ack.refused",
                    None if device_id is None else f"device:{device_id}",
                    {"command": cid, "reason": reason},
                    now,
                )
        return cmd, reason

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
