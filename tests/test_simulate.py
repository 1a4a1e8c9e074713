"""The device simulator without the real server: load profiles, photos, options, protocol.

The protocol tests run :class:`Simulator` against a small stub of the server's device API
(registration, uploads with duplicates and a transient 503, commands and acks).
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridlens.cli.simulate import add_simulate_command, simulator_from_args
from gridlens.errors import InputError, ParameterError
from gridlens.meter.image import decode_image
from gridlens.meter.roi import MeterROI
from gridlens.meter.synth import matches_register
from gridlens.simulate import (
    Simulator,
    SimulatorError,
    factory_profile,
    household_profile,
    make_meter,
    parse_duration,
    parse_start,
    water_profile,
)

NOW = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)

# --------------------------------------------------------------------------- profiles


def test_household_profile_is_monotonic_and_in_the_household_range() -> None:
    p = household_profile(3)
    t0 = NOW.timestamp() - 40 * 86400
    ts = np.sort(np.random.default_rng(0).uniform(t0, NOW.timestamp(), 3000))
    e = np.array([p.energy_kwh(float(t)) for t in ts])
    assert np.all(np.diff(e) >= 0)
    days = [p.daily_kwh(NOW - timedelta(days=k)) for k in range(1, 41)]
    assert min(days) >= 5.0 and max(days) <= 20.0
    assert min(p.power_kw(float(t)) for t in ts[:500]) >= 0.0
    assert max(p.power_kw(float(t)) for t in ts) < 15.0  # under the registered max rate
    # a daily shape: the evening is busier than the small hours
    night = np.mean([p.power_kw(NOW.replace(hour=3) - timedelta(days=k)) for k in range(30)])
    evening = np.mean([p.power_kw(NOW.replace(hour=19) - timedelta(days=k)) for k in range(30)])
    assert evening > 2 * night


def test_profiles_are_deterministic_per_seed_and_differ_between_devices() -> None:
    t = NOW.timestamp()
    a, b, c = household_profile(7), household_profile(7), household_profile(8)
    assert a.energy_kwh(t) == b.energy_kwh(t)
    assert a.energy_kwh(t) != c.energy_kwh(t)
    day_a = [a.daily_kwh(t - k * 86400) for k in range(7)]
    day_c = [c.daily_kwh(t - k * 86400) for k in range(7)]
    assert day_a != day_c
    # evaluation order does not matter (blocks are seeded independently)
    late_first = household_profile(7)
    assert late_first.energy_kwh(t + 400 * 86400) == a.energy_kwh(t + 400 * 86400)
    assert late_first.energy_kwh(t - 400 * 86400) == b.energy_kwh(t - 400 * 86400)


def test_water_profile_is_a_households_water_in_m3() -> None:
    p = water_profile(5)
    t0 = NOW.timestamp() - 40 * 86400
    ts = np.sort(np.random.default_rng(1).uniform(t0, NOW.timestamp(), 3000))
    e = np.array([p.energy_kwh(float(t)) for t in ts])  # m3
    assert np.all(np.diff(e) >= 0)
    days = [p.daily_kwh(NOW - timedelta(days=k)) for k in range(1, 41)]
    assert min(days) >= 0.06 and max(days) <= 0.4  # hard limits
    assert np.mean((np.asarray(days) >= 0.1) & (np.asarray(days) <= 0.3)) >= 0.8
    flows = [p.power_kw(float(t)) for t in ts]  # m3/h
    assert min(flows) >= 0.0 and max(flows) <= 2.0
    assert np.mean(np.asarray(flows) == 0.0) > 0.5  # mostly nothing runs
    # water is used around getting up and in the evening, hardly at 3 am
    hourly = [
        np.mean([p.energy_kwh(NOW.replace(hour=h) - timedelta(days=k) + timedelta(hours=1))
                 - p.energy_kwh(NOW.replace(hour=h) - timedelta(days=k)) for k in range(1, 29)])
        for h in (3, 7, 20)
    ]  # fmt: skip
    assert hourly[1] > 5 * hourly[0] and hourly[2] > 5 * hourly[0]
    assert water_profile(5).energy_kwh(NOW) == p.energy_kwh(NOW)


def test_factory_profile_works_weekdays() -> None:
    f = factory_profile(1)
    monday = datetime(2026, 11, 16, tzinfo=UTC)
    weekdays = [f.daily_kwh(monday + timedelta(days=k)) for k in range(5)]
    sunday = f.daily_kwh(monday + timedelta(days=6))
    assert min(weekdays) > 1500 and sunday < 0.5 * min(weekdays)
    assert f.power_kw(monday.replace(hour=10)) > 3 * f.power_kw(monday.replace(hour=2))


# ----------------------------------------------------------------------------- photos


def test_simulated_photos_read_back_with_the_registered_roi_and_reference() -> None:
    from gridlens.meter import MeterReader

    meter = make_meter("household", layout_seed=4, profile_seed=11)
    body = meter.registration("sim-001")
    roi = MeterROI.from_dict(json.loads(json.dumps(body["roi"])))  # what the server receives
    ref = decode_image(base64.b64decode(body["reference_jpeg_b64"]))
    reader = MeterReader(roi, reference=ref)
    right = 0
    n = 6
    for k in range(n):
        t = NOW.timestamp() + 3600.0 * k
        truth = meter.register_at(meter.profile.energy_kwh(t))
        jpeg = meter.photo(meter.profile.energy_kwh(t), seed=k)
        assert jpeg[:3] == b"\xff\xd8\xff" and len(jpeg) < 2_000_000
        r = reader.read(jpeg)
        right += r.status == "ok" and matches_register(r.value, truth, 1)
    assert right >= n - 1  # glare may hide a wheel now and then


def test_water_meter_registers_dials_in_m3_and_its_photos_read_back() -> None:
    from gridlens.meter import MeterReader

    meter = make_meter("water", layout_seed=1, profile_seed=4)
    body = meter.registration("water-001", 600.0)
    assert (body["unit"], body["max_rate"], body["interval_s"]) == ("m3", 2.0, 600)
    assert [d["factor"] for d in body["roi"]["dials"]] == [0.1, 0.01, 0.001, 0.0001]
    assert (len(body["roi"]["digits"]), body["roi"]["decimals"]) == (5, 0)
    roi = MeterROI.from_dict(json.loads(json.dumps(body["roi"])))  # what the server receives
    ref = decode_image(base64.b64decode(body["reference_jpeg_b64"]))
    reader = MeterReader(roi, reference=ref)
    assert meter.register_at(123_456.78912) == pytest.approx(23_456.78912)  # 5 wheels wrap
    # imported history reads like the reader: down to the x0.0001 dial's division
    assert meter.shown_at(123_456.78919) == 23_456.7891
    assert make_meter("household", 0, 1).shown_at(1234.56) == pytest.approx(1234.56)
    for k in range(4):
        t = NOW.timestamp() + 3607.0 * k
        truth = meter.register_at(meter.profile.energy_kwh(t))
        r = reader.read(meter.photo(meter.profile.energy_kwh(t), seed=k, flash=k != 2))
        assert r.status == "ok" and r.value is not None, r.reason
        assert abs(r.value - truth) <= 0.002 and meter.matches(r.value, truth)
        assert [d["factor"] for d in r.dials] == [0.1, 0.01, 0.001, 0.0001]
    assert meter.matches(99_999.9995, 0.0005) and not meter.matches(10.0, 10.01)
    assert not meter.matches(None, 1.0)


def test_factory_meter_has_seven_integer_wheels() -> None:
    meter = make_meter("factory", layout_seed=1, profile_seed=2)
    assert (meter.n_digits, meter.decimals, meter.max_rate) == (7, 0, 800.0)
    assert meter.register_at(12_345_678.4) == pytest.approx(2_345_678.4)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600.0), ("90m", 5400.0), ("1h", 3600.0), ("1h30m", 5400.0), ("2.5h", 9000.0),
     ("24h", 86400.0), ("2d", 172800.0), ("45s", 45.0), (" 1H ", 3600.0), (30, 30.0)],
)  # fmt: skip
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "0", "1x", "1h 2y", "soon", "1.2.3h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ParameterError):
        parse_duration(text)


def test_parse_start() -> None:
    assert parse_start("-24h", NOW) == NOW - timedelta(hours=24)
    assert parse_start("now", NOW) == NOW
    assert parse_start("2026-11-21T08:00:00Z", NOW) == NOW - timedelta(hours=2)
    assert parse_start("2026-11-21T09:00:00+01:00", NOW) == NOW - timedelta(hours=2)
    assert parse_start("2026-11-21 08:00", NOW) == NOW - timedelta(hours=2)  # naive = UTC
    for bad in ("yesterday", "-1x", "2026-13-01"):
        with pytest.raises(ParameterError, match="--start"):
            parse_start(bad, NOW)


# ------------------------------------------------------------------------------- CLI


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gridlens")
    add_simulate_command(parser.add_subparsers(dest="command"), lambda doc: None)
    return parser.parse_args(["simulate", "--server", "http://127.0.0.1:9", *argv])


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--devices", "0"], "--devices"),
        (["--speedup", "-1"], "--speedup"),
        (["--start", "last tuesday"], "--start"),
        (["--duration", "forever"], "--duration"),
        (["--duration", "-5m"], "--duration"),
        (["--backfill", "0h"], "--backfill"),
        (["--backfill", "24h", "--start", "-2h"], "--backfill"),
        (["--backfill", "24h", "--forever", "--duration", "1h"], "--forever"),
        (["--forever"], "--backfill"),
        (["--interval-s", "5"], "--interval-s"),
        (["--factories", "3"], "--factories"),
        (["--devices", "2", "--factories", "1", "--water", "2"], "--water"),
        (["--water", "-1"], "--water"),
        (["--speedup", "0"], "--speedup 0"),
        (["--speedup", "60"], "--speedup above 1"),
        (["--token", " "], "token"),
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str], match: str) -> None:
    args = _args("--token", "t", *argv) if "--token" not in argv else _args(*argv)
    with pytest.raises(InputError, match=match):
        args.func(args)  # fails before any network access


def test_cli_backfill_and_start_map_to_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDLENS_TOKEN", "from-env")
    sim = simulator_from_args(_args("--backfill", "24h", "--devices", "3"), now=NOW)
    assert sim.admin_token == "from-env"
    assert sim.start == (NOW - timedelta(hours=24)).timestamp()
    assert (sim.speedup, sim.duration_s, sim.follow) == (0.0, 86400.0, False)
    sim = simulator_from_args(_args("--backfill", "24h", "--duration", "1h"), now=NOW)
    assert (sim.duration_s, sim.follow) == (90000.0, True)
    sim = simulator_from_args(_args("--backfill", "2h", "--forever"), now=NOW)
    assert (sim.duration_s, sim.follow) == (None, True)
    sim = simulator_from_args(_args("--backfill", "2h", "--devices", "4", "--factories", "1",
                                    "--water", "1"), now=NOW)  # fmt: skip
    assert (sim.n_devices, sim.n_factories, sim.n_water) == (4, 1, 1)
    sim = simulator_from_args(_args("--start", "-1h", "--speedup", "60", "--duration", "90m"))
    assert (sim.speedup, sim.duration_s) == (60.0, 5400.0)
    # fast without --start: the run ends at the present (servers refuse future photos)
    sim = simulator_from_args(_args("--speedup", "60", "--duration", "2h"), now=NOW)
    assert sim.start == (NOW - timedelta(hours=2)).timestamp()
    monkeypatch.delenv("GRIDLENS_TOKEN")
    with pytest.raises(ParameterError, match="GRIDLENS_TOKEN"):
        simulator_from_args(_args())


# ----------------------------------------------------------------- protocol (stub server)


class _Stub:
    """The device API of the server, just enough to check what the simulator sends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.devices: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, dict[str, Any]] = {}  # registration bodies by name
        self.uploads: list[dict[str, Any]] = []  # every POST .../images
        self.stored: dict[tuple[int, str], str] = {}  # (device, capture id) -> captured at
        self.acks: list[tuple[int, int, dict[str, Any]]] = []
        self.queued: dict[int, list[dict[str, Any]]] = {}  # device id -> commands
        self.fail_once: set[str] = set()  # capture ids answered 503 once
        self.next_command = 17

    def command(self, device_id: int, **cmd: Any) -> None:
        with self.lock:
            self.queued.setdefault(device_id, []).append({"id": self.next_command, **cmd})
            self.next_command += 1

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        auth = headers.get("Authorization", "")
        parts = path.strip("/").split("/")  # api v1 devices [id [images|commands [cid ack]]]
        with self.lock:
            if parts == ["api", "v1", "devices"]:
                if auth != "Bearer admin":
                    return 401, {"detail": "bad token"}
                if method == "GET":
                    return 200, [{"id": d["id"], "name": n} for n, d in self.devices.items()]
                req = json.loads(body)
                if req["name"] in self.devices:
                    return 409, {"detail": "name exists"}
                MeterROI.from_dict(req["roi"])
                decode_image(base64.b64decode(req["reference_jpeg_b64"]))
                dev = {"id": len(self.devices) + 1, "token": f"tok{len(self.devices) + 1}"}
                self.devices[req["name"]] = dev
                self.bodies[req["name"]] = req
                return 201, {"device_id": dev["id"], "token": dev["token"]}
            did = int(parts[3])
            if auth != f"Bearer tok{did}":
                return 403, {"detail": "not this device's token"}
            if parts[4] == "images":
                cap, at = headers["X-Capture-Id"], headers["X-Captured-At"]
                assert headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
                self.uploads.append({"device": did, "capture_id": cap, "at": at})
                if cap in self.fail_once:
                    self.fail_once.discard(cap)
                    return 503, {"detail": "try later"}
                cmds = self.queued.get(did, [])
                if (did, cap) in self.stored:
                    return 200, {"reading": None, "commands": cmds, "duplicate": True}
                self.stored[(did, cap)] = at
                reading = {"id": len(self.stored), "status": "rejected", "value": None}
                return 201, {"reading": reading, "commands": cmds, "duplicate": False}
            if parts[4] == "commands" and method == "GET":
                return 200, {"commands": self.queued.get(did, [])}
            cid = int(parts[5])
            self.acks.append((did, cid, json.loads(body)))
            self.queued[did] = [c for c in self.queued.get(did, []) if c["id"] != cid]
            return 200, {"ok": True}


