"""The FastAPI application: wiring of store, meter readers, MQTT, API and dashboard."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text

from gridlens import __version__
from gridlens.server import contract
from gridlens.server.bridge import make_bridge, publish_command, publish_reading
from gridlens.server.ingest import ReaderCache, prune_images
from gridlens.server.metrics import Metrics, read_snapshots, render_pull_state, write_snapshot
from gridlens.server.metrics import render as render_metrics
from gridlens.server.settings import Settings
from gridlens.store.pulls import pull_states
from gridlens.store.repo import Store

log = logging.getLogger("gridlens.server")


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """Build the app; ``store`` defaults to ``Store.open(settings.db)`` (migrated)."""
    settings = settings or Settings()
    import cv2

    cv2.setNumThreads(1)  # one core per request; more processes for more cores
    own_store = store is None
    store = store or Store.open(settings.db)
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.images.mkdir(parents=True, exist_ok=True)
        bridge = app.state.mqtt
        if bridge is not None:
            bridge.start()
        t = threading.Thread(target=_housekeeping, args=(app, stop), daemon=True)
        t.start()
        if settings.metrics_dir:
            threading.Thread(target=_flush_metrics, args=(app, stop), daemon=True).start()
        puller = _make_puller(app) if settings.pull else None
        if puller is not None:
            puller.start()
        if settings.anomaly_every_s:
            app.state.anomaly.start()
        log.info("server started", extra={"db": store.url, "data_dir": settings.data_dir})
        try:
            yield
        finally:
            stop.set()
            if puller is not None:
                puller.stop()
            app.state.anomaly.stop()
            if bridge is not None:
                bridge.stop()
            if own_store:
                store.close()

    app = FastAPI(
        title="gridlens",
        version=__version__,
        summary="Meter-retrofit (AMI) server: devices upload photos, people read and command.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.readers = ReaderCache()
    app.state.metrics = Metrics()
    app.state.mqtt = make_bridge(settings, store)
    app.state.publish_reading = lambda dev, reading: publish_reading(app, dev, reading)
    app.state.publish_command = lambda dev, cmd: publish_command(app, dev, cmd)
    from gridlens.server.anomaly_scorer import make_scorer

    app.state.anomaly = make_scorer(settings, store, app.state.mqtt)  # fleet anomaly scoring

    contract.install(app)  # one error shape; the OpenAPI document's security schemes

    @app.middleware("http")
    async def _observe(request: Request, call_next: Any) -> Response:
        t0 = time.perf_counter()
        status = 500
        try:
            response: Response = await call_next(request)
            status = response.status_code
            return response
        finally:
            dt = time.perf_counter() - t0
            route = request.scope.get("route")
            path = getattr(route, "path", "other")
            m = app.state.metrics
            m.inc(
                "gridlens_http_requests_total",
                method=request.method,
                route=path,
                status=str(status),
            )
            m.observe(path, dt)
            if settings.log_requests:
                log.info(
                    "request",
                    extra={
                        "method": request.method,
                        "path": request.url.path,
                        "status": status,
                        "ms": round(dt * 1000, 2),
                        "client": request.client.host if request.client else None,
                    },
                )

    @app.get(
        "/healthz",
        tags=["ops"],
        responses={503: {"description": "the database does not answer (same body)"}},
    )
    def healthz() -> JSONResponse:
        """200 when the database answers; 503 otherwise."""
        try:
            with store.engine.connect() as c:
                c.execute(text("SELECT 1"))
            db = "ok"
        except Exception as exc:
            db = f"error: {type(exc).__name__}"
        bridge = app.state.mqtt
        doc = {
            "status": "ok" if db == "ok" else "degraded",
            "version": __version__,
            "db": db,
            "mqtt": None if bridge is None else ("connected" if bridge.connected else "down"),
        }
        return JSONResponse(doc, status_code=200 if db == "ok" else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> str:
        """Prometheus text format: counters, gauges and latency histograms summed over the
        server's worker processes (the others' numbers are at most a few seconds old)."""
        _update_gauges(app)
        pulls = render_pull_state(pull_states(store))  # from the database: not summed
        if not settings.metrics_dir:
            return str(app.state.metrics.render()) + pulls
        folder = Path(settings.metrics_dir)
        write_snapshot(app.state.metrics, folder)
        return render_metrics(read_snapshots(folder)) + pulls

    from gridlens.server.api import router

    app.include_router(router)
    from gridlens.server.meter_setup import router as meter_setup

    app.include_router(meter_setup)
    from gridlens.server import anomaly_views, grid_views

    app.include_router(grid_views.api)
    app.include_router(anomaly_views.api)
    from fastapi.staticfiles import StaticFiles

    from gridlens.server.dashboard import STATIC
    from gridlens.server.dashboard import router as dashboard
    from gridlens.server.setup_pages import router as setup_pages

    app.include_router(setup_pages)  # before the dashboard's: /meters/new is no meter id
    app.include_router(dashboard)
    app.include_router(grid_views.pages)
    app.include_router(anomaly_views.pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _update_gauges(app: FastAPI) -> None:
    bridge = app.state.mqtt
    if bridge is not None:
        for k, v in bridge.stats.items():
            app.state.metrics.set(f"gridlens_mqtt_{k}", float(v))


def _flush_metrics(app: FastAPI, stop: threading.Event) -> None:
    """Write this process's metrics snapshot every ``metrics_flush_s`` (and once at the end)."""
    settings: Settings = app.state.settings
    folder = Path(settings.metrics_dir)
    while True:
        stopping = stop.wait(settings.metrics_flush_s)
        try:
            _update_gauges(app)
            write_snapshot(app.state.metrics, folder)
        except OSError as exc:  # a full disk must not stop the server
            log.warning("metrics snapshot not written", extra={"error": str(exc)})
        if stopping:
            return


def _housekeeping(app: FastAPI, stop: threading.Event, every_s: float = 600.0) -> None:
    """Photo retention (each process may run it: deleting is idempotent)."""
    settings: Settings = app.state.settings
    while not stop.is_set():
        try:
            n = prune_images(settings.images, settings.image_retention_days)
            if n:
                log.info("pruned photos", extra={"files": n})
        except OSError as exc:
            log.warning("photo pruning failed", extra={"error": str(exc)})
        stop.wait(every_s)


def _make_puller(app: FastAPI) -> Any:
    """The process's puller of cameras that serve snapshots (``server/pull.py``): their
    photos take the upload path, with the same readers, metrics and MQTT publishing."""
    from gridlens.server.pull import Puller

    return Puller(
        app.state.store,
        app.state.settings,
        readers=app.state.readers,
        metrics=app.state.metrics,
        publish=app.state.publish_reading,
    )


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` workers: settings from ``GRIDLENS_*``."""
    from gridlens.server.logs import setup_logging

    setup_logging()
    return create_app(Settings.from_env())
