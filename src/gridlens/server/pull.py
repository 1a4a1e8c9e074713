"""The puller: fetch photos from cameras that serve snapshots, and ingest them like uploads.

Some cameras are easier to ask than to program: the stock ESP32-CAM ``CameraWebServer``
(``http://cam/capture``), AI-on-the-edge-device (``/img_tmp/raw.jpg``,
``/capture_with_flashlight``), ESPHome or IP-camera snapshot URLs. A device registered with
a pull URL is fetched every ``interval_s`` by one of the server processes sharing the
database (the lease in :mod:`gridlens.store.pulls`), and the photo goes through
:func:`gridlens.server.ingest.ingest` exactly as an upload does (plausibility against the
meter's history, one reading per capture id, the photo on disk, MQTT).

Fetching runs in a small thread pool per process (blocking httpx with a total deadline and
a size cap), never on the event loop. Failures (timeout, refused connection, HTTP 401/404/5xx,
not a JPEG, too large, unreadable) are counted per device in the database, with the last
error's text and time. The camera's credentials are sent to the camera only: they appear in
no log line, page or JSON document, and are masked in error texts.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx

from gridlens import __version__
from gridlens.errors import InputError, NotFoundError
from gridlens.server.ingest import ReaderCache, ingest
from gridlens.server.metrics import Metrics
from gridlens.server.settings import Settings
from gridlens.store.models import Device
from gridlens.store.pulls import Claim, claim_due, finish
from gridlens.store.repo import Store
from gridlens.store.timeutil import iso

__all__ = ["FetchError", "Puller", "fetch_snapshot"]

log = logging.getLogger("gridlens.pull")

Publish = Callable[[Device, dict[str, Any]], None]


class FetchError(Exception):
    """A camera gave no photo; ``kind`` is its class in ``/metrics`` (``timeout``,
    ``connect``, ``http``, ``too_large``, ``not_jpeg``)."""

    def __init__(self, kind: str, message: str, *, challenge: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.challenge = challenge  # the WWW-Authenticate header of a 401


def _http_error(r: httpx.Response, has_auth: bool) -> FetchError:
    what = f"HTTP {r.status_code} {r.reason_phrase}".strip()
    if r.status_code in (401, 403):
        hint = "the camera refused the credentials" if has_auth else "the camera wants a login"
        challenge = r.headers.get("www-authenticate", "")
        return FetchError("http", f"{what}: {hint} (pull_auth 'user:pass')", challenge=challenge)
    if r.status_code == 404:
        return FetchError("http", f"{what}: no snapshot at this path (check pull_url)")
    return FetchError("http", what)


def _auth(auth: str | None, digest: bool) -> httpx.Auth | None:
    if not auth:
        return None
    user, _, password = auth.partition(":")
    return httpx.DigestAuth(user, password) if digest else httpx.BasicAuth(user, password)


def _get(
    client: httpx.Client, url: str, auth: httpx.Auth | None, deadline: float, cap: int
) -> bytes:
    with client.stream("GET", url, auth=auth) as r:
        if r.status_code >= 400:
            raise _http_error(r, auth is not None)
        declared = r.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(
                "too_large", f"the photo is {int(declared):,} bytes; the limit is {cap:,}"
            )
        buf = bytearray()
        for chunk in r.iter_bytes():
            buf += chunk
            if len(buf) > cap:
                raise FetchError("too_large", f"the photo is over the {cap:,}-byte limit")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the photo did not arrive in time")
        body = bytes(buf)
        if len(body) < 4 or body[:3] != b"\xff\xd8\xff":
            ctype = r.headers.get("content-type") or "no Content-Type"
            raise FetchError(
                "not_jpeg", f"not a JPEG photo: the camera sent {ctype}, {len(body):,} bytes"
            )
        return body


def fetch_snapshot(
    url: str,
    auth: str | None = None,
    *,
    timeout_s: float = 10.0,
    max_bytes: int = 2 * 1024 * 1024,
    digest: bool = False,
) -> tuple[bytes, bool]:
    """GET one JPEG snapshot; returns (photo, whether digest authentication was used).

    Parameters
    ----------
    url : str
        The snapshot URL (http or https).
    auth : str or None
        ``"user:pass"``: HTTP basic authentication, or digest (RFC 7616) when ``digest`` is
        true or the camera answers 401 with a Digest challenge.
    timeout_s : float
        The longest the whole fetch may take, connecting included. [s]
    max_bytes : int
        Larger photos are refused (read no further). [bytes]

    Raises
    ------
    FetchError
        No JPEG photo within ``timeout_s`` and ``max_bytes``.
    """
    deadline = time.monotonic() + timeout_s
    headers = {"User-Agent": f"gridlens/{__version__}", "Accept": "image/jpeg,image/*"}
    try:
        with httpx.Client(
            timeout=timeout_s, follow_redirects=True, max_redirects=3, headers=headers
        ) as client:
            try:
                return _get(client, url, _auth(auth, digest), deadline, max_bytes), digest
            except FetchError as exc:
                # a camera that wants digest authentication: ask it once more that way
                if digest or not auth or "digest" not in exc.challenge.lower():
                    raise
            return _get(client, url, _auth(auth, True), deadline, max_bytes), True
    except httpx.TimeoutException:
        raise FetchError("timeout", f"no photo within {timeout_s:g} s (timeout)") from None
    except httpx.ConnectError as exc:
        raise FetchError("connect", f"cannot connect: {exc}") from None
    except httpx.HTTPError as exc:
        raise FetchError("http", f"{type(exc).__name__}: {exc}") from None


def _owner() -> str:
    """This process's name in the lease: host, pid and a random tag (pids are reused)."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}:{secrets.token_hex(3)}"


