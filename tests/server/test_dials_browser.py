"""The setup page with pointer dials, in a real headless Chromium against a real
``gridlens serve``: a water meter's photo gets its wheels and dial circles proposed, a dial
is added, its factor set, and the live reading shows every dial."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.server.test_browser import WAIT_S, Server, _cookie, _login, browser, server

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from gridlens.meter.image import encode_jpeg  # noqa: E402
from gridlens.meter.synth_dial_meters import render_water_reference  # noqa: E402

__all__ = ["browser", "server"]  # the fixtures, shared with test_browser


def test_add_water_meter_with_dials(server: Server, browser: Any) -> None:
    d = browser
    _login(d, server.url)
    d.get(f"{server.url}/meters/new")
    ref, roi = render_water_reference(layout_seed=1, reading=123.4567, seed=1)
    photo = server.tmp / "water.jpg"
    photo.write_bytes(encode_jpeg(ref, 92))
    d.find_element(By.ID, "f-name").send_keys("garden-water")
    d.find_element(By.ID, "photo-file").send_keys(str(photo))
    root = d.find_element(By.ID, "setup")
    WebDriverWait(d, WAIT_S).until(lambda _: root.get_attribute("data-preview-value"))
    # whatever was proposed, the person makes the dials right: remove them, add four
    while d.find_elements(By.CSS_SELECTOR, ".box.dial"):
        d.find_element(By.ID, "remove-dial").click()
    for _ in roi["dials"]:
        d.find_element(By.ID, "add-dial").click()
    dials = d.find_elements(By.CSS_SELECTOR, ".box.dial")
    assert len(dials) == 4
    assert d.find_element(By.ID, "dial-fields").is_displayed()  # the last added is selected
    # place them as drawn in the ROI (through the page's own state, as a drag would), the
    # first with a wrong factor that the person then corrects in the dial's fields
    placed = [{k: b[k] for k in ("x", "y", "w", "h", "factor", "direction")} for b in roi["dials"]]
    placed[0]["factor"] = 0.00001
    d.execute_script("window.__gridlensSetup.setDials(arguments[0])", placed)
    d.execute_script("window.__gridlensSetup.setWheels(arguments[0], 0)", roi["digits"])
    d.execute_script("arguments[0].removeAttribute('data-preview-value')", root)
    dials = d.find_elements(By.CSS_SELECTOR, ".box.dial")
    dials[0].click()
    Select(d.find_element(By.ID, "dial-factor")).select_by_value("0.1")
    WebDriverWait(d, WAIT_S).until(lambda _: root.get_attribute("data-preview-value"))
    value = float(root.get_attribute("data-preview-value") or "nan")
    assert abs(value - 123.4567) <= 0.002, value
    rows = [r.text for r in d.find_elements(By.CSS_SELECTOR, "#wheels tbody tr")]
    assert sum(r.startswith("dial x") for r in rows) == 4, rows
    labels = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".box.dial .label")]
    assert all(t.startswith("x0.") for t in labels), labels
    d.find_element(By.ID, "save").click()
    saved = d.find_element(By.ID, "saved")
    WebDriverWait(d, WAIT_S).until(lambda _: saved.is_displayed())
    cfg = json.loads(d.find_element(By.ID, "client-config").text)
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10.0) as c:
        r = c.get(f"/api/v1/devices/{cfg['device_id']}", headers={"Cookie": _cookie(d)})
    assert r.status_code == 200 and len(r.json()["roi"]["dials"]) == 4
    assert sorted(x["factor"] for x in r.json()["roi"]["dials"]) == [0.0001, 0.001, 0.01, 0.1]
