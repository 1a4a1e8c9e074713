"""Run ``gridlens serve`` as a child process (tests, benchmarks, the demo) and talk to it.

>>> with ServerProcess("sqlite:///t.db", "data") as srv:   # doctest: +SKIP
...     srv.get("/healthz")

The server runs in a session of its own, so that :meth:`ServerProcess.stop` and
:meth:`ServerProcess.kill` reach its uvicorn workers as a process group. It would therefore
outlive a parent killed hard (``kill -9`` of ``gridlens demo``), keeping the port: on Linux
the child asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and
shuts its workers down as on ``stop()``. The kernel sends it when the *thread* that started
the server ends, so start servers from a thread that lives as long as they should.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when ``parent`` dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One ``gridlens serve`` process (with ``workers`` uvicorn workers) on a free port."""

    def __init__(
        self,
        db: str,
        data_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        workers: int = 1,
        mqtt: str | None = None,
        log: str | os.PathLike[str] | None = None,
        request_log: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.extra_args = list(extra_args)  # more `gridlens serve` options
        self.data_dir = str(data_dir)
        self.port = port or free_port()
        self.workers = workers
        self.mqtt = mqtt
        self.log = Path(log) if log else None
        self.request_log = request_log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        cmd = [
            sys.executable, "-m", "gridlens.cli", "serve", "--db", self.db,
            "--data-dir", self.data_dir, "--port", str(self.port),
            "--workers", str(self.workers),
        ]  # fmt: skip
        if self.mqtt:
            cmd += ["--mqtt", self.mqtt]
        if not self.request_log:
            cmd.append("--no-request-log")
        cmd += self.extra_args
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),  # prctl only: safe between fork and exec
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gridlens serve exited with {self.proc.returncode}")
            try:
                if self.get("/healthz", timeout=1.0)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gridlens serve did not answer on {self.url} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL the whole process group (the server and its workers), like a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def pids(self) -> list[int]:
        """The server's process ids (parent and workers)."""
        if self.proc is None:
            return []
        out = [self.proc.pid]
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            out += [int(p) for p in kids.split()]
        except OSError:
            pass
        return out

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        ctype = r.getheader("content-type") or ""
        return r.status, json.loads(data) if "json" in ctype and data else data

    def get(self, path: str, token: str | None = None, timeout: float = 30.0) -> tuple[int, Any]:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        return self.request("GET", path, headers=h, timeout=timeout)

    def post_json(self, path: str, doc: Any, token: str) -> tuple[int, Any]:
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return self.request("POST", path, json.dumps(doc).encode(), h)


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes now, MiB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024
