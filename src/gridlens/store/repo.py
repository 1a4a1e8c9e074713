"""The store's operations: users, tokens, devices, readings, commands and the audit log.

Every method opens its own short transaction, so the server stays stateless: any number
of server processes can share one database.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    Engine,
    Float,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import Executable, Insert, Update

from gridlens.errors import ConflictError, NotFoundError, ParameterError
from gridlens.store import security

# the command names re-exported from here, where they used to live
from gridlens.store.commands import COMMAND_TTL_S as COMMAND_TTL_S
from gridlens.store.commands import COMMANDS as COMMANDS
from gridlens.store.commands import CommandsMixin
from gridlens.store.commands import check_command as check_command
from gridlens.store.commands import command_dict as command_dict
from gridlens.store.commands import device_command as device_command
from gridlens.store.db import make_engine, upgrade
from gridlens.store.events import AnomalyEventsMixin
from gridlens.store.feeders import FeedersMixin
from gridlens.store.models import (
    ROLES,
    AuditEntry,
    Command,
    Device,
    PullSource,
    Reading,
    Token,
    User,
)
from gridlens.store.pulls import PullChange, apply_pull_change, pull_dict
from gridlens.store.queries import counter_arrays
from gridlens.store.timeutil import day_start, iso

F64 = npt.NDArray[np.float64]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")  # fullmatch: "$" allows a "\n"
_CAPTURE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,80}$")
SESSION_TTL_S = 12 * 3600.0
#: The shortest password :meth:`Store.add_user` accepts.
MIN_PASSWORD_CHARS = 12
CACHE_TTL_S = 10.0
"""How long a server process trusts its cached device tokens and device rows [s].

A token revoked or rotated, or a device changed, through a :class:`Store` stops working (or
changes) at once in that process; every other process sharing the database notices within
this many seconds. User API tokens and sessions are never cached.
"""
TOKEN_KINDS = ("api", "session", "all")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (with role) or a device."""

    kind: str  # "user" | "device"
    name: str
    role: str | None = None  # users only
    user_id: int | None = None
    device_id: int | None = None
    session: bool = False

    def can(self, role: str) -> bool:
        return (
            self.kind == "user"
            and self.role is not None
            and ROLES.index(self.role) >= ROLES.index(role)
        )


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ParameterError(
            f"{what} name {name!r} must be 1-64 characters: letters, digits, space, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def check_device_settings(unit: str, max_rate: float | None, interval_s: int) -> None:
    """Refuse a device's unit, plausibility limit or photo interval out of range."""
    if max_rate is not None and not (
        isinstance(max_rate, int | float)
        and not isinstance(max_rate, bool)
        and math.isfinite(max_rate)
        and max_rate > 0
    ):
        raise ParameterError(f"max_rate must be > 0 {unit} per hour, got {max_rate!r}")
    if not 10 <= interval_s <= 86400:
        raise ParameterError(f"interval_s must be in [10, 86400], got {interval_s!r}")
    if not isinstance(unit, str) or not unit or len(unit) > 16:
        raise ParameterError(f"unit must be 1-16 characters, got {unit!r}")


def _token_row(
    token: str,
    kind: str,
    now: float,
    *,
    user_id: int | None = None,
    device_id: int | None = None,
    expires_at: float | None = None,
) -> Token:
    """The row of a new secret: only its hash is stored."""
    return Token(
        token_hash=security.token_hash(token),
        kind=kind,
        user_id=user_id,
        device_id=device_id,
        created_at=now,
        expires_at=expires_at,
    )


def check_capture_id(capture_id: str) -> str:
    if not _CAPTURE_ID.match(capture_id):
        raise ParameterError(
            f"X-Capture-Id {capture_id[:100]!r} must be 1-80 characters of A-Z a-z 0-9 . _ : -"
        )
    return capture_id


def reading_dict(r: Reading, unit: str | None = None) -> dict[str, Any]:
    """The JSON form of a stored reading (the shape of ``gridlens read --json`` plus ids)."""
    out: dict[str, Any] = {
        "id": r.id,
        "device_id": r.device_id,
        "capture_id": r.capture_id,
        "captured_at": iso(r.captured_at),
        "received_at": iso(r.received_at),
        "status": r.status,
        "value": r.value,
        "raw": r.raw,
        "digits": [d for d in r.digits or [] if "factor" not in d],
        "dials": [d for d in r.digits or [] if "factor" in d],
        "reason": r.reason,
        "note": r.note,
        "resynced": r.resynced,
        "candidate": r.candidate,
        "rate_per_h": r.rate_per_h,
        "alignment": r.alignment or {},
        "source": r.source,
    }
    if unit is not None:
        out["unit"] = unit
    return out


def roi_without_image(roi: dict[str, Any]) -> dict[str, Any]:
    """An ROI as stored: markers kept, the reference photo itself lives in the devices table."""
    out = dict(roi)
    ref = out.get("reference")
    if isinstance(ref, dict) and "image" in ref:
        out["reference"] = {k: v for k, v in ref.items() if k != "image"}
    return out


def readings_csv(
    store: Store, device_id: int, since: float | None = None, until: float | None = None
) -> str:
    """Every reading as CSV: ``captured_at,value_<unit>,status,raw,reason``."""
    import csv
    import io

    dev = store.device(device_id)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["captured_at", f"value_{dev.unit}", "status", "raw", "reason"])
    for r in store.readings(device_id, since=since, until=until, limit=100_000_000):
        value = "" if r.value is None else repr(r.value)
        w.writerow([iso(r.captured_at), value, r.status, r.raw or "", r.reason or ""])
    return buf.getvalue()


