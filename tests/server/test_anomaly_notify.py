"""New anomaly events are sent once over the real Mosquitto (a Home Assistant binary sensor per
meter, by discovery) and to a real local webhook; rescoring, acknowledged and muted events
send nothing again."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from gridlens.server.app import create_app
from gridlens.server.settings import Settings
from gridlens.store import Store
from tests.server.test_anomaly_api import seed_fleet
from tests.server.test_server_mqtt import BROKER, Listener, _broker_up

pytestmark = pytest.mark.skipif(
    not _broker_up(), reason=f"no MQTT broker (Mosquitto) at {BROKER[0]}:{BROKER[1]}"
)


class Hook:
    """A local HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self, status: int = 204) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                hook.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def _clear_retained(topics: list[str]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    c.connect(*BROKER)
    c.loop_start()
    for t in topics:
        c.publish(t, "", qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    prefix = f"gltest{uuid.uuid4().hex[:8]}"
    db = f"sqlite:///{tmp_path}/n.db"
    store = Store.open(db)
    _, _, oper = store.add_user("otto", role="operator")
    ids, plan = seed_fleet(store, time.time())
    hook = Hook()
    settings = Settings(
        db=db, data_dir=str(tmp_path / "d"), log_requests=False, mqtt_host=BROKER[0],
        mqtt_port=BROKER[1], mqtt_prefix=prefix, anomaly_every_s=0, anomaly_webhook_url=hook.url,
    )  # fmt: skip
    listener = Listener(f"{prefix}/#")
    disco = Listener("homeassistant/binary_sensor/+/anomaly/config")
    app = create_app(settings, store)
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while not app.state.mqtt.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        yield {
            "client": client, "store": store, "ids": ids, "plan": plan, "hook": hook,
            "mqtt": listener, "disco": disco, "prefix": prefix, "app": app,
            "op": {"Authorization": f"Bearer {oper}"},
        }  # fmt: skip
        app.state.mqtt.wait_idle(5)
    listener.close()
    disco.close()
    hook.close()
    store.close()
    topics = [f"homeassistant/binary_sensor/{prefix}_{i}/anomaly/config" for i in ids.values()]
    topics += [
        f"{prefix}/{i}-{n}/{leaf}" for n, i in ids.items() for leaf in ("anomaly", "anomaly_event")
    ]
    _clear_retained(topics)


def test_new_events_notify_once_over_mqtt_and_webhook(env: dict[str, Any]) -> None:
    c, ids, prefix = env["client"], env["ids"], env["prefix"]
    r = c.post("/api/v1/anomaly-ranking/rescore", headers=env["op"])
    assert r.status_code == 200, r.text
    assert r.json()["notified"] >= 1
    env["app"].state.mqtt.wait_idle(5)
    # the stuck meter's event (yesterday) is sent; the injected ones of two and more days
    # ago were history when first found (marked "old", not sent)
    bodies = env["hook"].bodies
    assert bodies and all(b["type"] == "gridlens.anomaly_event" for b in bodies)
    stuck = [b["event"] for b in bodies if b["event"]["kind"] == "stuck"]
    assert len(stuck) == 1 and stuck[0]["device_id"] == ids["meter-001"]
    assert stuck[0]["device_name"] == "meter-001" and stuck[0]["status"] == "open"
    seg = f"{ids['meter-001']}-meter-001"
    state = env["mqtt"].wait(f"{prefix}/{seg}/anomaly")
    assert state[-1] == "ON"
    ev = json.loads(env["mqtt"].wait(f"{prefix}/{seg}/anomaly_event")[-1])
    assert ev["kind"] == "stuck"
    topic = f"homeassistant/binary_sensor/{prefix}_{ids['meter-001']}/anomaly/config"
    config = json.loads(env["disco"].wait(topic)[-1])
    assert config["device_class"] == "problem"
    assert config["state_topic"] == f"{prefix}/{seg}/anomaly"
    assert config["json_attributes_topic"] == f"{prefix}/{seg}/anomaly_event"
    assert config["unique_id"] == f"{prefix}_{ids['meter-001']}_anomaly"
    # rescoring sends nothing again
    sent = len(bodies)
    again = c.post("/api/v1/anomaly-ranking/rescore", headers=env["op"]).json()
    assert again["notified"] == 0 and len(env["hook"].bodies) == sent
    # everything of meter-001 acknowledged or muted: its sensor goes OFF
    evs = c.get(f"/api/v1/anomaly-events?device_id={ids['meter-001']}&status=open",
                headers=env["op"]).json()["events"]  # fmt: skip
    first, *rest = evs
    r = c.post(
        f"/api/v1/anomaly-events/{first['id']}/mute", json={"scope": "meter"}, headers=env["op"]
    )
    assert r.status_code == 200
    for e in rest:
        c.post(f"/api/v1/anomaly-events/{e['id']}/acknowledge", headers=env["op"])
    env["app"].state.mqtt.wait_idle(5)
    deadline = time.monotonic() + 10
    while env["mqtt"].wait(f"{prefix}/{seg}/anomaly")[-1] != "OFF" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert env["mqtt"].wait(f"{prefix}/{seg}/anomaly")[-1] == "OFF"
    # a new event of the muted meter is stored muted and sent to nobody
    store: Store = env["store"]
    now = time.time()
    (new,) = store.record_anomaly_scores(
        ids["meter-001"], model="profile", day_score=50.0, week_score=50.0,
        events=[{"start": now - 3 * 3600, "end": now - 3600, "score": 50.0, "kind": "high"}],
    )  # fmt: skip
    assert store.anomaly_event(new)["status"] == "muted"
    assert env["app"].state.anomaly.notifier.notify_pending() == 0
    assert len(env["hook"].bodies) == sent
    assert store.anomaly_event(new)["notified"] == "muted"


def test_a_failing_webhook_is_logged_not_fatal(tmp_path: Path) -> None:
    from gridlens.server.anomaly_notify import AnomalyNotifier

    db = f"sqlite:///{tmp_path}/w.db"
    store = Store.open(db)
    hook = Hook(status=500)
    try:
        dev, _ = store.add_device("m1", {})
        now = time.time()
        store.record_anomaly_scores(
            dev.id, model="profile", day_score=9.0, week_score=9.0,
            events=[{"start": now - 7200, "end": now - 3600, "score": 9.0, "kind": "high"}],
        )  # fmt: skip
        n = AnomalyNotifier(store, None, hook.url, timeout_s=2.0)
        assert n.notify_pending() == 0 and n.webhook_failures == 1 and len(hook.bodies) == 1
        assert n.notify_pending() == 0 and len(hook.bodies) == 1  # at most once
        n2 = AnomalyNotifier(store, None, "http://127.0.0.1:9/nothing-listens", timeout_s=1.0)
        store.record_anomaly_scores(
            dev.id, model="profile", day_score=9.0, week_score=9.0,
            events=[{"start": now - 30 * 3600, "end": now - 20 * 3600, "score": 9.0,
                     "kind": "low"}],
        )  # fmt: skip
        assert n2.notify_pending() == 0 and n2.webhook_failures == 1
    finally:
        hook.close()
        store.close()
