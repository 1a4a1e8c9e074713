"""The fleet anomaly page (``/anomaly``) and the anomaly-event REST API.

REST (``/api/v1``): ``GET /anomaly-ranking`` (every meter by its score over the last day or
week, with the last week's hourly scores), ``POST /anomaly-ranking/rescore`` (score the
fleet now), ``GET /anomaly-events`` (highest score first), ``GET /anomaly-events/{id}``,
``POST /anomaly-events/{id}/acknowledge|mute|comments`` and ``DELETE
/devices/{id}/anomaly-mute``. Viewers read; operators and admins act. Every action is
audited by the store (:mod:`gridlens.store.events`).

The page is rendered on the server (no script): the ranking with an SVG sparkline per
meter, then the events with a form per action for operators.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gridlens.errors import InputError
from gridlens.server.auth import Operator, Viewer
from gridlens.server.contract import MAX_DEVICE_ID, MAX_ID, DateTime, DeviceId, errors
from gridlens.server.guard import GuardedRoute
from gridlens.server.pages import DashboardRoute, field, forbidden, login_redirect, store_of, who
from gridlens.server.pages import page as _page
from gridlens.server.pages import user_or_response as _user_or_response
from gridlens.store.events import EVENT_STATUSES, MAX_COMMENT_CHARS
from gridlens.store.repo import Principal, Store

__all__ = ["api", "pages", "sparkline"]

api = APIRouter(prefix="/api/v1", tags=["anomaly"], route_class=GuardedRoute)
"""REST endpoints (in the OpenAPI document)."""
pages = APIRouter(include_in_schema=False, route_class=DashboardRoute)
"""Dashboard pages."""

EventId = Annotated[int, Path(ge=1, le=MAX_ID, description="the anomaly event's id", examples=[1])]
Status = Literal["open", "acknowledged", "muted"]
_COMMENT_RULE = r"^[^\x00]*[^\x00\s][^\x00]*$"  # not blank, no NUL
#: Longest meter mute [h] (a year).
MAX_MUTE_HOURS = 8760


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(
        None,
        max_length=MAX_COMMENT_CHARS,
        pattern=_COMMENT_RULE,
        description="optional: a comment stored with the acknowledgement",
    )


class MuteEventIn(BaseModel):
    """Mute this event only."""

    model_config = ConfigDict(extra="forbid")
    scope: Literal["event"] = Field("event", description="this event only")


class MuteMeterIn(BaseModel):
    """Mute the event and its meter: the meter's new events are stored muted and notify
    nobody, for ``hours`` or until unmuted."""

    model_config = ConfigDict(extra="forbid")
    scope: Literal["meter"] = Field(description="also the meter")
    hours: int | None = Field(
        None,
        ge=1,
        le=MAX_MUTE_HOURS,
        description="mute the meter this many hours (default: until unmuted)",
    )


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(
        max_length=MAX_COMMENT_CHARS,
        pattern=_COMMENT_RULE,
        examples=["the night shift left the compressor on"],
    )


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _publish_state(request: Request, device_id: int) -> None:
    notifier = getattr(request.app.state.anomaly, "notifier", None)
    if notifier is not None:
        with contextlib.suppress(Exception):  # MQTT is best effort
            notifier.publish_state(device_id)


def _epoch(d: datetime | None) -> float | None:
    if d is None:
        return None
    return (d if d.tzinfo is not None else d.replace(tzinfo=UTC)).timestamp()


def _mute_until(body: MuteEventIn | MuteMeterIn) -> float | None:
    if isinstance(body, MuteEventIn) or body.hours is None:
        return None
    return time.time() + body.hours * 3600.0


# ------------------------------------------------------------------------------ REST


@api.get("/anomaly-ranking", responses=errors())
def anomaly_ranking(
    request: Request,
    who: Viewer,
    sort: Annotated[
        Literal["day", "week"], Query(description="rank by the score of the last day or week")
    ] = "week",
) -> dict[str, Any]:
    """Every meter ranked by its anomaly score (the highest hourly score against its own
    history) over the last day and week, with ``spark``: its hourly scores of the last
    168 hours from ``spark_start`` (null where unknown). Scored every few minutes by the
    server (``scored_at``); a meter with too little history has null scores and a note."""
    store = _store(request)
    return {"sort": sort, "meters": store.anomaly_ranking(sort=sort)}


@api.post("/anomaly-ranking/rescore", responses=errors())
def anomaly_rescore(request: Request, who: Operator) -> dict[str, Any]:
    """Score every meter now (operator) and send the new events' notifications; returns
    how many meters were scored and events found."""
    doc: dict[str, Any] = request.app.state.anomaly.run_once()
    return doc


@api.get("/anomaly-events", responses=errors())
def list_anomaly_events(
    request: Request,
    who: Viewer,
    status: Annotated[Status | None, Query(description="only events in this state")] = None,
    device_id: Annotated[
        int | None, Query(ge=1, le=MAX_DEVICE_ID, description="only this meter's events")
    ] = None,
    since: Annotated[
        DateTime | None, Query(description="only events that end after this ISO 8601 time")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Anomaly events, highest score first: ``device_id``, ``start``, ``end``, ``score``,
    ``kind`` (``high``, ``night-load``, ``low``, ``stuck``), ``status`` (``open``,
    ``acknowledged``, ``muted``), who changed the status and when, and the number of
    comments."""
    events = _store(request).anomaly_events(
        status=status, device_id=device_id, since=_epoch(since), limit=limit
    )
    return {"events": events}


