"""The fleet's anomaly REST API on SQLite and PostgreSQL: a fleet with five weeks of
simulated history and injected anomalies is scored; the injected ones rank on top and become
events; people acknowledge, mute and comment (roles, audit); bad requests change nothing."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridlens.simulate import (
    DeviceState,
    InjectedAnomaly,
    history_points,
    make_meter,
    plan_demo_anomalies,
)
from gridlens.store import Store

FLEET = [("meter-001", "household"), ("meter-002", "household"), ("meter-003", "factory")]
SEEDS = {"meter-001": 11, "meter-002": 12, "meter-003": 13}


def seed_fleet(
    store: Store, now: float, days: float = 35.0, step_s: float = 1800.0
) -> tuple[dict[str, int], list[InjectedAnomaly]]:
    """The demo's fleet as counter readings (no photos), with the demo's anomalies."""
    plan = plan_demo_anomalies(FLEET, now)
    ids: dict[str, int] = {}
    for i, (name, kind) in enumerate(FLEET):
        dev, _ = store.add_device(name, {}, max_rate=800.0)
        ids[name] = dev.id
        state = DeviceState(name, i, dev.id, "-", make_meter(kind, 0, SEEDS[name]), step_s)
        state.anomalies = [a for a in plan if a.device == name]
        pts = history_points(state, now - days * 86400.0, now, step_s)
        store.import_counter(dev.id, pts, source="test", actor="test")
    return ids, plan


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from gridlens.server.app import create_app
    from gridlens.server.settings import Settings

    settings = Settings(
        db=db_url, data_dir=str(tmp_path / "data"), log_requests=False, anomaly_every_s=0
    )
    store = Store.open(db_url)
    users = {r: store.add_user(f"u-{r}", role=r) for r in ("admin", "operator", "viewer")}
    tokens = {r: u[2] for r, u in users.items()}
    now = time.time()
    ids, plan = seed_fleet(store, now)
    with TestClient(create_app(settings, store)) as client:
        yield {
            "client": client,
            "store": store,
            "ids": ids,
            "plan": plan,
            **{r: {"Authorization": f"Bearer {t}"} for r, t in tokens.items()},
            "passwords": {r: u[1] for r, u in users.items()},
        }
    store.close()


def _overlaps(ev: dict[str, Any], a: InjectedAnomaly, ids: dict[str, int]) -> bool:
    from gridlens.store.timeutil import parse_time

    return (
        ev["device_id"] == ids[a.device]
        and parse_time(ev["start"]) < a.end
        and parse_time(ev["end"]) > a.start
    )


def test_injected_anomalies_rank_on_top_and_become_events(env: dict[str, Any]) -> None:
    c, ids, plan = env["client"], env["ids"], env["plan"]
    assert c.post("/api/v1/anomaly-ranking/rescore", headers=env["viewer"]).status_code == 403
    r = c.post("/api/v1/anomaly-ranking/rescore", headers=env["operator"])
    assert r.status_code == 200, r.text
    assert r.json()["meters"] == 3 and r.json()["scored"] == 3 and not r.json()["errors"]
    rank = c.get("/api/v1/anomaly-ranking", headers=env["viewer"]).json()["meters"]
    # the meters with injected anomalies first, the normal one (meter-002) last
    assert [m["name"] for m in rank][-1] == "meter-002", rank
    assert all(len(m["spark"]) == 168 for m in rank)
    evs = c.get("/api/v1/anomaly-events", headers=env["viewer"]).json()["events"]
    scores = [e["score"] for e in evs]
    assert scores == sorted(scores, reverse=True)
    for e in evs:
        assert {"device_id", "start", "end", "score", "kind", "status"} <= e.keys()
    top = evs[: len(plan)]
    for a in plan:
        assert any(_overlaps(e, a, ids) for e in top), (a, top)
    kinds = {a.kind: next(e["kind"] for e in top if _overlaps(e, a, ids)) for a in plan}
    assert kinds == {"stuck": "stuck", "night-load": "night-load", "holiday": "low"}
    # rescoring finds the same events: nothing duplicated
    again = c.post("/api/v1/anomaly-ranking/rescore", headers=env["operator"]).json()
    assert again["new_events"] == 0
    assert len(c.get("/api/v1/anomaly-events", headers=env["viewer"]).json()["events"]) == len(evs)


def test_people_act_on_events_with_roles_and_audit(env: dict[str, Any]) -> None:
    c = env["client"]
    c.post("/api/v1/anomaly-ranking/rescore", headers=env["operator"])
    ev = c.get("/api/v1/anomaly-events", headers=env["viewer"]).json()["events"][0]
    eid = ev["id"]
    url = f"/api/v1/anomaly-events/{eid}"
    assert c.post(f"{url}/acknowledge", headers=env["viewer"]).status_code == 403
    assert c.post(f"{url}/acknowledge").status_code == 401
    r = c.post(f"{url}/acknowledge", json={"comment": "on it"}, headers=env["operator"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged" and r.json()["changed"] is True
    assert r.json()["status_by"] == "u-operator"
    assert c.post(f"{url}/acknowledge", headers=env["operator"]).json()["changed"] is False
    r = c.post(f"{url}/comments", json={"text": "compressor left on"}, headers=env["admin"])
    assert r.status_code == 201 and r.json()["author"] == "u-admin"
    r = c.post(f"{url}/mute", json={"scope": "meter", "hours": 2}, headers=env["operator"])
    assert r.status_code == 200 and r.json()["status"] == "muted"
    rank = c.get("/api/v1/anomaly-ranking", headers=env["viewer"]).json()["meters"]
    assert next(m for m in rank if m["device_id"] == ev["device_id"])["muted"] is True
    muted = c.get("/api/v1/anomaly-events?status=muted", headers=env["viewer"]).json()["events"]
    assert [e["id"] for e in muted] == [eid]
    doc = c.get(url, headers=env["viewer"]).json()
    assert [x["text"] for x in doc["comment_list"]] == ["on it", "compressor left on"]
    r = c.delete(f"/api/v1/devices/{ev['device_id']}/anomaly-mute", headers=env["operator"])
    assert r.json() == {"device_id": ev["device_id"], "was_muted": True}
    log = c.get("/api/v1/audit", headers=env["admin"]).json()
    acts = [a["action"] for a in log if a["action"].startswith("anomaly.")]
    assert acts == ["anomaly.unmute", "anomaly.mute", "anomaly.comment", "anomaly.acknowledge"]


def test_bad_requests_are_4xx_and_change_nothing(env: dict[str, Any]) -> None:
    c = env["client"]
    c.post("/api/v1/anomaly-ranking/rescore", headers=env["operator"])
    ev = c.get("/api/v1/anomaly-events", headers=env["viewer"]).json()["events"][0]
    url = f"/api/v1/anomaly-events/{ev['id']}"
    op = env["operator"]
    cases = [
        ("post", f"{url}/comments", {"text": ""}, 422),
        ("post", f"{url}/comments", {"text": "   "}, 422),
        ("post", f"{url}/comments", {"text": "x" * 2001}, 422),
        ("post", f"{url}/comments", {"text": "a\x00b"}, 422),
        ("post", f"{url}/comments", {"text": "ok", "extra": 1}, 422),
        ("post", f"{url}/comments", None, 422),
        ("post", f"{url}/mute", {"scope": "fleet"}, 422),
        ("post", f"{url}/mute", {"scope": "meter", "hours": 0}, 422),
        ("post", f"{url}/mute", {"scope": "event", "hours": 3}, 422),
        ("post", f"{url}/acknowledge", {"comment": ""}, 422),
        ("post", "/api/v1/anomaly-events/999999/acknowledge", None, 404),
        ("post", "/api/v1/anomaly-events/0/mute", None, 422),
        ("get", "/api/v1/anomaly-events/abc", None, 422),
        ("get", "/api/v1/anomaly-events?status=closed", None, 422),
        ("get", "/api/v1/anomaly-events?limit=0", None, 422),
        ("get", "/api/v1/anomaly-events?since=yesterday", None, 422),
        ("get", "/api/v1/anomaly-ranking?sort=month", None, 422),
        ("delete", "/api/v1/devices/999/anomaly-mute", None, 404),
    ]
    for method, path, body, status in cases:
        kw: dict[str, Any] = {"headers": op}
        if body is not None:
            kw["json"] = body
        r = c.request(method.upper(), path, **kw)
        assert r.status_code == status, (path, body, r.status_code, r.text)
        assert r.json()["detail"]
    r = c.post(
        f"{url}/comments", content=b"{not json", headers={**op, "Content-Type": "application/json"}
    )
    assert r.status_code in (400, 422)
    doc = c.get(url, headers=env["viewer"]).json()
    assert doc["status"] == "open" and doc["comment_list"] == []
    assert not any(
        a["action"].startswith("anomaly.")
        for a in c.get("/api/v1/audit", headers=env["admin"]).json()
    )
    assert env["store"].meter_muted(ev["device_id"]) is False
    assert math.isfinite(ev["score"])


def test_the_page_by_role(env: dict[str, Any]) -> None:
    """Viewers see the ranking and events without forms and cannot act; a form post from
    elsewhere (no Origin of this server) is refused."""
    c = env["client"]
    c.post("/api/v1/anomaly-ranking/rescore", headers=env["operator"])
    eid = c.get("/api/v1/anomaly-events", headers=env["viewer"]).json()["events"][0]["id"]
    same = {"Origin": "http://testserver"}
    r = c.post("/login", data={"username": "u-viewer", "password": env["passwords"]["viewer"]},
               headers=same, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    page = c.get("/anomaly")
    assert page.status_code == 200 and f'id="event-{eid}"' in page.text
    assert "Acknowledge</button>" not in page.text and '<svg class="spark"' in page.text
    r = c.post(f"/anomaly/events/{eid}", data={"action": "acknowledge"}, headers=same,
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 403
    c.post("/logout", headers=same)
    r = c.post("/login", data={"username": "u-operator", "password": env["passwords"]["operator"]},
               headers=same, follow_redirects=False)  # fmt: skip
    r = c.post(f"/anomaly/events/{eid}", data={"action": "acknowledge"}, follow_redirects=False)
    assert r.status_code == 403  # no Origin: not from this server's pages
    r = c.post(f"/anomaly/events/{eid}", data={"action": "explode"}, headers=same,
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and "error=" in r.headers["location"]
    assert c.get(f"/api/v1/anomaly-events/{eid}", headers=env["viewer"]).json()["status"] == "open"
    r = c.post(f"/anomaly/events/{eid}", data={"action": "acknowledge", "back": "https://evil/"},
               headers=same, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].startswith("/anomaly?done=")
    assert (
        c.get(f"/api/v1/anomaly-events/{eid}", headers=env["viewer"]).json()["status"]
        == "acknowledged"
    )
