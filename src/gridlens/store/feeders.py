"""Feeders in the store: their .dss text, µPMUs, the meters on their buses, hourly estimates.

The ORM classes live here (on :class:`gridlens.store.models.Base`); their tables come from
migration 0005. :class:`FeedersMixin` holds the :class:`~gridlens.store.repo.Store` methods.

- ``feeders``: the balanced model (:func:`gridlens.grid.feeder.feeder_to_dict`, so no
  OpenDSS runs after the upload), the uploaded .dss files, the µPMU buses, an optional
  ``simulation`` (the demo's: which meter drives each bus's simulated truth), and
  ``readings_seen``: the largest reading id the estimates have taken into account.
- ``feeder_meters``: a device on one bus of one feeder (a device is on one bus at most),
  with the ``scale`` its consumption is multiplied by to form the bus load.
- ``feeder_hours``: one estimate per feeder and hour (vectors in bus order, as JSON).
- ``grid_jobs``: background jobs (the placement study) with their progress and result.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from gridlens.errors import ConflictError, NotFoundError, ParameterError
from gridlens.store.mixin import StoreMixin
from gridlens.store.models import Base, BigId, Device

if TYPE_CHECKING:
    pass

__all__ = ["FeederHour", "FeederMeter", "FeederRow", "FeedersMixin", "GridJob", "feeder_summary"]


class FeederRow(Base):
    """A feeder: its balanced model, source files, µPMUs and estimation state."""

    __tablename__ = "feeders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(80))  # "builtin:ieee15" | "dss:Main.dss"
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    files: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    pmus: Mapped[list[str]] = mapped_column(JSON)
    simulation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    readings_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class FeederMeter(Base):
    """A device on a bus of a feeder (each device on one bus at most)."""

    __tablename__ = "feeder_meters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feeder_id: Mapped[int] = mapped_column(ForeignKey("feeders.id", ondelete="CASCADE"), index=True)
    bus: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), unique=True
    )
    scale: Mapped[float] = mapped_column(Float, default=1.0)


class FeederHour(Base):
    """The estimate of one feeder in one hour (vectors in the model's bus order)."""

    __tablename__ = "feeder_hours"
    __table_args__ = (UniqueConstraint("feeder_id", "hour", name="uq_feeder_hours"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    feeder_id: Mapped[int] = mapped_column(ForeignKey("feeders.id", ondelete="CASCADE"))
    hour: Mapped[float] = mapped_column(Float)
    computed_at: Mapped[float] = mapped_column(Float)
    vm: Mapped[list[float]] = mapped_column(JSON)
    va: Mapped[list[float]] = mapped_column(JSON)
    vm_sigma: Mapped[list[float]] = mapped_column(JSON)
    va_sigma: Mapped[list[float]] = mapped_column(JSON)
    tve: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    meters_read: Mapped[int] = mapped_column(Integer, default=0)
    meters_pseudo: Mapped[int] = mapped_column(Integer, default=0)


class GridJob(Base):
    """A background job of the grid views: queued -> running -> done | failed."""

    __tablename__ = "grid_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    feeder_id: Mapped[int | None] = mapped_column(
        ForeignKey("feeders.id", ondelete="CASCADE"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(12))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


def feeder_summary(row: FeederRow, meters: int = 0) -> dict[str, Any]:
    """The list entry of a feeder."""
    model = row.model
    return {
        "id": row.id,
        "name": row.name,
        "source": row.source,
        "buses": len(model.get("buses", [])),
        "lines": len(model.get("lines", []))
        + len(model.get("transformers", []))
        + len(model.get("switches", [])),
        "pmus": list(row.pmus),
        "meters": meters,
        "simulated_truth": row.simulation is not None,
        "created_at": row.created_at,
    }


def job_dict(j: GridJob) -> dict[str, Any]:
    return {
        "id": j.id,
        "kind": j.kind,
        "feeder_id": j.feeder_id,
        "status": j.status,
        "progress": j.progress,
        "params": j.params,
        "result": j.result,
        "error": j.error,
        "created_by": j.created_by,
        "created_at": j.created_at,
        "updated_at": j.updated_at,
    }


class FeedersMixin(StoreMixin):
    """The feeder methods of :class:`gridlens.store.repo.Store`."""

    # ------------------------------------------------------------------ feeders
    def add_feeder(
        self,
        name: str,
        source: str,
        model: dict[str, Any],
        *,
        actor: str,
        files: dict[str, str] | None = None,
        pmus: list[str] | None = None,
        simulation: dict[str, Any] | None = None,
    ) -> FeederRow:
        from gridlens.store.repo import check_name

        check_name(name, "feeder")
        now = time.time()
        row = FeederRow(
            name=name,
            source=source,
            model=model,
            files=files,
            pmus=list(pmus or []),
            simulation=simulation,
            readings_seen=0,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.session() as s:
                s.add(row)
                s.flush()
                self._audit(s, actor, "feeder.add", name, {"source": source})
        except IntegrityError:
            raise ConflictError(f"a feeder named {name!r} exists already") from None
        return row

    def feeder(self, ref: int | str) -> FeederRow:
        """The feeder with id ``ref`` (int or digits) or else named ``ref``."""
        with self.session() as s:
            return self._feeder(s, ref)

    @staticmethod
    def _feeder(s: Session, ref: int | str) -> FeederRow:
        row: FeederRow | None = None
        numeric = isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit())
        if numeric and 1 <= int(ref) <= 2**31 - 1:
            row = s.get(FeederRow, int(ref))
        if row is None and isinstance(ref, str):
            row = s.scalars(select(FeederRow).where(FeederRow.name == ref)).first()
        if row is None:
            raise NotFoundError(f"no feeder with id or name {ref!r}")
        return row

    def feeders(self) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = list(s.scalars(select(FeederRow).order_by(FeederRow.id)))
            counts: dict[int, int] = {}
            for fid in s.scalars(select(FeederMeter.feeder_id)):
                counts[fid] = counts.get(fid, 0) + 1
            return [feeder_summary(r, counts.get(r.id, 0)) for r in rows]

    def remove_feeder(self, ref: int | str, *, actor: str) -> FeederRow:
        with self.session() as s:
            row = self._feeder(s, ref)
            fid = row.id
            for model in (FeederHour, FeederMeter, GridJob):
                s.execute(delete(model).where(model.feeder_id == fid))
            s.delete(row)
            self._audit(s, actor, "feeder.remove", row.name)
        return row

    def set_pmus(self, ref: int | str, buses: list[str], *, actor: str) -> FeederRow:
        """Store the µPMU buses (checked by the caller); every estimate is recomputed."""
        with self.session() as s:
            row = self._feeder(s, ref)
            row.pmus = list(buses)
            row.updated_at = time.time()
            self._invalidate(s, row)
            self._audit(s, actor, "feeder.pmus", row.name, {"buses": list(buses)})
        return row

    def set_simulation(self, ref: int | str, simulation: dict[str, Any] | None) -> None:
        with self.session() as s:
            row = self._feeder(s, ref)
            row.simulation = simulation
            self._invalidate(s, row)

    @staticmethod
    def _invalidate(s: Session, row: FeederRow) -> None:
        s.execute(delete(FeederHour).where(FeederHour.feeder_id == row.id))
        row.readings_seen = 0

    # ------------------------------------------------------------------ meters on buses
    def feeder_meters(self, feeder_id: int) -> list[tuple[FeederMeter, str]]:
        """The meters of a feeder with their device names, by bus then device."""
        with self.session() as s:
            rows = s.execute(
                select(FeederMeter, Device.name)
                .join(Device, Device.id == FeederMeter.device_id)
                .where(FeederMeter.feeder_id == feeder_id)
                .order_by(FeederMeter.bus, FeederMeter.device_id)
            ).all()
            return [(m, str(name)) for m, name in rows]

    def meter_place(self, device_id: int) -> FeederMeter | None:
        with self.session() as s:
            return s.scalars(select(FeederMeter).where(FeederMeter.device_id == device_id)).first()

    def place_meter(
        self,
        device_id: int,
        feeder_id: int | None,
        bus: str | None,
        *,
        actor: str,
        scale: float = 1.0,
    ) -> FeederMeter | None:
        """Put a device on ``bus`` of a feeder (the caller checks the bus exists), or take
        it off its feeder (``feeder_id`` None). Both feeders' estimates are recomputed."""
        if not (isinstance(scale, int | float) and 0 < scale < 1e9):
            raise ParameterError(f"scale must be a number > 0, got {scale!r}")
        with self.session() as s:
            dev = s.get(Device, device_id)
            if dev is None:
                raise NotFoundError(f"no device with id {device_id}")
            old = s.scalars(select(FeederMeter).where(FeederMeter.device_id == device_id)).first()
            touched = {old.feeder_id} if old is not None else set()
            if old is not None:
                s.delete(old)
                s.flush()
            new: FeederMeter | None = None
            if feeder_id is not None and bus is not None:
                row = self._feeder(s, feeder_id)
                new = FeederMeter(feeder_id=row.id, bus=bus, device_id=device_id, scale=scale)
                s.add(new)
                touched.add(row.id)
            for fid in touched:
                f = s.get(FeederRow, fid)
                if f is not None:
                    self._invalidate(s, f)
            detail = {"feeder_id": feeder_id, "bus": bus, "scale": scale}
            self._audit(s, actor, "device.bus", dev.name, detail)
        return new

    # ------------------------------------------------------------------ estimates
    def estimated_hours(self, feeder_id: int, since: float, until: float) -> set[float]:
        with self.session() as s:
            q = select(FeederHour.hour).where(
                FeederHour.feeder_id == feeder_id,
                FeederHour.hour >= since,
                FeederHour.hour < until,
            )
            return {float(h) for h in s.scalars(q)}

    def save_hours(self, feeder_id: int, rows: list[dict[str, Any]], seen: int | None) -> None:
        """Replace the estimates of these hours (one transaction); move the watermark."""
        if not rows and seen is None:
            return
        try:
            self._save_hours(feeder_id, rows, seen)
        except IntegrityError:  # another server process stored these hours meanwhile
            if seen is not None:
                self._save_hours(feeder_id, [], seen)

    def _save_hours(self, feeder_id: int, rows: list[dict[str, Any]], seen: int | None) -> None:
        hours = [r["hour"] for r in rows]
        with self.session() as s:
            for a in range(0, len(hours), 500):
                s.execute(
                    delete(FeederHour).where(
                        FeederHour.feeder_id == feeder_id,
                        FeederHour.hour.in_(hours[a : a + 500]),
                    )
                )
            if rows:
                s.execute(insert(FeederHour), [{"feeder_id": feeder_id, **r} for r in rows])
            if seen is not None:
                s.execute(
                    update(FeederRow).where(FeederRow.id == feeder_id).values(readings_seen=seen)
                )

    def drop_hours(self, feeder_id: int, hours: list[float]) -> None:
        with self.session() as s:
            for a in range(0, len(hours), 500):
                s.execute(
                    delete(FeederHour).where(
                        FeederHour.feeder_id == feeder_id,
                        FeederHour.hour.in_(hours[a : a + 500]),
                    )
                )

    def feeder_hours(
        self, feeder_id: int, since: float, until: float, limit: int = 10_000
    ) -> list[FeederHour]:
        with self.session() as s:
            q = (
                select(FeederHour)
                .where(
                    FeederHour.feeder_id == feeder_id,
                    FeederHour.hour >= since,
                    FeederHour.hour < until,
                )
                .order_by(FeederHour.hour)
                .limit(limit)
            )
            return list(s.scalars(q))

    def latest_hour(self, feeder_id: int) -> float | None:
        with self.session() as s:
            q = (
                select(FeederHour.hour)
                .where(FeederHour.feeder_id == feeder_id)
                .order_by(FeederHour.hour.desc())
                .limit(1)
            )
            h = s.scalar(q)
            return None if h is None else float(h)

    # ------------------------------------------------------------------ jobs
    def add_job(self, kind: str, feeder_id: int, params: dict[str, Any], *, actor: str) -> GridJob:
        now = time.time()
        job = GridJob(
            kind=kind,
            feeder_id=feeder_id,
            status="queued",
            progress=0.0,
            params=params,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        with self.session() as s:
            s.add(job)
            s.flush()
            self._audit(s, actor, f"job.{kind}", str(feeder_id), params)
        return job

    def update_job(self, job_id: int, **values: Any) -> None:
        values["updated_at"] = time.time()
        with self.session() as s:
            s.execute(update(GridJob).where(GridJob.id == job_id).values(**values))

    def job(self, job_id: int) -> GridJob:
        with self.session() as s:
            job = s.get(GridJob, job_id) if 1 <= job_id <= 2**31 - 1 else None
            if job is None:
                raise NotFoundError(f"no job with id {job_id}")
            return job