@api.get("/anomaly-events/{event_id}", responses=errors(404, e404="no anomaly event with this id"))
def get_anomaly_event(event_id: EventId, request: Request, who: Viewer) -> dict[str, Any]:
    """One event with its comments (``comment_list``, oldest first)."""
    return _store(request).anomaly_event(event_id)


@api.post(
    "/anomaly-events/{event_id}/acknowledge",
    responses=errors(400, 404, 413, e404="no anomaly event with this id"),
)
def acknowledge_anomaly_event(
    event_id: EventId, request: Request, who: Operator, body: AcknowledgeIn | None = None
) -> dict[str, Any]:
    """Acknowledge an open event (operator): someone has seen it. An event already
    acknowledged or muted stays as it is (``changed: false``)."""
    store = _store(request)
    comment = None if body is None else body.comment
    doc, changed = store.acknowledge_anomaly_event(event_id, actor=who.name, comment=comment)
    _publish_state(request, doc["device_id"])
    return {**doc, "changed": changed}


@api.post(
    "/anomaly-events/{event_id}/mute",
    responses=errors(400, 404, 413, e404="no anomaly event with this id"),
)
def mute_anomaly_event(
    event_id: EventId,
    request: Request,
    who: Operator,
    body: MuteEventIn | MuteMeterIn | None = None,
) -> dict[str, Any]:
    """Mute an event (operator), or with ``scope: meter`` its meter too: a muted meter's
    new events are stored muted and notify nobody, for ``hours`` or until ``DELETE
    /devices/{id}/anomaly-mute``."""
    body = body or MuteEventIn(scope="event")
    store = _store(request)
    doc = store.mute_anomaly_event(
        event_id, actor=who.name, scope=body.scope, until=_mute_until(body)
    )
    _publish_state(request, doc["device_id"])
    return doc


@api.post(
    "/anomaly-events/{event_id}/comments",
    status_code=201,
    responses=errors(400, 404, 413, e404="no anomaly event with this id"),
)
def comment_anomaly_event(
    event_id: EventId, body: CommentIn, request: Request, who: Operator
) -> dict[str, Any]:
    """Add a comment to an event (operator)."""
    return _store(request).comment_anomaly_event(event_id, actor=who.name, text=body.text)


@api.delete("/devices/{device_id}/anomaly-mute", tags=["anomaly"], responses=errors(404))
def unmute_meter(device_id: DeviceId, request: Request, who: Operator) -> dict[str, Any]:
    """Unmute a meter (operator): its next events notify again (muted events stay muted)."""
    was = _store(request).unmute_meter(device_id, actor=who.name)
    return {"device_id": device_id, "was_muted": was}


# ------------------------------------------------------------------------------ the page


