"""``gridlens demo`` (what ``make run`` starts) stops as a whole (issue 19, finding 14).

Before: SIGTERM during seeding stopped the seeding and the demo went on serving, and a demo
killed with SIGKILL left its server (a session of its own) running on the port. Each test
starts the real demo on a free port in a temporary folder, signals it while it seeds, and
checks that the port is freed and that no process of that demo is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridlens.server.harness import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _processes_using(folder: Path) -> list[int]:
    """Processes whose command line names ``folder`` (the demo and its server)."""
    needle = str(folder).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if needle in cmdline and b"gridlens" in cmdline:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class Demo:
    """A running ``gridlens demo`` whose stderr is collected line by line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "gridlens.cli", "demo", "--dir", str(folder),
                "--port", str(self.port), "--devices", "3", "--backfill", "2000h", "--no-mqtt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "GRIDLENS_PORT": str(self.port)},
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"the demo did not print {text!r}: {''.join(self.lines)[-2000:]}")

    def cleanup(self) -> None:
        for pid in _processes_using(self.folder):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(tmp_path / "demo")
    try:
        yield d
    finally:
        d.cleanup()


def _seeding(demo: Demo) -> None:
    demo.wait_for("seeding 2000h")
    # the three electricity meters and, after them, the water meter with pointer dials
    assert any("from 4 meters" in ln and "meter-004 is a water meter" in ln for ln in demo.lines)
    assert _port_open(demo.port)
    time.sleep(1.0)  # well inside the seeding: 2000 h is several minutes of uploads
    assert demo.proc.poll() is None, "".join(demo.lines)[-2000:]
    assert not any("meters upload every" in line for line in demo.lines)


def _gone(demo: Demo, timeout: float = 30.0) -> None:
    """The port is free and no process of this demo remains, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _port_open(demo.port) and not _processes_using(demo.folder):
            return
        time.sleep(0.2)
    left = _processes_using(demo.folder)
    pytest.fail(f"port {demo.port} open: {_port_open(demo.port)}; processes left: {left}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_seeding_stops_the_whole_demo(demo: Demo, sig: signal.Signals) -> None:
    _seeding(demo)
    demo.proc.send_signal(sig)
    assert demo.proc.wait(30) == 0
    assert not any("meters upload every" in line for line in demo.lines), "went on live"
    assert any("gridlens demo: stopped" in line for line in demo.lines)
    _gone(demo)


def test_sigkill_of_the_demo_takes_its_server_down(demo: Demo) -> None:
    _seeding(demo)
    server = [pid for pid in _processes_using(demo.folder) if pid != demo.proc.pid]
    assert server, "the demo's server process was not found"
    demo.proc.kill()
    demo.proc.wait(10)
    _gone(demo)