@pytest.fixture
def stub() -> Iterator[tuple[_Stub, str]]:
    state = _Stub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            code, doc = state.handle(self.command, self.path, self.headers, body)
            out = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _sim(url: str, state_file: Path, **kw: Any) -> Simulator:
    opts: dict[str, Any] = {
        "interval_s": 60,
        "speedup": 0,
        "start": NOW,
        "duration_s": 600,
        "state_file": state_file,
        "progress": False,
        "concurrency": 2,
        **kw,
    }
    return Simulator(url, "admin", 2, **opts)


def test_simulator_speaks_the_device_protocol(stub: tuple[_Stub, str], tmp_path: Path) -> None:
    server, url = stub
    state_file = tmp_path / "devices.json"
    first = _sim(url, state_file, n_factories=1)
    first.register()
    server.command(1, action="interval", state=None, value=120)
    server.command(2, action="relay", state="off", value=None)
    server.command(2, action="warp", state="on", value=None)
    server.fail_once.add("sim-" + str(int(NOW.timestamp() + 30) * 1000))  # device 2's first
    s = first.run()
    # device 1: a photo a minute until its interval command (answered on the first upload)
    # makes it every 2 minutes -> 0, 2, 4, 6, 8 min; device 2 (offset 30 s): 10 photos
    assert s["uploads"] == 15 == s["rejected"] + s["ok"]
    assert (s["failed"], s["pending"], s["duplicates"], s["retries"]) == (0, 0, 0, 1)
    assert s["commands_acked"] == 3
    acks = {(d, c): b for d, c, b in server.acks}
    assert acks[(1, 17)] == {"ok": True, "detail": "interval 120 s"}
    assert acks[(2, 18)] == {"ok": True, "detail": "relay off"}
    assert acks[(2, 19)]["ok"] is False
    states = {d["name"]: d for d in s["device_states"]}
    assert states["sim-001"]["interval_s"] == 120 and states["sim-002"]["relay"] == "off"
    assert states["sim-002"]["kind"] == "factory"
    # the retried photo kept its capture id and capture time
    retried = [u for u in server.uploads if u["device"] == 2][:2]
    assert retried[0] == retried[1] and retried[0]["at"] == "2026-11-21T10:00:30Z"
    caps = [u["capture_id"] for u in server.uploads if u["device"] == 1]
    assert len(set(caps)) == 5
    assert any("relay on -> off" in e for e in first.events)

    # a rerun with the state file reuses the devices; the same capture ids are duplicates
    data = json.loads(state_file.read_text())
    assert data["sim-001"]["device_id"] == 1 and data["sim-001"]["interval_s"] == 120
    assert state_file.stat().st_mode & 0o077 == 0  # tokens: owner only
    again = _sim(url, state_file, duration_s=300).run()
    assert again["duplicates"] == again["uploads"] == 3 + 5
    assert len(server.devices) == 2

    # without the state file the names are taken: a clear error
    with pytest.raises(SimulatorError, match=r"--state file .*another --prefix"):
        _sim(url, tmp_path / "other.json").run()