def sparkline(values: list[float | None], width: int = 168, height: int = 28) -> dict[str, Any]:
    """SVG polyline points of hourly scores (gaps split the line) and the highest score."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    top = max(finite) if finite else 0.0
    scale = max(top, 5.0)
    n = max(len(values), 2)
    lines: list[str] = []
    cur: list[str] = []
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            if len(cur) > 1:
                lines.append(" ".join(cur))
            cur = []
            continue
        x = i * (width - 1) / (n - 1)
        y = height - 1 - min(v, scale) / scale * (height - 2)
        cur.append(f"{x:.1f},{y:.1f}")
    if len(cur) > 1:
        lines.append(" ".join(cur))
    return {"lines": lines, "top": top, "width": width, "height": height}


def _page_data(
    store: Store, status: str | None, device_id: int | None, sort: str
) -> dict[str, Any]:
    ranking = store.anomaly_ranking(sort=sort)
    for r in ranking:
        r["sparkline"] = sparkline(r["spark"])
    events = store.anomaly_events(status=status, device_id=device_id, limit=200)
    if status is None:
        events = [e for e in events if e["status"] != "muted"]
    names = {r["device_id"]: r["name"] for r in ranking}
    return {
        "ranking": ranking,
        "events": events,
        "status": status,
        "device_id": device_id,
        "device_name": names.get(device_id) if device_id is not None else None,
        "sort": sort,
        "statuses": EVENT_STATUSES,
    }


@pages.get("/anomaly")
def anomaly_page(request: Request) -> Response:
    """Meters ranked by anomaly score; the anomaly events, with actions for operators."""
    user = _user_or_response(request)
    if isinstance(user, Response):
        return user
    q = request.query_params
    status = q.get("status") if q.get("status") in EVENT_STATUSES else None
    sort = "day" if q.get("sort") == "day" else "week"
    raw_id = q.get("device_id", "")
    device_id = int(raw_id) if raw_id.isdigit() and 1 <= int(raw_id) <= MAX_DEVICE_ID else None
    data = _page_data(store_of(request), status, device_id, sort)
    return _page(
        request,
        "anomaly.html",
        user,
        nav="anomaly",
        can_act=user.can("operator"),
        done=q.get("done", "")[:40],
        error=q.get("error", "")[:300],
        **data,
    )


_ACTIONS = ("acknowledge", "mute", "mute-meter", "comment")


@pages.post("/anomaly/events/{event_id}")
async def anomaly_action(event_id: int, request: Request) -> Response:
    """An operator's action on an event from the page, then back to the page."""
    user: Principal | None = who(request)
    if user is None:
        return login_redirect(request)
    if not user.can("operator"):
        return forbidden(request, user, "Acting on anomaly events")
    form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
    action = field(form, "action", 20)
    back = field(form, "back", 200)
    if not back.startswith("/anomaly"):
        back = "/anomaly"
    sep = "&" if "?" in back else "?"
    store = store_of(request)
    try:
        if not 1 <= event_id <= MAX_ID:
            raise InputError(f"no anomaly event with id {event_id}")
        if action not in _ACTIONS:
            raise InputError(f"unknown action {action!r}")
        if action == "acknowledge":
            doc, _ = await run_in_threadpool(
                lambda: store.acknowledge_anomaly_event(event_id, actor=user.name)
            )
        elif action in ("mute", "mute-meter"):
            scope = "meter" if action == "mute-meter" else "event"
            doc = await run_in_threadpool(
                lambda: store.mute_anomaly_event(event_id, actor=user.name, scope=scope)
            )
        else:
            text = field(form, "text", MAX_COMMENT_CHARS + 1)
            await run_in_threadpool(
                lambda: store.comment_anomaly_event(event_id, actor=user.name, text=text)
            )
            doc = {"device_id": None}
    except InputError as exc:
        return RedirectResponse(
            f"{back}{sep}{urlencode({'error': str(exc)[:300]})}#event-{event_id}", status_code=303
        )
    if doc.get("device_id") is not None:
        _publish_state(request, int(doc["device_id"]))
    return RedirectResponse(
        f"{back}{sep}{urlencode({'done': action})}#event-{event_id}", status_code=303
    )
