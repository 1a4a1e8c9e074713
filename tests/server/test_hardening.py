"""Issue 19, the HTTP part: each finding as an attacker or a careless client met it.

2. a consumption request over centuries built millions of buckets;
6. bodies were read whole before authentication, with no limit;
7. the REST API took the dashboard's cookie on writes from any origin;
9. ids >= 2^63 and dates in year 0 gave 500;
10. nothing slowed password guessing, failed logins were not audited;
13. error bodies had two shapes (a 422 ``detail`` string or list).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gridlens.store.timeutil import iso
from tests.server.conftest import Layout

HUGE = 2**63  # one more than the largest 64-bit id (commands)
WIDE = 2**31  # one more than the largest 32-bit id (devices: INTEGER in PostgreSQL)


@pytest.fixture
def env(api_env: dict[str, Any]) -> dict[str, Any]:
    return api_env


def _add_device(env: dict[str, Any], layout: Layout, name: str = "m1") -> tuple[int, str]:
    r = env["client"].post("/api/v1/devices", json=layout.device_body(name), headers=env["admin"])
    assert r.status_code == 201, r.text
    return r.json()["device_id"], r.json()["token"]


def _session(env: dict[str, Any], name: str) -> str:
    from sqlalchemy import select

    from gridlens.store.models import User

    store = env["store"]
    with store.session() as s:
        user = s.scalar(select(User).where(User.name == name))
    return str(store.new_session(user, 600.0))


def _one_error(r: Any, status: int, *words: str) -> dict[str, Any]:
    """One error of the documented shape: a ``detail`` line naming ``words``."""
    assert r.status_code == status, r.text
    doc: dict[str, Any] = r.json()
    assert isinstance(doc["detail"], str) and "\n" not in doc["detail"], doc
    for w in words:
        assert w in doc["detail"], (w, doc)
    return doc


# ------------------------------------------------------------------------------ finding 2


def test_consumption_over_centuries_is_one_clear_422(env: dict[str, Any], layout: Layout) -> None:
    dev, _ = _add_device(env, layout)
    url = f"/api/v1/devices/{dev}/consumption"
    c, viewer = env["client"], env["viewer"]
    wide = {"since": "1900-01-01", "until": "2200-01-01"}
    r = c.get(url, params={"bucket": "hour", **wide}, headers=viewer)
    _one_error(r, 422, "2,629,", "10,000", "bucket=day", "shorter range")
    r = c.get(url, params={"bucket": "day", **wide}, headers=viewer)
    _one_error(r, 422, "109,5", "10,000", "shorter range")
    # a year of hours and 27 years of days are fine; an empty range has no buckets
    year = {"since": "2025-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    doc = c.get(url, params={"bucket": "hour", **year}, headers=viewer).json()
    assert len(doc["points"]) == 8760
    days = {"bucket": "day", "since": "2000-01-01", "until": "2026-01-01"}
    assert len(c.get(url, params=days, headers=viewer).json()["points"]) == 9497
    back = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    assert c.get(url, params=back, headers=viewer).json()["points"] == []


def test_consumption_reads_only_its_window(env: dict[str, Any], layout: Layout) -> None:
    """A day's buckets from a long history read that day's readings and one either side,
    and give what the whole history gives."""
    from gridlens.store.queries import counter_window
    from gridlens.store.series import consumption

    dev, _ = _add_device(env, layout)
    store = env["store"]
    t0 = 1_700_006_400.0  # a midnight, UTC
    t = t0 + 600.0 * np.arange(30 * 144) + 37.0  # 30 days every 10 min, off the hour
    v = 100.0 + np.cumsum(np.random.default_rng(2).uniform(0, 0.3, t.size))
    store.import_counter(dev, list(zip(t.tolist(), v.tolist(), strict=True)), source="t", actor="t")
    lo, hi = t0 + 10 * 86400.0, t0 + 11 * 86400.0
    wt, _ = counter_window(store, dev, lo, hi)
    assert wt.size == 144 + 2 and wt[0] < lo and wt[-1] > hi
    doc = (
        env["client"]
        .get(
            f"/api/v1/devices/{dev}/consumption",
            params={"since": iso(lo), "until": iso(hi)},
            headers=env["viewer"],
        )
        .json()
    )
    _, full = consumption(t, v, 3600.0, since=lo, until=hi)
    assert [p["energy"] for p in doc["points"]] == pytest.approx(full.tolist(), rel=1e-12)


# ------------------------------------------------------------------------------ finding 9


def test_ids_past_their_column_and_year_0_are_422(env: dict[str, Any], layout: Layout) -> None:
    dev, _ = _add_device(env, layout)
    c, admin = env["client"], env["admin"]
    routes = [
        ("GET", "/api/v1/devices/{id}"),
        ("PATCH", "/api/v1/devices/{id}"),
        ("POST", "/api/v1/devices/{id}/token"),
        ("DELETE", "/api/v1/devices/{id}/token"),
        ("GET", "/api/v1/devices/{id}/readings"),
        ("GET", "/api/v1/devices/{id}/consumption"),
        ("GET", "/api/v1/devices/{id}/anomalies"),
        ("GET", "/api/v1/devices/{id}/commands"),
        ("POST", "/api/v1/devices/{id}/commands"),
        ("GET", "/api/v1/devices/{id}/export.csv"),
        ("GET", "/api/v1/devices/{id}/export.xml"),
        ("POST", "/api/v1/devices/{id}/roi/replay"),
        ("POST", "/api/v1/devices/{id}/import/greenbutton"),
    ]
    bodies = {"PATCH": {"unit": "m3"}, "POST": {"action": "capture", "roi": {}}}
    for bad in (WIDE, HUGE, 10**30, 0, -1):
        for method, path in routes:
            url = path.format(id=bad)
            body = bodies.get(method) if "commands" in url or method == "PATCH" else None
            if url.endswith("replay"):
                body = {"roi": layout.roi}
            r = c.request(method, url, json=body, headers=admin)
            doc = _one_error(r, 422, "device_id")
            assert doc["errors"][0]["loc"] == ["path", "device_id"], doc
    # the largest id is a valid one that does not exist
    _one_error(c.get(f"/api/v1/devices/{WIDE - 1}", headers=admin), 404, "no device")
    for when in ("0000-01-01T00:00:00Z", "0000-12-31", "1e30", "12345.5", "yesterday"):
        for path in ("readings", "consumption", "export.csv"):
            r = c.get(f"/api/v1/devices/{dev}/{path}", params={"since": when}, headers=admin)
            _one_error(r, 422, "since", "query parameter")
    # the oldest and newest date-times the API speaks are answered
    for when in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-23:59"):
        r = c.get(f"/api/v1/devices/{dev}/readings", params={"until": when}, headers=admin)
        assert r.status_code == 200, r.text
    # the dashboard's pages of a meter are 404 pages, not 500s
    c.cookies.set("gridlens_session", _session(env, "ada"))
    try:
        for path in ("/meters/{id}", "/meters/{id}/latest.jpg", "/meters/{id}/counter.json"):
            for bad in (WIDE, HUGE):
                assert c.get(path.format(id=bad)).status_code == 404, path
    finally:
        c.cookies.clear()


def test_a_command_id_past_64_bits_is_422(env: dict[str, Any], layout: Layout) -> None:
    dev, token = _add_device(env, layout)
    r = env["client"].post(
        f"/api/v1/devices/{dev}/commands/{HUGE}/ack",
        json={"ok": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    _one_error(r, 422, "command_id")


# ------------------------------------------------------------------------------ finding 13


def test_every_error_has_one_shape(env: dict[str, Any], layout: Layout) -> None:
    dev, _ = _add_device(env, layout)
    c, admin = env["client"], env["admin"]
    url = f"/api/v1/devices/{dev}/commands"
    # request validation: one line naming each problem, and the list for programs
    r = c.post(url, json={"action": "interval", "value": 5, "ttl_s": 0}, headers=admin)
    doc = _one_error(r, 422, "body field", "value", "ttl_s", "greater than or equal")
    assert {tuple(e["loc"]) for e in doc["errors"]} == {
        ("body", "interval", "value"),
        ("body", "interval", "ttl_s"),
    }
    r = c.post(url, content=b"{not json", headers={**admin, "Content-Type": "application/json"})
    _one_error(r, 422, "not valid JSON")
    r = c.get(f"/api/v1/devices/{dev}/readings", params={"limit": "many"}, headers=admin)
    _one_error(r, 422, "limit", "query parameter")
    # errors of the application, of HTTP and of routing: the same shape
    _one_error(c.get("/api/v1/devices/77", headers=admin), 404, "no device with id 77")
    _one_error(c.get("/api/v1/devices"), 401, "invalid or missing credentials")
    _one_error(c.get("/api/v1/no-such-thing", headers=admin), 404, "Not Found")
    r = c.put(f"/api/v1/devices/{dev}/token", headers=admin)
    _one_error(r, 405, "Method Not Allowed")
    assert set(r.headers["allow"].split(", ")) == {"POST", "DELETE"}
    r = c.delete("/api/v1/devices", headers=admin)
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_openapi_documents_types_and_every_error(env: dict[str, Any]) -> None:
    doc = env["client"].get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "Error" in schemas
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session"}
    for path, item in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in item.items():
            codes = set(op["responses"])
            assert {"401", "403", "422", "503"} <= codes, (method, path, codes)
            for code, resp in op["responses"].items():
                if code >= "400":
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Error"), (method, path, code)
            for p in op.get("parameters", []):
                if p["name"] in ("device_id", "command_id"):
                    # (an optional filter is integer-or-null: its integer half is bounded)
                    ints = [
                        x
                        for x in p["schema"].get("anyOf", [p["schema"]])
                        if x.get("type") == "integer"
                    ]
                    assert len(ints) == 1, (path, p)
                    assert ints[0]["minimum"] == 1
                    top = WIDE if p["name"] == "device_id" else HUGE
                    assert ints[0]["maximum"] == top - 1
                if p["name"] in ("since", "until"):
                    kinds = p["schema"].get("anyOf", [p["schema"]])
                    assert {"type": "string", "format": "date-time"} in kinds, (path, p)


# ------------------------------------------------------------------------------ finding 7


def test_cookie_writes_need_this_servers_origin(env: dict[str, Any], layout: Layout) -> None:
    """A page on another port of the same host cannot rotate a device token with the
    dashboard's cookie; the dashboard itself (Origin or Referer of this server) can, and
    bearer tokens need no Origin."""
    dev, _ = _add_device(env, layout)
    c = env["client"]
    url = f"/api/v1/devices/{dev}/token"
    cookie = {"Cookie": f"gridlens_session={_session(env, 'ada')}"}
    before = len(env["store"].audit_log(target=f"device:{dev}"))
    for origin in (
        {"Origin": "http://testserver:8081"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://testserver:8081/page"},
        {},
    ):
        for method in ("POST", "DELETE"):
            r = c.request(method, url, headers={**cookie, **origin})
            _one_error(r, 403, "cross-origin")
        r = c.patch(f"/api/v1/devices/{dev}", json={"unit": "m3"}, headers={**cookie, **origin})
        _one_error(r, 403, "cross-origin")
    assert len(env["store"].audit_log(target=f"device:{dev}")) == before  # nothing changed
    assert c.post(url, headers={**cookie, "Origin": "http://testserver"}).status_code == 201
    assert c.post(url, headers={**cookie, "Referer": "http://testserver/x"}).status_code == 201
    assert c.get(f"/api/v1/devices/{dev}", headers=cookie).status_code == 200  # reads: no Origin
    assert (
        c.post(url, headers={**env["admin"], "Origin": "https://evil.example"}).status_code == 201
    )


# ------------------------------------------------------------------------------ finding 6


def _answer(s: socket.socket) -> bytes:
    """An HTTP answer read from ``s``: its head and its ``Content-Length`` body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(h.split(b":")[1])
            for h in head.split(b"\r\n")
            if h.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _raw(port: int, head: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes]:
    """Send a request head and part of a body; the status and the answer, without sending
    the rest of the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = _answer(s)
        return int(data.split(b" ", 2)[1]), data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from gridlens.server.harness import ServerProcess
    from gridlens.store import Store

    tmp = tmp_path_factory.mktemp("hardening")
    db = f"sqlite:///{tmp}/h.db"
    store = Store.open(db)
    _, _, admin = store.add_user("ada", role="admin")
    _, _, viewer = store.add_user("vera", role="viewer")
    store.close()
    with ServerProcess(db, tmp / "data", log=tmp / "server.log") as srv:
        yield srv, admin, viewer


def test_bodies_are_refused_before_they_are_read(server: Any) -> None:
    """A 200 MB JSON body without credentials is answered 401 after its first kilobyte;
    with an admin's token but over the route's limit, 413; the server keeps serving."""
    srv, admin, viewer = server
    head = (
        "POST /api/v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 * 2**20}\r\n{{auth}}"
    )
    t0 = time.perf_counter()
    status, data = _raw(srv.port, head.format(auth=""), b'{"name": "' + b"x" * 1000)
    assert status == 401 and b"invalid or missing credentials" in data
    assert time.perf_counter() - t0 < 4.0  # the other 200 MB were never waited for
    bearer = "Authorization: Bearer {}\r\n"
    status, data = _raw(srv.port, head.format(auth=bearer.format(viewer)), b"{")
    assert status == 403  # a viewer may not register devices: the body is not read either
    status, data = _raw(srv.port, head.format(auth=bearer.format(admin)), b"{")
    assert status == 413 and b"limit" in data
    # a chunked body that passes the limit is cut off while it streams in
    chunked = head.replace(f"Content-Length: {200 * 2**20}", "Transfer-Encoding: chunked")
    piece = b"x" * 65536
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(chunked.format(auth=bearer.format(admin)).encode() + b"\r\n")
        try:
            for _ in range(200):  # 12.5 MB offered; the limit is about 3 MB
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError:
            pass  # the server answered and closed
        s.settimeout(5)
        answer = _answer(s)
    assert answer.startswith(b"HTTP/1.1 413") and b"limit" in answer, answer[:300]
    assert srv.get("/healthz")[0] == 200


def test_every_form_and_json_body_is_capped(env: dict[str, Any], layout: Layout) -> None:
    dev, _ = _add_device(env, layout)
    c, admin = env["client"], env["admin"]
    big = b'{"action": "capture", "pad": "' + b"x" * (200 * 1024) + b'"}'
    h = {**admin, "Content-Type": "application/json"}
    _one_error(c.post(f"/api/v1/devices/{dev}/commands", content=big, headers=h), 413, "limit")
    r = c.post("/login", data={"username": "x" * 300_000}, headers={"Origin": "http://testserver"})
    assert r.status_code == 413
    assert len(env["store"].audit_log()) >= 1  # and the server keeps serving
    assert c.get("/healthz").status_code == 200


# ------------------------------------------------------------------------------ finding 10


def _login(c: TestClient, name: str, password: str) -> Any:
    return c.post(
        "/login",
        data={"username": name, "password": password, "next": "/"},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )


def test_password_guessing_is_slowed_and_audited(env: dict[str, Any]) -> None:
    from gridlens.store import logins

    store, c = env["store"], env["client"]
    store.add_user("petra", role="viewer", password="the-right-password")
    answers = [_login(c, "petra", f"guess-{k:03d}") for k in range(20)]
    statuses = [r.status_code for r in answers]
    free = logins.FREE_FAILURES
    assert statuses[:free] == [401] * free
    assert 429 in statuses[free:], statuses
    throttled = next(r for r in answers if r.status_code == 429)
    wait = int(throttled.headers["Retry-After"])
    assert 1 <= wait <= logins.MAX_DELAY_S and "try again in" in throttled.text
    failed = [e for e in store.audit_log(500) if e["action"] == "login.failed"]
    assert len(failed) == statuses.count(401)  # a refused attempt checks nothing
    assert failed[0]["target"] == "user:petra" and failed[0]["actor"].startswith("ip:")
    # during the back-off even the right password waits; after it, it works
    r = _login(c, "petra", "the-right-password")
    assert r.status_code == 429 or (r.status_code == 303 and wait <= 1)
    time.sleep(float(r.headers.get("Retry-After", 0)) + 0.1)
    r = _login(c, "petra", "the-right-password")
    assert r.status_code == 303, r.text[-300:]
    # the count starts over after a success
    assert _login(c, "petra", "wrong-again").status_code == 401


def test_backoff_counts_across_servers_from_the_audit_log(env: dict[str, Any]) -> None:
    """The back-off is read from the database, so every process sharing it applies it;
    one address trying many names is slowed as well."""
    from gridlens.store import logins

    store = env["store"]
    now = 1_800_000_000.0
    for k in range(logins.FREE_FAILURES):
        assert logins.retry_after(store, "olaf", "10.0.0.1", now + k) == 0.0
        logins.record_failure(store, "olaf", "10.0.0.1", now + k)
    last = now + logins.FREE_FAILURES - 1
    assert logins.retry_after(store, "olaf", "10.0.0.9", last) == pytest.approx(1.0)
    assert logins.retry_after(store, "olaf", "10.0.0.9", last + 1.5) == 0.0
    assert logins.retry_after(store, "olaf", "10.0.0.9", last + logins.WINDOW_S + 1) == 0.0
    assert logins.backoff_s(logins.FREE_FAILURES + 3) == 8.0
    assert logins.backoff_s(10**6) == logins.MAX_DELAY_S
    for k in range(logins.ADDRESS_FREE_FAILURES):
        logins.record_failure(store, f"name-{k}", "10.0.0.2", now + k)
    later = now + logins.ADDRESS_FREE_FAILURES - 0.5  # half a second after the last
    assert logins.retry_after(store, "someone-new", "10.0.0.2", later) > 0
    assert logins.retry_after(store, "someone-new", "10.0.0.3", later) == 0.0


def test_short_passwords_are_refused(env: dict[str, Any]) -> None:
    from gridlens.errors import ParameterError

    with pytest.raises(ParameterError, match="at least 12 characters, got 8"):
        env["store"].add_user("shorty", password="12345678")
    assert env["store"].add_user("longer", password="123456789012")[1] == "123456789012"


# ------------------------------------------------------------------------------ memory

MEMORY_BUDGET_MIB = 100.0  # the target for any request of <= 1 KB from a viewer
HISTORY = 100_000  # one camera's readings: ten weeks of one photo a minute


def _seed_history(db: str, n: int) -> tuple[str, str]:
    """An admin, a viewer and one meter with ``n`` minute readings that look like a
    camera's (digits, alignment, photo path), inserted in bulk."""
    from sqlalchemy import insert

    from gridlens.meter.image import encode_jpeg
    from gridlens.meter.synth import render_reference
    from gridlens.server.ingest import device_roi
    from gridlens.store import Store
    from gridlens.store.models import Reading

    store = Store.open(db)
    _, _, viewer = store.add_user("vera", role="viewer", password="vera-password-1")
    ref, roi = render_reference(6, 1)
    jpeg = encode_jpeg(ref)
    dev, _ = store.add_device("meter-1", device_roi(roi.to_dict(), jpeg), reference_jpeg=jpeg)
    t0 = time.time() - n * 60.0
    digits = [{"value": float(k), "confidence": 0.97} for k in range(6)]
    align = {"method": "markers", "score": 0.93, "angle": 0.4, "scale": 1.01, "shift": [2, -1]}
    with store.engine.begin() as c:
        for lo in range(0, n, 20_000):
            c.execute(
                insert(Reading),
                [
                    {
                        "device_id": dev.id,
                        "capture_id": f"c{k}",
                        "captured_at": t0 + 60.0 * k,
                        "received_at": t0 + 60.0 * k + 1,
                        "status": "ok",
                        "value": 1000.0 + 0.01 * k,
                        "raw": f"{1000.0 + 0.01 * k:07.1f}",
                        "digits": digits,
                        "alignment": align,
                        "resynced": False,
                        "rate_per_h": 0.6,
                        "image_path": f"{dev.id}/day/c{k}.jpg",
                        "source": "camera",
                    }
                    for k in range(lo, min(n, lo + 20_000))
                ],
            )
    user = store.check_password("vera", "vera-password-1")
    assert user is not None
    session = str(store.new_session(user, 3600.0))
    store.close()
    return viewer, session


