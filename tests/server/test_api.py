"""The REST API and device ingest, end to end through the ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridlens.store.timeutil import iso
from tests.server.conftest import Layout, upload_headers


@pytest.fixture
def env(api_env: dict[str, Any]) -> dict[str, Any]:
    return api_env


def _add_device(
    env: dict[str, Any], layout: Layout, name: str = "m1", **kw: Any
) -> tuple[int, dict[str, str]]:
    r = env["client"].post(
        "/api/v1/devices", json=layout.device_body(name, **kw), headers=env["admin"]
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    return doc["device_id"], {"Authorization": f"Bearer {doc['token']}"}


def _upload(
    env: dict[str, Any],
    dev: int,
    tok: dict[str, str],
    body: bytes,
    cid: str | None = None,
    at: float | None = None,
) -> Any:
    h = upload_headers(tok, cid or None, at)
    return env["client"].post(f"/api/v1/devices/{dev}/images", content=body, headers=h)


def test_upload_reads_stores_and_is_idempotent(env: dict[str, Any], layout: Layout) -> None:
    dev, tok = _add_device(env, layout, max_rate=15.0)
    t0 = time.time() - 3600
    r = _upload(env, dev, tok, layout.photo(4829.9, seed=1), "c1", t0)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["reading"]["status"] == "ok"
    assert doc["reading"]["value"] == pytest.approx(4829.9)
    assert doc["reading"]["raw"] == "04829.9"
    assert len(doc["reading"]["digits"]) == 6 and doc["duplicate"] is False
    # same capture id again: one reading, the first answer
    again = _upload(env, dev, tok, layout.photo(4829.9, seed=2), "c1", t0)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["reading"]["id"] == doc["reading"]["id"]
    assert env["store"].count_readings(dev) == 1
    # the next photo is judged against that history: 1.2 kWh in 10 min is plausible ...
    ok = _upload(env, dev, tok, layout.photo(4831.1, seed=3), "c2", t0 + 600).json()["reading"]
    assert ok["status"] == "ok" and ok["rate_per_h"] == pytest.approx(7.2, abs=1e-6)
    # ... a decrease is rejected with a reason, stored, and not a value
    bad = _upload(env, dev, tok, layout.photo(4700.0, seed=4), "c3", t0 + 1200).json()["reading"]
    assert (
        bad["status"] == "rejected"
        and bad["value"] is None
        and "below the last accepted" in bad["reason"]
    )
    rows = env["client"].get(f"/api/v1/devices/{dev}/readings", headers=env["viewer"]).json()
    assert [r["status"] for r in rows] == ["ok", "ok", "rejected"]
    assert rows[0]["captured_at"] == iso(t0)
    since = iso(t0 + 300)
    rows = (
        env["client"]
        .get(f"/api/v1/devices/{dev}/readings", params={"since": since}, headers=env["viewer"])
        .json()
    )
    assert [r["capture_id"] for r in rows] == ["c2", "c3"]
    # the photo is on disk
    img = Path(env["settings"].images) / str(dev)
    assert len(list(img.rglob("*.jpg"))) == 3


def test_bad_uploads_are_refused_and_nothing_is_stored(env: dict[str, Any], layout: Layout) -> None:
    dev, tok = _add_device(env, layout)
    photo = layout.photo(12.3)
    cases = [
        (b"GIF89a not a photo", 422, "not a JPEG"),
        (photo[: len(photo) // 2], 422, "truncated"),
        (b"\xff\xd8\xff" + b"\x00" * 64, 422, ""),
        (b"\xff\xd8\xff" + b"\x00" * (2 * 1024 * 1024 + 10), 413, "limit"),
    ]
    for body, status, words in cases:
        r = _upload(env, dev, tok, body, "x")
        assert r.status_code == status, (status, r.text)
        assert words in r.json()["detail"]
    r = _upload(env, dev, tok, photo, "bad id with spaces")
    assert r.status_code == 422 and "X-Capture-Id" in r.json()["detail"]
    h = {**tok, "X-Captured-At": "yesterday"}
    r = env["client"].post(f"/api/v1/devices/{dev}/images", content=photo, headers=h)
    assert r.status_code == 422 and "X-Captured-At" in r.json()["detail"]
    h = {**tok, "X-Captured-At": iso(time.time() + 86400) or ""}
    r = env["client"].post(f"/api/v1/devices/{dev}/images", content=photo, headers=h)
    assert r.status_code == 422 and "future" in r.json()["detail"]
    assert env["store"].count_readings(dev) == 0
    # the service keeps serving
    assert _upload(env, dev, tok, photo, "x").status_code == 201
    assert env["client"].get("/healthz").json()["status"] == "ok"


def test_credentials_and_roles(env: dict[str, Any], layout: Layout) -> None:
    c = env["client"]
    dev, tok = _add_device(env, layout, "a")
    dev2, _tok2 = _add_device(env, layout, "b")
    photo = layout.photo(5.0)
    # a device token uploads only for its own device
    assert _upload(env, dev2, tok, photo).status_code == 403
    # a user token cannot upload; nothing or garbage is 401 with the same message
    assert _upload(env, dev, env["admin"], photo).status_code == 403
    for h in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ):
        r = c.get("/api/v1/devices", headers=h)
        assert r.status_code == 401 and r.json()["detail"] == "invalid or missing credentials"
    # devices cannot read the API; viewers cannot command; operators can
    assert c.get("/api/v1/devices", headers=tok).status_code == 403
    cmd = {"action": "relay", "state": "off"}
    assert (
        c.post(f"/api/v1/devices/{dev}/commands", json=cmd, headers=env["viewer"]).status_code
        == 403
    )
    assert c.post(f"/api/v1/devices/{dev}/commands", json=cmd, headers=tok).status_code == 403
    assert (
        c.post(f"/api/v1/devices/{dev}/commands", json=cmd, headers=env["operator"]).status_code
        == 201
    )
    # only admins register devices
    r = c.post("/api/v1/devices", json=layout.device_body("c"), headers=env["operator"])
    assert r.status_code == 403
    # an expired session is refused like a wrong token
    user = env["store"].check_password  # noqa: F841 - sessions are made by the dashboard login
    from sqlalchemy import select

    from gridlens.store.models import User

    with env["store"].session() as s:
        u = s.scalar(select(User).where(User.name == "vera"))
    sess = env["store"].new_session(u, ttl_s=0.01)
    time.sleep(0.05)
    r = c.get("/api/v1/devices", headers={"Authorization": f"Bearer {sess}"})
    assert r.status_code == 401


def test_device_registration_errors(env: dict[str, Any], layout: Layout) -> None:
    c = env["client"]
    _add_device(env, layout, "dup")
    r = c.post("/api/v1/devices", json=layout.device_body("dup"), headers=env["admin"])
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    body = layout.device_body("x")
    body["roi"] = {"digits": [], "decimals": 0}
    r = c.post("/api/v1/devices", json=body, headers=env["admin"])
    assert r.status_code == 422
    body = layout.device_body("y")
    body["reference_jpeg_b64"] = "!!notbase64"
    r = c.post("/api/v1/devices", json=body, headers=env["admin"])
    assert r.status_code == 422 and "base64" in r.json()["detail"]
    assert c.get("/api/v1/devices/999/readings", headers=env["viewer"]).status_code == 404


def test_commands_lifecycle_and_audit(env: dict[str, Any], layout: Layout) -> None:
    c = env["client"]
    dev, tok = _add_device(env, layout)
    url = f"/api/v1/devices/{dev}/commands"
    for body, status in [
        ({"action": "relay", "state": "off"}, 201),
        ({"action": "interval", "value": 300}, 201),
        ({"action": "capture", "state": "now", "ttl_s": 1}, 201),
        ({"action": "relay", "state": "maybe"}, 422),
        ({"action": "interval", "value": 1}, 422),
        ({"action": "selfdestruct"}, 422),
    ]:
        r = c.post(url, json=body, headers=env["operator"])
        assert r.status_code == status, (body, r.text)
    cmds = c.get(url, headers=env["viewer"]).json()["commands"]
    assert [x["status"] for x in cmds] == ["pending"] * 3
    relay_id = cmds[-1]["id"]
    # the next upload delivers them
    r = _upload(env, dev, tok, layout.photo(100.0), "u1").json()
    assert [x["action"] for x in r["commands"]] == ["relay", "interval", "capture"]
    assert c.get(url, headers=tok).json()["commands"] == []  # nothing pending any more
    r = c.post(f"{url}/{relay_id}/ack", json={"ok": True, "detail": "relay off"}, headers=tok)
    assert r.status_code == 200 and r.json()["status"] == "acked"
    assert c.post(f"{url}/999/ack", json={"ok": True}, headers=tok).status_code == 404
    # an ack must say whether the command was carried out: no default, no "yes"
    for bad in ({}, {"detail": "done"}, {"ok": "yes"}, {"ok": 1}):
        assert c.post(f"{url}/{relay_id}/ack", json=bad, headers=tok).status_code == 422
    # a new command reaches a polling device
    new = c.post(url, json={"action": "flash", "state": "on"}, headers=env["admin"]).json()
    got = c.get(url, headers=tok).json()["commands"]
    assert [x["id"] for x in got] == [new["id"]]
    # the capture command expires unacknowledged
    time.sleep(1.2)
    states = {
        x["action"]: x["status"] for x in c.get(url, headers=env["viewer"]).json()["commands"]
    }
    assert states == {
        "relay": "acked",
        "interval": "delivered",
        "capture": "expired",
        "flash": "delivered",
    }
    log = c.get("/api/v1/audit", headers=env["admin"]).json()
    actions = [(e["actor"], e["action"]) for e in log]
    assert ("otto", "command.create") in actions and ("ada", "command.create") in actions
    assert (f"device:{dev}", "command.ack") in actions
    assert c.get("/api/v1/audit", headers=env["operator"]).status_code == 403


def test_consumption_and_exports(env: dict[str, Any], layout: Layout) -> None:
    c = env["client"]
    dev, tok = _add_device(env, layout)
    t0 = (time.time() // 3600 - 3) * 3600  # three whole hours ago
    values = [100.0, 100.5, 101.5, 103.0]  # 0.5, 1.0, 1.5 kWh in three hours
    for i, v in enumerate(values):
        assert (
            _upload(env, dev, tok, layout.photo(v, seed=i), f"h{i}", t0 + 3600 * i).status_code
            == 201
        )
    doc = c.get(
        f"/api/v1/devices/{dev}/consumption",
        params={"since": iso(t0), "until": iso(t0 + 3 * 3600)},
        headers=env["viewer"],
    ).json()
    assert [p["energy"] for p in doc["points"]] == pytest.approx([0.5, 1.0, 1.5])
    day = c.get(
        f"/api/v1/devices/{dev}/consumption",
        params={"bucket": "day", "since": iso(t0)},
        headers=env["viewer"],
    ).json()
    assert sum(p["energy"] or 0 for p in day["points"]) == pytest.approx(3.0)
    csv_text = c.get(f"/api/v1/devices/{dev}/export.csv", headers=env["viewer"]).text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("captured_at,value_kWh") and len(lines) == 5
    xml = c.get(f"/api/v1/devices/{dev}/export.xml", headers=env["viewer"]).content
    from gridlens.greenbutton import parse_greenbutton

    series = parse_greenbutton(xml)[0]
    assert [iv.value for iv in series.intervals] == pytest.approx([500.0, 1000.0, 1500.0])
    assert (
        c.get(
            f"/api/v1/devices/{dev}/export.xml", params={"interval": 7}, headers=env["viewer"]
        ).status_code
        == 422
    )


@pytest.mark.data
def test_greenbutton_import_real_file(env: dict[str, Any], layout: Layout, gb_file: Path) -> None:
    c = env["client"]
    dev, _ = _add_device(env, layout)
    data = gb_file.read_bytes()
    url = f"/api/v1/devices/{dev}/import/greenbutton"
    assert c.post(url, content=data, headers=env["operator"]).status_code == 403
    doc = c.post(url, content=data, headers=env["admin"]).json()
    assert (
        doc["intervals"] == 1340 and doc["added"] == 1341 and doc["kwh"] == pytest.approx(1391.666)
    )
    assert c.post(url, content=data, headers=env["admin"]).json()["added"] == 0  # idempotent
    r = c.post(url, content=data[: len(data) // 2], headers=env["admin"])
    assert r.status_code == 422 and "XML" in r.json()["detail"]
    # export at 15 minutes gives the file's intervals back
    from gridlens.greenbutton import parse_greenbutton

    out = parse_greenbutton(
        c.get(
            f"/api/v1/devices/{dev}/export.xml", params={"interval": 900}, headers=env["viewer"]
        ).content
    )[0]
    orig = parse_greenbutton(data)[0]
    assert [iv.value for iv in out.intervals] == pytest.approx([iv.value for iv in orig.intervals])


def test_health_metrics_openapi(env: dict[str, Any], layout: Layout) -> None:
    c = env["client"]
    dev, tok = _add_device(env, layout)
    _upload(env, dev, tok, layout.photo(1.0), "m1")
    h = c.get("/healthz").json()
    assert h == {"status": "ok", "version": h["version"], "db": "ok", "mqtt": None}
    m = c.get("/metrics").text
    assert 'gridlens_uploads_total{status="ok"} 1' in m
    assert "gridlens_request_seconds_bucket" in m
    spec = c.get("/openapi.json").json()
    for path in (
        "/api/v1/devices",
        "/api/v1/devices/{device_id}/readings",
        "/api/v1/devices/{device_id}/commands",
        "/api/v1/devices/{device_id}/images",
    ):
        assert path in spec["paths"]


def test_anomalies_of_a_meter_flag_a_night_time_load(env: dict[str, Any], layout: Layout) -> None:
    """Ten days of a daily load imported as counter readings; one night runs a 5 kW machine."""
    dev, _ = _add_device(env, layout, "factory")
    now = time.time()
    t0 = (now // 86400 - 10) * 86400
    hours = np.arange(10 * 24)
    hod = hours % 24
    kwh = np.where((hod >= 7) & (hod < 18), 3.0, 0.5)
    bad = 7 * 24 + 2  # 02:00 on day 7
    kwh[bad : bad + 3] += 5.0
    counter = np.r_[0.0, np.cumsum(kwh)] + 1000.0
    points = [(float(t0 + 3600 * k), float(c)) for k, c in enumerate(counter)]
    env["store"].import_counter(dev, points, source="test", actor="ada")
    r = env["client"].get(f"/api/v1/devices/{dev}/anomalies?days=12", headers=env["viewer"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model"] == "profile" and len(doc["points"]) == 240
    top = doc["events"][0]
    assert top["start"] == t0 + 3600 * bad and top["end"] == t0 + 3600 * (bad + 3)
    flagged = [p["t"] for p in doc["points"] if p["anomaly"]]
    assert set(flagged) <= {t0 + 3600 * (bad + k) for k in range(-1, 4)}
    r = env["client"].get(
        f"/api/v1/devices/{dev}/anomalies?days=12&model=hybrid", headers=env["viewer"]
    )
    assert r.status_code == 200 and len(r.json()["events"]) == 1, r.text
    top = r.json()["events"][0]
    assert top["start"] <= t0 + 3600 * bad and top["end"] >= t0 + 3600 * (bad + 3)
    assert top["end"] - top["start"] <= 6 * 3600
    # too little data: a clear note, no error
    dev2, _ = _add_device(env, layout, "new")
    r = env["client"].get(f"/api/v1/devices/{dev2}/anomalies", headers=env["viewer"])
    assert r.status_code == 200 and "needs 3 days" in r.json()["note"]
    assert env["client"].get(f"/api/v1/devices/{dev}/anomalies").status_code == 401
