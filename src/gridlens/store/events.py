"""Anomaly events in the store: found per meter, acknowledged, muted and commented by people.

The ORM classes live here (on :class:`gridlens.store.models.Base`); their tables come from
migration 0004. :class:`AnomalyEventsMixin` holds the :class:`~gridlens.store.repo.Store` methods.

* ``anomaly_scores``: one row per meter, the last fleet scoring (score over the last day and
  week, the hourly scores of the last week for a sparkline).
* ``anomaly_events``: a run of anomalous hours of one meter (start, end, score, kind) and what
  people made of it (``status`` ``open`` -> ``acknowledged`` | ``muted``). Rescoring never
  duplicates an event: a detected run that overlaps (or touches, within ``gap_s``) an event
  of the same meter widens and updates that event instead; the unique (device, start) pair
  keeps two processes from inserting the same one.
* ``anomaly_comments``: what people wrote about an event.
* ``anomaly_mutes``: a muted meter (until a time, or until unmuted): its new events are
  stored already ``muted`` and nobody is notified of them.

Every acknowledge, mute, unmute and comment is written to the audit log in the same
transaction (target ``anomaly:<event id>`` or ``device:<id>``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from gridlens.errors import NotFoundError, ParameterError
from gridlens.store.mixin import StoreMixin
from gridlens.store.models import Base, BigId, Device
from gridlens.store.timeutil import iso

__all__ = [
    "EVENT_KINDS",
    "EVENT_STATUSES",
    "AnomalyComment",
    "AnomalyEvent",
    "AnomalyEventsMixin",
    "AnomalyMute",
    "AnomalyScore",
    "event_dict",
]

#: What a run of anomalous hours looks like (see :func:`gridlens.anomaly.fleet.classify`).
EVENT_KINDS = ("high", "night-load", "low", "stuck")
#: ``open`` until someone acknowledges or mutes it.
EVENT_STATUSES = ("open", "acknowledged", "muted")
#: Longest comment [characters].
MAX_COMMENT_CHARS = 2000


class AnomalyScore(Base):
    """The last fleet scoring of one meter."""

    __tablename__ = "anomaly_scores"
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    scored_at: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(16))
    day_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    week_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    spark: Mapped[list[float | None] | None] = mapped_column(JSON, nullable=True)
    spark_start: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class AnomalyEvent(Base):
    """A run of anomalous hours of one meter and what people made of it."""

    __tablename__ = "anomaly_events"
    __table_args__ = (
        UniqueConstraint("device_id", "start_at", name="uq_anomaly_events_device_start"),
        Index("ix_anomaly_events_score", "score"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    start_at: Mapped[float] = mapped_column(Float)
    end_at: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    status_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    status_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    notified_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    notified: Mapped[str | None] = mapped_column(String(40), nullable=True)


class AnomalyComment(Base):
    """What a person wrote about an event."""

    __tablename__ = "anomaly_comments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("anomaly_events.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[float] = mapped_column(Float)
    author: Mapped[str] = mapped_column(String(80))
    text: Mapped[str] = mapped_column(Text)


class AnomalyMute(Base):
    """A muted meter: no notifications of its events until ``until`` (None: until unmuted)."""

    __tablename__ = "anomaly_mutes"
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    until: Mapped[float | None] = mapped_column(Float, nullable=True)
    by: Mapped[str] = mapped_column(String(80))
    at: Mapped[float] = mapped_column(Float)


def event_dict(
    e: AnomalyEvent, device_name: str | None = None, comments: int | None = None
) -> dict[str, Any]:
    """The JSON form of an event (times ISO 8601)."""
    out: dict[str, Any] = {
        "id": e.id,
        "device_id": e.device_id,
        "start": iso(e.start_at),
        "end": iso(e.end_at),
        "score": round(float(e.score), 3),
        "kind": e.kind,
        "status": e.status,
        "model": e.model,
        "hours": round((e.end_at - e.start_at) / 3600.0, 2),
        "created_at": iso(e.created_at),
        "updated_at": iso(e.updated_at),
        "status_by": e.status_by,
        "status_at": iso(e.status_at),
        "notified": e.notified,
    }
    if device_name is not None:
        out["device_name"] = device_name
    if comments is not None:
        out["comments"] = comments
    return out


def _comment_dict(c: AnomalyComment) -> dict[str, Any]:
    return {"id": c.id, "at": iso(c.at), "author": c.author, "text": c.text}


def _check_event(ev: Mapping[str, Any]) -> tuple[float, float, float, str]:
    start, end, score = float(ev["start"]), float(ev["end"]), float(ev["score"])
    kind = str(ev.get("kind", "high"))
    if not (math.isfinite(start) and math.isfinite(end) and end > start):
        raise ParameterError(f"an anomaly event needs start < end, got {start!r}, {end!r}")
    if not math.isfinite(score):
        raise ParameterError(f"an anomaly event needs a finite score, got {score!r}")
    if kind not in EVENT_KINDS:
        raise ParameterError(f"kind must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
    return start, end, score, kind


def _muted(s: Session, device_id: int, now: float) -> AnomalyMute | None:
    m = s.get(AnomalyMute, device_id)
    if m is None or (m.until is not None and m.until <= now):
        return None
    return m


class AnomalyEventsMixin(StoreMixin):
    """The anomaly-event methods of :class:`gridlens.store.repo.Store`."""

    # ------------------------------------------------------------------ scoring results
    def record_anomaly_scores(
        self,
        device_id: int,
        *,
        model: str,
        day_score: float | None,
        week_score: float | None,
        spark: Sequence[float | None] | None = None,
        spark_start: float | None = None,
        note: str | None = None,
        events: Sequence[Mapping[str, Any]] = (),
        now: float | None = None,
        gap_s: float = 3600.0,
    ) -> list[int]:
        """Store a meter's scoring and merge its detected events; returns the new events' ids.

        Parameters
        ----------
        device_id : int
            The meter.
        model : str
            The detector that scored it.
        day_score, week_score : float or None
            Highest score over the last day and week (None: not enough data).
        spark, spark_start : hourly scores of the last week and the first hour's start.
        note : str, optional
            Why there is no score (too little data).
        events : sequence of mapping
            ``{"start", "end" (epoch s), "score", "kind"}``. One that overlaps an event of
            this meter, or is at most ``gap_s`` from it, widens that event (its score and
            kind become the higher run's); otherwise it is a new event, ``open`` (``muted``
            when the meter is muted).

        Returns
        -------
        list of int
            Ids of the events created by this call (not those only widened).
        """
        now = time.time() if now is None else now
        checked = [_check_event(ev) for ev in events]
        new: list[int] = []
        with self.session() as s:
            if s.get(Device, device_id) is None:
                raise NotFoundError(f"no device with id {device_id}")
            row = s.get(AnomalyScore, device_id)
            if row is None:
                row = AnomalyScore(device_id=device_id)
                s.add(row)
            row.scored_at, row.model, row.note = now, model[:16], note
            row.day_score = None if day_score is None else float(day_score)
            row.week_score = None if week_score is None else float(week_score)
            row.spark = None if spark is None else [None if v is None else float(v) for v in spark]
            row.spark_start = spark_start
            muted = _muted(s, device_id, now) is not None
            for start, end, score, kind in sorted(checked):
                old = s.scalars(
                    select(AnomalyEvent)
                    .where(
                        AnomalyEvent.device_id == device_id,
                        AnomalyEvent.start_at <= end + gap_s,
                        AnomalyEvent.end_at >= start - gap_s,
                    )
                    .order_by(AnomalyEvent.start_at)
                    .limit(1)
                ).first()
                if old is not None:
                    changed = False
                    if start < old.start_at and not self._start_taken(s, device_id, start):
                        old.start_at, changed = start, True
                    if end > old.end_at:
                        old.end_at, changed = end, True
                    if score > old.score + 1e-9:
                        old.score, old.kind, changed = score, kind, True
                    if changed:
                        old.updated_at = now
                    continue
                ev = AnomalyEvent(
                    device_id=device_id,
                    start_at=start,
                    end_at=end,
                    score=score,
                    kind=kind,
                    model=model[:16],
                    status="muted" if muted else "open",
                    status_by="meter muted" if muted else None,
                    status_at=now if muted else None,
                    created_at=now,
                    updated_at=now,
                )
                try:
                    with s.begin_nested():  # another process may insert the same one
                        s.add(ev)
                        s.flush()
                except IntegrityError:
                    continue
                new.append(ev.id)
        return new

    @staticmethod
    def _start_taken(s: Session, device_id: int, start: float) -> bool:
        return (
            s.scalar(
                select(AnomalyEvent.id).where(
                    AnomalyEvent.device_id == device_id, AnomalyEvent.start_at == start
                )
            )
            is not None
        )

    def anomaly_ranking(
        self, *, sort: str = "week", now: float | None = None
    ) -> list[dict[str, Any]]:
        """Every meter with its last scores (highest first by ``sort``: ``day`` or ``week``),
        the hourly scores of the last week, its open events and whether it is muted."""
        if sort not in ("day", "week"):
            raise ParameterError(f"sort must be day or week, got {sort!r}")
        now = time.time() if now is None else now
        with self.session() as s:
            rows = s.execute(
                select(Device.id, Device.name, Device.unit, AnomalyScore)
                .outerjoin(AnomalyScore, AnomalyScore.device_id == Device.id)
                .order_by(Device.id)
            ).all()
            open_n = dict(
                s.execute(
                    select(AnomalyEvent.device_id, func.count(AnomalyEvent.id))
                    .where(AnomalyEvent.status == "open")
                    .group_by(AnomalyEvent.device_id)
                ).all()
            )
            mutes = {m.device_id: m for m in s.scalars(select(AnomalyMute))}
        out = []
        for dev_id, name, unit, sc in rows:
            m = mutes.get(dev_id)
            live = m is not None and (m.until is None or m.until > now)
            out.append(
                {
                    "device_id": dev_id,
                    "name": name,
                    "unit": unit,
                    "scored_at": None if sc is None else iso(sc.scored_at),
                    "model": None if sc is None else sc.model,
                    "day_score": None
                    if sc is None or sc.day_score is None
                    else round(sc.day_score, 3),
                    "week_score": None
                    if sc is None or sc.week_score is None
                    else round(sc.week_score, 3),
                    "spark": [] if sc is None or sc.spark is None else list(sc.spark),
                    "spark_start": None if sc is None else iso(sc.spark_start),
                    "note": None if sc is None else sc.note,
                    "open_events": int(open_n.get(dev_id, 0)),
                    "muted": live,
                    "muted_until": iso(m.until) if live and m is not None else None,
                }
            )
        key = "day_score" if sort == "day" else "week_score"
        other = "week_score" if sort == "day" else "day_score"

        def rank(r: dict[str, Any]) -> tuple[float, float, int]:
            a, b = r[key], r[other]
            return (
                -(a if a is not None else -1.0),
                -(b if b is not None else -1.0),
                r["device_id"],
            )

        out.sort(key=rank)
        return out

    # ------------------------------------------------------------------ reading events
    def anomaly_events(
        self,
        *,
        status: str | None = None,
        device_id: int | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Events, highest score first (then newest): optionally of one ``status`` or meter,
        or ending after ``since``."""
        if status is not None and status not in EVENT_STATUSES:
            raise ParameterError(f"status must be one of {', '.join(EVENT_STATUSES)}")
        n_comments = (
            select(func.count(AnomalyComment.id))
            .where(AnomalyComment.event_id == AnomalyEvent.id)
            .scalar_subquery()
        )
        q = select(AnomalyEvent, Device.name, n_comments).join(
            Device, Device.id == AnomalyEvent.device_id
        )
        if status is not None:
            q = q.where(AnomalyEvent.status == status)
        if device_id is not None:
            q = q.where(AnomalyEvent.device_id == device_id)
        if since is not None:
            q = q.where(AnomalyEvent.end_at > since)
        q = q.order_by(AnomalyEvent.score.desc(), AnomalyEvent.start_at.desc(), AnomalyEvent.id)
        with self.session() as s:
            rows = s.execute(q.limit(limit)).all()
        return [event_dict(e, name, int(n)) for e, name, n in rows]

    def anomaly_event(self, event_id: int) -> dict[str, Any]:
        """One event with its comments (oldest first)."""
        with self.session() as s:
            e = self._event(s, event_id)
            name = s.scalar(select(Device.name).where(Device.id == e.device_id))
            comments = list(
                s.scalars(
                    select(AnomalyComment)
                    .where(AnomalyComment.event_id == event_id)
                    .order_by(AnomalyComment.id)
                )
            )
            return {
                **event_dict(e, name, len(comments)),
                "comment_list": [_comment_dict(c) for c in comments],
            }

    @staticmethod
    def _event(s: Session, event_id: int, lock: bool = False) -> AnomalyEvent:
        q = select(AnomalyEvent).where(AnomalyEvent.id == event_id)
        if lock:
            q = q.with_for_update()
        e = s.scalar(q)
        if e is None:
            raise NotFoundError(f"no anomaly event with id {event_id}")
        return e

    # ------------------------------------------------------------------ people
    def acknowledge_anomaly_event(
        self, event_id: int, *, actor: str, comment: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """``open`` -> ``acknowledged`` (audited); a comment may come with it.

        Returns the event and whether it changed: an event already acknowledged or muted
        stays as it is (the comment is still added).

        Raises
        ------
        NotFoundError
            No such event.
        """
        text = None if comment is None else _check_comment(comment)
        now = time.time()
        with self.session() as s:
            e = self._event(s, event_id, lock=True)
            changed = e.status == "open"
            if changed:
                e.status, e.status_by, e.status_at, e.updated_at = "acknowledged", actor, now, now
            if text:
                s.add(AnomalyComment(event_id=event_id, at=now, author=actor, text=text))
            if changed or text:
                self._audit(s, actor, "anomaly.acknowledge", f"anomaly:{event_id}",
                            {"device_id": e.device_id, "changed": changed,
                             "comment": bool(text)}, now)  # fmt: skip
        return self.anomaly_event(event_id), changed

    def mute_anomaly_event(
        self,
        event_id: int,
        *,
        actor: str,
        scope: str = "event",
        until: float | None = None,
    ) -> dict[str, Any]:
        """Mute an event (``scope="event"``), or its meter too (``"meter"``): a muted meter's
        new events are stored muted and nobody is notified, until ``until`` (epoch s; None:
        until :meth:`unmute_meter`). Audited; muting what is muted changes nothing.

        Raises
        ------
        ParameterError
            Unknown scope, ``until`` in the past, or ``until`` with ``scope="event"``.
        """
        if scope not in ("event", "meter"):
            raise ParameterError(f"scope must be event or meter, got {scope!r}")
        now = time.time()
        if until is not None:
            if scope != "meter":
                raise ParameterError("until applies to muting the meter (scope=meter)")
            if not math.isfinite(until) or until <= now:
                raise ParameterError(f"until must be in the future, got {iso(until)}")
        with self.session() as s:
            e = self._event(s, event_id, lock=True)
            changed = e.status != "muted"
            if changed:
                e.status, e.status_by, e.status_at, e.updated_at = "muted", actor, now, now
            detail: dict[str, Any] = {"device_id": e.device_id, "scope": scope}
            if scope == "meter":
                m = s.get(AnomalyMute, e.device_id)
                if m is None:
                    s.add(AnomalyMute(device_id=e.device_id, until=until, by=actor, at=now))
                else:
                    m.until, m.by, m.at = until, actor, now
                detail["until"] = iso(until)
                changed = True
            if changed:
                self._audit(s, actor, "anomaly.mute", f"anomaly:{event_id}", detail, now)
        return {**self.anomaly_event(event_id), "changed": changed}

    def unmute_meter(self, device_id: int, *, actor: str) -> bool:
        """Unmute a meter (audited); False when it was not muted. Its muted events stay muted."""
        now = time.time()
        with self.session() as s:
            if s.get(Device, device_id) is None:
                raise NotFoundError(f"no device with id {device_id}")
            m = s.get(AnomalyMute, device_id)
            was = m is not None and (m.until is None or m.until > now)
            if m is not None:
                s.delete(m)
            if was:
                self._audit(s, actor, "anomaly.unmute", f"device:{device_id}", None, now)
        return was

    def meter_muted(self, device_id: int, now: float | None = None) -> bool:
        with self.session() as s:
            return _muted(s, device_id, time.time() if now is None else now) is not None

    def comment_anomaly_event(self, event_id: int, *, actor: str, text: str) -> dict[str, Any]:
        """Add a comment to an event (audited); returns the comment."""
        body = _check_comment(text)
        now = time.time()
        with self.session() as s:
            e = self._event(s, event_id)
            c = AnomalyComment(event_id=event_id, at=now, author=actor, text=body)
            s.add(c)
            s.flush()
            self._audit(s, actor, "anomaly.comment", f"anomaly:{event_id}",
                        {"device_id": e.device_id, "chars": len(body)}, now)  # fmt: skip
            return _comment_dict(c)

    # ------------------------------------------------------------------ notifications
    def claim_anomaly_notification(
        self, event_id: int, *, how: str, now: float | None = None
    ) -> AnomalyEvent | None:
        """Mark an event notified (``how``: the channels, or ``"muted"``) unless it was already:
        the one process that gets the event back sends the notification (atomic UPDATE)."""
        now = time.time() if now is None else now
        with self.session() as s:
            res = s.connection().execute(
                update(AnomalyEvent)
                .where(AnomalyEvent.id == event_id, AnomalyEvent.notified_at.is_(None))
                .values(notified_at=now, notified=how[:40])
            )
            if res.rowcount != 1:
                return None
            return self._event(s, event_id)

    def unnotified_anomaly_events(self, limit: int = 100) -> list[AnomalyEvent]:
        """Events nobody was notified of yet, oldest first."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(AnomalyEvent)
                    .where(AnomalyEvent.notified_at.is_(None))
                    .order_by(AnomalyEvent.id)
                    .limit(limit)
                )
            )

    def meter_anomaly_state(self, device_id: int) -> dict[str, Any]:
        """Whether a meter has an open event (for its Home Assistant binary sensor) and the
        highest-scoring one."""
        with self.session() as s:
            e = s.scalars(
                select(AnomalyEvent)
                .where(AnomalyEvent.device_id == device_id, AnomalyEvent.status == "open")
                .order_by(AnomalyEvent.score.desc())
                .limit(1)
            ).first()
            return {"on": e is not None, "event": None if e is None else event_dict(e)}


def _check_comment(text: str) -> str:
    if not isinstance(text, str):
        raise ParameterError("a comment must be text")
    body = text.strip(" \t\r\n\f\v")  # ASCII white space, as the API's schema says
    if not body:
        raise ParameterError("a comment must not be empty")
    if len(body) > MAX_COMMENT_CHARS:
        raise ParameterError(
            f"a comment has at most {MAX_COMMENT_CHARS} characters, got {len(body)}"
        )
    if "\x00" in body:
        raise ParameterError("a comment must not contain NUL characters")
    return body