def test_simulator_refuses_bad_admin_token_and_unreachable_server(
    stub: tuple[_Stub, str], tmp_path: Path
) -> None:
    _, url = stub
    with pytest.raises(SimulatorError, match="refused the admin token"):
        Simulator(url, "wrong", 1, speedup=0, start=NOW, duration_s=60, progress=False).run()
    with pytest.raises(SimulatorError, match="cannot reach"):
        Simulator(
            "http://127.0.0.1:9", "t", 1, speedup=0, start=NOW, duration_s=60, progress=False
        ).run()


def test_simulator_real_time_clock_and_stop(stub: tuple[_Stub, str], tmp_path: Path) -> None:
    server, url = stub
    sim = _sim(url, tmp_path / "s.json", speedup=600.0, interval_s=60, duration_s=None)
    timer = threading.Timer(1.0, sim.stop)
    timer.start()
    s = sim.run()
    timer.join()
    # 600x for ~1 s: ~10 simulated minutes, a photo a minute per device
    assert s["stopped"] and 12 <= s["uploads"] <= 26
    times = sorted(u["at"] for u in server.uploads)
    assert times[0] == "2026-11-21T10:00:00Z"


def test_simulator_validates_its_parameters() -> None:
    with pytest.raises(ParameterError, match="n_devices"):
        Simulator("http://x", "t", 0)
    with pytest.raises(ParameterError, match="speedup"):
        Simulator("http://x", "t", 1, speedup=-1)
    with pytest.raises(ParameterError, match="server"):
        Simulator("localhost:8000", "t", 1)
    with pytest.raises(ParameterError, match="duration_s"):
        Simulator("http://x", "t", 1, speedup=0)  # fastest, up to now, from now: nothing


