"""The server's MQTT wiring: the bridge built from the settings, acks from devices into
the store, and readings and commands published to the broker (``server/mqtt.py``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

from gridlens.errors import GridlensError
from gridlens.server.settings import Settings
from gridlens.store.models import Command, Device
from gridlens.store.repo import Store, command_dict

log = logging.getLogger("gridlens.server")


def make_bridge(settings: Settings, store: Store) -> Any:
    if not settings.mqtt_host:
        return None
    from gridlens.server.mqtt import MqttBridge

    def on_ack(slug: str, payload: dict[str, Any]) -> None:
        from gridlens.server.mqtt import slugify

        for d in store.devices():
            if slugify(d.name) == slug:
                try:
                    store.ack_command(
                        d.id,
                        int(payload["id"]),
                        ok=bool(payload.get("ok", True)),
                        detail=payload.get("detail"),
                        via="mqtt",
                    )
                except (GridlensError, KeyError, TypeError, ValueError) as exc:
                    log.warning("bad MQTT ack", extra={"device": slug, "error": str(exc)})
                return

    return MqttBridge(
        settings.mqtt_host, settings.mqtt_port, prefix=settings.mqtt_prefix, on_ack=on_ack
    )


def _info(dev: Device) -> Any:
    from gridlens.server.mqtt import DeviceInfo

    return DeviceInfo(dev.id, dev.name, dev.unit)


def publish_reading(app: FastAPI, dev: Device, reading: dict[str, Any]) -> None:
    bridge = app.state.mqtt
    if bridge is None:
        return
    info = _info(dev)
    seen: set[int] = app.state.__dict__.setdefault("_discovered", set())
    if dev.id not in seen:
        bridge.publish_discovery(info)
        seen.add(dev.id)
    bridge.publish_availability(info, True)
    bridge.publish_reading(info, reading)


def publish_command(app: FastAPI, dev: Device, cmd: Command) -> None:
    bridge = app.state.mqtt
    if bridge is None:
        return
    d = command_dict(cmd)
    bridge.publish_command(_info(dev), {k: d[k] for k in ("id", "action", "state", "value")})
