"""The database schema (SQLAlchemy 2 declarative models).

Times are stored as UTC epoch seconds (double precision): portable between SQLite and
PostgreSQL, exact to the microsecond, and cheap to bucket. The API renders them as ISO 8601.
Any change here needs a new Alembic revision in ``migrations/versions`` (a test compares the
migrated schema with these models).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id.
BigId = BigInteger().with_variant(Integer(), "sqlite")

ROLES = ("viewer", "operator", "admin")


class Base(DeclarativeBase):
    pass


class User(Base):
    """A person: ``viewer`` reads, ``operator`` also sends commands, ``admin`` manages."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)


class Device(Base):
    """A camera on a meter: its ROI (and reference photo), unit and plausibility limit."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    unit: Mapped[str] = mapped_column(String(16), default="kWh")
    max_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    roi: Mapped[dict[str, Any]] = mapped_column(JSON)
    reference_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    interval_s: Mapped[int] = mapped_column(Integer, default=60)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class PullSource(Base):
    """A camera the server fetches photos from (instead of the camera uploading them).

    ``next_at`` is when the next photo is due; a server process takes the device with an
    atomic UPDATE that moves ``next_at`` one interval on and sets the lease
    (``lease_owner`` until ``lease_until``), so each due photo is fetched by one process.
    ``auth`` ("user:pass") is a secret: it is sent to the camera and shown nowhere.
    """

    __tablename__ = "pull_sources"
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    interval_s: Mapped[int] = mapped_column(Integer)
    auth: Mapped[str | None] = mapped_column(String(512), nullable=True)
    next_at: Mapped[float] = mapped_column(Float, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    fetches_total: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive
    failures_total: Mapped[int] = mapped_column(Integer, default=0)
    last_ok_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Token(Base):
    """A bearer secret, stored as its SHA-256: a user's API token or dashboard session, or a
    device's upload token."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "api" | "session" | "device"
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Reading(Base):
    """One photo's reading (accepted or rejected), or an imported interval end."""

    __tablename__ = "readings"
    __table_args__ = (
        UniqueConstraint("device_id", "capture_id", name="uq_readings_device_capture"),
        Index("ix_readings_device_time", "device_id", "captured_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    capture_id: Mapped[str] = mapped_column(String(80))
    captured_at: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12))  # "ok" | "rejected"
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    candidate: Mapped[float | None] = mapped_column(Float, nullable=True)
    raw: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    digits: Mapped[list[dict[str, float]] | None] = mapped_column(JSON, nullable=True)
    alignment: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    resynced: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_per_h: Mapped[float | None] = mapped_column(Float, nullable=True)
    image_path: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="camera")


class Command(Base):
    """A remote-control command: pending -> delivered -> acked | expired.

    ``nonce`` is a random secret issued with the command to its device only; an ack over MQTT
    counts only when it carries it (``None`` for commands made before revision 0003).
    """

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_device_status", "device_id", "status"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    delivered_via: Mapped[str | None] = mapped_column(String(8), nullable=True)
    acked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ack_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    ack_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    nonce: Mapped[str | None] = mapped_column(String(32), nullable=True)


class AuditEntry(Base):
    """Who did what when: commands, device and user changes, logins, imports."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(80), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