def _masked(text: str, auth: str | None) -> str:
    """``text`` with the camera's password (and user) replaced by ``***``."""
    if auth:
        user, _, password = auth.partition(":")
        for secret in (password, user):
            if len(secret) >= 3:
                text = text.replace(secret, "***")
    return text


class Puller:
    """Fetches due cameras for one server process and ingests their photos.

    Parameters
    ----------
    store : Store
        The database shared with the other server processes (it holds the leases).
    settings : Settings
        ``pull_tick_s``, ``pull_timeout_s``, ``pull_concurrency``, ``max_upload_bytes`` and
        ``images`` are used.
    readers : ReaderCache
        The process's meter readers (shared with the upload path).
    metrics : Metrics
        Counts ``gridlens_pulls_total{status}``, ``gridlens_pull_errors_total{kind}`` and the
        ``pull`` latency histogram.
    publish : callable
        ``publish(device, reading)`` for every new reading (MQTT), as uploads do.
    owner : str, optional
        The lease owner's name (default: host, pid and a random tag).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        readers: ReaderCache,
        metrics: Metrics,
        publish: Publish,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.readers = readers
        self.metrics = metrics
        self.publish = publish
        self.owner = owner or _owner()
        self._pool = ThreadPoolExecutor(settings.pull_concurrency, thread_name_prefix="gl-pull")
        self._lock = threading.Lock()
        self._busy = 0
        self._digest: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease_s(self) -> float:
        """How long a claimed camera stays this process's: a fetch, its reading and storing,
        with room to spare. [s]"""
        return 2 * self.settings.pull_timeout_s + 60.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gl-puller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming, and wait for the fetches under way (each ends within its timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the database is away: try again next tick
                log.warning("pull round failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._stop.wait(self.settings.pull_tick_s)

    def run_once(self, now: float | None = None) -> list[Future[str]]:
        """Claim the cameras due at ``now`` (as many as there are free fetch slots) and start
        fetching them; returns the fetches (each result is the reading's status, or
        ``"error"``)."""
        now = time.time() if now is None else now
        with self._lock:
            free = self.settings.pull_concurrency - self._busy
        claims = claim_due(self.store, self.owner, now=now, lease_s=self.lease_s, limit=free)
        with self._lock:
            self._busy += len(claims)
        return [self._pool.submit(self._pull, c) for c in claims]

    def _pull(self, claim: Claim) -> str:
        try:
            return self.pull(claim)
        finally:
            with self._lock:
                self._busy -= 1

    def pull(self, claim: Claim) -> str:
        """Fetch one claimed camera, ingest its photo, count the outcome and release the
        lease; returns the reading's status (``ok``, ``rejected``, ``duplicate``) or
        ``"error"``."""
        t0 = time.perf_counter()
        error: str | None = None
        status = "error"
        try:
            started = time.time()
            body = self._fetch(claim)
            dev = self.store.device_cached(claim.device_id)
            doc, dup = ingest(
                self.store,
                self.readers,
                dev,
                body,
                images=self.settings.images,
                max_bytes=self.settings.max_upload_bytes,
                capture_id=claim.capture_id,
                captured_at=iso(started),
            )
            status = "duplicate" if dup else str(doc["reading"]["status"])
            if not dup:
                self.publish(dev, doc["reading"])
        except FetchError as exc:
            error, kind = str(exc), exc.kind
        except NotFoundError as exc:  # the device was removed meanwhile
            error, kind = str(exc), "gone"
        except InputError as exc:
            error, kind = f"the photo could not be read: {exc}", "unreadable"
        except Exception as exc:
            log.exception("pull failed", extra={"device": claim.device_id})
            error, kind = f"internal error: {type(exc).__name__}", "internal"
        dt = time.perf_counter() - t0
        if error is not None:
            error = _masked(error, claim.auth)
            self.metrics.inc("gridlens_pull_errors_total", kind=kind)
            log.warning("pull failed", extra={"device": claim.device_id, "error": error})
        self.metrics.inc("gridlens_pulls_total", status=status)
        self.metrics.observe("pull", dt)
        try:
            finish(self.store, claim, self.owner, now=time.time(), error=error)
        except Exception as exc:  # the lease runs out on its own
            log.warning("pull not recorded", extra={"device": claim.device_id, "error": str(exc)})
        return status

    def _fetch(self, claim: Claim) -> bytes:
        body, digest = fetch_snapshot(
            claim.url,
            claim.auth,
            timeout_s=self.settings.pull_timeout_s,
            max_bytes=self.settings.max_upload_bytes,
            digest=claim.device_id in self._digest,
        )
        if digest:
            self._digest.add(claim.device_id)
        return body
