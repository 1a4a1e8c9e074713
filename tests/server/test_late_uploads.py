"""Late uploads: a photo captured before newer accepted readings (a device that kept it
while offline) is judged against the readings on both sides of it, keeps consumption
non-negative, and is not published as the meter's current value."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gridlens.store.timeutil import iso
from tests.server.conftest import Layout, upload_headers
from tests.server.test_api import _add_device, _upload
from tests.server.test_server_mqtt import _broker_up
from tests.server.test_server_mqtt import env as mqtt_env  # noqa: F401 (a fixture)


def test_a_backdated_upload_is_judged_against_later_readings(
    api_env: dict[str, Any], layout: Layout
) -> None:
    env = api_env
    dev, tok = _add_device(env, layout, "late", max_rate=15.0)
    t0 = (time.time() // 3600 - 4) * 3600
    for i, v in enumerate([100.0, 101.0, 102.0]):  # hours 0, 2, 3 arrive on time
        at = t0 + 3600 * (0, 2, 3)[i]
        r = _upload(env, dev, tok, layout.photo(v, seed=i), f"h{i}", at)
        assert r.status_code == 201 and r.json()["late"] is False, r.text
    # hour 1 arrives last, reading more than hour 2 did: a misread digit, refused
    bad = _upload(env, dev, tok, layout.photo(105.0, seed=7), "late1", t0 + 3600)
    assert bad.status_code == 201 and bad.json()["late"] is True
    reading = bad.json()["reading"]
    assert reading["status"] == "rejected" and reading["value"] is None
    assert "above 101.0, accepted for a photo taken 60 min later" in reading["reason"]
    # the same hour read plausibly fills the gap
    good = _upload(env, dev, tok, layout.photo(100.4, seed=8), "late2", t0 + 3600 + 60)
    doc = good.json()
    assert doc["late"] is True and doc["reading"]["status"] == "ok"
    assert doc["reading"]["value"] == pytest.approx(100.4)
    cons = (
        env["client"]
        .get(
            f"/api/v1/devices/{dev}/consumption",
            params={"since": iso(t0), "until": iso(t0 + 3 * 3600)},
            headers=env["viewer"],
        )
        .json()
    )
    energies = [p["energy"] for p in cons["points"] if p["energy"] is not None]
    assert energies and min(energies) >= 0.0
    assert sum(energies) == pytest.approx(2.0)
    # the meter's current value is still the newest photo's
    fleet = env["client"].get("/api/v1/devices", headers=env["viewer"]).json()
    (row,) = [d for d in fleet if d["id"] == dev]
    assert row["value"] == pytest.approx(102.0) and row["last"]["capture_id"] == "h2"


@pytest.mark.skipif(not _broker_up(), reason="no MQTT broker (Mosquitto) at 127.0.0.1:1883")
def test_a_late_reading_is_not_published_as_the_current_value(
    mqtt_env: dict[str, Any],  # noqa: F811 (the fixture imported above)
) -> None:
    env = mqtt_env
    c, dev, p, slug, layout = env["client"], env["dev"], env["prefix"], env["slug"], env["layout"]
    t0 = time.time() - 3600
    for k, (v, at) in enumerate([(100.0, t0), (100.5, t0 + 1200)]):
        h = upload_headers(env["tok"], f"on-time{k}", at)
        assert (
            c.post(
                f"/api/v1/devices/{dev}/images", content=layout.photo(v, k), headers=h
            ).status_code
            == 201
        )
    lis = env["listener"]
    assert lis.wait(f"{p}/{slug}/value", 2)[-2:] == ["100.0", "100.5"]
    h = upload_headers(env["tok"], "late", t0 + 600)  # kept by the device, sent last
    r = c.post(f"/api/v1/devices/{dev}/images", content=layout.photo(100.2, 5), headers=h)
    assert r.json()["late"] is True and r.json()["reading"]["status"] == "ok"
    time.sleep(1.0)
    assert lis.wait(f"{p}/{slug}/value")[-1] == "100.5"  # still the newest photo's
    assert len(lis.msgs.get(f"{p}/{slug}/value", [])) == 2
    for leaf in ("value", "raw", "error", "rate", "json", "timestamp", "connection"):
        lis.client.publish(f"{p}/{slug}/{leaf}", b"", retain=True)
    node = f"{p}_{dev}"
    for obj in ("value", "rate", "error"):
        lis.client.publish(f"homeassistant/sensor/{node}/{obj}/config", b"", retain=True)
