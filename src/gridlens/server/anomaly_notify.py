"""Notifications of new anomaly events: MQTT (a Home Assistant binary sensor per meter) and
an optional webhook.

MQTT topics (``{prefix}``, ``{dev}`` and ``{node}`` as in :mod:`gridlens.server.mqtt`):

==================================================  ========  ===================================
topic                                               retained  payload
==================================================  ========  ===================================
``{discovery_prefix}/binary_sensor/{node}/anomaly/  yes       HA discovery of the meter's
config``                                                      ``Anomaly`` binary sensor
                                                              (``device_class: problem``)
``{prefix}/{dev}/anomaly``                          yes       ``ON`` while the meter has an
                                                              open event, else ``OFF``
``{prefix}/{dev}/anomaly_event``                    yes       the newest notified event (JSON),
                                                              the sensor's attributes
==================================================  ========  ===================================

The webhook gets ``POST`` with ``{"type": "gridlens.anomaly_event", "event": {...}}``.

Each event is notified at most once, by one server process: the process that marks it
notified in the store (an atomic UPDATE) sends it. An event that is muted (or whose meter
is muted) when it is found is marked ``muted`` and sent nowhere; one that ended more than
:data:`STALE_S` before it was found (history seen on the first scoring) is marked ``old``.
Acknowledging or muting publishes the meter's new sensor state.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from gridlens.server.settings import Settings
from gridlens.store.events import AnomalyEvent, event_dict
from gridlens.store.models import Device
from gridlens.store.repo import Store

__all__ = ["STALE_S", "AnomalyNotifier"]

log = logging.getLogger("gridlens.server")

#: Events that ended longer ago than this when found are not sent (history). [s]
STALE_S = 2 * 86400.0


class AnomalyNotifier:
    """Sends new anomaly events over MQTT and to the webhook (see the module doc).

    Parameters
    ----------
    store : Store
    bridge : MqttBridge or None
        The server's MQTT bridge (None: no broker).
    webhook_url : str
        Empty: no webhook.
    timeout_s : float
        Of one webhook POST.
    """

    def __init__(
        self, store: Store, bridge: Any, webhook_url: str = "", timeout_s: float = 5.0
    ) -> None:
        self.store = store
        self.bridge = bridge
        self.webhook_url = webhook_url
        self.timeout_s = timeout_s
        self.sent = 0
        self.webhook_failures = 0
        self._discovered: set[int] = set()

    @classmethod
    def from_settings(cls, settings: Settings, store: Store, bridge: Any) -> AnomalyNotifier:
        return cls(store, bridge, settings.anomaly_webhook_url)

    @property
    def channels(self) -> str:
        parts = [
            p
            for p, on in (("mqtt", self.bridge is not None), ("webhook", bool(self.webhook_url)))
            if on
        ]
        return ",".join(parts) or "none"

    # ------------------------------------------------------------------ events
    def notify_pending(self, now: float | None = None) -> int:
        """Notify every event nobody was notified of yet; returns how many were sent."""
        now = time.time() if now is None else now
        sent = 0
        touched: set[int] = set()
        for e in self.store.unnotified_anomaly_events(limit=500):
            muted = e.status == "muted" or self.store.meter_muted(e.device_id, now)
            if muted:
                how = "muted"
            elif e.end_at < now - STALE_S:
                how = "old"
            else:
                how = self.channels
            claimed = self.store.claim_anomaly_notification(e.id, how=how, now=now)
            if claimed is None or how in ("muted", "old"):
                continue
            touched.add(e.device_id)
            if self._send(claimed):
                sent += 1
        for device_id in touched:
            self.publish_state(device_id)
        self.sent += sent
        return sent

    def _send(self, e: AnomalyEvent) -> bool:
        try:
            dev = self.store.device(e.device_id)
        except Exception:
            return False
        doc = {**event_dict(e, dev.name), "unit": dev.unit}
        ok = False
        if self.bridge is not None:
            info = self._info(dev)
            self._discover(dev)
            ok = self.bridge.publish(
                self.bridge.topic(info, "anomaly_event"), json.dumps(doc), retain=True
            )
        if self.webhook_url:
            ok = self._webhook(doc) or ok
        return ok

    def _webhook(self, doc: dict[str, Any]) -> bool:
        import httpx

        try:
            r = httpx.post(
                self.webhook_url,
                json={"type": "gridlens.anomaly_event", "event": doc},
                timeout=self.timeout_s,
                headers={"User-Agent": "gridlens"},
            )
        except httpx.HTTPError as exc:
            self.webhook_failures += 1
            log.warning("anomaly webhook failed", extra={"error": str(exc)[:200]})
            return False
        if r.status_code >= 300:
            self.webhook_failures += 1
            log.warning("anomaly webhook refused", extra={"status": r.status_code})
            return False
        return True

    # ------------------------------------------------------------------ MQTT state
    @staticmethod
    def _info(dev: Device) -> Any:
        from gridlens.server.mqtt import DeviceInfo

        return DeviceInfo(dev.id, dev.name, dev.unit)

    def discovery(self, dev: Device) -> tuple[str, dict[str, Any]]:
        """The Home Assistant discovery topic and config of the meter's anomaly sensor."""
        b = self.bridge
        info = self._info(dev)
        node = b.node_id(info)
        object_id = f"{node}_{info.slug}_anomaly".replace("-", "_")
        return f"{b.discovery_prefix}/binary_sensor/{node}/anomaly/config", {
            "name": "Anomaly",
            "unique_id": f"{node}_anomaly",
            "object_id": object_id,
            "default_entity_id": f"binary_sensor.{object_id}",
            "device_class": "problem",
            "state_topic": b.topic(info, "anomaly"),
            "payload_on": "ON",
            "payload_off": "OFF",
            "json_attributes_topic": b.topic(info, "anomaly_event"),
            "availability": [
                {
                    "topic": b.status_topic,
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
            "device": {
                "identifiers": [node],
                "name": dev.name,
                "manufacturer": "gridlens",
                "model": "meter retrofit",
            },
            "origin": {"name": "gridlens"},
        }

    def _discover(self, dev: Device) -> None:
        if self.bridge is None or dev.id in self._discovered:
            return
        topic, config = self.discovery(dev)
        if self.bridge.publish(topic, json.dumps(config), retain=True):
            self._discovered.add(dev.id)

    def publish_state(self, device_id: int) -> None:
        """Publish (retained) the meter's sensor: ``ON`` while it has an open event."""
        if self.bridge is None:
            return
        try:
            dev = self.store.device(device_id)
        except Exception:
            return
        self._discover(dev)
        state = self.store.meter_anomaly_state(device_id)
        self.bridge.publish(
            self.bridge.topic(self._info(dev), "anomaly"), "ON" if state["on"] else "OFF", True
        )
