"""The server publishes readings and commands over the local Mosquitto, and takes acks only
when they prove themselves (nonce, device, boolean ``ok``, signature)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from gridlens.server.app import create_app
from gridlens.server.settings import Settings
from gridlens.store import Store
from gridlens.store.commands import ack_signature, command_signature
from gridlens.store.security import token_hash
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
        dev = doc["device_id"]
        assert wait(lambda: client.get("/healthz").json()["mqtt"] == "connected")
        yield {"client": client, "admin": h, "dev": dev, "prefix": prefix,
               "tok": {"Authorization": f"Bearer {doc['token']}"}, "listener": listener,
               "ha": ha, "slug": f"{dev}-meter_{prefix}", "store": store,
               "key": token_hash(doc["token"]), "layout": layout}  # fmt: skip
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
    node = f"{p}_{dev}"  # the prefix is in the discovery topic and the unique_id
    cfg = json.loads(env["ha"].wait(f"homeassistant/sensor/{node}/value/config")[-1])
    assert cfg["unique_id"] == f"{node}_value"
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
        lis.client.publish(f"homeassistant/sensor/{node}/{obj}/config", b"", retain=True)


def wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _command(env: dict[str, Any], body: dict[str, Any], dev: int | None = None) -> dict[str, Any]:
    dev = env["dev"] if dev is None else dev
    r = env["client"].post(f"/api/v1/devices/{dev}/commands", json=body, headers=env["admin"])
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _status(env: dict[str, Any], command_id: int, dev: int | None = None) -> dict[str, Any]:
    dev = env["dev"] if dev is None else dev
    url = f"/api/v1/devices/{dev}/commands"
    cmds = env["client"].get(url, headers=env["admin"]).json()["commands"]
    doc: dict[str, Any] = next(c for c in cmds if c["id"] == command_id)
    return doc


def _ack(key: str, dev: int, cmd: dict[str, Any], ok: bool = True, detail: str = "done",
         **changes: Any) -> bytes:  # fmt: skip
    """An ack as the firmware makes it, then ``changes`` applied (None removes a key)."""
    doc: dict[str, Any] = {"id": cmd["id"], "nonce": cmd["nonce"], "ok": ok, "detail": detail}
    doc["sig"] = ack_signature(key, dev, cmd["id"], cmd["nonce"], ok, detail)
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return json.dumps(doc).encode()


def _refusals(env: dict[str, Any]) -> list[dict[str, Any]]:
    log = env["client"].get("/api/v1/audit", params={"limit": 500}, headers=env["admin"]).json()
    return [e for e in log if e["action"] == "command.ack.refused"]


def test_commands_over_mqtt_are_signed_delivered_and_acked(env: dict[str, Any]) -> None:
    c, dev, p, slug = env["client"], env["dev"], env["prefix"], env["slug"]
    cmd = _command(env, {"action": "flash", "state": "off"})
    got = json.loads(env["listener"].wait(f"{p}/{slug}/command")[-1])
    assert set(got) == {"device_id", "id", "action", "state", "value", "expires_at", "nonce",
                        "sig"}  # fmt: skip
    fields = (got["device_id"], got["id"], got["action"], got["state"])
    assert fields == (dev, cmd["id"], "flash", "off")
    assert len(got["nonce"]) == 32 and "nonce" not in cmd  # the nonce goes to the device only
    assert got["sig"] == command_signature(env["key"], dev, got)
    # finding 11: published over MQTT is delivered, not pending
    assert cmd["status"] == "delivered" and cmd["delivered_via"] == "mqtt"
    assert _status(env, cmd["id"])["status"] == "delivered"
    # the device acks over MQTT; the API shows it acked, the audit log names the device
    ack = _ack(env["key"], dev, got, detail="flash off")
    env["listener"].client.publish(f"{p}/{slug}/ack", ack, qos=1)
    assert wait(lambda: _status(env, cmd["id"])["status"] == "acked")
    status = _status(env, cmd["id"])
    assert (status["ack_ok"], status["ack_detail"]) == (True, "flash off")
    assert status["delivered_via"] == "mqtt"
    log = c.get("/api/v1/audit", headers=env["admin"]).json()
    assert any(e["actor"] == f"device:{dev}" and e["action"] == "command.ack" for e in log)
    assert _refusals(env) == []


def test_forged_and_malformed_acks_are_refused_and_audited_as_refused(
    env: dict[str, Any],
) -> None:
    c, dev, p, slug, key = env["client"], env["dev"], env["prefix"], env["slug"], env["key"]
    cmd = _command(env, {"action": "relay", "state": "off"})
    got = json.loads(env["listener"].wait(f"{p}/{slug}/command")[-1])
    pub = env["listener"].client.publish
    forged = [
        (b"not json", "not a JSON object"),
        (json.dumps({"id": cmd["id"], "ok": True}).encode(), "no nonce"),  # the old firmware's
        (_ack(key, dev, got, ok=None), "no boolean 'ok'"),  # used to be stored as ok
        (_ack(key, dev, got, ok="yes"), "no boolean 'ok'"),
        (_ack(key, dev, got, nonce="0" * 32), "wrong nonce"),
        (_ack(key, dev, got, sig=None), "no signature"),
        (_ack("0" * 64, dev, got), "wrong signature"),  # someone who saw the nonce
        (_ack(key, dev, got, ok=False, sig=json.loads(_ack(key, dev, got))["sig"]),
         "wrong signature"),  # a genuine ack turned into a refusal
        (_ack(key, dev, got, id=cmd["id"] + 1000), "not a command of this device"),
    ]  # fmt: skip
    for payload, _ in forged:
        pub(f"{p}/{slug}/ack", payload, qos=1)
    pub(f"{p}/{dev}-someone_else/ack", _ack(key, dev, got), qos=1)  # not this device's topic
    expected = [r for _, r in forged] + ["the topic is no device's"]
    assert wait(lambda: len(_refusals(env)) >= len(expected)), _refusals(env)
    refusals = _refusals(env)[::-1]  # the audit log is newest first
    assert [e["detail"]["reason"] for e in refusals] == expected
    assert {e["actor"] for e in refusals} == {
        f"mqtt:{p}/{slug}/ack",
        f"mqtt:{p}/{dev}-someone_else/ack",
    }  # never "device:N"
    status = _status(env, cmd["id"])
    assert status["status"] == "delivered" and status["ack_ok"] is None
    log = c.get("/api/v1/audit", headers=env["admin"]).json()
    assert not any(e["action"] == "command.ack" for e in log)
    # the genuine ack still counts afterwards
    pub(f"{p}/{slug}/ack", _ack(key, dev, got, ok=False, detail="relay stuck"), qos=1)
    assert wait(lambda: _status(env, cmd["id"])["status"] == "acked")
    assert _status(env, cmd["id"])["ack_ok"] is False


def test_names_that_slug_alike_get_their_own_topics(env: dict[str, Any]) -> None:
    """Finding 5: "Meter A" and "meter_a" used to share topics and the HA unique_id."""
    c, p, layout = env["client"], env["prefix"], env["layout"]
    made = []
    for name in ("Meter A", "meter_a"):
        r = c.post("/api/v1/devices", json=layout.device_body(name), headers=env["admin"])
        assert r.status_code == 201, r.text
        made.append((r.json()["device_id"], token_hash(r.json()["token"])))
    (a, key_a), (b, key_b) = made
    assert a != b
    cmd = _command(env, {"action": "relay", "state": "on"}, dev=a)
    lis = env["listener"]
    got = json.loads(lis.wait(f"{p}/{a}-meter_a/command")[-1])
    assert got["id"] == cmd["id"]
    assert f"{p}/{b}-meter_a/command" not in lis.msgs
    # b acks a's command on its own topic (even with a's nonce): refused, a's stays open
    lis.client.publish(f"{p}/{b}-meter_a/ack", _ack(key_b, b, got), qos=1)
    assert wait(lambda: len(_refusals(env)) == 1)
    assert _refusals(env)[0]["detail"]["reason"] == "not a command of this device"
    assert _status(env, cmd["id"], dev=a)["status"] == "delivered"
    lis.client.publish(f"{p}/{a}-meter_a/ack", _ack(key_a, a, got), qos=1)
    assert wait(lambda: _status(env, cmd["id"], dev=a)["status"] == "acked")


def test_a_command_sent_over_mqtt_also_reaches_a_device_that_uploads(
    env: dict[str, Any],
) -> None:
    # a device that was not listening on MQTT (deep sleep, old firmware, the simulator) gets
    # the command in its next upload's answer
    c, dev, layout = env["client"], env["dev"], env["layout"]
    cmd = _command(env, {"action": "flash", "state": "on"})
    assert cmd["status"] == "delivered" and cmd["delivered_via"] == "mqtt"
    h = upload_headers(env["tok"], "after-mqtt", time.time() - 60)
    r = c.post(f"/api/v1/devices/{dev}/images", content=layout.photo(100.0, 1), headers=h)
    assert r.status_code == 201, r.text
    assert [x["id"] for x in r.json()["commands"]] == [cmd["id"]]
