"""Tests of the MQTT bridge against real Mosquitto brokers (no mocks).

A private broker runs on a free port for the module; the outage test runs its own persistent
broker so it can kill and restart it. Every test uses its own topic prefixes, so retained
messages of one test never leak into another. A third broker is secured as docs/broker.md
says (passwords, the ACL file printed there, TLS with a CA made here by ``openssl``): the
server connects only with its credentials, and each client reaches only its own topics.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridlens.server.mqtt import DeviceInfo, MqttBridge, slugify

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
    None,
)
pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="needs the mosquitto broker binary (apt install mosquitto)"
)

DEVICE = DeviceInfo(7, "Küche Zähler")
SLUG = "k_che_z_hler"
SEG = f"7-{SLUG}"  # the device's topic segment: id, then slug


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Broker:
    """A private ``mosquitto`` process on a fixed port, restartable on that same port."""

    def __init__(
        self, directory: Path, *, persistent: bool = False, secure: list[str] | None = None
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} 127.0.0.1"]
        lines += ["allow_anonymous true"] if secure is None else secure
        if persistent:
            lines += ["persistence true", f"persistence_location {directory}/"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:  # keep root so the persistence file stays writable
            lines.append("user root")
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        assert MOSQUITTO is not None
        log = (self.directory / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        if not wait_until(listening, 5.0):
            self.stop()
            text = (self.directory / "mosquitto.log").read_text(errors="replace")
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{text}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file and exits
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class Client:
    """A paho client standing in for Home Assistant (collecting) or for a device."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        *,
        client_id: str | None = None,
        clean: bool = True,
        on_message: Callable[[Client, mqtt.MQTTMessage], None] | None = None,
        user: tuple[str, str] | None = None,
        cafile: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.topics = topics
        self.hook = on_message
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            clean_session=clean,
        )
        self.mqtt.reconnect_delay_set(1, 1)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_subscribe = lambda *args: self.subscribed.set()
        self.mqtt.on_message = self._on_message
        if user is not None:
            self.mqtt.username_pw_set(*user)
        if cafile is not None:
            self.mqtt.tls_set_context(ssl.create_default_context(cafile=cafile))
        self.mqtt.connect(host, port)
        self.mqtt.loop_start()
        assert self.subscribed.wait(5), "test client could not subscribe"

    def _on_connect(self, client: mqtt.Client, u: Any, flags: Any, rc: Any, p: Any) -> None:
        if not flags.session_present:  # a persistent session keeps its subscriptions
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()
        if self.hook is not None:
            self.hook(self, msg)

    def wait_for(self, topic: str, payload: str | None = None, timeout: float = 5.0) -> bytes:
        """Wait for a message on ``topic`` (with ``payload`` if given); return its payload."""

        def find() -> bytes | None:
            for t, p, _ in self.messages:
                if t == topic and (payload is None or p == payload.encode()):
                    return p
            return None

        with self.cond:
            assert self.cond.wait_for(lambda: find() is not None, timeout), (
                f"no message on {topic} ({payload!r}); got {[m[0] for m in self.messages]}"
            )
            found = find()
        assert found is not None
        return found

    def last(self, topic: str) -> tuple[bytes, bool]:
        with self.cond:
            return next((p, r) for t, p, r in reversed(self.messages) if t == topic)

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture
def make_bridge(tag: str) -> Iterator[Callable[..., MqttBridge]]:
    made: list[MqttBridge] = []

    def make(port: int, *, connect: bool = True, **kwargs: Any) -> MqttBridge:
        kwargs.setdefault("prefix", f"gl{tag}")
        kwargs.setdefault("discovery_prefix", f"ha{tag}")
        kwargs.setdefault("reconnect_delay", (1, 1))
        bridge = MqttBridge("127.0.0.1", port, **kwargs)
        made.append(bridge)
        bridge.start()
        if connect:
            assert wait_until(lambda: bridge.connected), "bridge did not connect"
        return bridge

    yield make
    for bridge in made:
        bridge.stop()


