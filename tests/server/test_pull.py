"""Cameras that serve snapshots: the server fetches them (real HTTP camera, real database).

A small camera server runs in a thread: ``/capture`` serves synthetic meter photos (each
request the next reading), ``/secure`` wants HTTP basic authentication, ``/digest`` HTTP
digest authentication, and the rest fail the ways real cameras do (HTML, 404, too slow,
too large). Photos go through the upload path; the lease is checked with two pullers on
one database, and with ``gridlens serve --workers 2``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import wait
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gridlens.meter.image import encode_jpeg
from gridlens.meter.synth import render_reference
from gridlens.server.harness import ServerProcess, free_port
from gridlens.server.ingest import ReaderCache
from gridlens.server.metrics import Metrics
from gridlens.server.pull import Puller
from gridlens.server.settings import Settings
from gridlens.store import Store
from gridlens.store.pulls import PullChange, claim_due, finish, pull_source
from tests.server.conftest import Layout

USER, PASSWORD = "cam", "s3cret-Pa55"
REALM = "esp32"


class Camera:
    """A snapshot server: photos of an increasing counter, one sequence per path."""

    def __init__(self, layout: Layout, start: float = 1000.0, step: float = 0.5) -> None:
        self.layout = layout
        self.start, self.step = start, step
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.photos: dict[int, bytes] = {}
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                cam.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def value(self, k: int) -> float:
        return self.start + self.step * k

    def photo(self, k: int) -> bytes:
        with self.lock:
            if k not in self.photos:
                self.photos[k] = self.layout.photo(self.value(k), seed=k)
            return self.photos[k]

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        kind = path.strip("/").split("/")[0]
        if kind == "secure" and not self._basic_ok(h):
            return self._send(h, 401, b"login", "text/plain", {"WWW-Authenticate": "Basic"})
        if kind == "digest" and not self._digest_ok(h):
            nonce = "n" + str(time.monotonic_ns())
            challenge = f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'
            return self._send(h, 401, b"login", "text/plain", {"WWW-Authenticate": challenge})
        with self.lock:  # counted once authenticated: a fetch, not a handshake
            k = self.hits[path]
            self.hits[path] += 1
        if kind == "html":
            return self._send(h, 200, b"<!DOCTYPE html><p>index</p>", "text/html")
        if kind == "missing":
            return self._send(h, 404, b"not found", "text/plain")
        if kind == "slow":
            time.sleep(3.0)
            return self._send(h, 200, self.photo(0), "image/jpeg")
        if kind == "big":
            return self._send(h, 200, b"\xff\xd8\xff" + bytes(3 * 1024 * 1024), "image/jpeg")
        return self._send(h, 200, self.photo(k), "image/jpeg")

    @staticmethod
    def _basic_ok(h: BaseHTTPRequestHandler) -> bool:
        want = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return h.headers.get("Authorization", "") == f"Basic {want}"

    @staticmethod
    def _digest_ok(h: BaseHTTPRequestHandler) -> bool:
        """RFC 7616 digest with MD5 and qop=auth."""
        got = h.headers.get("Authorization", "")
        if not got.startswith("Digest "):
            return False
        p = dict(re.findall(r'(\w+)="?([^",]*)"?', got[7:]))

        def md5(s: str) -> str:
            return hashlib.md5(s.encode()).hexdigest()

        ha1 = md5(f"{USER}:{REALM}:{PASSWORD}")
        ha2 = md5(f"GET:{p.get('uri', '')}")
        want = md5(f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}")
        return p.get("username") == USER and p.get("response") == want

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except OSError:  # the client gave up (timeout, size cap)
            pass

    def __enter__(self) -> Camera:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def camera(layout: Layout) -> Iterator[Camera]:
    with Camera(layout) as cam:
        yield cam


def _settings(db: str, tmp_path: Path, **kw: Any) -> Settings:
    return Settings(db=db, data_dir=str(tmp_path / "data"), log_requests=False, **kw)


def _puller(store: Store, settings: Settings, owner: str) -> Puller:
    return Puller(
        store,
        settings,
        readers=ReaderCache(),
        metrics=Metrics(),
        publish=lambda _dev, _reading: None,
        owner=owner,
    )


def _round(*pullers: Puller, now: float) -> list[str]:
    """Every puller claims at ``now`` at the same moment; returns the fetches' outcomes."""
    go = threading.Barrier(len(pullers))
    futures: list[Any] = []
    lock = threading.Lock()

    def run(p: Puller) -> None:
        go.wait()
        fs = p.run_once(now)
        with lock:
            futures.extend(fs)

    threads = [threading.Thread(target=run, args=(p,)) for p in pullers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait(futures)
    return [f.result() for f in futures]


def _wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


# ------------------------------------------------------------------------------ the running server


def test_pulled_readings_arrive_like_uploads(
    api_env: dict[str, Any], camera: Camera, layout: Layout, caplog: pytest.LogCaptureFixture
) -> None:
    """PATCH a registered camera to be pulled (with basic auth): the server's puller fetches it
    at once, the reading is stored like an upload, and the state shows on the API, the
    dashboard and /metrics, never the password."""
    from gridlens.server.auth import SESSION_COOKIE

    c, admin, store = api_env["client"], api_env["admin"], api_env["store"]
    caplog.set_level(logging.INFO)
    r = c.post("/api/v1/devices", json=layout.device_body("yard"), headers=admin)
    dev = r.json()["device_id"]
    body = {"pull_url": f"{camera.url}/secure/capture", "pull_auth": f"{USER}:{PASSWORD}"}
    r = c.patch(f"/api/v1/devices/{dev}", json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["pull"]["auth"] is True and r.json()["pull"]["interval_s"] == 60
    assert PASSWORD not in r.text

    def readings() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = c.get(
            f"/api/v1/devices/{dev}/readings", headers=api_env["viewer"]
        ).json()
        return got

    [reading] = _wait_for(readings)
    assert reading["capture_id"].startswith("pull-") and reading["source"] == "camera"
    assert reading["status"] == "ok"
    assert reading["value"] == pytest.approx(camera.value(0), abs=0.15)
    assert camera.hits["/secure/capture"] == 1
    assert list((Path(api_env["settings"].images) / str(dev)).rglob("*.jpg"))  # photo kept

    doc = _wait_for(lambda: (d := c.get(f"/api/v1/devices/{dev}", headers=admin).json())
                    ["pull"]["fetches_total"] and d)  # fmt: skip
    pull = doc["pull"]
    assert pull["url"] == f"{camera.url}/secure/capture"
    assert (pull["failures"], pull["failures_total"], pull["fetches_total"]) == (0, 0, 1)
    assert pull["last_ok_at"] is not None and pull["last_error"] is None
    listing = c.get("/api/v1/devices", headers=api_env["viewer"])
    assert listing.json()[0]["pull"]["auth"] is True and PASSWORD not in listing.text

    user, _, _ = store.add_user("paula", role="viewer")
    c.cookies.set(SESSION_COOKIE, store.new_session(user))
    page = c.get(f"/meters/{dev}")
    c.cookies.clear()
    assert page.status_code == 200
    assert "Fetched by the server" in page.text and "with a login" in page.text
    assert PASSWORD not in page.text

    metrics = c.get("/metrics").text
    assert 'gridlens_pulls_total{status="ok"} 1' in metrics
    assert f'gridlens_pull_device_fetches_total{{device_id="{dev}",device="yard"}} 1' in metrics
    assert "gridlens_pull_devices 1" in metrics
    # the password is in no log record and no audit entry
    assert all(PASSWORD not in json.dumps(rec.__dict__, default=str) for rec in caplog.records)
    assert PASSWORD not in json.dumps(store.audit_log())


def test_failures_are_counted_per_device(
    db_url: str, tmp_path: Path, camera: Camera, caplog: pytest.LogCaptureFixture
) -> None:
    """401, timeout, not a JPEG, 404, too large and a refused connection: each counted on its
    device (consecutive and total, last error and time); a fix starts the count again."""
    store = Store.open(db_url)
    settings = _settings(db_url, tmp_path, pull_timeout_s=2.0, pull_concurrency=8)
    roi = camera.layout.roi
    ref = camera.layout.reference_jpeg
    closed = f"http://127.0.0.1:{free_port()}/capture"
    cases = {
        "wrong-login": (f"{camera.url}/secure/capture", "cam:wrong-pass", "HTTP 401"),
        "no-login": (f"{camera.url}/secure/capture", None, "wants a login"),
        "slow": (f"{camera.url}/slow/capture", None, "timeout"),
        "html": (f"{camera.url}/html", None, "not a JPEG photo: the camera sent text/html"),
        "missing": (f"{camera.url}/missing", None, "HTTP 404"),
        "big": (f"{camera.url}/big", None, "limit"),
        "refused": (closed, None, "cannot connect"),
    }
    ids = {}
    for name, (url, auth, _) in cases.items():
        dev, _ = store.add_device(name, roi, reference_jpeg=ref, pull=PullChange(url, 30, auth))
        ids[name] = dev.id
    puller = _puller(store, settings, "p1")
    caplog.set_level(logging.INFO)
    t0 = time.time()
    assert _round(puller, now=t0) == ["error"] * len(cases)
    assert _round(puller, now=t0 + 1) == []  # not due again before its interval
    assert _round(puller, now=t0 + 30) == ["error"] * len(cases)
    for name, (_, _, words) in cases.items():
        p = pull_source(store, ids[name])
        assert p is not None
        assert (p.failures, p.failures_total, p.fetches_total) == (2, 2, 2), name
        assert p.last_error is not None and words in p.last_error, (name, p.last_error)
        assert p.last_error_at is not None and p.last_ok_at is None
        assert p.lease_owner is None and p.lease_until is None
    assert store.count_readings() == 0
    kinds = puller.metrics.snapshot()["counters"]
    by_kind = {dict(lab).get("kind"): v for n, lab, v in kinds if n == "gridlens_pull_errors_total"}
    assert by_kind == {"http": 6.0, "timeout": 2.0, "not_jpeg": 2.0, "too_large": 2.0,
                       "connect": 2.0}  # fmt: skip

    # the right password: the next fetch reads the meter, consecutive failures start over
    store.update_device(ids["wrong-login"], actor="t", pull=PullChange(auth=f"{USER}:{PASSWORD}"))
    _round(puller, now=t0 + 60)
    p = pull_source(store, ids["wrong-login"])
    assert p is not None and (p.failures, p.failures_total, p.fetches_total) == (0, 2, 3)
    assert store.count_readings(ids["wrong-login"]) == 1
    assert all("wrong-pass" not in json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert all(PASSWORD not in json.dumps(r.__dict__, default=str) for r in caplog.records)
    puller.stop()
    store.close()


def test_digest_authentication(db_url: str, tmp_path: Path, camera: Camera) -> None:
    """A camera that wants HTTP digest gets it (after one basic try; then digest at once)."""
    store = Store.open(db_url)
    dev, _ = store.add_device(
        "ipcam",
        camera.layout.roi,
        reference_jpeg=camera.layout.reference_jpeg,
        pull=PullChange(f"{camera.url}/digest/snap.jpg", 5, f"{USER}:{PASSWORD}"),
    )
    puller = _puller(store, _settings(db_url, tmp_path), "p1")
    t0 = time.time()
    assert _round(puller, now=t0) == ["ok"]
    assert _round(puller, now=t0 + 5) == ["ok"]
    assert camera.hits["/digest/snap.jpg"] == 2
    assert [r.value for r in store.readings(dev.id)] == pytest.approx(
        [camera.value(0), camera.value(1)], abs=0.15
    )
    puller.stop()
    store.close()


# ------------------------------------------------------------------------------ the lease


def test_two_pullers_fetch_each_camera_once_per_interval(
    db_url: str, tmp_path: Path, camera: Camera
) -> None:
    """Two processes' pullers (own readers, own owner name) claim at the same moments for six
    intervals: every camera is fetched exactly once per interval, one reading per fetch."""
    store_a, store_b = Store.open(db_url), Store.open(db_url, migrate=False)
    devs = []
    for i in range(3):
        dev, _ = store_a.add_device(
            f"cam{i}",
            camera.layout.roi,
            reference_jpeg=camera.layout.reference_jpeg,
            pull=PullChange(f"{camera.url}/capture/{i}", 5),
        )
        devs.append(dev.id)
    a = _puller(store_a, _settings(db_url, tmp_path), "host-a:1")
    b = _puller(store_b, _settings(db_url, tmp_path), "host-b:1")
    t0 = time.time()
    outcomes: list[str] = []
    for k in range(6):
        outcomes += _round(a, b, now=t0 + 5 * k + 0.01)
    assert sorted(outcomes) == ["ok"] * 18
    assert {f"/capture/{i}": 6 for i in range(3)} == dict(camera.hits)
    for dev in devs:
        rows = store_a.readings(dev)
        assert len({r.capture_id for r in rows}) == 6 and [r.status for r in rows] == ["ok"] * 6
        assert [r.value for r in rows] == pytest.approx(
            [camera.value(k) for k in range(6)], abs=0.15
        )
        p = pull_source(store_a, dev)
        assert p is not None and (p.fetches_total, p.failures_total) == (6, 0)
    a.stop()
    b.stop()
    store_a.close()
    store_b.close()


def test_a_held_lease_keeps_other_processes_away(db_url: str, camera: Camera) -> None:
    """A fetch under way (lease held) is not repeated by another process even when the next
    interval is due; once released, or expired (its process died), the camera is due again."""
    store = Store.open(db_url)
    dev, _ = store.add_device(
        "slowcam",
        camera.layout.roi,
        reference_jpeg=camera.layout.reference_jpeg,
        pull=PullChange(f"{camera.url}/capture", 5),
    )
    t0 = time.time()
    [held] = claim_due(store, "a", now=t0, lease_s=30, limit=10)
    assert claim_due(store, "b", now=t0, lease_s=30, limit=10) == []
    assert claim_due(store, "b", now=t0 + 5, lease_s=30, limit=10) == []  # due, but leased
    finish(store, held, "a", now=t0 + 6)
    [second] = claim_due(store, "b", now=t0 + 6, lease_s=30, limit=10)
    assert second.slot_at == pytest.approx(t0 + 5) and second.capture_id != held.capture_id
    # b dies mid-fetch: nobody fetches until its lease runs out, then the due slot goes on
    assert claim_due(store, "a", now=t0 + 20, lease_s=30, limit=10) == []
    [third] = claim_due(store, "a", now=t0 + 37, lease_s=30, limit=10)
    assert third.slot_at == pytest.approx(t0 + 10)
    finish(store, second, "b", now=t0 + 38, error="late")  # b's late report keeps a's lease
    p = pull_source(store, dev.id)
    assert p is not None and p.lease_owner == "a" and p.failures_total == 1
    store.close()


@pytest.mark.slow
def test_serve_with_two_workers_fetches_once_per_interval(tmp_path: Path, camera: Camera) -> None:
    """``gridlens serve --workers 2``: both workers run a puller; two cameras pulled every
    5 s are each fetched once per interval."""
    db = f"sqlite:///{tmp_path}/w.db"
    store = Store.open(db)
    with ServerProcess(db, tmp_path / "data", workers=2):
        t_reg = time.monotonic()
        for i in range(2):
            store.add_device(
                f"cam{i}",
                camera.layout.roi,
                reference_jpeg=camera.layout.reference_jpeg,
                pull=PullChange(f"{camera.url}/capture/{i}", 5),
            )
        # fetched at once (within a 1 s tick), again 5 s later, next not before 10 s later
        time.sleep(max(0.0, t_reg + 9.3 - time.monotonic()))
        assert dict(camera.hits) == {"/capture/0": 2, "/capture/1": 2}
    assert store.count_readings() == 4
    store.close()


# ------------------------------------------------------------------------------ bad input


def test_bad_pull_settings_are_refused_over_rest(api_env: dict[str, Any], layout: Layout) -> None:
    c, admin = api_env["client"], api_env["admin"]
    dev = c.post("/api/v1/devices", json=layout.device_body("m1"), headers=admin).json()[
        "device_id"
    ]
    url = f"/api/v1/devices/{dev}"
    for body, words in [
        ({"pull_url": "ftp://cam/x.jpg"}, "pull_url must be an http:// or https:// URL"),
        ({"pull_url": "http:///capture"}, "pull_url must be an http:// or https:// URL"),
        ({"pull_url": "http://admin:no-colon-secret@cam/x"}, "must not hold a user or password"),
        ({"pull_url": "ftp://admin:no-colon-secret@cam/x"}, "got 'ftp://admin:***@cam/x'"),
        ({"pull_url": "http://cam/x", "pull_interval_s": 2}, "in [5, 86400], got 2"),
        ({"pull_url": "http://cam/x", "pull_interval_s": 10**6}, "in [5, 86400], got 1000000"),
        ({"pull_url": "http://cam/x", "pull_auth": "no-colon-secret"}, "pull_auth must be"),
        ({"pull_interval_s": 30}, "is not pulled; give pull_url"),
        ({"pull_url": "", "pull_interval_s": 30}, "an empty pull_url stops pulling"),
    ]:
        r = c.patch(url, json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert words in r.json()["detail"], (body, r.text)
        assert "no-colon-secret" not in r.text
    # every problem at once, in one message
    r = c.patch(url, json={"pull_url": "gopher://x", "pull_interval_s": 1}, headers=admin)
    assert r.status_code == 422
    assert "pull_url" in r.json()["detail"] and "pull_interval_s" in r.json()["detail"]
    assert c.get(url, headers=admin).json()["pull"] is None  # nothing changed

    body = {"pull_url": "https://cam.local/capture?user=u&pwd=hunter22", "pull_interval_s": 30}
    doc = c.patch(url, json=body, headers=admin).json()
    assert doc["pull"]["url"] == "https://cam.local/capture?user=u&pwd=***"
    assert "hunter22" not in json.dumps(api_env["store"].audit_log())
    doc = c.patch(url, json={"pull_auth": "u:p4ss"}, headers=admin).json()
    assert doc["pull"]["auth"] is True and doc["pull"]["interval_s"] == 30
    assert c.patch(url, json={"pull_auth": ""}, headers=admin).json()["pull"]["auth"] is False
    assert c.patch(url, json={"pull_url": ""}, headers=admin).json()["pull"] is None


def test_cli_pull_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gridlens.cli import main

    db = f"sqlite:///{tmp_path}/cli.db"
    ref, roi = render_reference(6, 1)
    (tmp_path / "ref.jpg").write_bytes(encode_jpeg(ref, 92))
    roi_doc = roi.to_dict()
    roi_doc["reference"]["image"] = "ref.jpg"
    (tmp_path / "roi.json").write_text(json.dumps(roi_doc))
    add = ["device", "add", "cam", "--roi", str(tmp_path / "roi.json"), "--db", db]

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    for args, words in [
        ((*add, "--pull-url", "file:///etc/passwd"), "pull_url must be an http:// or https://"),
        ((*add, "--pull-url", "http://cam/capture", "--pull-interval", "1"), "in [5, 86400]"),
        ((*add, "--pull-url", "http://cam/capture", "--pull-auth", "secretonly"), "user:pass"),
        ((*add, "--pull-interval", "30"), "--pull-interval and --pull-auth need --pull-url"),
        ((*add, "--pull-url", "http://cam/capture", "--pull-interval", "x"), "invalid int"),
        (("device", "set", "cam", "--no-pull", "--pull-url", "http://c/x", "--db", db),
         "not allowed with"),
    ]:  # fmt: skip
        code, out, err = run(*args)
        assert code == 2, (args, err)
        assert words in err and len(err.strip().splitlines()) == 1, (args, err)
        assert out == "" and "secretonly" not in err
    store = Store.open(db)
    assert store.devices() == []

    auth = f"{USER}:{PASSWORD}"
    code, out, err = run(*add, "--pull-url", "http://192.168.1.40/capture", "--pull-interval",
                         "30", "--pull-auth", auth, "--json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["pull"]["url"] == "http://192.168.1.40/capture" and doc["pull"]["auth"] is True
    assert PASSWORD not in out
    dev = store.device(doc["device_id"])
    assert dev.interval_s == 30  # online while photos come every pull interval
    code, out, err = run("device", "set", "cam", "--pull-interval", "120", "--db", db)
    assert code == 0, err
    assert out.splitlines()[-1] == (
        "photos fetched from http://192.168.1.40/capture every 120 s, with a login"
    )
    code, out, _ = run("device", "set", "cam", "--no-pull-auth", "--json", "--db", db)
    assert json.loads(out)["pull"]["auth"] is False
    code, out, _ = run("device", "set", "cam", "--no-pull", "--json", "--db", db)
    assert code == 0 and json.loads(out)["pull"] is None
    code, out, err = run("device", "set", "cam", "--pull-auth", auth, "--db", db)
    assert code == 2 and "is not pulled" in err
    assert PASSWORD not in json.dumps(store.audit_log())
    store.close()


# ------------------------------------------------------------------------------ MQTT


def test_pulled_readings_are_published_over_mqtt(tmp_path: Path, camera: Camera) -> None:
    """The pulled photo takes the upload path to the end: its value goes out over MQTT."""
    import uuid

    from fastapi.testclient import TestClient

    from gridlens.server.app import create_app
    from tests.server.test_server_mqtt import BROKER, Listener, _broker_up

    if not _broker_up():
        pytest.skip(f"no MQTT broker (Mosquitto) at {BROKER[0]}:{BROKER[1]}")
    prefix = f"gltest{uuid.uuid4().hex[:8]}"
    db = f"sqlite:///{tmp_path}/mq.db"
    store = Store.open(db)
    settings = _settings(db, tmp_path, pull_tick_s=0.1, mqtt_host=BROKER[0],
                         mqtt_port=BROKER[1], mqtt_prefix=prefix)  # fmt: skip
    listener = Listener(f"{prefix}/#")
    try:
        with TestClient(create_app(settings, store)):
            dev, _ = store.add_device(
                "porch",
                camera.layout.roi,
                reference_jpeg=camera.layout.reference_jpeg,
                pull=PullChange(f"{camera.url}/capture", 5),
            )
            base = f"{prefix}/{dev.id}-porch"  # topics are keyed by the device id
            [value] = listener.wait(f"{base}/value", 1, timeout=20)
            assert float(value) == pytest.approx(camera.value(0), abs=0.15)
            assert json.loads(listener.wait(f"{base}/json")[-1])["status"] == "ok"
        for leaf in ("value", "raw", "error", "rate", "json", "timestamp", "connection"):
            listener.client.publish(f"{base}/{leaf}", b"", retain=True)
        for obj in ("value", "rate", "error"):
            listener.client.publish(
                f"homeassistant/sensor/{prefix}_{dev.id}/{obj}/config", b"", retain=True
            )
    finally:
        listener.close()
        store.close()


def test_a_pulled_camera_can_be_registered_in_one_call(
    api_env: dict[str, Any], layout: Layout
) -> None:
    c, admin = api_env["client"], api_env["admin"]
    body = layout.device_body("gate", pull_url="http://cam.local/capture", pull_auth="u:p4ss")
    r = c.post("/api/v1/devices", json=body, headers=admin)
    assert r.status_code == 201, r.text
    doc = c.get(f"/api/v1/devices/{r.json()['device_id']}", headers=admin).json()
    assert doc["pull"]["url"] == "http://cam.local/capture" and doc["pull"]["interval_s"] == 60
    assert doc["pull"]["auth"] is True and "p4ss" not in json.dumps(doc)
    # bad settings: one 422, nothing registered
    bad = layout.device_body("gate2", pull_url="ftp://cam/x", pull_interval_s=2)
    r = c.post("/api/v1/devices", json=bad, headers=admin)
    assert r.status_code == 422 and "pull_url" in r.text and "pull_interval_s" in r.text
    assert all(d["name"] != "gate2" for d in c.get("/api/v1/devices", headers=admin).json())
