"""The Grid page and the feeder REST API (``/grid``, ``/api/v1/feeders``, ``/api/v1/jobs``).

Feeders are viewed by any user and changed by an admin (add by built-in name or uploaded
.dss files, remove, put meters on buses, set the µPMUs). The placement study runs as a
background job of the server process that accepted it, in a child process of its own
(:mod:`gridlens.server.grid_jobs`: at most ``MAX_PLACEMENT_JOBS`` at once, then 409; its
progress and result are in the database, so any process answers ``GET /api/v1/jobs/{id}``).
Estimates are brought up to date (:func:`gridlens.server.grid_se.refresh`) before they are
served.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from gridlens.errors import NotFoundError, ParameterError
from gridlens.server import grid_jobs, grid_se
from gridlens.server.auth import Admin, Operator, Viewer
from gridlens.server.contract import DateTime, DeviceId, errors
from gridlens.server.guard import GuardedRoute, body_limit
from gridlens.server.pages import DashboardRoute
from gridlens.server.pages import page as _page
from gridlens.server.pages import user_or_response as _user_or_response
from gridlens.store.feeders import feeder_summary, job_dict
from gridlens.store.repo import Store

api = APIRouter(prefix="/api/v1", tags=["grid"], route_class=GuardedRoute)
"""REST endpoints (in the OpenAPI document)."""
pages = APIRouter(include_in_schema=False, route_class=DashboardRoute)
"""Dashboard pages."""

FeederId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the feeder's id", examples=[1])]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the job's id", examples=[1])]
#: Largest body of ``POST /feeders`` (the .dss files as text).
FEEDER_UPLOAD_BYTES = 16 * 1024 * 1024
#: Most hours one estimates answer holds.
MAX_ESTIMATE_HOURS = 24 * 62
MAX_PMUS = 10
#: A queued or running job without progress for this long has lost its process [s].
JOB_STALE_S = 1800.0
_E404 = "no feeder (or device) with this id, or no bus of this name on the feeder"
_BODY = (400, 413)


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


FileName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,100}$", max_length=101)
]


class FeederBuiltin(BaseModel):
    """A built-in feeder to add."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, examples=["main-street"])
    builtin: Literal["ieee15"] = Field(description="the built-in feeder")
    pmus: list[str] = Field(default_factory=list, max_length=MAX_PMUS)


