"""Anomaly events in the store: merged on rescoring, acknowledged, muted, commented, audited
(SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gridlens.errors import NotFoundError, ParameterError
from gridlens.store import Store
from tests.server.conftest import pg_url  # noqa: F401 - fixture

H = 3600.0
T0 = 1_790_000_000.0 // H * H


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/e.db"
    else:
        url = str(request.getfixturevalue("pg_url"))
        from tests.server.conftest import _reset_pg

        _reset_pg(url)
    s = Store.open(url)
    request.addfinalizer(s.close)
    return s


def _ev(a: float, b: float, score: float, kind: str = "high") -> dict[str, object]:
    return {"start": T0 + a * H, "end": T0 + b * H, "score": score, "kind": kind}


def _record(store: Store, dev: int, *events: dict[str, object]) -> list[int]:
    return store.record_anomaly_scores(
        dev, model="profile", day_score=3.0, week_score=9.0, spark=[1.0, None, 2.5],
        spark_start=T0, events=list(events), now=T0 + 100 * H,
    )  # fmt: skip


def test_rescoring_merges_instead_of_duplicating(store: Store) -> None:
    dev, _ = store.add_device("m1", {})
    first = _record(store, dev.id, _ev(0, 3, 6.0), _ev(20, 22, 8.0, "low"))
    assert len(first) == 2
    # the same runs again, one grown by an hour and scored higher, one touching the other
    again = _record(store, dev.id, _ev(0, 4, 7.5, "night-load"), _ev(22, 23, 5.0, "low"))
    assert again == []
    evs = store.anomaly_events()
    assert [e["score"] for e in evs] == [8.0, 7.5]  # highest first
    assert len(evs) == 2
    grown = next(e for e in evs if e["score"] == 7.5)
    assert grown["hours"] == 4.0 and grown["kind"] == "night-load" and grown["status"] == "open"
    touched = next(e for e in evs if e["score"] == 8.0)
    assert touched["hours"] == 3.0 and touched["kind"] == "low"
    # a run far from both is a new event
    assert len(_record(store, dev.id, _ev(50, 51, 5.5))) == 1
    rank = store.anomaly_ranking()
    assert rank[0]["week_score"] == 9.0 and rank[0]["spark"] == [1.0, None, 2.5]
    assert rank[0]["open_events"] == 3


def test_people_acknowledge_mute_comment_audited(store: Store) -> None:
    dev, _ = store.add_device("m1", {})
    (eid,) = _record(store, dev.id, _ev(0, 3, 6.0))
    doc, changed = store.acknowledge_anomaly_event(eid, actor="olga", comment="seen it")
    assert changed and doc["status"] == "acknowledged" and doc["status_by"] == "olga"
    assert doc["comment_list"][0]["text"] == "seen it"
    _doc, changed = store.acknowledge_anomaly_event(eid, actor="olga")
    assert not changed  # idempotent
    c = store.comment_anomaly_event(eid, actor="ivan", text="  compressor left on  ")
    assert c["text"] == "compressor left on" and c["author"] == "ivan"
    m = store.mute_anomaly_event(eid, actor="ivan", scope="meter", until=time.time() + 3600)
    assert m["status"] == "muted" and store.meter_muted(dev.id)
    # a muted meter's new events are stored muted
    (new,) = _record(store, dev.id, _ev(40, 41, 9.0))
    assert store.anomaly_event(new)["status"] == "muted"
    assert store.unmute_meter(dev.id, actor="ivan") is True
    assert store.unmute_meter(dev.id, actor="ivan") is False
    actions = [
        a["action"]
        for a in store.audit_log(20)
        if a["target"] in (f"anomaly:{eid}", f"device:{dev.id}")
    ]
    assert actions[:4] == [
        "anomaly.unmute",
        "anomaly.mute",
        "anomaly.comment",
        "anomaly.acknowledge",
    ]


def test_notification_is_claimed_once(store: Store) -> None:
    dev, _ = store.add_device("m1", {})
    (eid,) = _record(store, dev.id, _ev(0, 3, 6.0))
    assert [e.id for e in store.unnotified_anomaly_events()] == [eid]
    assert store.claim_anomaly_notification(eid, how="mqtt") is not None
    assert store.claim_anomaly_notification(eid, how="mqtt") is None
    assert store.unnotified_anomaly_events() == []


def test_bad_inputs_store_nothing(store: Store) -> None:
    dev, _ = store.add_device("m1", {})
    with pytest.raises(ParameterError, match="start < end"):
        _record(store, dev.id, _ev(0, 3, 6.0), _ev(5, 5, 6.0))
    with pytest.raises(ParameterError, match="kind"):
        _record(store, dev.id, _ev(0, 3, 6.0, "weird"))
    with pytest.raises(NotFoundError):
        _record(store, 999, _ev(0, 3, 6.0))
    assert store.anomaly_events() == [] and store.anomaly_ranking()[0]["scored_at"] is None
    (eid,) = _record(store, dev.id, _ev(0, 3, 6.0))
    for text in ("", "   ", "x" * 2001, "a\x00b"):
        with pytest.raises(ParameterError):
            store.comment_anomaly_event(eid, actor="a", text=text)
    with pytest.raises(ParameterError, match="future"):
        store.mute_anomaly_event(eid, actor="a", scope="meter", until=time.time() - 1)
    with pytest.raises(ParameterError, match="scope"):
        store.mute_anomaly_event(eid, actor="a", scope="fleet")
    with pytest.raises(NotFoundError):
        store.acknowledge_anomaly_event(eid + 100, actor="a")
    doc = store.anomaly_event(eid)
    assert doc["status"] == "open" and doc["comment_list"] == []
