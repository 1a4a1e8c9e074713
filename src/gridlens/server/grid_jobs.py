"""Placement jobs of the server: each study runs in a child process, a few at a time.

``POST /api/v1/feeders/{id}/placement`` takes a slot (at most :data:`MAX_PLACEMENT_JOBS`
studies run at once in one server process; one more is refused with 409, nothing stored),
stores the job as ``queued`` and starts a thread that runs ``python -m
gridlens.grid.place_child`` and copies its progress and its result (or its one-line error)
into the job's row. The child has the study's CPU time and memory limits and a lower
priority; a crash, a limit or a timeout fails that job with a message and leaves the server
serving. The thread frees the slot when its child has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from gridlens.errors import ConflictError
from gridlens.store.feeders import GridJob
from gridlens.store.repo import Store

__all__ = ["JOB_CPU_S", "JOB_WALL_S", "MAX_PLACEMENT_JOBS", "busy", "start_placement"]

#: Placement studies one server process runs at once (each a child process).
MAX_PLACEMENT_JOBS = 2
#: CPU seconds one study may use (the child's RLIMIT_CPU).
JOB_CPU_S = 600
#: Longest one study may take, waiting included [s].
JOB_WALL_S = 1200
#: Address space of one study's child [bytes].
JOB_MAX_BYTES = 4 * 1024**3
#: Longest progress or result line read from a child [characters].
_MAX_LINE = 32 * 1024**2

_slots = threading.BoundedSemaphore(MAX_PLACEMENT_JOBS)
_running: set[int] = set()
_running_lock = threading.Lock()


def busy() -> list[int]:
    """Ids of the placement jobs this process runs now."""
    with _running_lock:
        return sorted(_running)


def start_placement(
    store: Store, feeder_id: int, model: dict[str, Any], params: dict[str, Any], *, actor: str
) -> GridJob:
    """Store a placement job and start its child; :class:`ConflictError` when every slot is
    taken (then nothing is stored)."""
    if not _slots.acquire(blocking=False):
        raise ConflictError(
            f"{MAX_PLACEMENT_JOBS} placement studies are running on this server, the most it "
            "runs at once; start this one again when one of them is done"
        )
    try:
        job = store.add_job("placement", feeder_id, params, actor=actor)
        with _running_lock:
            _running.add(job.id)
        threading.Thread(
            target=_run_job,
            args=(store, job.id, model, params),
            daemon=True,
            name=f"placement-{job.id}",
        ).start()
    except BaseException:
        if "job" in locals():
            with _running_lock:
                _running.discard(job.id)
        _slots.release()
        raise
    return job


def _run_job(store: Store, job_id: int, model: dict[str, Any], params: dict[str, Any]) -> None:
    try:
        store.update_job(job_id, status="running")
        status, values = run_child(
            model,
            params,
            lambda p: store.update_job(job_id, progress=p),
            cpu_s=JOB_CPU_S,
            wall_s=JOB_WALL_S,
            max_bytes=JOB_MAX_BYTES,
        )
        store.update_job(job_id, status=status, **values)
    except Exception as exc:  # the database went away: the job's row says what it can
        with contextlib.suppress(Exception):
            store.update_job(job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        with _running_lock:
            _running.discard(job_id)
        _slots.release()


def run_child(
    model: dict[str, Any],
    params: dict[str, Any],
    progress: Callable[[float], None],
    *,
    cpu_s: int = JOB_CPU_S,
    wall_s: float = JOB_WALL_S,
    max_bytes: int = JOB_MAX_BYTES,
    on_start: Callable[[int], None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Run one study in ``python -m gridlens.grid.place_child``: ``("done", {"progress",
    "result"})`` or ``("failed", {"error"})``. ``progress(fraction)`` gets its progress,
    ``on_start(pid)`` the child's process id."""
    cmd = [
        sys.executable, "-m", "gridlens.grid.place_child", "--cpu-s", str(cpu_s),
        "--max-bytes", str(max_bytes), "--parent", str(os.getpid()),
    ]  # fmt: skip
    doc = json.dumps({"model": model, "params": params}).encode()
    with (
        tempfile.TemporaryFile() as err,
        subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, close_fds=True
        ) as proc,
    ):
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(wall_s, stop)
        timer.daemon = True
        timer.start()
        result: dict[str, Any] | None = None
        try:
            if on_start is not None:
                on_start(proc.pid)
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(doc)
                proc.stdin.close()
            except OSError:
                pass  # the child ended early: its exit code and stderr say why
            while raw := proc.stdout.readline(_MAX_LINE):
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(line, dict):
                    continue
                if "progress" in line:
                    progress(float(line["progress"]))
                elif "result" in line:
                    result = line["result"]
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        tail = err.read()[-4000:].decode(errors="replace").strip().splitlines()
    if code == 0 and isinstance(result, dict):
        return "done", {"progress": 1.0, "result": result}
    return "failed", {"error": _why(code, tail, timed_out.is_set(), cpu_s, wall_s)[:2000]}


def _why(code: int, tail: list[str], timed_out: bool, cpu_s: int, wall_s: float) -> str:
    if timed_out:
        return f"the study took over {wall_s:g} s and was stopped"
    if code == -signal.SIGXCPU:
        return f"the study used over {cpu_s} s of CPU time and was stopped"
    if code == -signal.SIGKILL:
        return f"the study was stopped (over its {cpu_s} s of CPU time or its memory)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"the study's process stopped ({name}); the server is unaffected"
    if tail:
        return tail[-1]
    return f"the study's process ended with exit code {code}"
