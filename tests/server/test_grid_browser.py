"""The Grid page in a real headless Chromium against a real ``gridlens serve`` process: the
diagram's buses are coloured by the estimated |V|, the time slider moves through the hours,
and a placement study runs from the page."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.server.test_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    WAIT_S,
    _free_port,
    _gridlens,
    _wait_healthy,
)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PASSWORD = "grid-browser-pass-1"
HOUR = 3600.0


def _seed(db: str) -> None:
    """An admin, the IEEE 15-bus feeder with µPMUs, two meters on buses with 12 hours of
    readings every 10 minutes (through the store, as an import would)."""
    from gridlens.server import grid_se
    from gridlens.store import Store

    store = Store.open(db)
    try:
        store.add_user("admin", role="admin", password=PASSWORD)
        row = store.add_feeder(
            "f15", "builtin:ieee15", grid_se.builtin_model("ieee15"), actor="t", pmus=["1", "9"]
        )
        start = (time.time() // HOUR - 13) * HOUR
        t = start + np.arange(0, 12 * HOUR + 1, 600.0)
        for k, (name, bus, kw) in enumerate((("m1", "7", 1.0), ("m2", "12", 2.0))):
            dev, _ = store.add_device(name, {})
            p = kw * (1.2 + np.sin(2 * np.pi * t / 86400.0 + k))
            e = 100.0 + np.concatenate([[0.0], np.cumsum(p[:-1] / 6)])
            store.import_counter(dev.id, list(zip(t.tolist(), e.tolist(), strict=True)),
                                 source="t", actor="t")  # fmt: skip
            store.place_meter(dev.id, row.id, bus, actor="t", scale=140 / kw)
    finally:
        store.close()


@pytest.fixture(scope="module")
def grid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("gridb")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    db = f"sqlite:///{tmp}/g.db"
    _seed(db)
    log = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDLENS_")}
    cmd = [*_gridlens(), "serve", "--db", db, "--data-dir", str(tmp / "data")]
    cmd += ["--port", str(port), "--no-request-log"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile: Path = tmp_path_factory.mktemp("chromium-grid")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-proxy-server", "--window-size=1280,1400",
                f"--user-data-dir={profile}"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _fills(d: Any) -> list[str]:
    return [c.get_attribute("fill") for c in d.find_elements(By.CSS_SELECTOR, "circle.bus")]


def test_grid_page_colours_buses_and_moves_the_slider(grid_server: str, chrome: Any) -> None:
    d = chrome
    d.get(f"{grid_server}/login?next=/grid")
    d.find_element(By.NAME, "username").send_keys("admin")
    d.find_element(By.NAME, "password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    app = WebDriverWait(d, WAIT_S).until(lambda drv: drv.find_element(By.ID, "grid-app"))
    WebDriverWait(d, WAIT_S).until(lambda _: app.get_attribute("data-ready") == "true")
    fills = _fills(d)
    assert len(fills) == 15
    assert all(f and f.startswith("rgb(") for f in fills), fills  # coloured by |V|
    assert len(set(fills)) >= 3, fills  # the voltage falls along the feeder
    assert len(d.find_elements(By.CSS_SELECTOR, "#diagram rect.meter")) == 2
    slider = d.find_element(By.ID, "hour-slider")
    n = int(slider.get_attribute("max")) + 1
    assert n >= 11
    label = d.find_element(By.ID, "hour-label").text
    before = d.execute_script(
        "return [...document.querySelectorAll('circle.bus')].map(c => c.dataset.vm)"
    )
    d.find_element(By.ID, "hour-prev").click()
    for _ in range(5):
        d.find_element(By.ID, "hour-prev").click()
    assert int(slider.get_attribute("value")) == n - 7
    assert d.find_element(By.ID, "hour-label").text != label
    after = d.execute_script(
        "return [...document.querySelectorAll('circle.bus')].map(c => c.dataset.vm)"
    )
    assert after != before  # another hour, other voltages
    rows = d.find_elements(By.CSS_SELECTOR, "#lowest tbody tr")
    assert len(rows) == 8
    vms = [float(r.find_elements(By.TAG_NAME, "td")[1].text) for r in rows]
    assert vms == sorted(vms)
    assert d.find_elements(By.CSS_SELECTOR, "#bus-chart canvas")
    # the placement study from the page, then "Apply"
    form = d.find_element(By.ID, "placement-form")
    form.find_element(By.NAME, "k").clear()
    form.find_element(By.NAME, "k").send_keys("2")
    form.find_element(By.NAME, "estimator").send_keys("analytic")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(d, 60).until(
        lambda drv: drv.find_element(By.ID, "placement-result").is_displayed()
    )
    assert len(d.find_elements(By.CSS_SELECTOR, "#placement-table tbody tr")) == 10
    assert d.find_elements(By.CSS_SELECTOR, "#placement-chart canvas")
    d.find_element(By.CSS_SELECTOR, "#placement-table button.apply").click()
    WebDriverWait(d, WAIT_S).until(
        lambda drv: "µPMUs now at" in drv.find_element(By.ID, "placement-msg").text
    )
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


TINY_DSS = """New Circuit.tiny basekv=12.47 pu=1.0 bus1=src
New Line.l1 bus1=src bus2=a r1=0.3 x1=0.6 length=1 units=km
New Line.l2 bus1=a bus2=b r1=0.3 x1=0.6 length=1 units=km
New Load.ld1 bus1=b kv=12.47 kw=500 kvar=200
Set voltagebases=[12.47]
Calcvoltagebases
Buscoords xy.csv
"""


def test_upload_a_feeder_in_the_browser(grid_server: str, chrome: Any, tmp_path: Path) -> None:
    d = chrome
    d.get(f"{grid_server}/grid")
    if "/login" in d.current_url:
        d.find_element(By.NAME, "username").send_keys("admin")
        d.find_element(By.NAME, "password").send_keys(PASSWORD)
        d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    form = WebDriverWait(d, WAIT_S).until(lambda drv: drv.find_element(By.ID, "upload-form"))
    (tmp_path / "tiny.dss").write_text(TINY_DSS)
    (tmp_path / "xy.csv").write_text("src,0,0\na,1,0\nb,2,1\n")
    form.find_element(By.NAME, "name").send_keys("tiny")
    files = f"{tmp_path / 'tiny.dss'}\n{tmp_path / 'xy.csv'}"
    form.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(files)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(d, 60).until(lambda drv: "feeder=" in drv.current_url)
    app = d.find_element(By.ID, "grid-app")
    WebDriverWait(d, WAIT_S).until(lambda _: app.get_attribute("data-ready") == "true")
    assert "Buscoords" in d.find_element(By.ID, "feeder-facts").text
    assert len(d.find_elements(By.CSS_SELECTOR, "circle.bus")) == 3
    assert all(f and f.startswith("rgb(") for f in _fills(d))  # a power flow colours them
    # a bad upload: one clear message, nothing added
    d.find_element(By.NAME, "name").send_keys("broken")
    (tmp_path / "broken.dss").write_text("this is not OpenDSS\n")
    d.find_element(By.CSS_SELECTOR, "#upload-form input[type=file]").send_keys(
        str(tmp_path / "broken.dss")
    )
    d.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    msg = d.find_element(By.ID, "upload-msg")
    WebDriverWait(d, 60).until(lambda _: msg.text.startswith("not added"))
    assert "OpenDSS" in msg.text or "New Circuit" in msg.text
    names = [o.text for o in d.find_elements(By.CSS_SELECTOR, "#feeder-select option")]
    assert not any("broken" in n for n in names)