class FeederFiles(BaseModel):
    """A feeder to add from OpenDSS files."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, examples=["main-street"])
    files: dict[FileName, str] = Field(
        min_length=1,
        max_length=20,
        description="OpenDSS files by name (the main one and those it redirects to)",
    )
    main: str | None = Field(None, description="the file with `New Circuit` (default: found)")
    pmus: list[str] = Field(default_factory=list, max_length=MAX_PMUS)


class MeterPlace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: int = Field(ge=1, le=2**31 - 1)
    bus: str = Field(min_length=1, max_length=64)
    scale: float = Field(
        1.0, gt=0, lt=1e9, description="the meter's kWh times this is the bus load"
    )


class PmuSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    buses: list[str] = Field(max_length=MAX_PMUS)


class PlacementNew(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(3, ge=1, le=MAX_PMUS, description="number of µPMUs")
    fixed: list[str] = Field(default_factory=list, max_length=MAX_PMUS)
    estimator: Literal["wls", "analytic", "pso", "de", "ga"] = "wls"
    search: Literal["exhaustive", "greedy"] = "exhaustive"
    scenarios: int = Field(15, ge=1, le=48)


def _buses(store: Store, feeder_id: int, names: list[str]) -> list[str]:
    """The buses named (each checked against the model), in the order given, unique."""
    f = grid_se.load_model(store.feeder(feeder_id))
    out: list[str] = []
    for b in names:
        name = _bus_name(f, b)  # NotFoundError (404) naming the valid buses
        if name not in out:
            out.append(name)
    return out


def _bus_name(f: Any, bus: str) -> str:
    b = str(bus).strip()
    if b in f.bus_names:
        return b
    low = b.lower()
    if low in f.bus_names:
        return low
    f.bus_index(b)  # raises NotFoundError naming the valid buses
    return b


# ---------------------------------------------------------------------------- feeders


@api.get("/feeders", responses=errors(), description="Every feeder, with counts of its parts.")
def list_feeders(request: Request, who: Viewer) -> list[dict[str, Any]]:
    return _store(request).feeders()


@api.post(
    "/feeders",
    status_code=201,
    responses=errors(
        400,
        404,
        409,
        413,
        e404="a µPMU bus the feeder does not have",
        e422="a bad name, or .dss files OpenDSS cannot load (its message)",
    ),
    description="Add a feeder (admin): `builtin` (ieee15), or the OpenDSS `files` (name -> "
    "text; the main file and those it redirects to). OpenDSS compiles them once; the balanced "
    "model is stored. Nothing is stored when they do not load.",
)
@body_limit(FEEDER_UPLOAD_BYTES)
async def add_feeder(
    body: FeederBuiltin | FeederFiles, request: Request, who: Admin
) -> dict[str, Any]:
    store = _store(request)
    return await run_in_threadpool(_add_feeder, store, body, who.name)


def _add_feeder(store: Store, body: FeederBuiltin | FeederFiles, actor: str) -> dict[str, Any]:
    from gridlens.grid.feeder import feeder_from_dict
    from gridlens.store.repo import check_name

    check_name(body.name, "feeder")  # before OpenDSS runs
    if isinstance(body, FeederBuiltin):
        model, source, files = grid_se.builtin_model(body.builtin), f"builtin:{body.builtin}", None
    else:
        model, main = grid_se.compile_files(body.files, body.main)
        source, files = f"dss:{main}", body.files
    f = feeder_from_dict(model)
    pmus: list[str] = []
    for b in body.pmus:
        pmus.append(_bus_name(f, b))  # NotFoundError (404) before anything is stored
    row = store.add_feeder(body.name, source, model, actor=actor, files=files, pmus=pmus)
    return feeder_summary(row)


@api.get(
    "/feeders/{feeder_id}",
    responses=errors(404, e404=_E404),
    description="A feeder: `buses` (name, kV, drawing position, nominal load, `meters`: the "
    "devices on it, `pmu`), `lines` (from, to) and its µPMUs (`pmus`).",
)
def get_feeder(feeder_id: FeederId, request: Request, who: Viewer) -> dict[str, Any]:
    store = _store(request)
    return grid_se.feeder_doc(store, store.feeder(feeder_id))


@api.delete(
    "/feeders/{feeder_id}",
    responses=errors(404, e404=_E404),
    description="Remove a feeder (admin), with its meter places, estimates and jobs. The "
    "devices and their readings stay.",
)
def remove_feeder(feeder_id: FeederId, request: Request, who: Admin) -> dict[str, Any]:
    row = _store(request).remove_feeder(feeder_id, actor=who.name)
    return {"removed": row.id, "name": row.name}


@api.put(
    "/feeders/{feeder_id}/meters",
    responses=errors(*_BODY, 404, e404=_E404, e422="a value out of range"),
    description="Put a device on a bus of this feeder (admin); it leaves any bus it was on. "
    "The bus load is the device's hourly energy times `scale`. Every estimate of the feeders "
    "involved is recomputed.",
)
def place_meter(
    feeder_id: FeederId, body: MeterPlace, request: Request, who: Admin
) -> dict[str, Any]:
    store = _store(request)
    bus = _buses(store, feeder_id, [body.bus])[0]
    store.place_meter(body.device_id, feeder_id, bus, actor=who.name, scale=body.scale)
    return {"device_id": body.device_id, "feeder_id": feeder_id, "bus": bus, "scale": body.scale}


@api.delete(
    "/feeders/{feeder_id}/meters/{device_id}",
    responses=errors(404, e404=_E404),
    description="Take a device off its bus (admin).",
)
def unplace_meter(
    feeder_id: FeederId, device_id: DeviceId, request: Request, who: Admin
) -> dict[str, Any]:
    store = _store(request)
    store.feeder(feeder_id)
    place = store.meter_place(device_id)
    if place is None or place.feeder_id != feeder_id:
        raise NotFoundError(f"device {device_id} is on no bus of feeder {feeder_id}")
    store.place_meter(device_id, None, None, actor=who.name)
    return {"device_id": device_id, "feeder_id": None, "bus": None}


@api.put(
    "/feeders/{feeder_id}/pmus",
    responses=errors(*_BODY, 404, e404=_E404),
    description='Set the feeder\'s µPMU buses (admin): what "Apply" of a placement study '
    "stores. Every estimate is recomputed.",
)
def set_pmus(feeder_id: FeederId, body: PmuSet, request: Request, who: Admin) -> dict[str, Any]:
    store = _store(request)
    buses = _buses(store, feeder_id, body.buses)
    row = store.set_pmus(feeder_id, buses, actor=who.name)
    return {"feeder_id": row.id, "pmus": row.pmus}


# ---------------------------------------------------------------------------- estimates


def _epoch(t: datetime | None, default: float) -> float:
    if t is None:
        return default
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


@api.get(
    "/feeders/{feeder_id}/estimates",
    responses=errors(
        404,
        e404=_E404,
        e422=f"since/until not date-times, or over {MAX_ESTIMATE_HOURS} hours apart",
    ),
    description="The hourly state estimates in `[since, until)` (default: the last 7 days), "
    "oldest first, each with its buses' `vm_pu`, `va_deg`, their σ (`vm_sigma_pu`, "
    "`va_sigma_deg`) and, where the truth is known (the demo's simulation), `tve_pct`. "
    "Hours whose readings changed since they were estimated are estimated again first.",
)
def get_estimates(
    feeder_id: FeederId,
    request: Request,
    who: Viewer,
    since: Annotated[DateTime | None, Query(description="ISO 8601 (inclusive)")] = None,
    until: Annotated[DateTime | None, Query(description="ISO 8601 (exclusive)")] = None,
) -> dict[str, Any]:
    store = _store(request)
    row = store.feeder(feeder_id)
    grid_se.refresh(store, row.id)
    row = store.feeder(feeder_id)
    latest = store.latest_hour(row.id)
    hi = _epoch(until, (latest + 3600) if latest is not None else time.time())
    lo = _epoch(since, hi - 7 * 86400)
    if hi <= lo:
        raise ParameterError("until must be after since")
    if (hi - lo) / 3600 > MAX_ESTIMATE_HOURS:
        raise ParameterError(
            f"since..until spans {math.ceil((hi - lo) / 3600):,} hours; the limit is "
            f"{MAX_ESTIMATE_HOURS:,} per request"
        )
    return grid_se.estimates_doc(store, row, lo, hi)


# ---------------------------------------------------------------------------- placement jobs


@api.post(
    "/feeders/{feeder_id}/placement",
    status_code=202,
    responses=errors(
        *_BODY,
        404,
        409,
        e404=_E404,
        e409=f"{grid_jobs.MAX_PLACEMENT_JOBS} placement studies are already running on this "
        "server (the most it runs at once): start it again when one is done",
        e422="K out of range or more than the feeder's buses, more fixed buses than K, or an "
        "exhaustive search too large",
    ),
    description="Start the µPMU placement study of this feeder (operator): K µPMUs, the "
    "fixed buses, the estimator and the search. It runs in the background, in a process of "
    f"its own (at most {grid_jobs.MAX_PLACEMENT_JOBS} at once per server process, each "
    f"limited to {grid_jobs.JOB_CPU_S} s of CPU time and {grid_jobs.JOB_WALL_S} s in all); "
    "follow it with `GET /api/v1/jobs/{id}` (progress 0..1, then the result: placements best "
    "first with their mean TVE, the best one's per-bus TVE; or the error).",
)
def start_placement(
    feeder_id: FeederId, body: PlacementNew, request: Request, who: Operator
) -> dict[str, Any]:
    store = _store(request)
    row = store.feeder(feeder_id)
    f = grid_se.load_model(row)
    fixed = _buses(store, feeder_id, body.fixed)
    if body.k > f.n_bus:
        raise ParameterError(f"k = {body.k} is more than the feeder's {f.n_bus} buses")
    if len(fixed) > body.k:
        raise ParameterError(f"{len(fixed)} fixed buses do not fit in k = {body.k} µPMUs")
    if body.search == "exhaustive":
        total = math.comb(f.n_bus - len(fixed), body.k - len(fixed))
        if total > 20_000:
            raise ParameterError(
                f"an exhaustive search would score {total:,} placements; use search greedy "
                "or a smaller k"
            )
    params = body.model_dump() | {"fixed": fixed}
    job = grid_jobs.start_placement(store, row.id, row.model, params, actor=who.name)  # 409
    return job_dict(job)


@api.get(
    "/jobs/{job_id}",
    responses=errors(404, e404="no job with this id"),
    description="A background job: `status` (queued, running, done, failed), `progress` "
    "(0..1), and its `result` or `error`.",
)
def get_job(job_id: JobId, request: Request, who: Viewer) -> dict[str, Any]:
    store = _store(request)
    job = store.job(job_id)
    if job.status in ("queued", "running") and time.time() - job.updated_at > JOB_STALE_S:
        store.update_job(job.id, status="failed",
                         error="the server process running it stopped (no progress for "
                         f"{JOB_STALE_S / 60:.0f} min)")  # fmt: skip
        job = store.job(job_id)
    return job_dict(job)


# ---------------------------------------------------------------------------- the page


@pages.get("/grid")
def grid_page(request: Request) -> Response:
    """The feeders: one-line diagram coloured by the estimated |V|, the time slider, the
    lowest voltages, meters on buses, uploads and the placement study (``grid.js``)."""
    who = _user_or_response(request)
    if isinstance(who, Response):
        return who
    store = _store(request)
    devices = [{"id": d.id, "name": d.name} for d in store.devices()]
    return _page(
        request,
        "grid.html",
        who,
        nav="grid",
        feeders=store.feeders(),
        devices=devices,
        is_admin=who.can("admin"),
        is_operator=who.can("operator"),
    )