def value_places(roi: dict[str, Any]) -> int:
    """Decimal places of a meter's value: the wheels' decimals, or the finest dial's."""
    dials = roi.get("dials") or []
    try:
        if dials:
            return max(0, -min(round(math.log10(float(x["factor"]))) for x in dials))
        return int(roi.get("decimals") or 0)
    except (TypeError, ValueError, KeyError):
        return 0


def is_online(d: Device, now: float) -> bool:
    """Seen within three photo intervals."""
    return d.last_seen_at is not None and now - d.last_seen_at < 3 * d.interval_s


def in_setup(d: Device) -> bool:
    """Whether the device was registered without digit boxes, to be set up from its camera's
    first photo (its ROI is ``{}``): its uploads are stored unread."""
    return not d.roi.get("digits") and not d.roi.get("dials")


def device_dict(d: Device, pull: PullSource | None = None) -> dict[str, Any]:
    """The JSON form of a device; ``pull`` is its pull state (None: the camera pushes)."""
    return {
        "id": d.id,
        "name": d.name,
        "unit": d.unit,
        "max_rate": d.max_rate,
        "interval_s": d.interval_s,
        "created_at": iso(d.created_at),
        "last_seen_at": iso(d.last_seen_at),
        "digits": len(d.roi.get("digits", [])),
        "dials": len(d.roi.get("dials", [])),
        "decimals": d.roi.get("decimals"),
        "places": value_places(d.roi),
        "pull": pull_dict(pull),
    }


@dataclass
class NewReading:
    """What the ingest path hands to :meth:`Store.add_reading`."""

    device_id: int
    capture_id: str
    captured_at: float
    status: str
    value: float | None
    raw: str | None = None
    digits: list[dict[str, float]] | None = None
    reason: str | None = None
    note: str | None = None
    resynced: bool = False
    candidate: float | None = None
    alignment: dict[str, Any] | None = None
    rate_per_h: float | None = None
    image_path: str | None = None
    source: str = "camera"


@dataclass(frozen=True)
class UploadHistory:
    """What an upload needs from the store before its photo is read (one query).

    Attributes
    ----------
    accepted : list of (float, float)
        The last ``keep`` accepted (time, value) pairs before the photo, oldest first.
    pending : list of (float, float)
        Rejected frames' (time, candidate) since the last accepted one (at most ``keep``),
        oldest first.
    duplicate_id : int or None
        The id of the reading already stored under this capture id (the device retried).
    commands : int
        The device's pending commands (0: the upload need not look for any).
    last_seen_at : float or None
        The device's ``last_seen_at`` when the query ran.
    later : (float, float) or None
        The first accepted (time, value) captured after the photo: set when the photo is
        late (a device that kept it while offline), so that it is judged against the
        readings on both sides of it.
    """

    accepted: list[tuple[float, float]]
    pending: list[tuple[float, float]]
    duplicate_id: int | None = None
    commands: int = 0
    last_seen_at: float | None = None
    later: tuple[float, float] | None = None


# Kinds of rows in the history query (see _history_query).
_ACCEPTED, _PENDING, _DUPLICATE, _COMMANDS, _SEEN, _LATER = range(6)
_SEEN_EVERY_S = 30.0  # a device's last_seen_at is written at most this often


