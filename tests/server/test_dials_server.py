"""A water meter with pointer dials through the server: register, upload, per-dial values in
the stored reading and its JSON, and the dials drawn on the meter page's photo."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gridlens.meter.image import decode_image, encode_jpeg
from gridlens.meter.synth_dial_meters import render_water_meter, render_water_reference
from tests.server.conftest import upload_headers


@pytest.fixture
def env(api_env: dict[str, Any]) -> dict[str, Any]:
    return api_env


def test_water_meter_with_dials(env: dict[str, Any]) -> None:
    ref, roi = render_water_reference(layout_seed=1, seed=1)
    c = env["client"]
    body = {
        "name": "water",
        "unit": "m3",
        "roi": roi,
        "reference_jpeg_b64": base64.b64encode(encode_jpeg(ref, 92)).decode(),
    }
    r = c.post("/api/v1/devices", json=body, headers=env["admin"])
    assert r.status_code == 201, r.text
    dev, tok = r.json()["device_id"], r.json()["token"]
    assert c.get(f"/api/v1/devices/{dev}", headers=env["viewer"]).json()["dials"] == 4
    truth = 123.4567
    photo = render_water_meter(truth, layout_seed=1, seed=5, wheel_roll="continuous").image
    up = c.post(
        f"/api/v1/devices/{dev}/images", content=encode_jpeg(photo, 90),
        headers=upload_headers(tok, "c1"),
    )  # fmt: skip
    assert up.status_code in (200, 201), up.text
    rows = c.get(f"/api/v1/devices/{dev}/readings", headers=env["viewer"]).json()
    rows = rows["readings"] if isinstance(rows, dict) else rows
    got = rows[-1]
    assert got["status"] == "ok" and abs(got["value"] - truth) <= 0.002, got
    assert [d["factor"] for d in got["dials"]] == [0.1, 0.01, 0.001, 0.0001]
    assert len(got["digits"]) == 5 and all("factor" not in d for d in got["digits"])
    assert abs(got["dials"][0]["value"] - 4.567) <= 0.2
    # the meter page's photo shows each dial: its circle and its pointer at the read value
    from gridlens.meter.roi import MeterROI
    from gridlens.server.dashboard import draw_reading
    from gridlens.store.models import Reading

    with env["store"].session() as s:
        stored = s.get(Reading, got["id"])
        drawn = draw_reading(
            decode_image(encode_jpeg(ref, 92)), MeterROI.from_dict(roi), stored, "m3"
        )
    box = roi["dials"][0]
    before = ref[box["y"] : box["y"] + box["h"], box["x"] : box["x"] + box["w"]].astype(int)
    after = drawn[box["y"] : box["y"] + box["h"], box["x"] : box["x"] + box["w"]].astype(int)
    assert (abs(after - before).sum(axis=2) > 120).mean() > 0.03  # ring + pointer line drawn


def test_bad_dials_are_refused_and_nothing_is_stored(env: dict[str, Any]) -> None:
    ref, roi = render_water_reference(layout_seed=1, seed=1)
    roi = {**roi, "dials": [{**roi["dials"][0], "factor": 0.3}]}
    body = {
        "name": "bad-water",
        "roi": roi,
        "reference_jpeg_b64": base64.b64encode(encode_jpeg(ref, 92)).decode(),
    }
    r = env["client"].post("/api/v1/devices", json=body, headers=env["admin"])
    assert r.status_code == 422 and "power of ten" in r.text
    names = [d["name"] for d in env["client"].get("/api/v1/devices", headers=env["viewer"]).json()]
    assert "bad-water" not in names
