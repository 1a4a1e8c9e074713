"""``gridlens demo`` (what ``make run`` starts) and its anomaly page in a real headless
Chromium: the demo seeds five weeks with three injected anomalies, lists them in
``DIR/demo.json``, and the page shows them as its top events; an operator acknowledges one
in the browser; the meter page links to its events.

Needs ``/usr/bin/chromium``, ``/usr/bin/chromedriver`` and selenium (skipped without them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridlens.server.harness import free_port
from gridlens.store.timeutil import parse_time

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER}", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_S = 15.0
FIRST_START_LIMIT_S = 120.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real ``gridlens demo`` (no MQTT), up to the point where its meters upload live."""
    folder = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDLENS_")}
    env["OMP_NUM_THREADS"] = "1"
    log = folder / "demo.log"
    cmd = [sys.executable, "-m", "gridlens.cli", "demo", "--dir", str(folder), "--port",
           str(port), "--no-mqtt", "--backfill", "6h"]  # fmt: skip
    t0 = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        while b"meters upload every" not in log.read_bytes():
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}: {log.read_text()[-3000:]}")
            if time.monotonic() - t0 > FIRST_START_LIMIT_S:
                pytest.fail(
                    f"the demo's first start took over 2 minutes: {log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield {
            "url": f"http://127.0.0.1:{port}",
            "folder": folder,
            "seconds": time.monotonic() - t0,
            "doc": json.loads((folder / "demo.json").read_text()),
            "creds": json.loads((folder / "credentials.json").read_text()),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--no-proxy-server",
                "--window-size=1280,1000", f"--user-data-dir={profile}"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _overlaps(row: Any, a: dict[str, Any]) -> bool:
    return (
        int(row.get_attribute("data-device-id")) == a["device_id"]
        and parse_time(row.get_attribute("data-start")) < parse_time(a["end"])
        and parse_time(row.get_attribute("data-end")) > parse_time(a["start"])
    )


def test_demo_injected_anomalies_top_the_anomaly_page(demo: dict[str, Any], browser: Any) -> None:
    doc = demo["doc"]
    injected = doc["injected"]
    assert {a["kind"] for a in injected} == {"night-load", "stuck", "holiday"}
    for a in injected:
        assert {"device_id", "start", "end", "kind"} <= a.keys()
    assert doc["first_start_s"] < FIRST_START_LIMIT_S and demo["seconds"] < FIRST_START_LIMIT_S

    d, url = browser, demo["url"]
    d.get(f"{url}/anomaly")
    d.find_element(By.NAME, "username").send_keys(demo["creds"]["user"])
    d.find_element(By.NAME, "password").send_keys(demo["creds"]["password"])
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(d, WAIT_S).until(lambda drv: drv.current_url.startswith(f"{url}/anomaly"))
    rows = d.find_elements(By.CSS_SELECTOR, "#events-table tbody tr")
    # the top events are the injected anomalies (one may show as two events): every one of
    # them has an event above the first event that is none of them
    hit = [any(_overlaps(r, a) for a in injected) for r in rows]
    first_other = hit.index(False) if False in hit else len(rows)
    top = rows[:first_other]
    for a in injected:
        assert any(_overlaps(r, a) for r in top), (a, [r.text.split("\n")[0] for r in rows[:6]])
    ranking = d.find_elements(By.CSS_SELECTOR, "#ranking-table tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td a").text for r in ranking][-1] == "meter-002"
    assert d.find_elements(By.CSS_SELECTOR, "#ranking-table svg.spark polyline")
    d.set_window_size(1280, 1400)
    shot = demo["folder"] / "anomaly-page.png"
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("GRIDLENS_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["GRIDLENS_SCREENSHOT_DIR"]) / "anomaly-page.png")

    # an operator (here the admin) acknowledges the top event in the browser
    first = top[0]
    eid = first.get_attribute("id")
    first.find_element(By.CSS_SELECTOR, "button[value=acknowledge]").click()
    WebDriverWait(d, WAIT_S).until(lambda drv: drv.find_elements(By.ID, "anomaly-done"))
    row = d.find_element(By.ID, eid)
    assert "acknowledged" in row.find_element(By.CSS_SELECTOR, ".badge").text
    # a blank comment is refused with a message, nothing stored
    box = row.find_element(By.CSS_SELECTOR, "form.comment input[name=text]")
    d.execute_script("arguments[0].removeAttribute('required')", box)
    box.send_keys("   ")
    row.find_element(By.CSS_SELECTOR, "form.comment button").click()
    WebDriverWait(d, WAIT_S).until(lambda drv: drv.find_elements(By.ID, "anomaly-error"))
    assert "empty" in d.find_element(By.ID, "anomaly-error").text

    # the meter page links to its events
    dev = injected[0]["device_id"]
    d.get(f"{url}/meters/{dev}")
    d.find_element(By.ID, "meter-anomaly-events").click()
    WebDriverWait(d, WAIT_S).until(lambda drv: f"device_id={dev}" in drv.current_url)
    ids = {
        r.get_attribute("data-device-id")
        for r in d.find_elements(By.CSS_SELECTOR, "#events-table tbody tr")
    }
    assert ids == {str(dev)}
    errors = [
        e for e in d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]
    assert not errors, errors
