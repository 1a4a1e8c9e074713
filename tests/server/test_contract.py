"""The OpenAPI document is the contract: schemathesis, with every check and every phase
(examples, coverage, fuzzing, stateful), finds nothing against a real ``gridlens serve``.

The server runs on a fresh SQLite database with an admin and two meters: meter 1, with ten
days of counter readings, so the reading, consumption, anomaly and export routes do real
work (half of the generated device ids are 1), and a camera with an id no generator picks,
whose token schemathesis uses on the device's own routes (upload, ack); the admin routes
rotate and revoke meter 1's tokens as they are fuzzed.

Two exclusions, both deliberate:

- ``POST /roi/snapshot`` makes the server fetch any URL it is given; fuzzing it would send
  requests to hosts on the test machine's network. ``tests/server/test_setup.py`` tests it
  against a snapshot server of its own.
- The server is started with ``--no-pull`` for the same reason (``PATCH /devices/{id}``
  with a ``pull_url`` would make it fetch that URL).

``positive_data_acceptance`` (schema-valid data must not be refused) also accepts 422 on the
operations whose validity a JSON schema cannot state: bodies that are photos, ROIs or Green
Button files (a readable JPEG of a meter; boxes inside the photo, not overlapping), a
consumption range of more than 10,000 buckets (a rule across two parameters), and the Green
Button export of a meter whose unit the fuzzer changed from kWh (state). Their 422 is
documented; everywhere else a schema-valid request must be accepted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridlens.server.harness import ServerProcess, free_port
from tests.server.conftest import Layout

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 8  # per operation and phase: about a minute and a half in all
SEMANTIC_BODIES = (
    "^/api/v1/devices$",  # ROI and reference photo
    "^/api/v1/devices/\\{device_id\\}$",  # the same, when changed
    "^/api/v1/roi/(suggest|preview)$",  # photos
    "^/api/v1/devices/\\{device_id\\}/roi/replay$",  # ROI
    "^/api/v1/devices/\\{device_id\\}/images$",  # photos
    "^/api/v1/devices/\\{device_id\\}/import/greenbutton$",  # XML files
    "^/api/v1/devices/\\{device_id\\}/consumption$",  # since..until over the bucket limit
    "^/api/v1/devices/\\{device_id\\}/export.xml$",  # a meter no longer counting kWh
    "^/api/v1/feeders$",  # .dss text OpenDSS cannot load
    "^/api/v1/feeders/\\{feeder_id\\}/placement$",  # K against the feeder's buses
    "^/api/v1/feeders/\\{feeder_id\\}/estimates$",  # since..until over the hour limit
)
CAMERA_ID = 424_242  # the camera schemathesis uploads as: an id no generator picks

CONFIG = """
headers = {{ Authorization = "Bearer {admin}" }}

[dictionaries.meters]
values = [1]

[parameters]
"path.device_id" = {{ dictionary = "meters", probability = 0.5 }}

[[operations]]
include-path-regex = "/(images|ack)$"
headers = {{ Authorization = "Bearer {device}" }}
parameters = {{ "path.device_id" = {camera} }}

[[operations]]
include-path-regex = "{semantic}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


def _serve(db: str, data: Path, log: Path) -> ServerProcess:
    """``gridlens serve --no-pull`` on a free port (the harness's process handling)."""
    srv = ServerProcess(db, data, port=free_port())
    cmd = [
        sys.executable, "-m", "gridlens.cli", "serve", "--db", db, "--data-dir", str(data),
        "--port", str(srv.port), "--no-pull", "--no-request-log",
    ]  # fmt: skip
    out = open(log, "ab")  # noqa: SIM115 - the child writes it until stopped
    srv.proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert srv.proc.poll() is None, log.read_text()[-2000:]
        try:
            if srv.get("/healthz", timeout=1.0)[0] == 200:
                return srv
        except OSError:
            pass
        time.sleep(0.1)
    srv.stop()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


def test_schemathesis_finds_nothing(tmp_path: Path, layout: Layout) -> None:
    from gridlens.server.ingest import device_roi
    from gridlens.store import Store
    from gridlens.store.models import Device

    db = f"sqlite:///{tmp_path}/contract.db"
    store = Store.open(db)
    _, _, admin = store.add_user("ada", role="admin")
    roi = device_roi(layout.roi, layout.reference_jpeg)
    dev, _ = store.add_device("meter-1", roi, reference_jpeg=layout.reference_jpeg)
    t0 = (time.time() // 3600 - 240) * 3600
    kwh = [0.3 + 1.2 * (7 <= k % 24 < 19) for k in range(240)]  # days and nights
    points = [(t0 + 3600.0 * k, 1000.0 + sum(kwh[:k])) for k in range(240)]
    store.import_counter(dev.id, points, source="test", actor="test")
    with store.session() as s:  # the next id SQLite gives is the camera's
        s.add(Device(id=CAMERA_ID - 1, name="placeholder", roi=roi, created_at=t0, updated_at=t0))
    camera, device = store.add_device("camera", roi, reference_jpeg=layout.reference_jpeg)
    store.close()
    assert (dev.id, camera.id) == (1, CAMERA_ID)

    semantic = "|".join(SEMANTIC_BODIES).replace("\\", "\\\\")
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        CONFIG.format(admin=admin, device=device, camera=CAMERA_ID, semantic=semantic)
    )
    srv = _serve(db, tmp_path / "data", tmp_path / "server.log")
    try:
        h = {"Authorization": f"Bearer {device}", "Content-Type": "image/jpeg"}
        status, doc = srv.request("POST", f"/api/v1/devices/{CAMERA_ID}/images", b"no", h)
        assert (status, doc["detail"][:22]) == (422, "body is not a JPEG pho"), doc
        args = [
            "--config-file", str(config), "run", f"{srv.url}/openapi.json",
            "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(MAX_EXAMPLES), "--seed", "19", "--no-shrink",
            "--exclude-path", "/api/v1/roi/snapshot", "--request-timeout", "60",
        ]  # fmt: skip
        run = subprocess.run(
            [Path(sys.executable).parent / "schemathesis", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        srv.stop()
    report = run.stdout[-12000:] + run.stderr[-2000:]
    print(run.stdout[-4000:])  # the summary, shown with -s
    assert run.returncode == 0, report
    assert "No issues found" in run.stdout or " passed" in run.stdout, report
    assert "Internal Server Error" not in (tmp_path / "server.log").read_text()