def test_capture_command_takes_a_photo_at_once(stub: tuple[_Stub, str], tmp_path: Path) -> None:
    server, url = stub
    sim = Simulator(url, "admin", 1, speedup=0, start=NOW, duration_s=180, progress=False)
    sim.register()
    server.command(1, action="capture", state="now", value=None)
    s = sim.run()
    at = [u["at"][11:] for u in server.uploads]
    assert at == ["10:00:00Z", "10:00:01Z", "10:01:01Z", "10:02:01Z"]
    assert s["commands_acked"] == 1 and server.acks[0][2] == {"ok": True, "detail": "capture now"}


# ------------------------------------------------------------------------- injected anomalies


def test_injected_anomalies_change_the_register_as_described() -> None:
    from gridlens.simulate import InjectedAnomaly

    p = household_profile(3)
    raw = p.energy_kwh
    t0 = NOW.timestamp()
    h = 3600.0
    night = InjectedAnomaly("m", "night-load", t0, t0 + 4 * h, kw=2.0)
    assert night.delta_kwh(raw, t0 - h) == 0.0
    assert night.delta_kwh(raw, t0 + 2 * h) == pytest.approx(4.0)
    assert night.delta_kwh(raw, t0 + 9 * h) == pytest.approx(8.0)
    stuck = InjectedAnomaly("m", "stuck", t0, t0 + 4 * h)
    shown = [raw(t) + stuck.delta_kwh(raw, t) for t in (t0, t0 + h, t0 + 3 * h, t0 + 4 * h)]
    assert shown == pytest.approx([raw(t0)] * 4)  # frozen, and the lost energy stays lost
    later = raw(t0 + 6 * h) + stuck.delta_kwh(raw, t0 + 6 * h)
    assert later == pytest.approx(raw(t0) + raw(t0 + 6 * h) - raw(t0 + 4 * h))
    holiday = InjectedAnomaly("m", "holiday", t0, t0 + 24 * h, keep=0.2)
    used = raw(t0 + 24 * h) - raw(t0)
    assert holiday.delta_kwh(raw, t0 + 30 * h) == pytest.approx(-0.8 * used)
    again = InjectedAnomaly.from_dict(holiday.to_dict())
    assert again == holiday
    for bad in (
        {"kind": "fire"},
        {"end": t0 - 1},
        {"kw": -1.0},
        {"keep": 1.5},
    ):
        kw: dict[str, Any] = {"device": "m", "kind": "stuck", "start": t0, "end": t0 + h, **bad}
        with pytest.raises(ParameterError):
            InjectedAnomaly(**kw)