def _vm(pid: int, key: str) -> float:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(key)


@pytest.mark.slow
def test_no_small_viewer_request_costs_100_mb(tmp_path: Any) -> None:
    """The worst requests of a viewer we know, each on a fresh server after a warm-up of
    its kind (imports, caches), against ten weeks of minute readings: the growth of the
    server's peak resident memory stays under 100 MiB. The code before issue 19 took
    540 MiB for the readings, 2.1 GiB for the CSV export and 1.1 GiB for centuries of
    hourly consumption (on 500,000 readings)."""
    from pathlib import Path

    from gridlens.server.harness import ServerProcess

    db = f"sqlite:///{tmp_path}/mem.db"
    token, session = _seed_history(db, HISTORY)
    dev = "/api/v1/devices/1"
    year = "since=2025-12-02T00:00:00Z&until=2026-12-01T00:00:00Z"
    cases = [  # (warm-up, request)
        (f"{dev}/readings?limit=10", f"{dev}/readings?limit=100000"),
        (f"{dev}/readings?limit=10", f"{dev}/export.csv"),
        (f"{dev}/export.xml?interval=86400", f"{dev}/export.xml?interval=900"),
        (f"{dev}/consumption", f"{dev}/consumption?bucket=hour&{year}"),
        (f"{dev}/consumption", f"{dev}/consumption?since=1900-01-01&until=2200-01-01"),
        (f"{dev}/anomalies?days=3&model=hybrid", f"{dev}/anomalies?days=366&model=hybrid"),
        ("/meters/1/counter.json?days=1", "/meters/1/counter.json?days=3660"),
    ]
    headers = {"Authorization": f"Bearer {token}", "Cookie": f"gridlens_session={session}"}
    grew = {}
    for warm, path in cases:
        # (the fleet's anomaly scoring would start its first round during the request, and
        # that round imports the detectors once, ~125 MiB: not the request's memory)
        extra = ["--anomaly-every-s", "0"]
        with ServerProcess(db, tmp_path / "data", extra_args=extra) as srv:
            pid = srv.pids()[0]
            srv.request("GET", warm, headers=headers, timeout=300)
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak := now
            except OSError:
                pytest.skip("this kernel cannot reset a process's peak memory")
            before = _vm(pid, "VmRSS")
            status, _ = srv.request("GET", path, headers=headers, timeout=300)
            grew[path] = _vm(pid, "VmHWM") - before
            assert status in (200, 422), (path, status)
    print({p: round(m, 1) for p, m in grew.items()})
    assert max(grew.values()) < MEMORY_BUDGET_MIB, grew


