"""The reference camera firmware (devices/esp32cam/main.py) against a real gridlens server.

- ``mpy-cross`` compiles it as MicroPython would for the ESP32 (xtensawin);
- under CPython, with a JPEG file as its camera, it runs against a server listening on a
  port (uvicorn, the app ``gridlens serve`` runs): as a process (``python main.py --once``)
  through a proxy that loses the server's answer once, and in this process with a real
  Mosquitto for its MQTT commands. Only the MQTT client library is stood in: umqtt.simple
  does not run on CPython, so :class:`UmqttOverPaho` gives paho its API.
"""

from __future__ import annotations

import hmac
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridlens.server.harness import free_port
from gridlens.server.settings import Settings
from gridlens.store import Store
from gridlens.store.commands import command_signature, device_command, new_nonce
from gridlens.store.security import token_hash
from gridlens.store.timeutil import iso
from tests.server.conftest import Layout
from tests.server.test_mqtt import MOSQUITTO, Broker

MAIN = Path(__file__).resolve().parents[2] / "devices" / "esp32cam" / "main.py"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# ------------------------------------------------------------------- MicroPython


def test_mpy_cross_compiles_the_firmware_for_the_esp32(tmp_path: Path) -> None:
    exe = shutil.which("mpy-cross") or str(Path(sys.executable).with_name("mpy-cross"))
    out = tmp_path / "main.mpy"
    r = subprocess.run([exe, "-march=xtensawin", "-o", str(out), str(MAIN)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:1] == b"M"  # a .mpy file
    # and it does reject what MicroPython cannot compile (the check has teeth)
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return (yield from 1) := 2\n")
    assert subprocess.run([exe, str(bad)], capture_output=True, timeout=60).returncode != 0


def load_firmware() -> ModuleType:
    """A fresh copy of the firmware module (its globals are per test)."""
    spec = importlib.util.spec_from_file_location(f"esp32cam_{uuid.uuid4().hex[:6]}", MAIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_firmware_signatures_match_the_server_and_rfc_4231() -> None:
    fw = load_firmware()
    # RFC 4231, test case 2
    assert fw.hmac_sha256(b"Jefe", b"what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    key = b"k" * 100  # longer than a block: hashed first
    assert fw.hmac_sha256(key, b"m") == hmac.new(key, b"m", "sha256").hexdigest()
    k = token_hash("gld_some-token")
    cmd = {"id": 5, "action": "interval", "state": None, "value": 600,
           "expires_at": "2026-12-20T10:10:00.250Z", "nonce": new_nonce()}  # fmt: skip
    assert fw.hmac_sha256(k.encode(), fw.command_message(7, cmd)) == command_signature(k, 7, cmd)
    assert fw.time_tuple("2026-12-20T10:10:00.250Z") == (2026, 12, 20, 10, 10, 0)
    assert fw.valid_nonce(cmd["nonce"]) and not fw.valid_nonce("0" * 31 + "g")


# ------------------------------------------------------------------- a real server


class LiveServer:
    """The gridlens app served by uvicorn on a free port, in a thread."""

    def __init__(self, settings: Settings, store: Store) -> None:
        import uvicorn

        from gridlens.server.app import create_app

        self.port = free_port()
        config = uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        assert wait_until(lambda: self.server.started, 30), "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def request(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        import http.client

        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        c.request(method, path, None if body is None else json.dumps(body), headers)
        r = c.getresponse()
        doc = json.loads(r.read() or b"null")
        c.close()
        return r.status, doc


class LossyProxy:
    """A TCP proxy in front of the server that, while ``lose_uploads`` > 0, forwards a photo
    upload and its whole answer from the server but closes the camera's connection instead
    of passing the answer on: the server stored the photo, the camera never heard of it."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.lose_uploads = 0
        self.lost = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            while len(data) - len(head) - 4 < length:
                data += conn.recv(65536)
            with socket.create_connection(("127.0.0.1", self.target), timeout=30) as up:
                up.sendall(data)
                answer = b""
                while chunk := up.recv(65536):
                    answer += chunk
            upload = head.startswith("POST ") and "/images" in head.split("\r\n")[0]
            if upload and self.lose_uploads > 0:
                self.lose_uploads -= 1
                self.lost += 1
                return  # the answer is lost on the way back
            conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fleet(tmp_path: Path, layout: Layout) -> Iterator[dict[str, Any]]:
    """A store with an admin and two cameras whose names slug alike ("Meter A", "meter_a")."""
    store = Store.open(f"sqlite:///{tmp_path}/dc.db")
    _, _, admin = store.add_user("ada", role="admin")
    cams = [store.add_device(name, layout.roi, reference_jpeg=layout.reference_jpeg)
            for name in ("Meter A", "meter_a")]  # fmt: skip
    photo = tmp_path / "meter.jpg"
    photo.write_bytes(layout.photo(12345.6))
    yield {"store": store, "admin": admin, "cams": cams, "photo": photo, "tmp": tmp_path}
    store.close()


def camera_dir(fleet: dict[str, Any], server_url: str, k: int = 0, **cfg: Any) -> Path:
    """A folder with the firmware's config.json for camera ``k`` (its queue and state go
    there too)."""
    dev, token = fleet["cams"][k]
    d = fleet["tmp"] / f"cam{k}"
    d.mkdir(exist_ok=True)
    doc = {"server": server_url, "device_id": dev.id, "token": token, "name": dev.name,
           "interval_s": 60, "fake_jpeg": str(fleet["photo"]), "http_timeout_s": 10}  # fmt: skip
    doc.update(cfg)
    (d / "config.json").write_text(json.dumps(doc))
    return d


def run_once(cam: Path) -> str:
    """``python main.py --once`` in the camera's folder; its log."""
    r = subprocess.run([sys.executable, str(MAIN), "--once"], cwd=cam, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_camera_resends_a_photo_whose_answer_was_lost_and_it_counts_once(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    store, (dev, _) = fleet["store"], fleet["cams"][0]
    settings = Settings(db=store.url, data_dir=str(tmp_path / "data"), log_requests=False,
                        pull=False)  # fmt: skip
    with LiveServer(settings, store) as srv:
        proxy = LossyProxy(srv.port)
        cam = camera_dir(fleet, f"http://127.0.0.1:{proxy.port}")
        proxy.lose_uploads = 1
        log1 = run_once(cam)
        assert proxy.lost == 1
        assert "will retry" in log1
        queued = sorted((cam / "queue").iterdir())
        assert len(queued) == 1  # kept
        first = queued[0].stem.split("_", 1)[1]
        assert store.count_readings(dev.id) == 1  # the server had stored it
        # a command waits for the camera; it comes in the next answer, over HTTP
        status, cmd = srv.request("POST", f"/api/v1/devices/{dev.id}/commands", fleet["admin"],
                                  {"action": "relay", "state": "off"})  # fmt: skip
        assert status == 201, cmd

        log2 = run_once(cam)  # the kept photo first, with the same capture id, then a new one
        assert f"{first} duplicate" in log2, log2
        assert list((cam / "queue").iterdir()) == []
        readings = store.readings(dev.id, limit=10)
        assert store.count_readings(dev.id) == 2  # the lost-answer photo counted once
        assert len({r.capture_id for r in readings}) == 2 and first in {
            r.capture_id for r in readings
        }
        assert [c.status for c in store.commands(dev.id)] == ["acked"]
        assert store.commands(dev.id)[0].ack_ok is True
        state = json.loads((cam / "state.json").read_text())
        assert state["relay"] == "off"
        assert [e[1] for e in state["done"]] == [cmd["id"]]

        log3 = run_once(cam)  # nothing new: the command is not executed again
        assert "relay off" not in log3
        assert store.count_readings(dev.id) == 3
        proxy.close()


# ------------------------------------------------------------------- MQTT commands


class UmqttOverPaho:
    """umqtt.simple's ``MQTTClient`` API on paho-mqtt, so that the firmware's own MQTT code
    runs under CPython against a real broker. Like umqtt, messages reach the callback only
    inside :meth:`check_msg`, as ``cb(topic: bytes, msg: bytes, retained)`` (the retain flag
    third, as umqtt.simple2 passes it; plain umqtt.simple does not)."""

    def __init__(
        self, client_id: str, server: str, port: int = 0, user: str | None = None,
        password: str | None = None, keepalive: int = 0, ssl: Any = None,
    ) -> None:  # fmt: skip
        self.server, self.port = server, port or (8883 if ssl else 1883)
        self.keepalive = keepalive or 60
        self.cb: Callable[..., None] | None = None
        self.refused: Any = None
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if user:
            self.c.username_pw_set(user, password)
        if ssl is not None:
            self.c.tls_set_context(ssl)
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.subacks: list[int] = []
        self.c.on_subscribe = lambda c, u, mid, rc, p: self.subacks.append(mid)

    def set_callback(self, f: Callable[..., None]) -> None:
        self.cb = f

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, p: Any) -> None:
        if rc.is_failure:
            self.refused = rc

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        assert self.cb is not None
        self.cb(msg.topic.encode(), bytes(msg.payload), bool(msg.retain))

    def _loop_until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 10
        while not done():
            if time.monotonic() > deadline:
                raise OSError(f"umqtt stand-in: no {what}")
            self.c.loop(timeout=0.05)

    def connect(self, clean_session: bool = True) -> int:
        self.c.connect(self.server, self.port, self.keepalive)
        self._loop_until(lambda: self.c.is_connected() or self.refused is not None, "CONNACK")
        if self.refused is not None:
            raise OSError(f"refused: {self.refused}")  # umqtt raises MQTTException
        return 0

    def subscribe(self, topic: str, qos: int = 0) -> None:
        _, mid = self.c.subscribe(topic, qos)
        self._loop_until(lambda: mid in self.subacks, "SUBACK")

    def publish(self, topic: str, msg: str, retain: bool = False, qos: int = 0) -> None:
        info = self.c.publish(topic, msg, qos=qos, retain=retain)
        self._loop_until(info.is_published, "PUBACK")

    def check_msg(self) -> None:
        self.c.loop(timeout=0.05)

    def ping(self) -> None:
        pass  # paho keeps the session alive inside loop()

    def disconnect(self) -> None:
        self.c.disconnect()


needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="needs the mosquitto broker binary (apt install mosquitto)"
)


@needs_mosquitto
def test_camera_executes_each_mqtt_command_once_and_ignores_retained_or_forged(
    fleet: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    store, admin = fleet["store"], fleet["admin"]
    (dev, token), (other, other_token) = fleet["cams"]
    broker = Broker(tmp_path)
    broker.start()
    settings = Settings(db=store.url, data_dir=str(tmp_path / "data"), log_requests=False,
                        pull=False, mqtt_host="127.0.0.1", mqtt_port=broker.port)  # fmt: skip
    spy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spy-{uuid.uuid4().hex[:6]}")
    spied: list[tuple[str, bytes]] = []
    spy.on_message = lambda c, u, m: spied.append((m.topic, bytes(m.payload)))
    spy.connect("127.0.0.1", broker.port)
    spy.subscribe("gridlens/#", qos=1)
    spy.loop_start()
    topic = f"gridlens/{dev.id}-meter_a/command"
    try:
        with LiveServer(settings, store) as srv:
            assert wait_until(lambda: srv.request("GET", "/healthz", admin)[1]["mqtt"]
                              == "connected")  # fmt: skip
            url = f"/api/v1/devices/{dev.id}/commands"

            def command(body: dict[str, Any]) -> dict[str, Any]:
                status, doc = srv.request("POST", url, admin, body)
                assert status == 201, doc
                return dict(doc)

            def status_of(cid: int, device: Any = dev) -> str:
                return str(next(c.status for c in store.commands(device.id) if c.id == cid))

            # a command published while the camera is not on MQTT yet: delivered (sent)...
            missed = command({"action": "flash", "state": "off"})
            assert missed["status"] == "delivered" and missed["delivered_via"] == "mqtt"

            fw = load_firmware()
            monkeypatch.setattr(fw, "MQTTClient", UmqttOverPaho)
            monkeypatch.chdir(camera_dir(fleet, srv.url, mqtt_host="127.0.0.1",
                                         mqtt_port=broker.port))  # fmt: skip
            cam = fw.Device(fw.load_config())
            executed: list[Any] = []
            real_execute = cam.execute
            monkeypatch.setattr(cam, "execute", lambda c: executed.append(c["id"]) or
                                real_execute(c))  # fmt: skip
            cam.boot()
            cam.cycle()  # upload, poll (no MQTT session yet), then MQTT
            # ...and the camera's poll still got it: executed, acked over HTTP
            assert executed == [missed["id"]] and cam.flash == "off"
            assert status_of(missed["id"]) == "acked"
            assert cam.mqtt is not None, capsys.readouterr().out
            assert store.count_readings(dev.id) == 1

            def poll_until(cond: Callable[[], bool]) -> bool:
                def step() -> bool:
                    cam.mqtt_poll()
                    return cond()

                return wait_until(step, 10)

            # a live command over MQTT: executed once, acked over MQTT with nonce + signature
            relay = command({"action": "relay", "state": "off"})
            assert poll_until(lambda: executed[-1] == relay["id"])
            assert cam.relay == "off"
            assert wait_until(lambda: status_of(relay["id"]) == "acked")
            genuine = next(p for t, p in spied if t == topic and json.loads(p)["id"] == relay["id"])
            acks = [json.loads(p) for t, p in spied if t.endswith("/ack")]
            assert wait_until(lambda: any(a["id"] == relay["id"] for a in (
                json.loads(p) for t, p in spied if t.endswith("/ack"))))  # fmt: skip
            acks = [json.loads(p) for t, p in spied if t.endswith("/ack")]
            assert {"id", "nonce", "ok", "detail", "sig"} <= set(acks[-1])
            n_acks = len(acks)

            def publish(payload: Any, retain: bool = False, on: str = topic) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                spy.publish(on, data, qos=1, retain=retain).wait_for_publish(5)
                for _ in range(10):
                    cam.mqtt_poll()

            def signed(device: Any, tok: str, cid: int, **changes: Any) -> dict[str, Any]:
                """A command as the server signs it (the camera's key is its token's hash)."""
                c = next(c for c in store.commands(device.id) if c.id == cid)
                doc = {"device_id": device.id, **device_command(c), **changes}
                doc["sig"] = command_signature(token_hash(tok), device.id, doc)
                return doc

            # the same command again (a replay): acked again, not executed again
            publish(genuine)
            assert executed.count(relay["id"]) == 1
            assert wait_until(lambda: len([t for t, _ in spied if t.endswith("/ack")]) > n_acks)

            out = capsys.readouterr().out
            # forged: a nonce of the right shape, no valid signature
            forged = {"device_id": dev.id, "id": relay["id"] + 100, "action": "relay",
                      "state": "on", "value": None, "expires_at": iso(time.time() + 600),
                      "nonce": new_nonce(), "sig": "0" * 64}  # fmt: skip
            publish(forged)
            # a genuine command of the other camera, replayed on this camera's topic
            theirs = store.add_command(other.id, "relay", state="on", actor="ada")
            publish(signed(other, other_token, theirs.id))
            # without a nonce, even if signed (as by a server that issues none)
            pending = store.add_command(dev.id, "relay", state="on", actor="ada")
            publish(signed(dev, token, pending.id, nonce=None))
            # expired
            publish(signed(dev, token, pending.id, expires_at=iso(time.time() - 1)))
            # retained: left on the broker while the camera was away, it comes with the
            # camera's next subscription, flagged retained: never a live command
            cam.mqtt.disconnect()
            cam.mqtt = None
            spy.publish(topic, json.dumps(signed(dev, token, pending.id)), qos=1,
                        retain=True).wait_for_publish(5)  # fmt: skip
            cam.mqtt_connect()
            assert cam.mqtt is not None
            publish(b"not json")  # the camera polls; this one is ignored as well
            assert cam.relay == "off" and executed.count(pending.id) == 0
            out = capsys.readouterr().out
            assert f"wrong signature ignored: {forged['id']}" in out
            assert "command for another device ignored" in out
            assert "command without a valid nonce ignored" in out
            assert f"expired command {pending.id} ignored" in out
            assert "retained command ignored" in out
            spy.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear it
            # the same signed command, live and not retained: now it runs, once
            publish(signed(dev, token, pending.id))
            assert executed.count(pending.id) == 1 and cam.relay == "on"
            assert wait_until(lambda: status_of(pending.id) == "acked")
            assert status_of(theirs.id, other) == "pending"  # the other camera's: untouched
            # nothing the camera did was refused by the server
            log = store.audit_log(500)
            assert not [e for e in log if e["action"] == "command.ack.refused"]
            assert sorted(set(executed)) == sorted({missed["id"], relay["id"], pending.id})
            cam.mqtt.disconnect()
    finally:
        spy.loop_stop()
        spy.disconnect()
        broker.stop()


@needs_mosquitto
def test_server_and_camera_on_a_broker_secured_as_documented(
    fleet: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """docs/broker.md end to end: passwords, its ACL file, TLS; the server with its user and
    password file, the camera with its topic segment as user name and the CA file."""
    from tests.server.test_mqtt import MOSQUITTO_PASSWD, OPENSSL, documented_acl, make_ca_and_cert

    if OPENSSL is None or MOSQUITTO_PASSWD is None:
        pytest.skip("needs openssl and mosquitto_passwd (apt install openssl mosquitto)")
    store, admin = fleet["store"], fleet["admin"]
    dev, _ = fleet["cams"][0]
    seg = f"{dev.id}-meter_a"
    d = tmp_path / "broker"
    d.mkdir()
    ca, cert, key = make_ca_and_cert(d)
    passwd = d / "passwd"
    users = {"gridlens-server": "srv-pw", seg: "cam-pw"}
    for i, (user, password) in enumerate(users.items()):
        assert MOSQUITTO_PASSWD is not None
        subprocess.run([MOSQUITTO_PASSWD, *(["-c"] if i == 0 else []), "-b", str(passwd), user,
                        password], check=True, capture_output=True, timeout=30)  # fmt: skip
    (d / "gridlens.acl").write_text(documented_acl())
    broker = Broker(d, secure=["allow_anonymous false", f"password_file {passwd}",
                               f"acl_file {d / 'gridlens.acl'}", f"cafile {ca}",
                               f"certfile {cert}", f"keyfile {key}"])  # fmt: skip
    broker.start()
    pw_file = tmp_path / "mqtt.pass"
    pw_file.write_text("srv-pw\n")
    settings = Settings(db=store.url, data_dir=str(tmp_path / "data"), log_requests=False,
                        pull=False, mqtt_host="localhost", mqtt_port=broker.port,
                        mqtt_user="gridlens-server", mqtt_password_file=str(pw_file),
                        mqtt_cafile=str(ca))  # fmt: skip
    assert settings.mqtt_tls  # implied by the CA file
    try:
        with LiveServer(settings, store) as srv:
            assert wait_until(lambda: srv.request("GET", "/healthz", admin)[1]["mqtt"]
                              == "connected")  # fmt: skip
            fw = load_firmware()
            monkeypatch.setattr(fw, "MQTTClient", UmqttOverPaho)
            cam_cfg = {"mqtt_host": "localhost", "mqtt_port": broker.port, "mqtt_user": seg,
                       "mqtt_tls": True, "mqtt_cafile": str(ca)}  # fmt: skip
            monkeypatch.chdir(camera_dir(fleet, srv.url, mqtt_password="guess", **cam_cfg))
            cam = fw.Device(fw.load_config())
            cam.boot()
            cam.mqtt_connect()
            assert cam.mqtt is None  # a wrong password is refused, and only logged
            assert "mqtt connect failed" in capsys.readouterr().out
            monkeypatch.chdir(camera_dir(fleet, srv.url, mqtt_password="cam-pw", **cam_cfg))
            cam = fw.Device(fw.load_config())
            cam.boot()
            cam.mqtt_connect()
            assert cam.mqtt is not None, capsys.readouterr().out
            status, cmd = srv.request("POST", f"/api/v1/devices/{dev.id}/commands", admin,
                                      {"action": "interval", "value": 900})  # fmt: skip
            assert status == 201 and cmd["delivered_via"] == "mqtt", cmd

            def acked() -> bool:
                cam.mqtt_poll()
                return store.commands(dev.id)[0].status == "acked"

            assert wait_until(acked)
            assert cam.interval_s == 900
            assert store.commands(dev.id)[0].ack_detail == "interval 900 s"
            cam.mqtt.disconnect()
    finally:
        broker.stop()
