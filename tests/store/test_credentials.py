"""Credential management in the store: rotating and revoking tokens, editing devices, listing
users, and the per-process token/device caches (on SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import select

from gridlens.errors import ConflictError, NotFoundError, ParameterError
from gridlens.store import Store, repo, security
from gridlens.store.models import Device, Token
from tests.server.conftest import pg_url  # noqa: F401 - fixture

ROI = {"digits": [{"x": 10, "y": 10, "w": 20, "h": 30}], "decimals": 0}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/c.db"
    else:
        from tests.server.conftest import _reset_pg

        url = str(request.getfixturevalue("pg_url"))
        _reset_pg(url)
    s = Store.open(url)
    request.addfinalizer(s.close)
    return s


def _device_tokens(store: Store, device_id: int) -> list[Token]:
    with store.session() as s:
        return list(s.scalars(select(Token).where(Token.device_id == device_id).order_by(Token.id)))


def test_rotation_and_revocation_beat_the_token_cache(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev, old = store.add_device("m1", ROI)
    other = Store(store.engine)  # a second server process on the same database
    assert store.resolve(old) == other.resolve(old)  # both cache it now
    assert old in store._token_cache and old in other._token_cache

    new = store.rotate_device_token(dev.id, actor="ada")
    assert store.resolve(old) is None  # at once in this process, despite the cache
    p = store.resolve(new)
    assert p is not None and (p.kind, p.device_id, p.name) == ("device", dev.id, "m1")
    # stored like add_device stores it: only the hash, the old one kept as revoked
    rows = _device_tokens(store, dev.id)
    assert [(t.kind, t.revoked) for t in rows] == [("device", True), ("device", False)]
    assert rows[1].token_hash == security.token_hash(new) and new.startswith("gld_")
    # the other process trusts its cache for at most CACHE_TTL_S
    assert other.resolve(old) is not None
    monkeypatch.setattr(repo, "CACHE_TTL_S", 0.0)
    assert other.resolve(old) is None
    monkeypatch.undo()

    assert store.revoke_device_tokens(dev.id, actor="ada") == 1
    assert store.resolve(new) is None
    assert store.revoke_device_tokens(dev.id, actor="ada") == 0  # nothing live is left
    log = store.audit_log(target=f"device:{dev.id}")
    assert [(e["actor"], e["action"], e["detail"]) for e in log[:3]] == [
        ("ada", "device.token.revoke", {"revoked": 0}),
        ("ada", "device.token.revoke", {"revoked": 1}),
        ("ada", "device.token.rotate", {"revoked": 1}),
    ]
    for call in (store.rotate_device_token, store.revoke_device_tokens):
        with pytest.raises(NotFoundError, match="no device with id 999"):
            call(999, actor="ada")


def test_a_lookup_racing_a_revocation_is_not_cached(store: Store) -> None:
    dev, tok = store.add_device("m1", ROI)
    real = store._resolve

    def racing(token: str, now: float | None = None) -> repo.Principal | None:
        p = real(token, now)  # the token was valid when read ...
        store.revoke_device_tokens(dev.id, actor="ada")  # ... and revoked right after
        return p

    store._resolve = racing  # type: ignore[method-assign]
    assert store.resolve(tok) is not None  # that request got in
    store._resolve = real  # type: ignore[method-assign]
    assert store.resolve(tok) is None  # the next one does not


def test_user_tokens_listing_and_revocation(store: Store) -> None:
    store.add_user("ada", role="admin")
    vera, _, first = store.add_user("vera", role="viewer")
    second = store.new_api_token("vera", actor="ada")
    p = store.resolve(second)
    assert p is not None and (p.kind, p.name, p.role) == ("user", "vera", "viewer")
    session = store.new_session(vera)
    users = {u["name"]: u for u in store.users()}
    assert [u["name"] for u in store.users()] == ["ada", "vera"]
    assert (users["vera"]["role"], users["vera"]["api_tokens"], users["vera"]["sessions"]) == (
        "viewer",
        2,
        1,
    )
    assert users["ada"]["api_tokens"] == 1 and users["ada"]["created_at"].endswith("Z")

    assert store.revoke_user_tokens("vera", actor="ada") == 2
    assert store.resolve(first) is None and store.resolve(second) is None
    assert store.resolve(session) is not None  # sessions only when asked
    assert store.revoke_user_tokens("vera", actor="ada", kind="all") == 1
    assert store.resolve(session) is None
    assert {u["name"]: u["api_tokens"] for u in store.users()} == {"ada": 1, "vera": 0}
    actions = [(e["action"], e["detail"]) for e in store.audit_log(target="user:vera")]
    assert actions[:4] == [
        ("user.token.revoke", {"kind": "all", "revoked": 1}),
        ("user.token.revoke", {"kind": "api", "revoked": 2}),
        ("login", None),
        ("user.token.new", None),
    ]
    with pytest.raises(NotFoundError, match="no user named 'nobody'"):
        store.new_api_token("nobody", actor="ada")
    with pytest.raises(NotFoundError):
        store.revoke_user_tokens("nobody", actor="ada")
    with pytest.raises(ParameterError, match="kind must be one of"):
        store.revoke_user_tokens("vera", actor="ada", kind="device")


def test_update_device_checks_like_add_device_and_clears_the_cache(store: Store) -> None:
    dev, tok = store.add_device("m1", ROI, max_rate=5.0)
    store.add_device("taken", ROI)
    assert store.device_cached(dev.id).max_rate == 5.0  # cached now
    assert store.resolve(tok) is not None  # principal (with the name) cached now
    before = store.device(dev.id)
    for kw, err, words in [
        ({"max_rate": -1.0}, ParameterError, "max_rate must be > 0 kWh per hour"),
        ({"max_rate": math.nan}, ParameterError, "max_rate"),
        ({"max_rate": 0.0, "unit": "m3"}, ParameterError, "> 0 m3 per hour"),
        ({"unit": ""}, ParameterError, "unit must be 1-16 characters"),
        ({"unit": "x" * 17}, ParameterError, "unit must be"),
        ({"name": "no/slash"}, ParameterError, "device name"),
        ({"name": "taken"}, ConflictError, "already exists"),
        ({}, ParameterError, "nothing to change"),
    ]:
        with pytest.raises(err, match=words):
            store.update_device(dev.id, actor="ada", **kw)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        store.update_device(999, actor="ada", unit="m3")
    after = store.device(dev.id)
    assert (after.name, after.unit, after.max_rate, after.updated_at) == (
        "m1",
        "kWh",
        5.0,
        before.updated_at,
    )
    # the same values change nothing (no new reader, no audit entry)
    same = store.update_device(dev.id, actor="ada", unit="kWh", roi=dict(ROI))
    assert same.updated_at == before.updated_at

    roi2 = {**ROI, "decimals": 1}
    d = store.update_device(dev.id, actor="ada", unit="m3", max_rate=2.5, name="m1b", roi=roi2)
    assert (d.name, d.unit, d.max_rate, d.roi) == ("m1b", "m3", 2.5, roi2)
    assert d.updated_at > before.updated_at  # meter readers are rebuilt
    cached = store.device_cached(dev.id)  # at once, despite the cache
    assert (cached.unit, cached.max_rate, cached.roi) == ("m3", 2.5, roi2)
    p = store.resolve(tok)
    assert p is not None and p.name == "m1b"
    with store.session() as s:
        assert s.get(Device, dev.id).unit == "m3"  # type: ignore[union-attr]
    log = [e for e in store.audit_log(target=f"device:{dev.id}") if e["action"] == "device.update"]
    assert len(log) == 1 and log[0]["actor"] == "ada"
    assert log[0]["detail"] == {
        "name": ["m1", "m1b"],
        "unit": ["kWh", "m3"],
        "max_rate": [5.0, 2.5],
        "roi": "replaced",
    }


def test_cli_help_states_the_cache_ttl() -> None:
    from gridlens.cli import server as cli_server

    assert cli_server.CACHE_TTL_S == repo.CACHE_TTL_S
