"""Setting up a meter from the browser: ``/api/v1/roi/*``, replay and the set-up pages."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gridlens.meter.image import encode_jpeg
from gridlens.meter.synth import render_reference
from tests.server.conftest import Layout, upload_headers


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, dict[str, Any]]:
    """A synthetic reference photo (reading 1234.5) and its true ROI."""
    img, roi = render_reference(6, 1, reading=1234.5)
    return encode_jpeg(img, 92), roi.to_dict()


def _suggest(env: dict[str, Any], body: bytes, who: str = "admin", **headers: str) -> Any:
    h = {**env[who], "Content-Type": "image/jpeg", **headers} if who else headers
    return env["client"].post("/api/v1/roi/suggest", content=body, headers=h)


def _preview(env: dict[str, Any], jpeg: bytes, roi: Any, who: str = "admin") -> Any:
    text = roi if isinstance(roi, str) else json.dumps(roi)
    return env["client"].post(
        "/api/v1/roi/preview",
        files={"image": ("p.jpg", jpeg, "image/jpeg")},
        data={"roi": text},
        headers=env[who] if who else {},
    )


def test_suggest_proposes_the_counter(api_env: dict[str, Any], photo: Any) -> None:
    jpeg, truth = photo
    r = _suggest(api_env, jpeg)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["width"], doc["height"]) == (640, 480)
    assert len(doc["digits"]) == 6 and doc["decimals"] == 1
    assert len(doc["markers"]) >= 2
    for got, want in zip(doc["digits"], truth["digits"], strict=True):
        assert abs(got["x"] - want["x"]) <= 6 and abs(got["y"] - want["y"]) <= 12
        assert 0.0 <= got["confidence"] <= 1.0
    assert doc["roi"]["digits"][0].keys() == {"x", "y", "w", "h"}


@pytest.mark.parametrize(
    ("body", "ctype", "status", "words"),
    [
        (b"GIF89a not a photo", "image/jpeg", 422, "not a JPEG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "image/jpeg", 422, "JPEG"),  # truncated
        (b"{}", "application/json", 415, "image/jpeg"),
    ],
)
def test_suggest_refuses_what_is_no_photo(
    api_env: dict[str, Any], body: bytes, ctype: str, status: int, words: str
) -> None:
    r = _suggest(api_env, body, **{"Content-Type": ctype})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_suggest_blank_photo_says_no_counter(api_env: dict[str, Any]) -> None:
    import numpy as np

    blank = encode_jpeg(np.full((240, 320, 3), 200, np.uint8), 90)
    r = _suggest(api_env, blank)
    assert r.status_code == 422
    assert "counter" in r.json()["detail"]


def test_suggest_huge_body_is_413(api_env: dict[str, Any]) -> None:
    limit = api_env["settings"].max_upload_bytes
    r = _suggest(api_env, b"\xff\xd8\xff" + b"\x00" * limit)
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_roles_and_credentials(api_env: dict[str, Any], photo: Any) -> None:
    jpeg, roi = photo
    assert _suggest(api_env, jpeg, who="").status_code == 401
    assert _suggest(api_env, jpeg, who="viewer").status_code == 403
    assert _suggest(api_env, jpeg, who="operator").status_code == 403
    assert _preview(api_env, jpeg, roi, who="").status_code == 401
    assert _preview(api_env, jpeg, roi, who="viewer").status_code == 403


def _session(store: Any, name: str) -> str:
    """A dashboard session cookie of a user of ``api_env``."""
    from sqlalchemy import select

    from gridlens.store.models import User

    with store.session() as s:
        user = s.scalar(select(User).where(User.name == name))
    return str(store.new_session(user, 600.0))


def test_session_cookie_from_another_site_is_refused(api_env: dict[str, Any], photo: Any) -> None:
    client = api_env["client"]
    jpeg, _ = photo
    h = {
        "Content-Type": "image/jpeg",
        "Cookie": f"gridlens_session={_session(api_env['store'], 'ada')}",
    }
    r = client.post(
        "/api/v1/roi/suggest", content=jpeg, headers={**h, "Origin": "https://evil.example"}
    )
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = client.post(
        "/api/v1/roi/suggest", content=jpeg, headers={**h, "Origin": "http://testserver"}
    )
    assert r.status_code == 200, r.text


def test_preview_reads_with_refined_boxes(api_env: dict[str, Any], photo: Any) -> None:
    jpeg, truth = photo
    drawn = json.loads(json.dumps(truth))
    for b in drawn["digits"]:
        b["x"] += 3  # drawn a little off: refinement puts them back
    r = _preview(api_env, jpeg, drawn)
    assert r.status_code == 200, r.text
    doc = r.json()
    reading = doc["reading"]
    assert reading["status"] == "ok", reading
    assert reading["value"] == pytest.approx(1234.5)
    assert reading["raw"] == "01234.5"
    assert [round(d["value"]) for d in reading["digits"]] == [0, 1, 2, 3, 4, 5]
    assert all(d["confidence"] > 0.5 for d in reading["digits"])
    assert doc["roi"]["refined"] is True and doc["refinement"] is not None
    assert len(doc["roi"]["digits"]) == 6

    as_is = {**truth, "refined": True}
    doc = _preview(api_env, jpeg, as_is).json()
    assert doc["refinement"] is None and doc["roi"]["digits"] == truth["digits"]


@pytest.mark.parametrize(
    ("roi", "words"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "JSON object"),
        ('{"digits": [], "decimals": 0}', "no digit boxes"),
        ('{"digits": [{"x": 1, "y": 1, "w": 10, "h": 10}]}', "decimals"),
        ('{"digits": [{"x": 900, "y": 1, "w": 10, "h": 10}], "decimals": 0}', "outside"),
        (
            '{"digits": [{"x": 10, "y": 1, "w": 30, "h": 10}, {"x": 20, "y": 1, "w": 30, '
            '"h": 10}], "decimals": 0}',
            "overlap",
        ),
        ('{"digits": [{"x": 1, "y": 1, "w": 10, "h": 10}], "decimals": 0, "decimal": 1}', "key"),
    ],
)
def test_preview_bad_roi_is_422_naming_the_problem(
    api_env: dict[str, Any], photo: Any, roi: str, words: str
) -> None:
    r = _preview(api_env, photo[0], roi)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]


def test_preview_bad_requests(api_env: dict[str, Any], photo: Any) -> None:
    client, admin = api_env["client"], api_env["admin"]
    roi = photo[1]
    r = client.post("/api/v1/roi/preview", json={"roi": roi}, headers=admin)
    assert r.status_code == 422 and "multipart" in r.json()["detail"]
    r = client.post("/api/v1/roi/preview", data={"roi": json.dumps(roi)}, headers=admin)
    assert r.status_code == 422 and "image" in r.json()["detail"]
    r = _preview(api_env, b"not a jpeg", roi)
    assert r.status_code == 422 and "JPEG" in r.json()["detail"]
    limit = api_env["settings"].max_upload_bytes
    r = _preview(api_env, b"\xff\xd8\xff" + b"\x00" * (limit + 200_000), roi)
    assert r.status_code == 413


def test_snapshot_url_must_be_http(api_env: dict[str, Any]) -> None:
    client, admin = api_env["client"], api_env["admin"]
    r = client.post("/api/v1/roi/snapshot", json={"url": "file:///etc/passwd"}, headers=admin)
    assert r.status_code == 422 and "http" in r.json()["detail"]
    r = client.post("/api/v1/roi/snapshot", json={"url": "http://127.0.0.1:1/x"}, headers=admin)
    assert r.status_code == 502 and "no photo" in r.json()["detail"]
    r = client.post("/api/v1/roi/snapshot", json={"url": "http://x"}, headers=api_env["viewer"])
    assert r.status_code == 403


def test_replay_then_save_edited_boxes(api_env: dict[str, Any], layout: Layout) -> None:
    client, admin, store = api_env["client"], api_env["admin"], api_env["store"]
    r = client.post("/api/v1/devices", json=layout.device_body("kitchen"), headers=admin)
    assert r.status_code == 201, r.text
    dev, token = r.json()["device_id"], r.json()["token"]
    for k, value in enumerate((100.0, 100.4, 100.9)):
        r = client.post(
            f"/api/v1/devices/{dev}/images",
            content=layout.photo(value, seed=k),
            headers=upload_headers(token, f"c{k}", time.time() - 600 + 60 * k),
        )
        assert r.status_code == 201, r.text
    stored = client.get(f"/api/v1/devices/{dev}", headers=admin).json()["roi"]
    assert stored["refined"] is True  # refined when the device was saved

    r = client.post(
        f"/api/v1/devices/{dev}/roi/replay", json={"roi": stored, "photos": 2}, headers=admin
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["rows"]) == 2 and doc["missing"] == 0
    newest = doc["rows"][0]
    assert newest["old"]["value"] == pytest.approx(100.9)
    assert newest["new"]["value"] == pytest.approx(100.9)
    assert newest["new"]["status"] == "ok" and len(newest["new"]["digits"]) == 6

    fewer = {**stored, "digits": stored["digits"][1:], "decimals": 1}  # drop the first wheel
    doc = client.post(
        f"/api/v1/devices/{dev}/roi/replay", json={"roi": fewer}, headers=admin
    ).json()
    assert len(doc["rows"]) == 3
    assert [len(x["new"]["digits"]) for x in doc["rows"]] == [5, 5, 5]
    bad = {**stored, "decimals": 9}
    r = client.post(f"/api/v1/devices/{dev}/roi/replay", json={"roi": bad}, headers=admin)
    assert r.status_code == 422 and "decimals" in r.json()["detail"]
    r = client.post(
        f"/api/v1/devices/{dev}/roi/replay", json={"roi": stored}, headers=api_env["viewer"]
    )
    assert r.status_code == 403
    r = client.post("/api/v1/devices/999/roi/replay", json={"roi": stored}, headers=admin)
    assert r.status_code == 404

    r = client.patch(f"/api/v1/devices/{dev}", json={"roi": fewer}, headers=admin)
    assert r.status_code == 200, r.text
    assert len(r.json()["roi"]["digits"]) == 5
    assert store.audit_log(5)[0]["action"] == "device.update"


def test_openapi_documents_the_setup_endpoints(api_env: dict[str, Any]) -> None:
    spec = api_env["client"].get("/openapi.json").json()
    suggest = spec["paths"]["/api/v1/roi/suggest"]["post"]
    assert "image/jpeg" in suggest["requestBody"]["content"]
    ok = suggest["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/RoiSuggestion")
    preview = spec["paths"]["/api/v1/roi/preview"]["post"]
    form = preview["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["required"]) == {"image", "roi"}
    assert "/api/v1/devices/{device_id}/roi/replay" in spec["paths"]
    assert "/api/v1/roi/snapshot" in spec["paths"]


def test_pages_admin_only(api_env: dict[str, Any], layout: Layout) -> None:
    store, client = api_env["store"], api_env["client"]
    dev, _ = store.add_device("m1", layout.roi, reference_jpeg=layout.reference_jpeg, actor="t")
    from gridlens.store.models import User

    def login(name: str) -> None:
        with store.session() as s:
            u = s.query(User).filter_by(name=name).one()
        client.cookies.set("gridlens_session", store.new_session(u, 600.0))

    login("vera")
    assert client.get("/meters/new").status_code == 403
    assert client.get(f"/meters/{dev.id}/setup").status_code == 403
    assert "/meters/new" not in client.get("/").text
    assert "Edit boxes" not in client.get(f"/meters/{dev.id}").text
    login("ada")
    r = client.get("/meters/new")
    assert r.status_code == 200 and 'id="setup"' in r.text and "/static/setup.js" in r.text
    assert 'href="/meters/new"' in client.get("/").text
    assert f'href="/meters/{dev.id}/setup"' in client.get(f"/meters/{dev.id}").text
    r = client.get(f"/meters/{dev.id}/setup")
    assert r.status_code == 200 and 'data-mode="edit"' in r.text
    r = client.get(f"/meters/{dev.id}/reference.jpg")
    assert r.status_code == 200 and r.content == layout.reference_jpeg
    assert client.get("/meters/999/setup").status_code == 404
    client.cookies.clear()
    assert client.get("/meters/new", follow_redirects=False).status_code == 303
