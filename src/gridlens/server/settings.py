"""Server settings: command-line options, or ``GRIDLENS_*`` environment variables for workers."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gridlens.errors import ParameterError
from gridlens.store.db import normalize_url


@dataclass(frozen=True)
class Settings:
    """Everything a server process needs; nothing else is kept between requests.

    Attributes
    ----------
    db : database URL (SQLite file or PostgreSQL).
    data_dir : where photos are kept (``images/<device>/<day>/<capture>.jpg``).
    max_upload_bytes : larger photos get HTTP 413.
    image_retention_days : photos older than this are deleted (0 keeps them forever);
        the readings stay.
    mqtt_host : broker to publish readings to; empty disables MQTT.
    mqtt_port : broker port (1883 plain, 8883 is the usual TLS port).
    mqtt_prefix : root of the gridlens topics.
    mqtt_user : broker user name; empty connects without credentials.
    mqtt_password_file : file whose first line is the broker password (never the password
        itself: settings travel to worker processes in their environment).
    mqtt_tls : connect over TLS, checking the broker's certificate and host name.
    mqtt_cafile : PEM file of the CA that signed the broker's certificate (implies TLS);
        empty: the system's CAs.
    metrics_dir : where each worker process writes its metrics snapshot, so ``/metrics``
        sums the workers of one server (``gridlens serve --workers N`` sets it); empty:
        ``/metrics`` shows the answering process only.
    metrics_flush_s : how often a worker writes its snapshot [s].
    pull : run the puller, which fetches the photos of cameras registered with a pull URL
        (each due photo is fetched by one process of all those sharing the database).
    pull_tick_s : how often the puller looks for due cameras [s].
    pull_timeout_s : the longest one fetch may take, connecting included [s].
    pull_concurrency : fetches at a time per process.
    anomaly_every_s : how often each process scores every meter for the anomaly page [s]
        (0: never; ``POST /api/v1/anomaly-ranking/rescore`` still does).
    anomaly_min_score : detected runs below this score are not events.
    anomaly_webhook_url : POST every new anomaly event here as JSON (empty: no webhook).
    """

    db: str = "sqlite:///gridlens.db"
    data_dir: str = "gridlens-data"
    max_upload_bytes: int = 2 * 1024 * 1024
    image_retention_days: float = 7.0
    command_ttl_s: float = 600.0
    session_ttl_s: float = 12 * 3600.0
    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_prefix: str = "gridlens"
    mqtt_user: str = ""
    mqtt_password_file: str = ""
    mqtt_tls: bool = False
    mqtt_cafile: str = ""
    log_requests: bool = True
    metrics_dir: str = ""
    metrics_flush_s: float = 5.0
    pull: bool = True
    pull_tick_s: float = 1.0
    pull_timeout_s: float = 10.0
    pull_concurrency: int = 4
    anomaly_every_s: float = 900.0
    anomaly_min_score: float = 8.0
    anomaly_webhook_url: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "db", normalize_url(self.db))
        if self.max_upload_bytes < 1024:
            raise ParameterError(
                f"max upload size must be >= 1024 bytes, got {self.max_upload_bytes}"
            )
        if not 0.1 <= self.metrics_flush_s <= 3600:
            raise ParameterError(
                f"metrics flush interval must be in [0.1, 3600] s, got {self.metrics_flush_s}"
            )
        if not 0.05 <= self.pull_tick_s <= 60:
            raise ParameterError(f"pull tick must be in [0.05, 60] s, got {self.pull_tick_s}")
        if not 0.1 <= self.pull_timeout_s <= 300:
            raise ParameterError(f"pull timeout must be in [0.1, 300] s, got {self.pull_timeout_s}")
        if not 1 <= self.pull_concurrency <= 256:
            raise ParameterError(
                f"pull concurrency must be in [1, 256], got {self.pull_concurrency}"
            )
        if self.anomaly_every_s != 0 and not 10 <= self.anomaly_every_s <= 86400:
            raise ParameterError(
                "anomaly scoring interval must be 0 or in [10, 86400] s, "
                f"got {self.anomaly_every_s}"
            )
        if not 0 <= self.anomaly_min_score < 1e6:
            raise ParameterError(f"anomaly min score must be >= 0, got {self.anomaly_min_score}")
        if self.anomaly_webhook_url and not self.anomaly_webhook_url.startswith(
            ("http://", "https://")
        ):
            raise ParameterError(
                f"anomaly webhook URL must start with http:// or https://, got "
                f"{self.anomaly_webhook_url[:80]!r}"
            )
        if self.image_retention_days < 0:
            raise ParameterError("image retention must be >= 0 days (0 keeps photos forever)")
        if self.mqtt_cafile:
            object.__setattr__(self, "mqtt_tls", True)
        self._check_mqtt()

    def _check_mqtt(self) -> None:
        problems = []
        if not 0 < self.mqtt_port < 65536:
            problems.append(f"mqtt_port must be in [1, 65535], got {self.mqtt_port}")
        if self.mqtt_password_file and not self.mqtt_user:
            problems.append("mqtt_password_file needs mqtt_user")
        for name in ("mqtt_password_file", "mqtt_cafile"):
            path = getattr(self, name)
            if path and not os.access(path, os.R_OK):
                problems.append(f"{name} {path!r} is not a readable file")
        if problems:
            raise ParameterError("; ".join(problems))

    def mqtt_password(self) -> str | None:
        """The broker password: the first line of ``mqtt_password_file`` (``None`` without).

        Raises
        ------
        ParameterError
            When the file cannot be read.
        """
        if not self.mqtt_password_file:
            return None
        try:
            with open(self.mqtt_password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ParameterError(
                f"mqtt_password_file {self.mqtt_password_file!r} cannot be read: {exc}"
            ) from None

    @property
    def images(self) -> Path:
        return Path(self.data_dir) / "images"

    def to_env(self) -> dict[str, str]:
        """The environment that makes :meth:`from_env` rebuild these settings (for workers)."""
        return {f"GRIDLENS_{k.upper()}": str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if env is None else env
        kw: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"GRIDLENS_{f.name.upper()}")
            if raw is None:
                continue
            default = f.default
            if isinstance(default, bool):
                kw[f.name] = raw.lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                kw[f.name] = int(raw)
            elif isinstance(default, float):
                kw[f.name] = float(raw)
            else:
                kw[f.name] = raw
        return cls(**kw)
