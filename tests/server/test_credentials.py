"""Credential management as an operator of many meters does it: rotate a leaked device token,
decommission a camera, change its settings (REST, on SQLite and PostgreSQL), and the same from
the ``gridlens`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gridlens.meter.image import encode_jpeg
from gridlens.meter.synth import render_reference
from gridlens.store import Store, repo
from tests.server.conftest import Layout, upload_headers

DENIED = "invalid or missing credentials"


@pytest.fixture
def env(api_env: dict[str, Any]) -> dict[str, Any]:
    return api_env


def _add_device(env: dict[str, Any], layout: Layout, name: str = "m1") -> tuple[int, str]:
    r = env["client"].post("/api/v1/devices", json=layout.device_body(name), headers=env["admin"])
    assert r.status_code == 201, r.text
    return r.json()["device_id"], r.json()["token"]


def _upload(env: dict[str, Any], dev: int, token: str, body: bytes, cid: str, at: float) -> Any:
    h = upload_headers(token, cid, at)
    return env["client"].post(f"/api/v1/devices/{dev}/images", content=body, headers=h)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_rotating_a_leaked_token(env: dict[str, Any], layout: Layout) -> None:
    c = env["client"]
    dev, old = _add_device(env, layout)
    t0 = time.time() - 3600
    photo = layout.photo(120.0)
    assert _upload(env, dev, old, photo, "a1", t0).status_code == 201  # the token is cached
    url = f"/api/v1/devices/{dev}/token"
    # only admins: other users 403, devices 403 (as on every user endpoint), nobody 401
    for who in ("viewer", "operator"):
        assert c.post(url, headers=env[who]).status_code == 403
    assert c.post(url, headers=_bearer(old)).status_code == 403
    for h in ({}, _bearer("gld_leaked-or-guessed")):
        r = c.post(url, headers=h)
        assert (r.status_code, r.json()["detail"]) == (401, DENIED)
    assert c.post("/api/v1/devices/999/token", headers=env["admin"]).status_code == 404

    r = c.post(url, headers=env["admin"])
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["device_id"] == dev and doc["token"].startswith("gld_") and doc["token"] != old
    # the old token is refused at once (although this process had it cached) ...
    r = _upload(env, dev, old, photo, "a2", t0 + 60)
    assert (r.status_code, r.json()["detail"]) == (401, DENIED)
    assert c.get(f"/api/v1/devices/{dev}/commands", headers=_bearer(old)).status_code == 401
    # ... and the new one works
    r = _upload(env, dev, doc["token"], layout.photo(120.1), "a3", t0 + 120)
    assert r.status_code == 201 and r.json()["reading"]["status"] == "ok", r.text
    log = c.get("/api/v1/audit", headers=env["admin"]).json()
    assert {"actor": "ada", "action": "device.token.rotate", "target": f"device:{dev}"}.items() <= (
        log[0].items()
    )
    assert log[0]["detail"] == {"revoked": 1}


def test_a_decommissioned_device_cannot_upload(env: dict[str, Any], layout: Layout) -> None:
    c = env["client"]
    dev, tok = _add_device(env, layout)
    other, other_tok = _add_device(env, layout, "m2")
    t0 = time.time() - 3600
    photo = layout.photo(7.0)
    assert _upload(env, dev, tok, photo, "b1", t0).status_code == 201
    url = f"/api/v1/devices/{dev}/token"
    assert c.delete(url, headers=env["operator"]).status_code == 403
    assert c.delete(url, headers=_bearer(tok)).status_code == 403
    assert c.delete(url).status_code == 401
    assert c.delete("/api/v1/devices/999/token", headers=env["admin"]).status_code == 404
    r = c.delete(url, headers=env["admin"])
    assert (r.status_code, r.json()) == (200, {"revoked": 1})
    r = _upload(env, dev, tok, photo, "b2", t0 + 60)
    assert (r.status_code, r.json()["detail"]) == (401, DENIED)
    assert c.delete(url, headers=env["admin"]).json() == {"revoked": 0}
    # other devices are untouched, the readings stay, and a new token brings it back
    assert _upload(env, other, other_tok, photo, "b3", t0).status_code == 201
    rows = c.get(f"/api/v1/devices/{dev}/readings", headers=env["viewer"]).json()
    assert [x["capture_id"] for x in rows] == ["b1"]
    new = c.post(url, headers=env["admin"]).json()["token"]
    assert _upload(env, dev, new, layout.photo(7.1), "b4", t0 + 120).status_code == 201
    actions = [e["action"] for e in c.get("/api/v1/audit", headers=env["admin"]).json()]
    assert actions[:2] == ["device.token.rotate", "device.token.revoke"]


def test_patch_device_settings(env: dict[str, Any], layout: Layout) -> None:
    c = env["client"]
    dev, tok = _add_device(env, layout)
    _add_device(env, layout, "taken")
    url = f"/api/v1/devices/{dev}"
    t0 = time.time() - 3600
    assert _upload(env, dev, tok, layout.photo(100.0), "p1", t0).status_code == 201  # cached
    before = c.get(url, headers=env["viewer"]).json()
    bad = [
        ({"max_rate": -1}, 422, "max_rate must be > 0"),
        ({"max_rate": "fast"}, 422, ""),
        ({"unit": ""}, 422, "unit must be 1-16 characters"),
        ({"name": "../etc"}, 422, "device name"),
        ({"interval": 5}, 422, ""),  # unknown field: refused, not ignored
        ({}, 422, "nothing to change"),
        ({"roi": {"digits": [], "decimals": 0}}, 422, ""),
        ({"reference_jpeg_b64": "!!notbase64"}, 422, "base64"),
        ({"name": "taken"}, 409, "already exists"),
    ]
    for body, status, words in bad:
        r = c.patch(url, json=body, headers=env["admin"])
        assert r.status_code == status, (body, r.text)
        assert words in str(r.json()["detail"])
    assert (
        c.patch("/api/v1/devices/999", json={"unit": "m3"}, headers=env["admin"]).status_code == 404
    )
    assert c.patch(url, json={"unit": "m3"}, headers=env["operator"]).status_code == 403
    assert c.patch(url, json={"unit": "m3"}, headers=_bearer(tok)).status_code == 403
    assert c.patch(url, json={"max_rate": -1}).status_code == 401  # no hint about the body
    assert c.get(url, headers=env["viewer"]).json() == before  # nothing changed

    r = c.patch(
        url, json={"max_rate": 1.0, "name": "kitchen", "roi": layout.roi}, headers=env["admin"]
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["id"], doc["name"], doc["max_rate"], doc["unit"]) == (dev, "kitchen", 1.0, "kWh")
    assert doc["roi"] == before["roi"] and c.get(url, headers=env["viewer"]).json() == doc
    # the next upload is judged with the new limit at once, although the device was cached:
    # 5 kWh in 10 minutes is over 1 kWh/h
    r = _upload(env, dev, tok, layout.photo(105.0), "p2", t0 + 600)
    assert r.json()["reading"]["status"] == "rejected", r.text
    log = c.get("/api/v1/audit", headers=env["admin"]).json()
    assert (log[0]["actor"], log[0]["action"], log[0]["detail"]) == (
        "ada",
        "device.update",
        {"name": ["m1", "kitchen"], "max_rate": [None, 1.0]},
    )
    spec = c.get("/openapi.json").json()["paths"]
    assert spec["/api/v1/devices/{device_id}"]["patch"]["tags"] == ["devices"]
    for method in ("post", "delete"):
        op = spec["/api/v1/devices/{device_id}/token"][method]
        assert op["tags"] == ["devices"] and {"401", "403", "404"} <= set(op["responses"])


# ------------------------------------------------------------------------------ the CLI


_CLI = (sys.executable, "-m", "gridlens.cli")


def _cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_CLI, *args, "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _ok(db: str, *args: str) -> dict[str, Any]:
    r = _cli(db, *args, "--json")
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def test_cli_manages_device_and_user_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CLI is another process than this test's store, whose token cache would answer
    # for up to CACHE_TTL_S: look every token up in the database
    monkeypatch.setattr(repo, "CACHE_TTL_S", 0.0)
    db = f"sqlite:///{tmp_path}/cli.db"
    ref, roi = render_reference(6, 1)
    (tmp_path / "ref.jpg").write_bytes(encode_jpeg(ref, 92))
    roi_doc = roi.to_dict()
    roi_doc["reference"]["image"] = "ref.jpg"
    (tmp_path / "roi.json").write_text(json.dumps(roi_doc))
    (tmp_path / "broken.json").write_text('{"digits": [')
    store = Store.open(db)
    store.add_user("ada", role="admin")
    dev, old = store.add_device("m1", roi_doc)

    rot = _ok(db, "device", "token", "m1")
    assert rot["device_id"] == dev.id and rot["token"].startswith("gld_")
    assert store.resolve(old) is None and store.resolve(rot["token"]) is not None

    # bad input: one line on stderr, exit 2, nothing changed
    for args, words in [
        (("device", "token", "nope"), "no device named 'nope'"),
        (("device", "set", "m1", "--max-rate", "-3"), "max_rate must be > 0"),
        (("device", "set", "m1", "--max-rate", "fast"), "invalid float value"),
        (("device", "set", "m1", "--unit", "m3", "--roi", str(tmp_path / "broken.json")), "JSON"),
        (("user", "token", "nobody"), "no user named 'nobody'"),
    ]:
        r = _cli(db, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stdout == ""
    d = store.device(dev.id)
    assert (d.name, d.unit, d.max_rate) == ("m1", "kWh", None)
    assert store.resolve(rot["token"]) is not None

    doc = _ok(db, "device", "set", str(dev.id), "--unit", "m3", "--max-rate", "2.5",
              "--roi", str(tmp_path / "roi.json"), "--rename", "gas-meter")  # fmt: skip
    assert (doc["id"], doc["name"], doc["unit"], doc["max_rate"]) == (
        dev.id,
        "gas-meter",
        "m3",
        2.5,
    )
    assert _ok(db, "device", "revoke", "gas-meter") == {"device_id": dev.id, "revoked": 1}
    assert store.resolve(rot["token"]) is None

    tok = _ok(db, "user", "token", "ada")
    assert tok["user"] == "ada" and store.resolve(tok["token"]) is not None
    [ada] = _ok(db, "user", "list")["users"]
    assert (ada["name"], ada["role"], ada["api_tokens"]) == ("ada", "admin", 2)
    assert _ok(db, "user", "revoke", "ada", "--sessions") == {"user": "ada", "revoked": 2}
    assert store.resolve(tok["token"]) is None

    # a password must have 12 characters (issue 19, finding 10); stdin gives it
    r = subprocess.run(
        [*_CLI, "user", "add", "short", "--password-stdin", "--db", db],
        input="8-chars!\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "at least 12 characters, got 8" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    assert "short" not in {u["name"] for u in store.users()}
    r = subprocess.run(
        [*_CLI, "user", "add", "long", "--password-stdin", "--db", db, "--json"],
        input="twelve-chars\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and store.check_password("long", "twelve-chars") is not None

    actions = {
        (e["action"], e["target"]) for e in store.audit_log() if e["actor"].startswith("cli:")
    }
    assert actions == {
        ("device.token.rotate", f"device:{dev.id}"),
        ("device.update", f"device:{dev.id}"),
        ("device.token.revoke", f"device:{dev.id}"),
        ("user.token.new", "user:ada"),
        ("user.token.revoke", "user:ada"),
        ("user.add", "user:long"),
    }
    store.close()