def _table(model: Any) -> Table:
    """The Core table of a mapped class (statements on it skip the ORM layer)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


@functools.lru_cache(maxsize=8)
def _history_query(keep: int, upload: bool) -> Executable:
    """One statement for everything the upload path reads, as (kind, t, v) rows.

    Parameters ``device_id`` and ``before`` (and ``capture_id`` for uploads). Kinds:
    ``_ACCEPTED``: (t, value) of the newest ``keep`` accepted readings before ``before``;
    ``_PENDING``: (t, candidate) of the newest ``keep`` rejected ones after the last of
    those with a value (a bound on the index range, so a long history is not scanned);
    ``_LATER``: (t, value) of the first accepted reading after ``before``, if any.
    With ``upload`` also ``_DUPLICATE`` (t = id of the reading with this capture id, if
    any), ``_COMMANDS`` (t = the number of pending commands) and ``_SEEN`` (t = the
    device's ``last_seen_at``). Built once per (keep, upload); SQLAlchemy caches its
    compiled form and psycopg prepares it on the server.
    """
    r = _table(Reading).c
    c = _table(Command).c
    d = _table(Device).c
    dev = bindparam("device_id", type_=Integer)
    before = bindparam("before", type_=Float)
    acc = (
        select(r.captured_at.label("t"), r.value.label("v"))
        .where(r.device_id == dev, r.status == "ok", r.captured_at < before)
        .order_by(r.captured_at.desc())
        .limit(keep)
        .cte("accepted")
    )
    since = func.coalesce(
        select(func.max(acc.c.t)).where(acc.c.v.is_not(None)).scalar_subquery(),
        literal(-math.inf, Float),
    )
    pend = (
        select(r.captured_at.label("t"), r.candidate.label("v"))
        .where(
            r.device_id == dev,
            r.status == "rejected",
            r.candidate.is_not(None),
            r.captured_at > since,
            r.captured_at < before,
        )
        .order_by(r.captured_at.desc())
        .limit(keep)
        .subquery()
    )
    later = (
        select(r.captured_at.label("t"), r.value.label("v"))
        .where(
            r.device_id == dev,
            r.status == "ok",
            r.value.is_not(None),
            r.captured_at > before,
        )
        .order_by(r.captured_at.asc())
        .limit(1)
        .subquery()
    )
    parts = [
        select(literal_column(str(_ACCEPTED)).label("kind"), acc.c.t, acc.c.v),
        select(literal_column(str(_PENDING)), pend.c.t, pend.c.v),
        select(literal_column(str(_LATER)), later.c.t, later.c.v),
    ]
    if upload:
        parts += [
            select(literal_column(str(_DUPLICATE)), cast(r.id, Float), null()).where(
                r.device_id == dev, r.capture_id == bindparam("capture_id")
            ),
            select(literal_column(str(_COMMANDS)), cast(func.count(), Float), null())
            .select_from(_table(Command))
            .where(
                c.device_id == dev,
                # a command published over MQTT is also offered to an upload, for a device
                # that was not listening (deep sleep, no MQTT session)
                or_(
                    c.status == "pending",
                    and_(c.status == "delivered", c.delivered_via == "mqtt"),
                ),
            ),
            select(literal_column(str(_SEEN)), d.last_seen_at, null()).where(d.id == dev),
        ]
    return union_all(*parts)


def _seen_update() -> Update:
    """Set a device's ``last_seen_at`` unless it was set less than 30 s before."""
    d = _table(Device).c
    now = bindparam("now", type_=Float)
    return (
        update(_table(Device))
        .where(
            d.id == bindparam("device_id"),
            or_(d.last_seen_at.is_(None), d.last_seen_at < now - _SEEN_EVERY_S),
        )
        .values(last_seen_at=now)
    )


def _reading_insert(dialect: str) -> Insert:
    """INSERT a reading, nothing on a repeated (device_id, capture_id); RETURNING its id.

    ``dialect`` is ``"postgresql"`` or ``"sqlite"`` (3.35+), the databases
    :func:`~gridlens.store.db.make_engine` accepts.
    """
    table = _table(Reading)
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        ins(table)
        .on_conflict_do_nothing(index_elements=["device_id", "capture_id"])
        .returning(table.c.id)
    )


def _today(lo_hi: tuple[float | None, float | None] | None) -> float | None:
    if lo_hi is None or lo_hi[0] is None or lo_hi[1] is None:
        return None
    return round(lo_hi[1] - lo_hi[0], 6)