def reading(value: float | None = 1234.5, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "status": "ok",
        "value": value,
        "raw": "0123450",
        "reason": None,
        "captured_at": "2026-11-21T10:00:00+00:00",
        "rate_per_h": 0.42,
        "confidence": 0.97,
    }
    r.update(extra)
    return r


def test_slug_and_unit_mapping() -> None:
    assert slugify("Küche Zähler") == SLUG
    assert slugify("Main-Meter_2") == "main-meter_2"
    assert slugify("a/b+#c") == "a_b__c"
    assert DeviceInfo(3, "!!!").slug == "meter"
    assert DeviceInfo(3, "!!!").segment == "3-meter"
    assert DEVICE.segment == SEG
    bridge = MqttBridge(prefix="gl", discovery_prefix="ha")
    gas = bridge.discovery_configs(DeviceInfo(1, "Gas", unit="m³"))
    value, rate = (gas["ha/sensor/gl_1/value/config"], gas["ha/sensor/gl_1/rate/config"])
    assert "device_class" not in value and value["unit_of_measurement"] == "m³"
    assert "device_class" not in rate and rate["unit_of_measurement"] == "m³/h"
    with pytest.raises(ValueError, match="wildcard"):
        MqttBridge(prefix="a/+/b")


def test_discovery_retained_with_exact_ha_keys(
    broker: Broker, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    p, d = f"gl{tag}", f"ha{tag}"
    bridge = make_bridge(broker.port)
    bridge.publish_discovery(DEVICE)
    bridge.publish_availability(DEVICE, True)
    assert bridge.wait_idle(5)

    late = Client(broker.port, [f"{d}/#", f"{p}/#"])  # subscribes after the fact
    clients.append(late)
    node = f"{p}_7"  # prefix and device id
    availability = [
        {"topic": f"{p}/{SEG}/connection", "payload_available": "online",
         "payload_not_available": "offline"},
        {"topic": f"{p}/status", "payload_available": "online",
         "payload_not_available": "offline"},
    ]  # fmt: skip
    device = {
        "identifiers": [node],
        "name": "Küche Zähler",
        "manufacturer": "gridlens",
        "model": "meter retrofit",
    }
    common = {
        "availability": availability,
        "availability_mode": "all",
        "device": device,
        "origin": {"name": "gridlens"},
    }
    expected = {
        "value": {
            "name": "Value",
            "unique_id": f"{node}_value",
            "object_id": f"{node}_{SLUG}_value",
            "default_entity_id": f"sensor.{node}_{SLUG}_value",
            "state_topic": f"{p}/{SEG}/value",
            "device_class": "energy",
            "state_class": "total_increasing",
            "unit_of_measurement": "kWh",
            **common,
        },
        "rate": {
            "name": "Rate",
            "unique_id": f"{node}_rate",
            "object_id": f"{node}_{SLUG}_rate",
            "default_entity_id": f"sensor.{node}_{SLUG}_rate",
            "state_topic": f"{p}/{SEG}/rate",
            "device_class": "power",
            "state_class": "measurement",
            "unit_of_measurement": "kW",
            **common,
        },
        "error": {
            "name": "Error",
            "unique_id": f"{node}_error",
            "object_id": f"{node}_{SLUG}_error",
            "default_entity_id": f"sensor.{node}_{SLUG}_error",
            "state_topic": f"{p}/{SEG}/error",
            "entity_category": "diagnostic",
            **common,
        },
    }
    for obj, config in expected.items():
        topic = f"{d}/sensor/{node}/{obj}/config"
        late.wait_for(topic)
        payload, retained = late.last(topic)
        assert retained
        assert json.loads(payload) == config
    for topic in (f"{p}/status", f"{p}/{SEG}/connection"):
        late.wait_for(topic, "online")
        assert late.last(topic) == (b"online", True)


def test_reading_publishes_all_topics(
    broker: Broker, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    p = f"gl{tag}"
    sub = Client(broker.port, [f"{p}/{SEG}/#"])
    clients.append(sub)
    bridge = make_bridge(broker.port)
    r = reading()
    bridge.publish_reading(DEVICE, r)
    assert bridge.wait_idle(5)
    expected = {
        "value": "1234.5",
        "raw": "0123450",
        "error": "no error",
        "rate": "0.42",
        "timestamp": "2026-11-21T10:00:00+00:00",
    }
    for leaf, payload in expected.items():
        assert sub.wait_for(f"{p}/{SEG}/{leaf}") == payload.encode(), leaf
    assert json.loads(sub.wait_for(f"{p}/{SEG}/json")) == r

    bridge.publish_reading(DEVICE, reading(1235.0, rate_per_h=None))
    sub.wait_for(f"{p}/{SEG}/value", "1235.0")
    sub.wait_for(f"{p}/{SEG}/rate", "")  # rate unknown
    late = Client(broker.port, [f"{p}/{SEG}/value"])
    clients.append(late)
    assert late.wait_for(f"{p}/{SEG}/value") == b"1235.0"
    assert late.last(f"{p}/{SEG}/value") == (b"1235.0", True)
    assert bridge.wait_idle(5)
    stats = bridge.stats
    assert stats["published"] == 13 and stats["queued"] == 0 and stats["connected"] == 1


def test_rejected_reading_publishes_no_value(
    broker: Broker, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    p = f"gl{tag}"
    bridge = make_bridge(broker.port)
    bridge.publish_reading(DEVICE, reading(100.0))
    assert bridge.wait_idle(5)
    sub = Client(broker.port, [f"{p}/{SEG}/#"])
    clients.append(sub)
    sub.wait_for(f"{p}/{SEG}/json")  # the retained state of the accepted reading
    rejected = reading(
        None, status="rejected", raw="0099999", reason="value decreased", rate_per_h=None
    )
    bridge.publish_reading(DEVICE, rejected)
    assert bridge.wait_idle(5)
    sub.wait_for(f"{p}/{SEG}/error", "value decreased")
    time.sleep(0.2)
    with sub.cond:
        live = {t.rsplit("/", 1)[1]: pl for t, pl, retained in sub.messages if not retained}
    assert live == {
        "raw": b"0099999",
        "error": b"value decreased",
        "json": json.dumps(rejected).encode(),
    }
    # even a "rejected" reading that carries a value never reaches the value topic
    bridge.publish_reading(DEVICE, reading(50.0, status="rejected", reason="low confidence"))
    assert bridge.wait_idle(5)
    late = Client(broker.port, [f"{p}/{SEG}/value", f"{p}/{SEG}/error"])
    clients.append(late)
    assert late.wait_for(f"{p}/{SEG}/value") == b"100.0"
    assert late.wait_for(f"{p}/{SEG}/error") == b"low confidence"


def test_command_reaches_device_and_ack_reaches_server(
    broker: Broker, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    p = f"gl{tag}"
    acks: queue.Queue[tuple[str, Any]] = queue.Queue()

    def device_answers(client: Client, msg: mqtt.MQTTMessage) -> None:
        cmd = json.loads(msg.payload)
        ack = {"id": cmd["id"], "ok": True, "detail": f"relay {cmd['state']}"}
        client.mqtt.publish(f"{p}/{SEG}/ack", json.dumps(ack), qos=1)

    device = Client(broker.port, [f"{p}/{SEG}/command"], on_message=device_answers)
    clients.append(device)
    bridge = make_bridge(broker.port, on_ack=lambda slug, payload: acks.put((slug, payload)))
    command = {"id": 17, "action": "relay", "state": "off", "value": None}
    assert bridge.publish_command(DEVICE, command) is True
    payload, retained = (
        json.loads(device.wait_for(f"{p}/{SEG}/command")),
        device.last(f"{p}/{SEG}/command")[1],
    )
    assert payload == command and not retained
    assert acks.get(timeout=5) == (SEG, {"id": 17, "ok": True, "detail": "relay off"})


def test_every_live_ack_goes_to_the_server_which_judges_it(
    broker: Broker, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    """The bridge trusts no payload: malformed ones reach ``on_ack`` too (as ``None`` when not
    JSON), so the server refuses and audits them; retained acks are stale and skipped."""
    p = f"gl{tag}"
    seen: list[tuple[str, Any]] = []

    def on_ack(segment: str, payload: Any) -> bool:
        seen.append((segment, payload))
        if payload == {"id": 98, "ok": False}:
            raise RuntimeError("server bug while handling an ack")
        return payload == {"id": 99, "ok": True}

    device = Client(broker.port, [f"{p}/{SEG}/command"])
    clients.append(device)
    # a stale retained ack is on the broker before the bridge subscribes: not an answer
    device.mqtt.publish(f"{p}/{SEG}/ack", json.dumps({"id": 96, "ok": True}), 1, True)
    bridge = make_bridge(broker.port, on_ack=on_ack)
    sent = [b"not json", b"\xff\xfe", b"[1, 2]", b'{"ok": true}', b'{"id": 5, "ok": "yes"}',
            json.dumps({"id": 98, "ok": False}).encode(),  # on_ack raises for this one
            json.dumps({"id": 99, "ok": True}).encode()]  # fmt: skip
    for bad in sent:
        device.mqtt.publish(f"{p}/{SEG}/ack", bad, qos=1)
    device.mqtt.publish(f"{p}/other/ack", json.dumps({"id": 100}), qos=1)
    assert wait_until(lambda: len(seen) == 8)
    assert seen == [
        (SEG, None),
        (SEG, None),
        (SEG, [1, 2]),
        (SEG, {"ok": True}),
        (SEG, {"id": 5, "ok": "yes"}),
        (SEG, {"id": 98, "ok": False}),
        (SEG, {"id": 99, "ok": True}),
        ("other", {"id": 100}),
    ]
    assert bridge.connected
    assert (bridge.stats["acks"], bridge.stats["acks_refused"]) == (1, 7)
    bridge.publish_reading(DEVICE, reading())
    assert bridge.wait_idle(5)
    device.mqtt.publish(f"{p}/{SEG}/ack", b"", qos=1, retain=True)  # clear the retained ack


def test_names_that_slug_alike_and_servers_on_one_broker_never_share_topics(
    broker: Broker, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    """Finding 5: "Meter A" and "meter_a" shared topics and the HA unique_id, and discovery
    ignored the prefix, so two servers on one broker overwrote each other's entities."""
    a, b = DeviceInfo(1, "Meter A"), DeviceInfo(2, "meter_a")
    assert a.slug == b.slug == "meter_a" and a.segment != b.segment
    d = f"ha{tag}"
    one = make_bridge(broker.port, prefix=f"one{tag}", discovery_prefix=d)
    two = make_bridge(broker.port, prefix=f"two{tag}", discovery_prefix=d)
    configs = [bridge.discovery_configs(dev) for bridge in (one, two) for dev in (a, b)]
    topics = [t for c in configs for t in c]
    unique_ids = [v["unique_id"] for c in configs for v in c.values()]
    entity_ids = [v["default_entity_id"] for c in configs for v in c.values()]
    states = [v["state_topic"] for c in configs for v in c.values()]
    assert len(set(topics)) == len(set(unique_ids)) == len(set(entity_ids)) == 12
    assert len(set(states)) == 12
    assert one.node_id(a) == f"one{tag}_1" and two.node_id(a) == f"two{tag}_1"
    # a prefix with a slash or capitals still gives a valid, distinct node id
    odd = MqttBridge(prefix="Site/North").node_id(a)
    assert re.fullmatch(r"[a-z0-9_-]+", odd) and odd != MqttBridge(prefix="site_north").node_id(a)
    ha = Client(broker.port, [f"{d}/#", f"one{tag}/#", f"two{tag}/#"])
    clients.append(ha)
    for bridge in (one, two):
        for dev, value in ((a, 1.0), (b, 2.0)):
            bridge.publish_discovery(dev)
            bridge.publish_reading(dev, reading(value))
        assert bridge.wait_idle(5)
    for prefix in (f"one{tag}", f"two{tag}"):
        assert ha.wait_for(f"{prefix}/1-meter_a/value") == b"1.0"
        assert ha.wait_for(f"{prefix}/2-meter_a/value") == b"2.0"
        for n in (1, 2):
            cfg = json.loads(ha.wait_for(f"{d}/sensor/{prefix}_{n}/value/config"))
            assert cfg["unique_id"] == f"{prefix}_{n}_value"
            assert cfg["state_topic"] == f"{prefix}/{n}-meter_a/value"
    for bridge in (one, two):  # clear the retained discovery
        for dev in (a, b):
            bridge.remove_discovery(dev)
        assert bridge.wait_idle(5)


def test_outage_queues_and_resumes(
    tmp_path: Path, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    p, d = f"gl{tag}", f"ha{tag}"
    broker = Broker(tmp_path, persistent=True)
    broker.start()
    try:
        # "Home Assistant" with a persistent session: the broker keeps what it misses
        ha = Client(broker.port, [f"{p}/#", f"{d}/#"], client_id=f"ha-{tag}", clean=False)
        clients.append(ha)
        bridge = make_bridge(broker.port)
        bridge.publish_discovery(DEVICE)
        bridge.publish_availability(DEVICE, True)
        assert bridge.wait_idle(5)

        broker.stop()
        assert wait_until(lambda: not bridge.connected)
        values = [1000.0 + 0.5 * i for i in range(50)]
        start = time.monotonic()
        for v in values:
            bridge.publish_reading(DEVICE, reading(v))
        assert time.monotonic() - start < 1.0  # never blocks on the dead broker
        assert bridge.stats["queued"] == 50 * 6
        assert not bridge.wait_idle(0.1)
        with ha.cond:
            mark = len(ha.messages)

        broker.start()  # same port
        assert bridge.wait_idle(10), bridge.stats
        ha.wait_for(f"{p}/{SEG}/value", "1024.5", timeout=10)
        with ha.cond:
            after = ha.messages[mark:]
        got: list[float] = []
        for topic, payload, _ in after:
            if topic == f"{p}/{SEG}/value" and (not got or got[-1] != float(payload)):
                got.append(float(payload))
        assert got == values  # every queued reading, in order
        topics = {t for t, _, _ in after}
        assert {f"{d}/sensor/{p}_7/{o}/config" for o in ("value", "rate", "error")} <= (
            topics
        )  # discovery re-published on reconnect
        assert (f"{p}/status", b"online", False) in after
        assert (f"{p}/{SEG}/connection", b"online", False) in after
        stats = bridge.stats
        assert stats["reconnects"] >= 1 and stats["dropped"] == 0 and stats["queued"] == 0

        late = Client(broker.port, [f"{p}/{SEG}/value"])
        clients.append(late)
        assert late.wait_for(f"{p}/{SEG}/value") == b"1024.5"
        bridge.stop()
    finally:
        for c in clients:
            c.close()
        clients.clear()
        broker.stop()


def test_start_without_broker_never_raises(make_bridge: Callable[..., MqttBridge]) -> None:
    start = time.monotonic()
    bridge = make_bridge(free_port(), connect=False, max_queued=10)
    assert time.monotonic() - start < 0.5
    time.sleep(0.2)
    assert not bridge.connected
    bridge.publish_discovery(DEVICE)  # remembered, sent on connect
    for i in range(5):  # 6 messages each, only 10 fit
        bridge.publish_reading(DEVICE, reading(1.0 + i))
    assert bridge.stats == {
        "published": 0,
        "queued": 10,
        "dropped": 20,
        "reconnects": 0,
        "connected": 0,
        "acks": 0,
        "acks_refused": 0,
    }
    assert bridge.publish_command(DEVICE, {"id": 1, "action": "relay", "state": "on"}) is False
    assert not bridge.wait_idle(0.1)
    start = time.monotonic()
    bridge.stop()
    assert time.monotonic() - start < 2.5


# ---------------------------------------------------------------- a secured broker

DOCS = Path(__file__).resolve().parents[2] / "docs" / "broker.md"
OPENSSL = shutil.which("openssl")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
USERS = {
    "gridlens-server": "s3rver-pw",
    "homeassistant": "ha-pw",
    SEG: "cam7-pw",  # a camera's user name is its topic segment
    "8-cellar": "cam8-pw",
}


def documented_acl() -> str:
    """The ACL file exactly as docs/broker.md prints it."""
    text = DOCS.read_text()
    start = text.index("```text\n# gridlens.acl")
    return text[start + len("```text\n") : text.index("```", start + 8)]


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a broker certificate for ``localhost``, as docs/broker.md does it."""
    assert OPENSSL is not None
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    d = str(directory)

    def run(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=d, check=True, capture_output=True, timeout=30)

    run("req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.crt",
        "-subj", "/CN=gridlens-test-ca")  # fmt: skip
    run("req", *ec, "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost")
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    run("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "broker.crt")  # fmt: skip
    return directory / "ca.crt", directory / "broker.crt", directory / "broker.key"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if OPENSSL is None or MOSQUITTO_PASSWD is None:
        pytest.skip("needs openssl and mosquitto_passwd (apt install openssl mosquitto)")
    d = tmp_path_factory.mktemp("secure-mosquitto")
    ca, cert, key = make_ca_and_cert(d)
    passwd = d / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run([MOSQUITTO_PASSWD, *create, "-b", str(passwd), user, password],
                       check=True, capture_output=True, timeout=30)  # fmt: skip
    acl = d / "gridlens.acl"
    acl.write_text(documented_acl())
    broker = Broker(d, secure=["allow_anonymous false", f"password_file {passwd}",
                               f"acl_file {acl}", f"cafile {ca}", f"certfile {cert}",
                               f"keyfile {key}"])  # fmt: skip
    broker.start()
    yield {"broker": broker, "port": broker.port, "ca": str(ca), "dir": d}
    broker.stop()


def test_server_connects_with_its_credentials_over_tls_only(secure: dict[str, Any]) -> None:
    port, ca = secure["port"], secure["ca"]
    bridges = {
        "right": MqttBridge("localhost", port, username="gridlens-server",
                            password=USERS["gridlens-server"], cafile=ca),
        "wrong password": MqttBridge("localhost", port, username="gridlens-server",
                                     password="guess", cafile=ca),
        "no credentials": MqttBridge("localhost", port, cafile=ca),
        "unknown CA": MqttBridge("localhost", port, username="gridlens-server",
                                 password=USERS["gridlens-server"], tls=True),
        "no TLS": MqttBridge("localhost", port, username="gridlens-server",
                             password=USERS["gridlens-server"]),
    }  # fmt: skip
    for b in bridges.values():
        b.start()
    try:
        assert wait_until(lambda: bridges["right"].connected, 10)
        assert bridges["right"].tls
        time.sleep(1.0)  # the others had their chance
        assert {k for k, b in bridges.items() if b.connected} == {"right"}
    finally:
        for b in bridges.values():
            b.stop(timeout=0.5)
    with pytest.raises(ValueError, match="needs a user name"):
        MqttBridge("localhost", port, password="x")


def test_documented_acls_keep_each_client_to_its_own_topics(
    secure: dict[str, Any], clients: list[Client]
) -> None:
    port, ca = secure["port"], secure["ca"]
    acks: queue.Queue[tuple[str, Any]] = queue.Queue()
    bridge = MqttBridge("localhost", port, username="gridlens-server",
                        password=USERS["gridlens-server"], cafile=ca,
                        on_ack=lambda seg, payload: acks.put((seg, payload)) is None)  # fmt: skip
    bridge.start()
    try:
        assert wait_until(lambda: bridge.connected, 10)

        def client(user: str) -> Client:
            c = Client(port, ["gridlens/#", "homeassistant/#"], user=(user, USERS[user]),
                       cafile=ca, host="localhost")  # fmt: skip
            clients.append(c)
            return c

        cam7, cam8, ha = client(SEG), client("8-cellar"), client("homeassistant")
        other = DeviceInfo(8, "Cellar")
        bridge.publish_discovery(DEVICE)
        bridge.publish_reading(DEVICE, reading())
        assert bridge.publish_command(DEVICE, {"id": 1, "action": "relay", "state": "off"})
        assert bridge.publish_command(other, {"id": 2, "action": "flash", "state": "on"})
        assert bridge.wait_idle(5)
        cam7.wait_for(f"gridlens/{SEG}/command")
        cam8.wait_for("gridlens/8-cellar/command")
        ha.wait_for(f"gridlens/{SEG}/value", "1234.5")
        ha.wait_for("homeassistant/sensor/gridlens_7/value/config")
        # each camera writes its own ack topic only; others' writes are dropped by the broker
        cam8.mqtt.publish(f"gridlens/{SEG}/ack", json.dumps({"id": 1, "from": 8}), qos=1)
        cam8.mqtt.publish(f"gridlens/{SEG}/value", "0.0", qos=1, retain=True)
        ha.mqtt.publish(f"gridlens/{SEG}/ack", json.dumps({"id": 1, "from": "ha"}), qos=1)
        ha.mqtt.publish(f"gridlens/{SEG}/command", json.dumps({"id": 9, "from": "ha"}), qos=1)
        cam7.mqtt.publish(f"gridlens/{SEG}/ack", json.dumps({"id": 1, "from": 7}), qos=1)
        assert acks.get(timeout=5) == (SEG, {"id": 1, "from": 7})
        time.sleep(0.5)
        assert acks.empty()
        seen = {
            name: {t for t, _, _ in c.messages}
            for name, c in (("cam7", cam7), ("cam8", cam8), ("ha", ha))
        }
        assert seen["cam7"] == {f"gridlens/{SEG}/command"}  # not 8's, not the readings
        assert seen["cam8"] == {"gridlens/8-cellar/command"}
        assert not any(t.endswith(("/command", "/ack")) for t in seen["ha"])  # no nonces
        assert f"gridlens/{SEG}/value" in seen["ha"]
        assert ha.last(f"gridlens/{SEG}/value")[0] == b"1234.5"  # cam8 could not overwrite it
        for c in clients:
            assert c.messages.count((f"gridlens/{SEG}/command", b'{"id": 9, "from": "ha"}',
                                     False)) == 0  # fmt: skip
    finally:
        bridge.stop(timeout=0.5)


def test_serve_takes_broker_credentials_from_a_file(secure: dict[str, Any], tmp_path: Path) -> None:
    """``gridlens serve --mqtt-user --mqtt-password-file --mqtt-cafile`` reaches the secured
    broker; the password is neither in its command line nor in its environment."""
    from gridlens.server.harness import free_port as free_http_port

    password = USERS["gridlens-server"]
    pw_file = tmp_path / "mqtt.pass"
    pw_file.write_text(password + "\n")
    port = free_http_port()
    cmd = [sys.executable, "-m", "gridlens.cli", "serve", "--db", f"sqlite:///{tmp_path}/s.db",
           "--data-dir", str(tmp_path / "d"), "--port", str(port), "--no-request-log",
           "--no-pull", "--mqtt", f"localhost:{secure['port']}", "--mqtt-user",
           "gridlens-server", "--mqtt-password-file", str(pw_file), "--mqtt-cafile",
           secure["ca"]]  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import http.client

        def health() -> Any:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/healthz")
                doc = json.loads(c.getresponse().read())
                c.close()
                return doc
            except OSError:
                return None

        assert wait_until(lambda: (health() or {}).get("mqtt") == "connected", 60), (
            tmp_path / "serve.log"
        ).read_text()
        for pid in [proc.pid, *_children(proc.pid)]:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert password.encode() not in f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                assert password.encode() not in f.read()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def test_broker_settings_are_checked_and_the_password_stays_in_its_file(tmp_path: Path) -> None:
    from gridlens.errors import ParameterError
    from gridlens.server.settings import Settings

    pw = tmp_path / "pass"
    pw.write_text("s3cret pass\r\nsecond line ignored\n")
    s = Settings(mqtt_host="broker", mqtt_user="srv", mqtt_password_file=str(pw),
                 mqtt_cafile="/etc/hosts")  # fmt: skip
    assert s.mqtt_tls and s.mqtt_password() == "s3cret pass"
    env = s.to_env()
    assert "s3cret" not in " ".join(env.values())  # workers get the path, not the password
    assert Settings.from_env(env) == s
    with pytest.raises(ParameterError) as e:
        Settings(mqtt_password_file=str(tmp_path / "missing"), mqtt_cafile="/nonexistent",
                 mqtt_port=0)  # fmt: skip
    for problem in ("mqtt_port", "needs mqtt_user", "missing' is not", "mqtt_cafile"):
        assert problem in str(e.value)  # every problem at once


def test_water_meter_dials_publish_and_discover(
    broker: Broker, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    water = DeviceInfo(9, "Garden water", "m3", (0.1, 0.01))
    seg = water.segment
    sub = Client(broker.port, [f"gl{tag}/{seg}/#", f"ha{tag}/#"])
    clients.append(sub)
    bridge = make_bridge(broker.port)
    configs = bridge.discovery_configs(water)
    dial_cfgs = {t: c for t, c in configs.items() if "/dial" in t}
    assert [c["name"] for c in dial_cfgs.values()] == ["Dial x0.1", "Dial x0.01"]
    assert all(c["state_topic"].endswith(("/dial1", "/dial2")) for c in dial_cfgs.values())
    bridge.publish_discovery(water)
    dials = [{"factor": 0.1, "value": 4.6, "confidence": 1.0},
             {"factor": 0.01, "value": 5.7, "confidence": 0.9}]  # fmt: skip
    bridge.publish_reading(water, reading(123.4567, dials=dials))
    assert sub.wait_for(f"gl{tag}/{seg}/dial1") == b"4.6"
    assert sub.wait_for(f"gl{tag}/{seg}/dial2") == b"5.7"
    assert json.loads(sub.wait_for(f"gl{tag}/{seg}/json"))["dials"] == dials
    for topic in dial_cfgs:
        assert json.loads(sub.wait_for(topic))["unique_id"].endswith(("_dial1", "_dial2"))


def test_retained_messages_of_publish_survive_a_broker_that_forgot_them(
    tmp_path: Path, make_bridge: Callable[..., MqttBridge], clients: list[Client], tag: str
) -> None:
    """The anomaly notifier's Home Assistant discovery goes through publish(retain=True):
    after a broker restart without persistence it is published again; a cleared one is not."""
    broker = Broker(tmp_path, persistent=False)
    broker.start()
    try:
        bridge = make_bridge(broker.port)
        keep, gone = f"ha{tag}/binary_sensor/x/anomaly/config", f"ha{tag}/binary_sensor/y/config"
        bridge.publish(keep, '{"name": "Anomaly"}', retain=True)
        bridge.publish(gone, '{"name": "Old"}', retain=True)
        bridge.publish(gone, "", retain=True)  # cleared: forgotten
        bridge.publish(f"gl{tag}/plain", "not kept", retain=False)
        assert bridge.wait_idle(5)
        broker.stop()
        assert wait_until(lambda: not bridge.connected)
        broker.start()  # same port, empty: no persistence
        assert wait_until(lambda: bridge.connected, timeout=15)
        assert bridge.wait_idle(10)
        late = Client(broker.port, [f"ha{tag}/#", f"gl{tag}/plain"])
        clients.append(late)
        assert late.wait_for(keep) == b'{"name": "Anomaly"}'
        time.sleep(0.5)
        with late.cond:
            topics = {t for t, _, _ in late.messages}
        assert gone not in topics and f"gl{tag}/plain" not in topics
        bridge.stop()
    finally:
        for c in clients:
            c.close()
        clients.clear()
        broker.stop()
