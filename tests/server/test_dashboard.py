"""The dashboard pages through the real app (TestClient): login, meters, photo, commands, PQ."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gridlens import pq
from gridlens.meter.image import encode_jpeg
from gridlens.meter.synth import render_meter, render_reference
from gridlens.server.app import create_app
from gridlens.server.auth import SESSION_COOKIE
from gridlens.server.settings import Settings
from tests.server.conftest import upload_headers

PASSWORDS = {"admin": "admin-pass-1", "olga": "operator-pass-1", "vic": "viewer-pass-1"}
ROLES = {"admin": "admin", "olga": "operator", "vic": "viewer"}
READINGS = (1234.5, 1235.1, 1236.0, 1237.2, 1238.4)
# a browser names the page's origin on every POST; the dashboard refuses writes without it
SAME_ORIGIN = {"Origin": "http://testserver"}


@dataclass
class Env:
    app: FastAPI
    client: TestClient
    tmp: Path
    admin_token: str
    meter: int
    garage: int
    last_value: float
    published: list[tuple[int, int]] = field(default_factory=list)


def _register(client: TestClient, token: str, name: str) -> tuple[int, str]:
    ref, roi = render_reference(6, 1)
    r = client.post(
        "/api/v1/devices",
        json={
            "name": name,
            "roi": roi.to_dict(),
            "reference_jpeg_b64": base64.b64encode(encode_jpeg(ref)).decode(),
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    return int(doc["device_id"]), str(doc["token"])


def _upload(client: TestClient, dev: int, token: str, value: float, t: float, seed: int) -> Any:
    m = render_meter(value, seed=seed)
    r = client.post(
        f"/api/v1/devices/{dev}/images",
        content=encode_jpeg(m.image),
        headers={**upload_headers(token), "X-Captured-At": f"{t:.3f}"},  # epoch form
    )
    assert r.status_code == 201, r.text
    return r.json()["reading"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("dash")
    app = create_app(
        Settings(db=f"sqlite:///{tmp}/t.db", data_dir=str(tmp / "data"), log_requests=False)
    )
    with TestClient(app, headers=SAME_ORIGIN) as client:
        store = app.state.store
        tokens = {}
        for name, pw in PASSWORDS.items():
            _, _, tokens[name] = store.add_user(name, role=ROLES[name], password=pw)
        meter, dev_token = _register(client, tokens["admin"], "kitchen")
        now = time.time()
        last = None
        for k, v in enumerate(READINGS):
            rd = _upload(client, meter, dev_token, v, now - (len(READINGS) - k) * 3600, k)
            assert rd["status"] == "ok", rd
            last = rd["value"]
        rej = _upload(client, meter, dev_token, 1000.0, now - 60, 9)  # counters only count up
        assert rej["status"] == "rejected"
        garage, g_token = _register(client, tokens["admin"], "garage")
        _upload(client, garage, g_token, 42.0, now - 120, 3)
        assert last is not None
        e = Env(app, client, tmp, tokens["admin"], meter, garage, float(last))
        app.state.publish_command = lambda dev, cmd: e.published.append((dev.id, cmd.id))
        yield e


def login(client: TestClient, name: str, password: str | None = None, **kw: Any) -> Any:
    client.cookies.clear()
    return client.post(
        "/login",
        data={"username": name, "password": password or PASSWORDS[name], "next": "/"},
        follow_redirects=False,
        **kw,
    )


@pytest.fixture
def as_admin(env: Env) -> TestClient:
    assert login(env.client, "admin").status_code == 303
    return env.client


# ------------------------------------------------------------------------------ login


def test_pages_need_a_session(env: Env) -> None:
    env.client.cookies.clear()
    for path in ("/", "/meters/1", "/pq", "/grid", "/anomaly", "/meters/1?x=1"):
        r = env.client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next=%2F"), r.headers["location"]
    assert env.client.get("/meters/1?x=1", follow_redirects=False).headers["location"] == (
        "/login?next=%2Fmeters%2F1%3Fx%3D1"
    )
    assert env.client.get("/meters/1/latest.jpg").status_code == 401
    assert env.client.get("/meters/1/counter.json").status_code == 401
    r = env.client.post("/pq", files={"file": ("a.csv", b"x")}, follow_redirects=False)
    assert r.status_code == 303
    page = env.client.get("/login?next=/meters/1")
    assert page.status_code == 200
    assert 'name="password"' in page.text and 'value="/meters/1"' in page.text


def test_wrong_password_gives_the_form_again_without_a_session(env: Env) -> None:
    for name, pw in (("admin", "not-the-password"), ("nobody", "whatever-123")):
        r = login(env.client, name, pw)
        assert r.status_code == 401
        assert "wrong user name or password" in r.text
        assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
        assert SESSION_COOKIE not in env.client.cookies


def test_login_sets_a_strict_cookie_and_goes_to_next(env: Env) -> None:
    r = login(env.client, "vic")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=gls_")
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    for target, expect in (
        ("/meters/1?a=b", "/meters/1?a=b"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ):
        env.client.cookies.clear()
        r = env.client.post(
            "/login",
            data={"username": "vic", "password": PASSWORDS["vic"], "next": target},
            follow_redirects=False,
        )
        assert r.headers["location"] == expect, target


def test_logout_revokes_the_session(env: Env) -> None:
    login(env.client, "vic")
    token = env.client.cookies[SESSION_COOKIE]
    r = env.client.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    env.client.cookies.set(SESSION_COOKIE, token)  # a stolen copy no longer works
    assert env.client.get("/", follow_redirects=False).status_code == 303
    assert env.client.get("/api/v1/devices").status_code == 401


def test_api_token_in_the_cookie_is_not_a_dashboard_session(env: Env) -> None:
    env.client.cookies.clear()
    env.client.cookies.set(SESSION_COOKIE, env.admin_token)
    assert env.client.get("/", follow_redirects=False).status_code == 303


# ------------------------------------------------------------------------------ pages


def test_overview_lists_the_meters(env: Env, as_admin: TestClient) -> None:
    r = as_admin.get("/")
    assert r.status_code == 200
    html = r.text
    assert 'href="/meters/1"' in html and ">kitchen<" in html and ">garage<" in html
    assert f"{env.last_value:,.1f} kWh" in html
    assert "rejected" in html and "below the last accepted" in html
    assert "online" in html
    assert 'http-equiv="refresh" content="60"' in html
    assert re.search(r"<strong>\d+</strong> meters,\s+<strong>\d+</strong> online", html)
    assert "UTC" in html


def test_overview_empty_state(tmp_path: Path) -> None:
    app = create_app(
        Settings(db=f"sqlite:///{tmp_path}/e.db", data_dir=str(tmp_path / "d"), log_requests=False)
    )
    with TestClient(app, headers=SAME_ORIGIN) as client:
        app.state.store.add_user("vic", role="viewer", password=PASSWORDS["vic"])
        login(client, "vic")
        r = client.get("/")
    assert r.status_code == 200
    assert "No meters yet" in r.text
    assert "gridlens device add NAME --roi ROI.json" in r.text


def test_meter_page(env: Env, as_admin: TestClient) -> None:
    r = as_admin.get(f"/meters/{env.meter}")
    assert r.status_code == 200
    html = r.text
    assert "<h1>kitchen</h1>" in html
    for chart in ("chart-hourly", "chart-daily", "chart-counter"):
        assert f'id="{chart}"' in html
    assert "/api/v1/devices/1/consumption?bucket=hour" in html
    assert "/static/vendor/uplot/uPlot.iife.min.js" in html
    assert 'id="anomalies"' in html
    rejected = html.split('id="rejected"')[1].split('id="commands"')[0]
    assert "below the last accepted" in rejected and "UTC" in rejected
    assert 'id="command-form"' in html  # admin may send
    assert as_admin.get("/meters/99").status_code == 404


def test_counter_json_and_consumption_api_feed_the_charts(env: Env, as_admin: TestClient) -> None:
    doc = as_admin.get(f"/meters/{env.meter}/counter.json").json()
    assert doc["unit"] == "kWh" and len(doc["t"]) == len(READINGS) == len(doc["v"])
    assert doc["v"] == sorted(doc["v"])
    cons = as_admin.get(f"/api/v1/devices/{env.meter}/consumption?bucket=hour").json()
    assert sum(p["energy"] is not None for p in cons["points"]) >= 4


def test_latest_photo_is_aligned_and_annotated(env: Env, as_admin: TestClient) -> None:
    r = as_admin.get(f"/meters/{env.meter}/latest.jpg")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-gridlens-alignment"] == "ok"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (480, 640, 3)
    # the digit boxes are drawn in colour over the dark counter window
    _, roi = render_reference(6, 1)
    b = roi.digits[0]
    edge = img[b.y : b.y2 + 1, b.x].astype(int)
    assert (np.abs(edge[:, 1] - edge[:, 0]) > 60).mean() > 0.5


def test_pruned_photo_gives_a_placeholder(env: Env, as_admin: TestClient) -> None:
    for f in (env.tmp / "data" / "images" / str(env.garage)).rglob("*.jpg"):
        f.unlink()
    r = as_admin.get(f"/meters/{env.garage}/latest.jpg")
    assert r.status_code == 404
    assert r.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR) is not None


def test_placeholder_pages(env: Env, as_admin: TestClient) -> None:
    grid = as_admin.get("/grid")
    assert grid.status_code == 200 and "gridlens powerflow" in grid.text
    assert "gridlens place" in grid.text
    anomaly = as_admin.get("/anomaly")
    assert anomaly.status_code == 200 and "Anomalies" in anomaly.text


def test_static_assets_are_served(env: Env) -> None:
    for path in (
        "/static/gridlens.js",
        "/static/gridlens.css",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/uPlot.min.css",
    ):
        assert env.client.get(path).status_code == 200, path


# ------------------------------------------------------------------------------ commands


def _commands(env: Env) -> list[dict[str, Any]]:
    r = env.client.get(
        f"/api/v1/devices/{env.meter}/commands",
        headers={"Authorization": f"Bearer {env.admin_token}"},
    )
    cmds: list[dict[str, Any]] = r.json()["commands"]
    return cmds


def test_viewer_sees_commands_but_cannot_send(env: Env) -> None:
    login(env.client, "vic")
    page = env.client.get(f"/meters/{env.meter}")
    assert page.status_code == 200
    assert 'id="command-form"' not in page.text
    assert "needs the operator role" in page.text
    before = len(_commands(env))
    r = env.client.post(f"/meters/{env.meter}/commands", data={"command": "relay:off"})
    assert r.status_code == 403
    assert len(_commands(env)) == before


@pytest.mark.parametrize("user", ["olga", "admin"])
def test_operator_and_admin_send_commands(env: Env, user: str) -> None:
    login(env.client, user)
    r = env.client.post(
        f"/meters/{env.meter}/commands",
        data={"command": "relay:off"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"/meters/{env.meter}?sent=")
    newest = _commands(env)[0]
    assert (newest["action"], newest["state"], newest["status"]) == ("relay", "off", "pending")
    assert newest["created_by"] == user
    assert env.published[-1] == (env.meter, newest["id"])
    page = env.client.get(r.headers["location"])
    assert f"Command #{newest['id']} queued" in page.text
    assert "st-pending" in page.text

    r = env.client.post(
        f"/meters/{env.meter}/commands", data={"command": "interval", "value": "300"}
    )
    assert r.status_code == 200  # after the redirect
    assert (_commands(env)[0]["action"], _commands(env)[0]["value"]) == ("interval", 300)


def test_invalid_command_shows_the_error(env: Env) -> None:
    login(env.client, "olga")
    before = len(_commands(env))
    for data, msg in (
        ({"command": "interval", "value": "5"}, "[10, 86400]"),
        ({"command": "interval", "value": "soon"}, "whole number of seconds"),
        ({"command": "relay:maybe"}, "needs state on|off"),
        ({"command": "selfdestruct"}, "unknown command"),
    ):
        r = env.client.post(f"/meters/{env.meter}/commands", data=data)
        assert r.status_code == 422, data
        assert 'id="command-error"' in r.text and msg in r.text, (data, r.text[-500:])
    assert len(_commands(env)) == before


def test_cross_origin_posts_are_refused(env: Env) -> None:
    login(env.client, "admin")
    before = len(_commands(env))
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "", "Referer": "https://evil.example/page"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "http://testserver:8080"},  # another port of the same host
        {"Origin": ""},  # says nowhere where it comes from
    ):
        r = env.client.post(
            f"/meters/{env.meter}/commands", data={"command": "relay:on"}, headers=headers
        )
        assert r.status_code == 403, headers
        assert "Cross-origin" in r.text
    assert len(_commands(env)) == before
    r = login(env.client, "admin", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and SESSION_COOKIE not in env.client.cookies
    assert "Cross-origin" in r.text
    login(env.client, "admin")
    r = env.client.post(
        f"/meters/{env.meter}/commands",
        data={"command": "capture:now"},
        headers={"Origin": "", "Referer": "http://testserver/meters/1"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert len(_commands(env)) == before + 1


# ------------------------------------------------------------------------------ power quality


def _waveform_csv() -> bytes:
    wf = pq.synthesize(
        [pq.Harmonic(1, 230.0), pq.Harmonic(5, 12.0, 20.0)],
        [pq.Harmonic(1, 40.0, 30.0), pq.Harmonic(3, 8.0, 10.0)],
        f_hz=50.0,
        fs_hz=5000.0,
        duration_s=1.0,
    )
    path = io.StringIO()
    n = len(wf.v)
    np.savetxt(
        path,
        np.column_stack([np.arange(n) / wf.fs_hz, wf.v, wf.i]),
        delimiter=",",
        header="t,v,i",
        comments="",
        fmt="%.9g",
    )
    return path.getvalue().encode()


def test_pq_upload_shows_three_power_factors(env: Env, as_admin: TestClient) -> None:
    assert as_admin.get("/pq").status_code == 200
    r = as_admin.post(
        "/pq",
        files={"file": ("wave.csv", _waveform_csv(), "text/csv")},
        data={"f0": "50", "track": "on"},
    )
    assert r.status_code == 200, r.text[-400:]
    pfs = dict(re.findall(r'data-method="(\w+)">([0-9.]+)<', r.text))
    assert set(pfs) == {"dq", "power_triangle", "time_delay"}
    assert float(pfs["dq"]) == pytest.approx(np.cos(np.radians(30.0)), abs=1e-3)
    assert float(pfs["power_triangle"]) < float(pfs["dq"])  # harmonics lower P/(V I)
    assert re.search(r'id="pq-f">50\.000\d Hz', r.text)
    assert 'id="pq-thdv"' in r.text and 'id="pq-p1"' in r.text
    assert 'src="data:image/png;base64,' in r.text
    assert "wave.csv" in r.text


def test_pq_bad_files_give_the_form_with_one_line(env: Env, as_admin: TestClient) -> None:
    for name, body, msg in (
        ("wave.csv", b"hello,world\n1,2\n", "no column"),
        ("wave.npz", b"PK not really", "not a readable .npz"),
        ("wave.xyz", b"1,2,3", "choose one waveform file"),
        ("rec.cfg", b"station,1\n", "select its .dat"),
        ("short.csv", b"t,v,i\n0,1,1\n0.001,2,2\n", "wave.csv"[:0]),
    ):
        r = as_admin.post("/pq", files={"file": (name, body, "application/octet-stream")})
        assert r.status_code == 422, (name, r.text[-300:])
        err = re.search(r'id="pq-error">([^<]*)<', r.text)
        assert err is not None and msg in err.group(1), (name, err)
        assert "/tmp" not in err.group(1) and "\n" not in err.group(1)
    r = as_admin.post("/pq", data={"f0": "60"}, files={"other": ("x.txt", b"")})
    assert r.status_code == 422
    r = as_admin.post("/pq", files={"file": ("wave.csv", _waveform_csv())}, data={"f0": "fast"})
    assert r.status_code == 422 and "nominal frequency" in r.text


def test_pq_upload_limit(env: Env, as_admin: TestClient) -> None:
    big = b"t,v,i\n" + b"0,0,0\n" * (21 * 1024 * 1024 // 6)
    r = as_admin.post("/pq", files={"file": ("big.csv", big, "text/csv")})
    assert r.status_code == 413
    assert "larger than 20 MB" in r.text


def test_photo_that_cannot_be_aligned_is_drawn_raw_and_says_so(env: Env) -> None:
    login(env.client, "admin")
    dev, token = _register(env.client, env.admin_token, "shed")
    noise = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    r = env.client.post(
        f"/api/v1/devices/{dev}/images",
        content=encode_jpeg(noise),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"},
    )
    assert r.json()["reading"]["status"] == "rejected"
    r = env.client.get(f"/meters/{dev}/latest.jpg")
    assert r.status_code == 200
    assert r.headers["x-gridlens-alignment"] == "failed"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (480, 640, 3)