class Store(CommandsMixin, AnomalyEventsMixin, FeedersMixin):
    """The gridlens database: open with :meth:`open` (migrates by default)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._device_cache: dict[int, tuple[float, Device]] = {}
        self._token_cache: dict[str, tuple[float, Principal]] = {}
        # Writers of the two caches hold the lock; readers do not. The generation grows with
        # every invalidation, so a lookup that raced with a revocation is not cached.
        self._cache_lock = threading.Lock()
        self._cache_gen = 0
        dialect = engine.dialect.name
        # Single statements need no transaction around them: on PostgreSQL autocommit saves
        # the BEGIN and COMMIT round trips (SQLite starts none for a SELECT anyway).
        self._single = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if dialect == "postgresql"
            else engine
        )
        self._insert_reading = _reading_insert(dialect)
        self._seen_update = _seen_update()

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True) -> Store:
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    # ---------------------------------------------------------------- audit
    @staticmethod
    def _audit(
        s: Session,
        actor: str,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> None:
        s.add(
            AuditEntry(
                at=time.time() if now is None else now,
                actor=actor,
                action=action,
                target=target,
                detail=detail,
            )
        )

    def audit(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self.session() as s:
            self._audit(s, actor, action, target, detail)

    def audit_log(self, limit: int = 100, target: str | None = None) -> list[dict[str, Any]]:
        with self.session() as s:
            q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if target is not None:
                q = q.where(AuditEntry.target == target)
            return [
                {
                    "at": iso(a.at),
                    "actor": a.actor,
                    "action": a.action,
                    "target": a.target,
                    "detail": a.detail,
                }
                for a in s.scalars(q)
            ]

    # ---------------------------------------------------------------- users and tokens
    def add_user(
        self, name: str, *, role: str = "viewer", password: str | None = None, actor: str = "cli"
    ) -> tuple[User, str, str]:
        """Create a user; returns (user, password, API token) — shown once, stored hashed."""
        check_name(name, "user")
        if role not in ROLES:
            raise ParameterError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        password = password or security.new_password()
        if len(password) < MIN_PASSWORD_CHARS:
            raise ParameterError(
                f"the password must have at least {MIN_PASSWORD_CHARS} characters, "
                f"got {len(password)}"
            )
        now = time.time()
        token = security.new_token("api")
        try:
            with self.session() as s:
                user = User(
                    name=name,
                    password_hash=security.hash_password(password),
                    role=role,
                    created_at=now,
                )
                s.add(user)
                s.flush()
                s.add(_token_row(token, "api", now, user_id=user.id))
                self._audit(s, actor, "user.add", f"user:{name}", {"role": role}, now)
        except IntegrityError:
            raise ConflictError(f"a user named {name!r} already exists") from None
        return user, password, token

    def check_password(self, name: str, password: str) -> User | None:
        with self.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                security.hash_password(password)  # same time whether or not the name exists
                return None
            return user if security.verify_password(password, user.password_hash) else None

    def new_session(self, user: User, ttl_s: float = SESSION_TTL_S) -> str:
        token = security.new_token("session")
        now = time.time()
        with self.session() as s:
            s.add(_token_row(token, "session", now, user_id=user.id, expires_at=now + ttl_s))
            self._audit(s, user.name, "login", f"user:{user.name}", None, now)
        return token

    def revoke(self, token: str) -> None:
        with self.session() as s:
            s.execute(
                update(Token)
                .where(Token.token_hash == security.token_hash(token))
                .values(revoked=True)
            )

    def resolve(self, token: str, now: float | None = None) -> Principal | None:
        """The principal behind a bearer token or session, or None (unknown/expired/revoked).

        Device tokens (never expiring, checked on every upload) are remembered for
        :data:`CACHE_TTL_S` (10 s) per process; user tokens and sessions are looked up every
        time. A device token revoked or rotated through this store is forgotten at once;
        another server process sharing the database accepts it for at most ``CACHE_TTL_S``
        more.
        """
        if token.startswith(security.TOKEN_PREFIX["device"]):
            hit = self._token_cache.get(token)
            if hit is not None and time.monotonic() - hit[0] < CACHE_TTL_S:
                return hit[1]
            gen = self._cache_gen
            p = self._resolve(token, now)
            if p is not None:
                with self._cache_lock:
                    if gen == self._cache_gen:  # no revocation while it was looked up
                        if len(self._token_cache) > 100_000:
                            self._token_cache.clear()
                        self._token_cache[token] = (time.monotonic(), p)
            return p
        return self._resolve(token, now)

    def _forget_device(self, device_id: int) -> None:
        """Drop a device's cached tokens and row (call after its change is committed)."""
        with self._cache_lock:
            self._cache_gen += 1
            self._device_cache.pop(device_id, None)
            stale = [t for t, (_, p) in self._token_cache.items() if p.device_id == device_id]
            for t in stale:
                del self._token_cache[t]

    @staticmethod
    def _revoke_tokens(s: Session, owner: Any, kinds: tuple[str, ...], now: float) -> int:
        """Revoke the live tokens of ``kinds`` matching ``owner``; returns how many."""
        res = s.connection().execute(  # Core: the rowcount, no ORM objects to synchronize
            update(Token)
            .where(
                owner,
                Token.kind.in_(kinds),
                Token.revoked.is_(False),
                or_(Token.expires_at.is_(None), Token.expires_at > now),
            )
            .values(revoked=True)
        )
        return int(res.rowcount)

    @staticmethod
    def _user(s: Session, name: str) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFoundError(f"no user named {name!r}")
        return user

    def new_api_token(self, user_name: str, *, actor: str) -> str:
        """Issue another API token for a user; returned once, stored hashed.

        The user's other tokens keep working: revoke them with :meth:`revoke_user_tokens`
        (first, to replace a leaked one).
        """
        now = time.time()
        token = security.new_token("api")
        with self.session() as s:
            user = self._user(s, user_name)
            s.add(_token_row(token, "api", now, user_id=user.id))
            self._audit(s, actor, "user.token.new", f"user:{user.name}", None, now)
        return token

    def revoke_user_tokens(self, user_name: str, *, actor: str, kind: str = "api") -> int:
        """Revoke a user's live API tokens (``kind="api"``), dashboard sessions
        (``"session"``) or both (``"all"``); returns how many were revoked.

        User tokens and sessions are never cached, so this takes effect at once in every
        server process.
        """
        if kind not in TOKEN_KINDS:
            raise ParameterError(f"kind must be one of {', '.join(TOKEN_KINDS)}, got {kind!r}")
        kinds = ("api", "session") if kind == "all" else (kind,)
        now = time.time()
        with self.session() as s:
            user = self._user(s, user_name)
            n = self._revoke_tokens(s, Token.user_id == user.id, kinds, now)
            self._audit(
                s,
                actor,
                "user.token.revoke",
                f"user:{user.name}",
                {"kind": kind, "revoked": n},
                now,
            )
        return n

    def users(self) -> list[dict[str, Any]]:
        """Every user (oldest first): id, name, role, created_at and the numbers of live
        API tokens and dashboard sessions."""
        now = time.time()
        live = and_(
            Token.user_id == User.id,
            Token.revoked.is_(False),
            or_(Token.expires_at.is_(None), Token.expires_at > now),
        )

        def count(kind: str) -> Any:
            return func.coalesce(func.sum(case((Token.kind == kind, 1), else_=0)), 0)

        with self.session() as s:
            rows = s.execute(
                select(User, count("api"), count("session"))
                .outerjoin(Token, live)
                .group_by(User.id)
                .order_by(User.id)
            ).all()
        return [
            {
                "id": u.id,
                "name": u.name,
                "role": u.role,
                "created_at": iso(u.created_at),
                "api_tokens": int(api),
                "sessions": int(sessions),
            }
            for u, api, sessions in rows
        ]

    def _resolve(self, token: str, now: float | None = None) -> Principal | None:
        now = time.time() if now is None else now
        with self.session() as s:
            row = s.execute(
                select(Token, User.name, User.role, Device.name)
                .outerjoin(User, Token.user_id == User.id)
                .outerjoin(Device, Token.device_id == Device.id)
                .where(Token.token_hash == security.token_hash(token))
            ).first()
        if row is None:
            return None
        tok, user_name, role, device_name = row
        if tok.revoked or (tok.expires_at is not None and tok.expires_at <= now):
            return None
        if tok.kind == "device":
            return Principal("device", str(device_name), device_id=tok.device_id)
        return Principal(
            "user", str(user_name), role=role, user_id=tok.user_id, session=tok.kind == "session"
        )

    # ---------------------------------------------------------------- devices
    def add_device(
        self,
        name: str,
        roi: dict[str, Any],
        *,
        reference_jpeg: bytes | None = None,
        unit: str = "kWh",
        max_rate: float | None = None,
        interval_s: int = 60,
        pull: PullChange | None = None,
        actor: str = "cli",
    ) -> tuple[Device, str]:
        """Register a camera; returns (device, upload token) — the token is shown only once.

        With ``pull`` (its ``url`` given) the server fetches the camera's photos from that
        URL every ``pull.interval_s`` instead of waiting for uploads; the first at once.
        """
        check_name(name, "device")
        check_device_settings(unit, max_rate, interval_s)
        if pull is not None and not pull.url:
            raise ParameterError("pull_url is needed to pull a camera's photos")
        now = time.time()
        token = security.new_token("device")
        try:
            with self.session() as s:
                dev = Device(
                    name=name,
                    unit=unit,
                    max_rate=max_rate,
                    roi=roi,
                    reference_jpeg=reference_jpeg,
                    interval_s=interval_s,
                    created_at=now,
                    updated_at=now,
                )
                s.add(dev)
                s.flush()
                s.add(_token_row(token, "device", now, device_id=dev.id))
                detail: dict[str, Any] = {"name": name}
                if pull is not None:
                    detail.update(apply_pull_change(s, dev.id, pull, now))
                self._audit(s, actor, "device.add", f"device:{dev.id}", detail, now)
        except IntegrityError:
            raise ConflictError(f"a device named {name!r} already exists") from None
        return dev, token

    def device_cached(self, device_id: int, ttl_s: float | None = None) -> Device:
        """:meth:`device` through a per-process cache (the upload path).

        A change made with :meth:`update_device` is seen at once by this store; other server
        processes see it within ``ttl_s`` (default :data:`CACHE_TTL_S`, 10 s).
        """
        ttl = CACHE_TTL_S if ttl_s is None else ttl_s
        now = time.monotonic()
        hit = self._device_cache.get(device_id)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        gen = self._cache_gen
        dev = self.device(device_id)
        with self._cache_lock:
            if gen == self._cache_gen:  # not changed while it was looked up
                self._device_cache[device_id] = (now, dev)
        return dev

    @staticmethod
    def _locked_device(s: Session, device_id: int) -> Device:
        """The device row, locked until the transaction ends (PostgreSQL; SQLite has one
        writer at a time anyway)."""
        dev = s.scalar(select(Device).where(Device.id == device_id).with_for_update())
        if dev is None:
            raise NotFoundError(f"no device with id {device_id}")
        return dev

    def rotate_device_token(self, device_id: int, *, actor: str) -> str:
        """Revoke every live upload token of a device and issue a new one (stored hashed, as
        :meth:`add_device` does); the new token is returned once.

        The old token gets 401 at once from the server process that owns this store; other
        processes sharing the database accept it for at most :data:`CACHE_TTL_S` (10 s).
        """
        now = time.time()
        token = security.new_token("device")
        with self.session() as s:
            dev = self._locked_device(s, device_id)
            n = self._revoke_tokens(s, Token.device_id == dev.id, ("device",), now)
            s.add(_token_row(token, "device", now, device_id=dev.id))
            self._audit(s, actor, "device.token.rotate", f"device:{dev.id}", {"revoked": n}, now)
        self._forget_device(device_id)
        return token

    def revoke_device_tokens(self, device_id: int, *, actor: str) -> int:
        """Revoke every upload token of a device (decommissioning): its uploads get 401
        until :meth:`rotate_device_token` issues a new one. Returns how many were revoked.

        Immediate in this process; other server processes sharing the database accept a
        revoked token for at most :data:`CACHE_TTL_S` (10 s).
        """
        now = time.time()
        with self.session() as s:
            dev = self._locked_device(s, device_id)
            n = self._revoke_tokens(s, Token.device_id == dev.id, ("device",), now)
            self._audit(s, actor, "device.token.revoke", f"device:{dev.id}", {"revoked": n}, now)
        self._forget_device(device_id)
        return n

    def update_device(
        self,
        device_id: int,
        *,
        actor: str,
        unit: str | None = None,
        max_rate: float | None = None,
        roi: dict[str, Any] | None = None,
        name: str | None = None,
        reference_jpeg: bytes | None = None,
        pull: PullChange | None = None,
    ) -> Device:
        """Change a device's unit, plausibility limit, ROI, reference photo, name or pull
        settings (None: unchanged), with the checks of :meth:`add_device`; returns the device.

        ``roi`` is stored as given: validate it first, like for :meth:`add_device`
        (:func:`gridlens.server.ingest.device_roi`). Sets ``updated_at``, so every server
        process rebuilds the meter's reader; the process owning this store sees the change
        at once, others within :data:`CACHE_TTL_S` (10 s). Values equal to the stored ones
        change nothing and are not audited. A change of the pull settings alone leaves
        ``updated_at`` (and the meter's reader) as it is.
        """
        if pull is not None and pull.empty:
            pull = None
        if all(v is None for v in (unit, max_rate, roi, name, reference_jpeg, pull)):
            raise ParameterError(
                "nothing to change: give a new unit, max_rate, roi, reference photo, name or "
                "pull settings"
            )
        if name is not None:
            check_name(name, "device")
        now = time.time()
        try:
            with self.session() as s:
                dev = self._locked_device(s, device_id)
                check_device_settings(
                    dev.unit if unit is None else unit,
                    dev.max_rate if max_rate is None else max_rate,
                    dev.interval_s,
                )
                detail: dict[str, Any] = {}
                for field, new in (("name", name), ("unit", unit), ("max_rate", max_rate)):
                    old = getattr(dev, field)
                    if new is not None and new != old:
                        detail[field] = [old, new]
                        setattr(dev, field, new)
                if roi is not None and roi != dev.roi:
                    detail["roi"] = "replaced"
                    dev.roi = roi
                if reference_jpeg is not None and reference_jpeg != dev.reference_jpeg:
                    detail["reference_jpeg"] = "replaced"
                    dev.reference_jpeg = reference_jpeg
                if detail:
                    dev.updated_at = max(now, dev.updated_at + 1e-6)  # always a new reader
                if pull is not None:
                    detail.update(apply_pull_change(s, dev.id, pull, now))
                if not detail:
                    return dev
                self._audit(s, actor, "device.update", f"device:{dev.id}", detail, now)
        except IntegrityError:
            raise ConflictError(f"a device named {name!r} already exists") from None
        self._forget_device(device_id)
        return dev

    def device(self, device_id: int) -> Device:
        with self.session() as s:
            dev = s.get(Device, device_id)
        if dev is None:
            raise NotFoundError(f"no device with id {device_id}")
        return dev

    def device_by_name(self, name: str) -> Device:
        with self.session() as s:
            dev = s.scalar(select(Device).where(Device.name == name))
        if dev is None:
            raise NotFoundError(f"no device named {name!r}")
        return dev

    def devices(self) -> list[Device]:
        with self.session() as s:
            return list(s.scalars(select(Device).order_by(Device.id)))

    def overview(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every device with its last reading, last accepted value and consumption today."""
        now = time.time() if now is None else now
        midnight = day_start(now)
        with self.session() as s:
            devs = list(s.scalars(select(Device).order_by(Device.id)))
            pulls = {p.device_id: p for p in s.scalars(select(PullSource))}
            last_t = (
                select(Reading.device_id, func.max(Reading.captured_at).label("t"))
                .group_by(Reading.device_id)
                .subquery()
            )
            last = {
                r.device_id: r
                for r in s.scalars(
                    select(Reading).join(
                        last_t,
                        and_(
                            Reading.device_id == last_t.c.device_id,
                            Reading.captured_at == last_t.c.t,
                        ),
                    )
                )
            }
            ok_t = (
                select(Reading.device_id, func.max(Reading.captured_at).label("t"))
                .where(Reading.status == "ok")
                .group_by(Reading.device_id)
                .subquery()
            )
            last_ok = {
                d: (t, v)
                for d, t, v in s.execute(
                    select(Reading.device_id, Reading.captured_at, Reading.value).join(
                        ok_t,
                        and_(
                            Reading.device_id == ok_t.c.device_id,
                            Reading.captured_at == ok_t.c.t,
                        ),
                    )
                )
            }
            today = {
                d: (lo, hi)
                for d, lo, hi in s.execute(
                    select(Reading.device_id, func.min(Reading.value), func.max(Reading.value))
                    .where(Reading.status == "ok", Reading.captured_at >= midnight)
                    .group_by(Reading.device_id)
                )
            }
        out = []
        for d in devs:
            r = last.get(d.id)
            ok = last_ok.get(d.id)
            lo_hi = today.get(d.id)
            online = is_online(d, now)
            out.append(
                {
                    **device_dict(d, pulls.get(d.id)),
                    "online": online,
                    "last": None if r is None else reading_dict(r),
                    "value": None if ok is None else ok[1],
                    "value_at": None if ok is None else iso(ok[0]),
                    "today": _today(lo_hi),
                }
            )
        return out

    # ---------------------------------------------------------------- readings
    def find_reading(self, device_id: int, capture_id: str) -> Reading | None:
        with self.session() as s:
            return s.scalar(
                select(Reading).where(
                    Reading.device_id == device_id, Reading.capture_id == capture_id
                )
            )

    def history(
        self, device_id: int, before: float, keep: int = 16
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(accepted, pending) for plausibility: the last ``keep`` accepted values before
        ``before`` and the rejected frames' candidates since the last accepted one."""
        h = self._history(device_id, before, keep, None)
        return h.accepted, h.pending

    def upload_history(
        self, device_id: int, capture_id: str, before: float, keep: int = 16
    ) -> UploadHistory:
        """Everything an upload reads before its photo, in one query (no transaction).

        Parameters
        ----------
        device_id : int
            The uploading device.
        capture_id : str
            The upload's capture id: a reading stored under it makes this a duplicate.
        before : float
            The photo's capture time; the history ends before it.
        keep : int
            Accepted values (and rejected candidates) to return.

        Returns
        -------
        UploadHistory
            The history of :meth:`history`, the id of a reading with this capture id, the
            number of pending commands and the device's ``last_seen_at``; pass it to
            :meth:`add_reading` as ``seen`` to save that the statements it makes needless.
        """
        return self._history(device_id, before, keep, capture_id)

    def _history(
        self, device_id: int, before: float, keep: int, capture_id: str | None
    ) -> UploadHistory:
        params: dict[str, Any] = {"device_id": device_id, "before": before}
        if capture_id is not None:
            params["capture_id"] = capture_id
        with self._single.connect() as conn:
            rows = conn.execute(_history_query(keep, capture_id is not None), params).all()
        acc: list[tuple[float, float]] = []
        pend: list[tuple[float, float]] = []
        dup: int | None = None
        commands = 0
        seen: float | None = None
        later: tuple[float, float] | None = None
        for kind, t, v in rows:
            if kind == _ACCEPTED:
                acc.append((t, v))
            elif kind == _PENDING:
                pend.append((t, v))
            elif kind == _DUPLICATE:
                dup = round(t)
            elif kind == _COMMANDS:
                commands = round(t)
            elif kind == _SEEN:
                seen = t
            elif kind == _LATER:
                later = (float(t), float(v))
        # newest first as the database gave them (ties stay in its order), then reversed
        acc.sort(key=lambda p: p[0], reverse=True)
        pend.sort(key=lambda p: p[0], reverse=True)
        accepted = [(float(t), float(v)) for t, v in reversed(acc) if v is not None]
        pending = [(float(t), float(v)) for t, v in reversed(pend)]
        return UploadHistory(accepted, pending, dup, commands, seen, later)

    def add_reading(
        self,
        new: NewReading,
        *,
        deliver: bool = True,
        now: float | None = None,
        seen: UploadHistory | None = None,
    ) -> tuple[Reading, list[Command], bool]:
        """Store one reading and hand over the device's pending commands, atomically.

        Returns (reading, commands, duplicate). A capture id seen before stores nothing and
        returns the first reading with ``duplicate=True`` (the device retried), also when
        another process stores it at the same time (the unique (device_id, capture_id)
        constraint decides).

        ``seen`` is the device's :meth:`upload_history` from just before: when it found no
        pending commands, none are looked for (a command created since is delivered with
        the next upload or poll); when it found ``last_seen_at`` less than 30 s old, that is
        not updated (it only ever grows, so the update would change nothing).
        """
        now = time.time() if now is None else now
        values = {**new.__dict__, "received_at": now}
        last = None if seen is None else seen.last_seen_at
        touch = last is None or last < now - _SEEN_EVERY_S
        take = deliver and (seen is None or seen.commands > 0)
        cmds: list[Command] = []
        if not (touch or take):  # one statement: atomic on its own, no BEGIN/COMMIT needed
            with self._single.connect() as conn:
                rid = conn.execute(self._insert_reading, values).scalar_one_or_none()
                conn.commit()
        else:
            with self.engine.begin() as conn:
                rid = conn.execute(self._insert_reading, values).scalar_one_or_none()
                if rid is not None and touch:
                    conn.execute(self._seen_update, {"device_id": new.device_id, "now": now})
                if rid is not None and take:
                    with Session(bind=conn, expire_on_commit=False) as s:
                        cmds = self._take_pending(s, new.device_id, now, "http")
                        s.flush()
        if rid is None:
            return self._duplicate(new, deliver, now)
        return Reading(id=rid, received_at=now, **new.__dict__), cmds, False

    def _duplicate(
        self, new: NewReading, deliver: bool, now: float
    ) -> tuple[Reading, list[Command], bool]:
        old = self.find_reading(new.device_id, new.capture_id)
        if old is None:
            raise ConflictError(
                f"reading {new.capture_id!r} of device {new.device_id} was stored and "
                "removed at the same time; send it again"
            )
        return old, (self.take_pending(new.device_id, now) if deliver else []), True

    def import_counter(
        self,
        device_id: int,
        points: Sequence[tuple[float, float]],
        *,
        source: str,
        actor: str,
    ) -> int:
        """Store (time, counter value) points as accepted readings; returns how many were new.

        Idempotent: the capture id is ``<source>-<epoch>``, so importing a file twice adds
        nothing the second time.
        """
        now = time.time()
        with self.session() as s:
            have = set(
                s.scalars(
                    select(Reading.capture_id).where(
                        Reading.device_id == device_id,
                        Reading.capture_id.like(f"{source}-%"),
                    )
                )
            )
            added = 0
            for t, v in points:
                cid = f"{source}-{round(t)}"
                if cid in have:
                    continue
                have.add(cid)
                s.add(
                    Reading(
                        device_id=device_id,
                        capture_id=cid,
                        captured_at=float(t),
                        received_at=now,
                        status="ok",
                        value=float(v),
                        source=source,
                    )
                )
                added += 1
            self._audit(
                s,
                actor,
                "readings.import",
                f"device:{device_id}",
                {"source": source, "added": added},
            )
        return added

    def readings(
        self,
        device_id: int,
        *,
        since: float | None = None,
        until: float | None = None,
        status: str | None = None,
        limit: int = 10_000,
        newest_first: bool = False,
    ) -> list[Reading]:
        with self.session() as s:
            q = select(Reading).where(Reading.device_id == device_id)
            if since is not None:
                q = q.where(Reading.captured_at >= since)
            if until is not None:
                q = q.where(Reading.captured_at < until)
            if status is not None:
                q = q.where(Reading.status == status)
            order = Reading.captured_at.desc() if newest_first else Reading.captured_at
            return list(s.scalars(q.order_by(order, Reading.id).limit(limit)))

    def counter(
        self, device_id: int, since: float | None = None, until: float | None = None
    ) -> tuple[F64, F64]:
        """Accepted counter values (times, values), oldest first (read a page at a time
        into two arrays: 16 bytes a reading)."""
        q = select(Reading.captured_at, Reading.value).where(
            Reading.device_id == device_id, Reading.status == "ok", Reading.value.is_not(None)
        )
        if since is not None:
            q = q.where(Reading.captured_at >= since)
        if until is not None:
            q = q.where(Reading.captured_at < until)
        return counter_arrays(self, q.order_by(Reading.captured_at))

    def count_readings(self, device_id: int | None = None) -> int:
        with self.session() as s:
            q = select(func.count(Reading.id))
            if device_id is not None:
                q = q.where(Reading.device_id == device_id)
            return int(s.scalar(q) or 0)


def greenbutton_export(store: Store, device_id: int, interval_s: int = 3600) -> bytes:
    """The device's accepted counter readings as Green Button (ESPI) interval data."""
    from datetime import UTC, datetime

    from gridlens.greenbutton import counter_to_intervals, write_greenbutton

    if interval_s not in (900, 1800, 3600, 86400):
        raise ParameterError(f"interval must be 900, 1800, 3600 or 86400 s, got {interval_s}")
    dev = store.device(device_id)
    if dev.unit != "kWh":
        raise ParameterError(f"Green Button export needs a kWh meter; {dev.name} counts {dev.unit}")
    t, v = store.counter(device_id)
    if t.size >= 2 and bool(np.all(np.diff(t) > 0)) and bool(np.all(np.diff(v) >= 0)):
        # the counter at the interval boundaries gives the same intervals as every reading
        # (linear between readings): a datetime per interval, not per reading
        edges = np.arange(math.ceil(t[0] / interval_s), math.floor(t[-1] / interval_s) + 1)
        if edges.size >= 2:
            at = edges * float(interval_s)
            t, v = at, np.interp(at, t, v)
    times = [datetime.fromtimestamp(float(x), UTC) for x in t]
    intervals = counter_to_intervals(times, [float(x) for x in v], interval_s)
    return write_greenbutton(
        intervals, title=dev.name, unit="Wh", usage_point_id=str(dev.id), tz_offset_s=0
    )


def greenbutton_import(store: Store, device_id: int, data: bytes, *, actor: str) -> dict[str, Any]:
    """Add a Green Button file's energy intervals to a meter's counter history.

    The counter continues from the meter's last accepted value before the file's first
    interval (0 when there is none). Importing the same file twice adds nothing.
    """
    from gridlens.greenbutton import intervals_to_counter, parse_greenbutton

    dev = store.device(device_id)
    series = [s for s in parse_greenbutton(data) if s.unit in ("Wh", "J", "therm")]
    if not series:
        raise ParameterError("the Green Button file has no energy (Wh) interval data")
    if len(series) > 1:
        raise ParameterError(
            f"the file holds {len(series)} energy series; import one meter's file at a time"
        )
    s = series[0]
    if not s.intervals:
        raise ParameterError("the Green Button file has no interval readings")
    first = s.intervals[0].start.timestamp()
    last = s.intervals[-1].end.timestamp()
    cam = store.readings(device_id, since=first, until=last + 1, limit=1)
    if any(r.source != "greenbutton" for r in cam):
        raise ConflictError(
            f"{dev.name} already has camera readings between {iso(first)} and {iso(last)}; "
            "import into a meter without readings in that span"
        )
    _t, v = store.counter(device_id, until=first + 1e-6)
    start_kwh = float(v[-1]) if v.size else 0.0
    to_wh = {"Wh": 1.0, "J": 1.0 / 3600.0, "therm": 29307.1}[s.unit]
    scaled = [replace(iv, value=iv.value * to_wh) for iv in s.intervals]
    points = [(p[0].timestamp(), p[1]) for p in intervals_to_counter(scaled, start_kwh)]
    added = store.import_counter(device_id, points, source="greenbutton", actor=actor)
    return {
        "device_id": device_id,
        "intervals": len(s.intervals),
        "added": added,
        "from": iso(first),
        "to": iso(last),
        "kwh": round(sum(iv.value for iv in scaled) / 1000.0, 6),
    }