def test_demo_plan_and_history_points() -> None:
    from gridlens.simulate import DeviceState, history_points, plan_demo_anomalies

    now = NOW.timestamp()  # a Saturday, 10:00 UTC
    fleet = [("m1", "household"), ("m2", "household"), ("m3", "factory")]
    plan = plan_demo_anomalies(fleet, now)
    assert [(a.device, a.kind) for a in plan] == [
        ("m1", "stuck"), ("m3", "night-load"), ("m3", "holiday"),
    ]  # fmt: skip
    assert plan_demo_anomalies([*fleet, ("m4", "water")], now) == plan  # no water anomalies
    assert plan_demo_anomalies([("w1", "water")], now) == []
    assert {a.device for a in plan_demo_anomalies([("m1", "household"), ("w", "water")], now)} == {
        "m1"
    }
    stuck, night, holiday = plan
    assert parse_start("2026-11-20T06:00:00Z").timestamp() == stuck.start
    assert night.start == parse_start("2026-11-18T22:00:00Z").timestamp() and night.kw == 250.0
    assert holiday.start == parse_start("2026-11-16T00:00:00Z").timestamp()  # a Monday
    assert plan_demo_anomalies([], now) == []
    meter = make_meter("household", 0, 5)
    dev = DeviceState("m1", 0, 1, "-", meter, 600.0, anomalies=[stuck])
    pts = history_points(dev, stuck.start - 3600, stuck.end + 3600, 600.0)
    assert len(pts) == 6 * 18 and set(np.diff([t for t, _ in pts])) == {600.0}
    inside = [v for t, v in pts if stuck.start <= t <= stuck.end]
    assert len(set(inside)) == 1  # the register stood still
    values = [v for _, v in pts]
    assert values == sorted(values)  # and never went back


