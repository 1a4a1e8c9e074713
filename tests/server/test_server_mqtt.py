"""The server publishes readings and commands over the local Mosquitto, and takes acks."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from gridlens.server.app import create_app
from gridlens.server.settings import Settings
from gridlens.store import Store
from tests.server.conftest import Layout, upload_headers

BROKER = ("127.0.0.1", 1883)


def _broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _broker_up(), reason=f"no MQTT broker (Mosquitto) at {BROKER[0]}:{BROKER[1]}"
)


class Listener:
    """A subscriber that keeps every message per topic."""

    def __init__(self, pattern: str) -> None:
        self.msgs: dict[str, list[str]] = {}
        self.cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on
        self.client.connect(*BROKER)
        self.client.subscribe(pattern, qos=1)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.msgs.setdefault(m.topic, []).append(m.payload.decode())
            self.cond.notify_all()

    def wait(self, topic: str, n: int = 1, timeout: float = 10.0) -> list[str]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.msgs.get(topic, [])) >= n, timeout)
            return list(self.msgs.get(topic, []))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def env(tmp_path: Path, layout: Layout) -> Iterator[dict[str, Any]]:
    prefix = f"gltest{uuid.uuid4().hex[:8]}"
    db = f"sqlite:///{tmp_path}/m.db"
    store = Store.open(db)
    _, _, admin = store.add_user("ada", role="admin")
    settings = Settings(db=db, data_dir=str(tmp_path / "d"), log_requests=False,
                        mqtt_host=BROKER[0], mqtt_port=BROKER[1], mqtt_prefix=prefix)  # fmt: skip
    listener = Listener(f"{prefix}/#")
    ha = Listener("homeassistant/sensor/#")
    with TestClient(create_app(settings, store)) as client:
        h = {"Authorization": f"Bearer {admin}"}
        r = client.post("/api/v1/devices", json=layout.device_body(f"Meter {prefix}"), headers=h)
        doc = r.json()
        yield {"client": client, "admin": h, "dev": doc["device_id"], "prefix": prefix,
               "tok": {"Authorization": f"Bearer {doc['token']}"}, "listener": listener,
               "ha": ha, "slug": f"meter_{prefix}", "store": store}  # fmt: skip
    listener.close()
    ha.close()
    store.close()


def test_readings_are_published_with_home_assistant_discovery(
    env: dict[str, Any], layout: Layout
) -> None:
    c, dev, p, slug = env["client"], env["dev"], env["prefix"], env["slug"]
    t0 = time.time() - 3600
    for k, v in enumerate([100.0, 100.5]):
        h = upload_headers(env["tok"], f"k{k}", t0 + 600 * k)
        assert (
            c.post(
                f"/api/v1/devices/{dev}/images", content=layout.photo(v, k), headers=h
            ).status_code
            == 201
        )
    lis = env["listener"]
    assert lis.wait(f"{p}/{slug}/value", 2)[-2:] == ["100.0", "100.5"]
    assert lis.wait(f"{p}/{slug}/raw", 2)[-1] == "00100.5"
    assert lis.wait(f"{p}/{slug}/error")[-1] == "no error"
    assert float(lis.wait(f"{p}/{slug}/rate", 2)[-1]) == pytest.approx(3.0)
    js = json.loads(lis.wait(f"{p}/{slug}/json", 2)[-1])
    assert js["value"] == 100.5 and js["status"] == "ok"
    assert lis.wait(f"{p}/{slug}/connection")[-1] == "online"
    cfg = json.loads(env["ha"].wait(f"homeassistant/sensor/gridlens_{slug}/value/config")[-1])
    assert cfg["device_class"] == "energy"
    assert cfg["state_class"] == "total_increasing"
    assert cfg["unit_of_measurement"] == "kWh"
    assert cfg["state_topic"] == f"{p}/{slug}/value"
    # a rejected reading says why and publishes no value
    h = upload_headers(env["tok"], "k9", t0 + 1800)
    c.post(f"/api/v1/devices/{dev}/images", content=layout.photo(50.0, 9), headers=h)
    assert "below the last accepted" in lis.wait(f"{p}/{slug}/error", 3)[-1]
    assert lis.wait(f"{p}/{slug}/value")[-1] == "100.5"
    # clear the retained test topics
    for leaf in ("value", "raw", "error", "rate", "json", "timestamp", "connection"):
        lis.client.publish(f"{p}/{slug}/{leaf}", b"", retain=True)
    for obj in ("value", "rate", "error"):
        lis.client.publish(f"homeassistant/sensor/gridlens_{slug}/{obj}/config", b"", retain=True)


def test_commands_over_mqtt_and_acks(env: dict[str, Any]) -> None:
    c, dev, p, slug = env["client"], env["dev"], env["prefix"], env["slug"]
    deadline = time.monotonic() + 10
    while c.get("/healthz").json()["mqtt"] != "connected" and time.monotonic() < deadline:
        time.sleep(0.05)
    r = c.post(f"/api/v1/devices/{dev}/commands", json={"action": "flash", "state": "off"},
               headers=env["admin"])  # fmt: skip
    cmd = r.json()
    got = json.loads(env["listener"].wait(f"{p}/{slug}/command")[-1])
    assert got == {"id": cmd["id"], "action": "flash", "state": "off", "value": None}
    # the device acks over MQTT; the API shows it acked
    env["listener"].client.publish(
        f"{p}/{slug}/ack", json.dumps({"id": cmd["id"], "ok": True, "detail": "flash off"}), qos=1
    )
    url = f"/api/v1/devices/{dev}/commands"
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        status = c.get(url, headers=env["admin"]).json()["commands"][0]
        if status["status"] == "acked":
            break
        time.sleep(0.05)
    assert status is not None and status["status"] == "acked"
    assert status["ack_detail"] == "flash off"
