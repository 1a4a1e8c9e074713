"""The server's MQTT wiring: the bridge built from the settings, acks from devices into
the store, and readings and commands published to the broker (``server/mqtt.py``).

Acks are judged by the store (:meth:`gridlens.store.commands.CommandsMixin.mqtt_ack`): the
topic names the device (``<prefix>/<id>-<slug>/ack`` must be that device's current topic),
the payload must carry the command's nonce, a boolean ``ok`` and the device's signature.
Refusals are audited with the topic as the actor, at most :data:`REFUSALS_AUDITED_PER_MIN`
a minute per process (a flood is only counted, in ``gridlens_mqtt_acks_refused``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fastapi import FastAPI

from gridlens.errors import GridlensError
from gridlens.server.settings import Settings
from gridlens.store.commands import command_signature, device_command
from gridlens.store.models import Command, Device
from gridlens.store.repo import Store

__all__ = ["REFUSALS_AUDITED_PER_MIN", "make_bridge", "publish_command", "publish_reading"]

log = logging.getLogger("gridlens.server")

REFUSALS_AUDITED_PER_MIN = 30


class _Throttle:
    """At most ``n`` events a minute (fixed one-minute windows)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._lock = threading.Lock()
        self._window = 0
        self._count = 0

    def allow(self) -> bool:
        window = int(time.monotonic() // 60)
        with self._lock:
            if window != self._window:
                self._window, self._count = window, 0
            self._count += 1
            return self._count <= self.n


def make_bridge(settings: Settings, store: Store) -> Any:
    """The process's :class:`~gridlens.server.mqtt.MqttBridge`, ``None`` without a broker."""
    if not settings.mqtt_host:
        return None
    from gridlens.server.mqtt import DeviceInfo, MqttBridge, device_id_of

    throttle = _Throttle(REFUSALS_AUDITED_PER_MIN)
    prefix = settings.mqtt_prefix.strip("/")

    def on_ack(segment: str, payload: Any) -> bool:
        source = f"mqtt:{prefix}/{segment}/ack"
        device_id = device_id_of(segment)
        if device_id is not None:
            try:
                dev = store.device_cached(device_id)
            except GridlensError:
                device_id = None
            else:
                if DeviceInfo(dev.id, dev.name, dev.unit).segment != segment:
                    device_id = None  # an old name, or a forged slug
        audit = throttle.allow()
        cmd, reason = store.mqtt_ack(device_id, payload, source=source, audit_refusal=audit)
        if reason is not None:
            (log.warning if audit else log.debug)(
                "MQTT ack refused", extra={"topic": source[5:], "reason": reason}
            )
        return cmd is not None

    password = settings.mqtt_password()
    loopback = settings.mqtt_host in ("localhost", "::1") or settings.mqtt_host.startswith("127.")
    if password is not None and not settings.mqtt_tls and not loopback:
        log.warning("the MQTT password goes to the broker unencrypted; use --mqtt-tls",
                    extra={"broker": settings.mqtt_host})  # fmt: skip
    return MqttBridge(
        settings.mqtt_host,
        settings.mqtt_port,
        prefix=settings.mqtt_prefix,
        username=settings.mqtt_user or None,
        password=password,
        tls=settings.mqtt_tls,
        cafile=settings.mqtt_cafile or None,
        on_ack=on_ack,
    )


def _info(dev: Device) -> Any:
    from gridlens.server.mqtt import DeviceInfo

    dials = sorted((float(d["factor"]) for d in dev.roi.get("dials") or []), reverse=True)
    return DeviceInfo(dev.id, dev.name, dev.unit, tuple(dials))


def publish_reading(app: FastAPI, dev: Device, reading: dict[str, Any]) -> None:
    bridge = app.state.mqtt
    if bridge is None:
        return
    info = _info(dev)
    seen: dict[int, Any] = app.state.__dict__.setdefault("_discovered", {})
    if seen.get(dev.id) != info:  # new, or renamed: its topics changed
        bridge.publish_discovery(info)
        seen[dev.id] = info
    bridge.publish_availability(info, True)
    bridge.publish_reading(info, reading)


def publish_command(app: FastAPI, dev: Device, cmd: Command) -> None:
    """Publish a new command to its device, signed, and mark it delivered (sent) when the
    connected client took it; while the broker is away it stays pending for HTTP."""
    bridge = app.state.mqtt
    if bridge is None:
        return
    store: Store = app.state.store
    key = store.command_key(dev.id)
    if key is None or cmd.nonce is None:  # no token: the device could not check it
        log.warning("command not sent over MQTT: device has no live token",
                    extra={"device": dev.id, "command": cmd.id})  # fmt: skip
        return
    doc = {"device_id": dev.id, **device_command(cmd)}
    doc["sig"] = command_signature(key, dev.id, doc)
    now = time.time()
    if bridge.publish_command(_info(dev), doc) and store.mark_sent(cmd.id, via="mqtt", now=now):
        cmd.status, cmd.delivered_at, cmd.delivered_via = "delivered", now, "mqtt"