def test_exports_and_charts_are_bounded_by_what_they_show(
    env: dict[str, Any], layout: Layout
) -> None:
    """The Green Button export refuses more than 50,000 intervals (a longer interval
    answers) and builds one datetime per interval, not per reading; the dashboard's
    counter chart thins as it reads."""
    from gridlens.greenbutton import parse_greenbutton
    from gridlens.store.queries import counter_thinned

    dev, _ = _add_device(env, layout)
    c, viewer, store = env["client"], env["viewer"], env["store"]
    t0 = 1_700_006_400.0
    t = t0 + 61.0 * np.arange(5000)  # every 61 s, off the interval edges
    v = 10.0 + np.cumsum(np.random.default_rng(3).uniform(0, 0.02, t.size))
    store.import_counter(dev, list(zip(t.tolist(), v.tolist(), strict=True)), source="a", actor="t")
    xml = c.get(f"/api/v1/devices/{dev}/export.xml?interval=900", headers=viewer).content
    got = [iv.value for iv in parse_greenbutton(xml)[0].intervals]
    edges = np.arange(np.ceil(t[0] / 900), np.floor(t[-1] / 900) + 1) * 900.0
    want = np.round(np.diff(np.interp(edges, t, v)) * 1000.0, 6)
    assert got == pytest.approx(want.tolist(), abs=1e-3)  # the XML keeps mWh
    tt, vv = counter_thinned(store, dev, 0.0, 100)
    assert 100 <= tt.size <= 101 and (tt[0], tt[-1]) == (t[0], t[-1]) and vv[-1] == v[-1]
    # two readings 600 days apart: 57,600 intervals of 15 min, 14,400 of an hour
    store.import_counter(dev, [(t0 + 600 * 86400.0, 99_999.0)], source="b", actor="t")
    r = c.get(f"/api/v1/devices/{dev}/export.xml?interval=900", headers=viewer)
    _one_error(r, 422, "57,", "50,000", "longer interval")
    assert c.get(f"/api/v1/devices/{dev}/export.xml?interval=3600", headers=viewer).is_success


def test_text_the_database_cannot_keep_is_422(env: dict[str, Any], layout: Layout) -> None:
    """PostgreSQL keeps no NUL in text: a unit or an ack detail with one was a 500 there."""
    dev, token = _add_device(env, layout)
    c, admin = env["client"], env["admin"]
    r = c.patch(f"/api/v1/devices/{dev}", json={"unit": "k\x00Wh"}, headers=admin)
    _one_error(r, 422, "unit")
    r = c.post("/api/v1/devices", json=layout.device_body("m2", unit="m\x013"), headers=admin)
    _one_error(r, 422, "unit")
    cmd = c.post(f"/api/v1/devices/{dev}/commands", json={"action": "capture"}, headers=admin)
    url = f"/api/v1/devices/{dev}/commands/{cmd.json()['id']}/ack"
    bearer = {"Authorization": f"Bearer {token}"}
    _one_error(c.post(url, json={"ok": True, "detail": "a\x00b"}, headers=bearer), 422, "detail")
    assert c.post(url, json={"ok": True, "detail": "two\nlines"}, headers=bearer).is_success
    assert c.get(f"/api/v1/devices/{dev}", headers=admin).json()["unit"] == "kWh"
