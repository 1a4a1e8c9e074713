"""A meter registered without boxes is set up from its camera's first upload: the photo is
stored unread, the setup page proposes boxes on it, and saving them makes the meter read."""

from __future__ import annotations

import base64
import time
from typing import Any

from gridlens.server.auth import SESSION_COOKIE
from gridlens.server.ingest import SETUP_REASON
from tests.server.conftest import Layout, upload_headers


def test_a_meter_is_set_up_from_its_first_upload(api_env: dict[str, Any], layout: Layout) -> None:
    c, admin = api_env["client"], api_env["admin"]
    r = c.post("/api/v1/devices", json={"name": "porch", "unit": "kWh"}, headers=admin)
    assert r.status_code == 201, r.text
    dev, tok = r.json()["device_id"], r.json()["token"]
    assert c.get(f"/api/v1/devices/{dev}", headers=admin).json()["digits"] == 0
    # the camera's first photo is kept, not read
    t0 = time.time() - 600
    photo = layout.photo(4829.9, seed=1)
    up = c.post(
        f"/api/v1/devices/{dev}/images", content=photo, headers=upload_headers(tok, "f1", t0)
    )
    assert up.status_code == 201, up.text
    reading = up.json()["reading"]
    assert reading["status"] == "rejected" and reading["value"] is None
    assert reading["reason"] == SETUP_REASON
    # the setup page (a logged-in admin) fetches it as it was taken ...
    store = api_env["store"]
    with store.session() as s:
        user = store._user(s, "ada")
    session = store.new_session(user)
    c.cookies.set(SESSION_COOKIE, session)
    jpg = c.get(f"/meters/{dev}/latest.jpg")
    pages = [c.get(path) for path in ("/", f"/meters/{dev}", f"/meters/{dev}/setup")]
    c.cookies.clear()
    assert [p.status_code for p in pages] == [200, 200, 200]
    assert "being set up" in pages[1].text
    assert jpg.status_code == 200 and jpg.content == photo
    # ... proposes boxes on it and saves them with the photo as the reference
    sug = c.post(
        "/api/v1/roi/suggest", content=photo, headers={**admin, "Content-Type": "image/jpeg"}
    )
    assert sug.status_code == 200, sug.text
    body = {"roi": sug.json()["roi"], "reference_jpeg_b64": base64.b64encode(photo).decode()}
    patched = c.patch(f"/api/v1/devices/{dev}", json=body, headers=admin)
    assert patched.status_code == 200, patched.text
    assert patched.json()["digits"] == 6
    # from now on its photos are read
    nxt = c.post(
        f"/api/v1/devices/{dev}/images",
        content=layout.photo(4830.2, seed=2),
        headers=upload_headers(tok, "f2", t0 + 300),
    ).json()["reading"]
    assert nxt["status"] == "ok" and abs(nxt["value"] - 4830.2) < 1e-9


def test_a_reference_photo_without_its_roi_is_refused(
    api_env: dict[str, Any], layout: Layout
) -> None:
    c, admin = api_env["client"], api_env["admin"]
    body = {"name": "half", "reference_jpeg_b64": base64.b64encode(layout.reference_jpeg).decode()}
    r = c.post("/api/v1/devices", json=body, headers=admin)
    assert r.status_code == 422 and "needs its ROI" in r.text
    assert all(d["name"] != "half" for d in c.get("/api/v1/devices", headers=admin).json())
