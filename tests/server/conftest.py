"""Server fixtures: the same tests run on SQLite and on PostgreSQL (when it is reachable)."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridlens.meter.image import encode_jpeg
from gridlens.meter.synth import NO_CAMERA_EFFECTS, render_meter, render_reference
from gridlens.store.timeutil import iso

PG_ADMIN = os.environ.get("GRIDLENS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN} ({type(exc).__name__}: {exc})"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"gridlens_t_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
        c.execute("DROP SCHEMA public CASCADE")
        c.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gridlens.db"
    url = str(request.getfixturevalue("pg_url"))
    _reset_pg(url)
    return url


def upload_headers(
    token: str | dict[str, str], cid: str | None = None, at: float | None = None
) -> dict[str, str]:
    """Headers of a device upload: bearer token (bare or as a header dict), JPEG body, and
    the optional capture id and capture time."""
    h = dict(token) if isinstance(token, dict) else {"Authorization": f"Bearer {token}"}
    h["Content-Type"] = "image/jpeg"
    if cid is not None:
        h["X-Capture-Id"] = cid
    if at is not None:
        h["X-Captured-At"] = str(iso(at))
    return h


@dataclass(frozen=True)
class Layout:
    """One synthetic meter layout: reference photo + ROI, and photos of any reading."""

    reference_jpeg: bytes
    roi: dict[str, Any]

    def photo(self, reading: float, seed: int = 0, clean: bool = True) -> bytes:
        """A photo that reads ``reading``: the last wheel stands on its digit (a person reads
        the digit shown; half-way, at the 0.55 boundary, it may legitimately go either way)."""
        kw: dict[str, Any] = dict(NO_CAMERA_EFFECTS) if clean else {}
        img = render_meter(reading, seed=seed, **kw).image
        return encode_jpeg(img, 85)

    def device_body(self, name: str, **kw: Any) -> dict[str, Any]:
        return {
            "name": name,
            "roi": self.roi,
            "reference_jpeg_b64": base64.b64encode(self.reference_jpeg).decode(),
            **kw,
        }


@pytest.fixture(scope="session")
def layout() -> Layout:
    ref, roi = render_reference(6, 1)
    return Layout(encode_jpeg(ref, 92), roi.to_dict())


@pytest.fixture(scope="session")
def gb_file() -> Path:
    root = Path(
        os.environ.get("GRIDLENS_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
    )
    f = root / "greenbutton" / "test_usage_data.xml"
    if not f.is_file():
        pytest.skip(f"Green Button sample not found at {f} (set GRIDLENS_DATA)")
    return f


@pytest.fixture
def api_env(db_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A server app on a fresh store with three users: ``client`` (TestClient), ``store``,
    ``settings`` and the Bearer headers ``admin``, ``operator`` and ``viewer``."""
    from fastapi.testclient import TestClient

    from gridlens.server.app import create_app
    from gridlens.server.settings import Settings
    from gridlens.store import Store

    settings = Settings(db=db_url, data_dir=str(tmp_path / "data"), log_requests=False)
    store = Store.open(db_url)
    _, _, admin = store.add_user("ada", role="admin")
    _, _, oper = store.add_user("otto", role="operator")
    _, _, view = store.add_user("vera", role="viewer")
    with TestClient(create_app(settings, store)) as client:
        yield {
            "client": client,
            "store": store,
            "settings": settings,
            "admin": {"Authorization": f"Bearer {admin}"},
            "operator": {"Authorization": f"Bearer {oper}"},
            "viewer": {"Authorization": f"Bearer {view}"},
        }
    store.close()
