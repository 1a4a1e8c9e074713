"""The dashboard in a real headless Chromium against a real ``gridlens serve`` process.

Needs Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` and the ``selenium``
package (the ``test`` extra); the module is skipped without them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(
        f"needs {CHROMIUM} and {CHROMEDRIVER} (apt install chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="needs selenium (pip install -e .[test])"
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from gridlens.meter.image import encode_jpeg  # noqa: E402
from gridlens.meter.synth import render_meter, render_reference  # noqa: E402

PASSWORD = "browser-pass-1"
WAIT_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _gridlens() -> list[str]:
    """``python -m gridlens.cli`` (or the installed script when that does not work)."""
    cmd = [sys.executable, "-m", "gridlens.cli"]
    ok = subprocess.run([*cmd, "--version"], capture_output=True, timeout=60).returncode == 0
    if ok:
        return cmd
    script = Path(sys.executable).with_name("gridlens")
    return [str(script)]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    tmp: Path
    device: int


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30.0
    with httpx.Client(trust_env=False, timeout=2.0) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"gridlens serve exited with {proc.returncode}: {log.read_text()}")
            try:
                if c.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"gridlens serve did not answer /healthz in 30 s: {log.read_text()}")


def _seed(url: str, cli: list[str], db: str) -> int:
    """An admin (through the CLI) and a meter with photos over the last six hours."""
    out = subprocess.run(
        [*cli, "user", "add", "admin", "--role", "admin", "--password-stdin", "--db", db, "--json"],
        input=f"{PASSWORD}\n".encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    token = json.loads(out.stdout)["token"]
    ref, roi = render_reference(6, 1)
    with httpx.Client(base_url=url, trust_env=False, timeout=30.0) as c:
        r = c.post(
            "/api/v1/devices",
            json={
                "name": "kitchen",
                "roi": roi.to_dict(),
                "reference_jpeg_b64": base64.b64encode(encode_jpeg(ref)).decode(),
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        dev, dev_token = r.json()["device_id"], r.json()["token"]
        now = time.time()
        for k in range(7):
            m = render_meter(2000.0 + 0.9 * k, seed=k)
            r = c.post(
                f"/api/v1/devices/{dev}/images",
                content=encode_jpeg(m.image),
                headers={
                    "Authorization": f"Bearer {dev_token}",
                    "Content-Type": "image/jpeg",
                    "X-Captured-At": f"{now - (6 - k) * 3600 - 30:.3f}",
                },
            )
            assert r.status_code == 201, r.text
    return int(dev)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    db = f"sqlite:///{tmp}/b.db"
    cli = _gridlens()
    log = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDLENS_")}
    cmd = [*cli, "serve", "--db", db, "--data-dir", str(tmp / "data")]
    cmd += ["--port", str(port), "--no-request-log"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _wait_healthy(url, proc, log)
        dev = _seed(url, cli, db)
        yield Server(url, proc, tmp, dev)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _points(driver: Any, chart: str) -> int:
    el = driver.find_element(By.ID, chart)
    v = el.get_attribute("data-points")
    has_canvas = bool(el.find_elements(By.CSS_SELECTOR, "canvas"))
    return int(v) if v is not None and has_canvas else -1


def test_login_meter_page_charts_and_photo(server: Server, browser: Any) -> None:
    d = browser
    d.get(f"{server.url}/")
    assert "/login?next=%2F" in d.current_url
    d.find_element(By.NAME, "username").send_keys("admin")
    d.find_element(By.NAME, "password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(d, WAIT_S).until(lambda drv: drv.current_url == f"{server.url}/")
    assert "kitchen" in d.find_element(By.CSS_SELECTOR, "table.meters").text

    d.find_element(By.LINK_TEXT, "kitchen").click()
    WebDriverWait(d, WAIT_S).until(lambda drv: _points(drv, "chart-hourly") > 0)
    WebDriverWait(d, WAIT_S).until(lambda drv: _points(drv, "chart-counter") > 0)
    assert _points(d, "chart-hourly") >= 5
    assert _points(d, "chart-counter") == 7
    daily = d.find_element(By.ID, "chart-daily")
    WebDriverWait(d, WAIT_S).until(lambda _: daily.get_attribute("data-points") is not None)
    assert int(daily.get_attribute("data-points")) >= 1

    img = d.find_element(By.ID, "latest-photo")
    d.execute_script("arguments[0].scrollIntoView()", img)
    WebDriverWait(d, WAIT_S).until(
        lambda drv: drv.execute_script("return arguments[0].complete", img)
    )
    assert d.execute_script("return arguments[0].naturalWidth", img) == 640
    assert d.find_element(By.ID, "anomalies").is_displayed()
    assert d.find_element(By.ID, "command-form").is_displayed()

    errors = [
        e for e in d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]
    assert not errors, errors
    d.execute_script("window.scrollTo(0, 0)")
    d.set_window_size(1280, 2300)
    shot = server.tmp / "meter-page.png"
    assert d.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def _login(d: Any, url: str) -> None:
    d.get(f"{url}/")
    if "/login" in d.current_url:
        d.find_element(By.NAME, "username").send_keys("admin")
        d.find_element(By.NAME, "password").send_keys(PASSWORD)
        d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(d, WAIT_S).until(lambda drv: drv.current_url == f"{url}/")


def test_add_meter_in_the_browser(server: Server, browser: Any) -> None:
    """Add meter: upload a photo, get proposed boxes and a live reading, drag a box, save,
    see the token and the device's config; the saved (refined) boxes stay editable."""
    from selenium.webdriver.common.action_chains import ActionChains

    d = browser
    _login(d, server.url)
    d.find_element(By.ID, "add-meter").click()
    WebDriverWait(d, WAIT_S).until(lambda drv: drv.current_url.endswith("/meters/new"))
    ref, _ = render_reference(6, 1, reading=4321.25)
    photo = server.tmp / "first-photo.jpg"
    photo.write_bytes(encode_jpeg(ref, 92))
    d.find_element(By.ID, "f-name").send_keys("garage")
    d.find_element(By.ID, "photo-file").send_keys(str(photo))
    root = d.find_element(By.ID, "setup")
    WebDriverWait(d, WAIT_S).until(lambda _: root.get_attribute("data-preview-value"))
    assert "Proposed 6 wheels" in d.find_element(By.ID, "status").text
    assert root.get_attribute("data-preview-value").startswith("4321.")
    wheels = d.find_elements(By.CSS_SELECTOR, "#wheels tbody tr")
    assert len(wheels) == 6

    box = d.find_elements(By.CSS_SELECTOR, ".box.digit")[2]
    before = box.get_attribute("style")
    d.execute_script("arguments[0].removeAttribute('data-preview-value')", root)
    ActionChains(d).click_and_hold(box).move_by_offset(3, 2).move_by_offset(
        1, 1
    ).release().perform()
    WebDriverWait(d, WAIT_S).until(lambda _: root.get_attribute("data-preview-value"))
    moved = d.find_elements(By.CSS_SELECTOR, ".box.digit")[2]
    assert moved.get_attribute("style") != before
    assert root.get_attribute("data-preview-value").startswith("4321.")

    d.find_element(By.ID, "save").click()
    saved = d.find_element(By.ID, "saved")
    WebDriverWait(d, WAIT_S).until(lambda _: saved.is_displayed())
    token = d.find_element(By.ID, "token").text
    assert len(token) > 20
    cfg = json.loads(d.find_element(By.ID, "client-config").text)
    assert cfg["token"] == token and cfg["name"] == "garage" and cfg["device_id"] > 0
    assert cfg["server"] == server.url
    assert d.current_url.endswith(f"/meters/{cfg['device_id']}/setup")
    assert not d.find_element(By.ID, "refine").is_selected()  # the stored boxes, as stored
    assert len(d.find_elements(By.CSS_SELECTOR, ".box.digit")) == 6
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10.0) as c:
        r = c.get(f"/api/v1/devices/{cfg['device_id']}", headers={"Cookie": _cookie(d)})
    assert r.status_code == 200 and r.json()["roi"]["refined"] is True

    errors = [
        e for e in d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]
    assert not errors, errors
    shot = os.environ.get("GRIDLENS_SETUP_SCREENSHOT")  # docs/img/setup-page.png
    if shot:
        d.set_window_size(1280, 1900)
        d.execute_script("window.scrollTo(0, 0)")
        assert d.save_screenshot(shot)