def test_simulator_keeps_injected_anomalies_in_its_state(
    stub: tuple[_Stub, str], tmp_path: Path
) -> None:
    from gridlens.simulate import InjectedAnomaly

    _server, url = stub
    t0 = NOW.timestamp() - 3600
    a = InjectedAnomaly("sim-001", "stuck", t0, t0 + 1800)
    state = tmp_path / "state.json"
    sim = Simulator(url, "admin", 2, speedup=0, start=NOW, duration_s=60, progress=False,
                    state_file=state, anomalies=[a])  # fmt: skip
    devs = sim.register()
    assert devs[0].anomalies == [a] and devs[1].anomalies == []
    again = Simulator(url, "admin", 2, speedup=0, start=NOW, duration_s=60, progress=False,
                      state_file=state)  # fmt: skip
    assert again.register()[0].anomalies == [a]
    with pytest.raises(ParameterError, match="anomalies"):
        Simulator(url, "admin", 1, anomalies=["stuck"])  # type: ignore[list-item]


def test_simulator_water_meters_come_last_and_survive_the_state_file(
    stub: tuple[_Stub, str], tmp_path: Path
) -> None:
    server, url = stub
    state = tmp_path / "state.json"
    sim = Simulator(url, "admin", 4, speedup=0, start=NOW, duration_s=60, progress=False,
                    state_file=state, n_factories=1, n_water=1)  # fmt: skip
    kinds = [d.meter.kind for d in sim.register()]
    assert kinds == ["household", "household", "factory", "water"]
    body = server.bodies["sim-004"]
    assert body["unit"] == "m3" and len(body["roi"]["dials"]) == 4
    assert {server.bodies[f"sim-00{i}"]["unit"] for i in (1, 2, 3)} == {"kWh"}
    assert json.loads(state.read_text())["sim-004"]["kind"] == "water"
    again = Simulator(url, "admin", 4, speedup=0, start=NOW, duration_s=60, progress=False,
                      state_file=state, n_factories=1, n_water=1)  # fmt: skip
    water = again.register()[3]
    assert water.meter.kind == "water" and water.meter.unit == "m3"
    assert water.meter.roi.to_dict() == sim.devices[3].meter.roi.to_dict()
    assert water.meter.profile.energy_kwh(NOW) == sim.devices[3].meter.profile.energy_kwh(NOW)
    s = again.run()  # one photo each, through the device API
    assert s["uploads"] == 4 and s["failed"] == 0
    assert len(server.devices) == 4  # reused, none registered again
    with pytest.raises(ParameterError, match="n_water"):
        Simulator(url, "admin", 2, n_factories=1, n_water=2)
