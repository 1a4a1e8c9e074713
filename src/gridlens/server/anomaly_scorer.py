"""The fleet's anomaly scoring: every meter's hourly consumption against its own history.

:func:`score_fleet` scores each meter (:func:`gridlens.anomaly.fleet.score_meter`, the
``profile`` detector: no PyTorch, a few milliseconds a meter), stores its day and week
scores and sparkline, and merges its anomalous runs into the store's events (rescoring
widens an event, never duplicates it). :class:`AnomalyScorer` runs it in a server thread
every ``anomaly_every_s`` and then sends the new events' notifications
(:mod:`gridlens.server.anomaly_notify`). Every server process may run it: the store's
merge and the notification claim make that safe.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from gridlens.errors import GridlensError
from gridlens.store.queries import counter_window
from gridlens.store.repo import Store
from gridlens.store.series import consumption

__all__ = ["HISTORY_DAYS", "MODEL", "AnomalyScorer", "score_fleet", "score_one"]

log = logging.getLogger("gridlens.server")

#: Days of hourly consumption each meter is scored on (its own history).
HISTORY_DAYS = 35.0
#: The detector of the fleet page.
MODEL = "profile"


def score_one(
    store: Store,
    device_id: int,
    *,
    now: float,
    days: float = HISTORY_DAYS,
    min_score: float = 8.0,
    name: str = "meter",
) -> dict[str, Any]:
    """Score one meter and store the result; returns the summary with ``new_events`` ids."""
    from gridlens.anomaly.fleet import score_meter

    lo = math.floor((now - days * 86400.0) / 3600.0) * 3600.0
    hi = math.floor(now / 3600.0) * 3600.0  # whole hours only: the current one is not over
    t, v = counter_window(store, device_id, lo, now)
    starts, energy = consumption(t, v, 3600.0, since=lo, until=hi)
    doc = score_meter(starts, energy, now=now, model=MODEL, min_score=min_score, contamination=0.03)
    new = store.record_anomaly_scores(
        device_id,
        model=doc["model"],
        day_score=doc["day_score"],
        week_score=doc["week_score"],
        spark=doc["spark"],
        spark_start=doc["spark_start"],
        note=doc["note"],
        events=doc["events"],
        now=now,
    )
    return {**doc, "new_events": new}


def score_fleet(
    store: Store,
    *,
    now: float | None = None,
    days: float = HISTORY_DAYS,
    min_score: float = 8.0,
) -> dict[str, Any]:
    """Score every meter; returns ``{"meters", "scored", "events", "new_events", "seconds",
    "errors"}`` (a meter that fails is logged and skipped, the others go on)."""
    now = time.time() if now is None else now
    t0 = time.perf_counter()
    scored = found = 0
    new: list[int] = []
    errors: dict[str, str] = {}
    devices = store.devices()
    for d in devices:
        try:
            doc = score_one(store, d.id, now=now, days=days, min_score=min_score, name=d.name)
        except GridlensError as exc:
            errors[str(d.id)] = str(exc)
            log.warning("anomaly scoring failed", extra={"device": d.id, "error": str(exc)})
            continue
        scored += doc["day_score"] is not None or doc["week_score"] is not None
        found += len(doc["events"])
        new += doc["new_events"]
    return {
        "meters": len(devices),
        "scored": scored,
        "events": found,
        "new_events": len(new),
        "seconds": round(time.perf_counter() - t0, 3),
        "errors": errors,
    }


class AnomalyScorer:
    """Runs :func:`score_fleet` every ``every_s`` in a daemon thread, then notifies.

    The first run starts ``first_after_s`` after :meth:`start` (the server is up first).
    """

    def __init__(
        self,
        store: Store,
        notifier: Any,
        *,
        every_s: float,
        min_score: float = 8.0,
        first_after_s: float = 5.0,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.every_s = every_s
        self.min_score = min_score
        self.first_after_s = first_after_s
        self.runs = 0
        self.last: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gl-anomaly", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_once(self, now: float | None = None) -> dict[str, Any]:
        """Score the fleet and send notifications now (one run at a time per process)."""
        with self._lock:
            doc = score_fleet(self.store, now=now, min_score=self.min_score)
            if self.notifier is not None:
                doc["notified"] = self.notifier.notify_pending(now)
            self.runs += 1
            self.last = doc
        return doc

    def _loop(self) -> None:
        wait = self.first_after_s
        while not self._stop.wait(wait):
            try:
                doc = self.run_once()
                log.info(
                    "anomaly scoring",
                    extra={k: doc[k] for k in ("meters", "new_events", "seconds")},
                )
            except Exception as exc:  # the database away: try again next time
                log.warning(
                    "anomaly scoring failed", extra={"error": f"{type(exc).__name__}: {exc}"}
                )
            wait = self.every_s


def make_scorer(settings: Any, store: Store, bridge: Any) -> AnomalyScorer:
    """The process's scorer and notifier from the server settings (started by the app when
    ``anomaly_every_s`` is not 0)."""
    from gridlens.server.anomaly_notify import AnomalyNotifier

    notifier = AnomalyNotifier.from_settings(settings, store, bridge)
    return AnomalyScorer(
        store,
        notifier,
        every_s=settings.anomaly_every_s or 86400.0,
        min_score=settings.anomaly_min_score,
    )