def test_edit_boxes_rereads_recent_photos(server: Server, browser: Any) -> None:
    """Edit boxes: the stored reference photo and boxes load, and the last photos are read
    again with them beside their stored values."""
    d = browser
    _login(d, server.url)
    d.get(f"{server.url}/meters/{server.device}")
    d.find_element(By.ID, "edit-boxes").click()
    WebDriverWait(d, WAIT_S).until(lambda drv: drv.current_url.endswith("/setup"))
    rows = "#replay tbody tr td.num"
    WebDriverWait(d, WAIT_S).until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, rows)) >= 10)
    cells = [c.text for c in d.find_elements(By.CSS_SELECTOR, rows)]
    assert cells[0] == cells[1]  # newest photo: stored value == value with the stored boxes
    assert len(d.find_elements(By.CSS_SELECTOR, ".box.digit")) == 6
    assert not d.find_element(By.ID, "refine").is_selected()


def _cookie(d: Any) -> str:
    return "; ".join(f"{c['name']}={c['value']}" for c in d.get_cookies())


def test_add_meter_from_its_cameras_first_photo(server: Server, browser: Any) -> None:
    """Register first, put the token in the camera; its first upload appears on the page with
    proposed boxes; saving them makes the next upload read."""
    d = browser
    _login(d, server.url)
    d.get(f"{server.url}/meters/new")
    d.find_element(By.ID, "f-name").send_keys("cellar")
    d.find_element(By.ID, "wait-camera").click()
    saved = d.find_element(By.ID, "saved")
    WebDriverWait(d, WAIT_S).until(lambda _: saved.is_displayed())
    cfg = json.loads(d.find_element(By.ID, "client-config").text)
    dev, token = cfg["device_id"], cfg["token"]
    assert d.current_url.endswith(f"/meters/{dev}/setup")
    ref, _ = render_reference(6, 1, reading=1234.5)
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10.0) as c:
        r = c.post(
            f"/api/v1/devices/{dev}/images",
            content=encode_jpeg(ref, 92),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"},
        )
        assert r.status_code == 201 and r.json()["reading"]["status"] == "rejected", r.text
        root = d.find_element(By.ID, "setup")
        WebDriverWait(d, WAIT_S).until(lambda _: root.get_attribute("data-preview-value"))
        assert root.get_attribute("data-preview-value").startswith("1234.")
        assert len(d.find_elements(By.CSS_SELECTOR, ".box.digit")) == 6
        d.find_element(By.ID, "save").click()
        status = d.find_element(By.ID, "save-status")
        WebDriverWait(d, WAIT_S).until(lambda _: status.text == "saved")
        m = render_meter(1234.6, seed=3)
        r = c.post(
            f"/api/v1/devices/{dev}/images",
            content=encode_jpeg(m.image),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"},
        )
    reading = r.json()["reading"]
    assert reading["status"] == "ok" and abs(reading["value"] - 1234.6) < 1e-9, reading
