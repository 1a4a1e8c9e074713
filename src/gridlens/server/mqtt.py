"""MQTT bridge of the AMI server: meter readings to Home Assistant, commands to devices.

The server reads a meter photo and hands the reading to :class:`MqttBridge`, which publishes it
the way AI-on-the-edge-device does, so Home Assistant's Energy dashboard picks it up through MQTT
discovery. The bridge also carries commands to devices that listen on MQTT and hands their
acknowledgements back to the server. It knows nothing about the database: the server composes it.

Topics (``{prefix}`` defaults to ``gridlens``; ``{dev}`` is the device's
:attr:`DeviceInfo.segment`, ``<id>-<slug>`` such as ``7-cellar_meter``: the database id makes
it unique even when two names slug alike; ``{node}`` is :meth:`MqttBridge.node_id`,
``<prefix>_<id>`` such as ``gridlens_7``, so two servers with different prefixes on one
broker never share a discovery topic or a Home Assistant ``unique_id``; every message is QoS 1)

=========================================================  ========  ============================
topic                                                      retained  payload
=========================================================  ========  ============================
``{prefix}/status``                                        yes       ``online`` on connect,
                                                                     ``offline`` on stop and as
                                                                     the last will
``{prefix}/{dev}/connection``                              yes       ``online`` / ``offline``
``{prefix}/{dev}/value``                                   yes       accepted value, plain number
``{prefix}/{dev}/raw``                                     yes       raw digit string
``{prefix}/{dev}/error``                                   yes       ``no error`` or the reason
``{prefix}/{dev}/rate``                                    yes       unit per hour, ``""`` unknown
``{prefix}/{dev}/timestamp``                               yes       ``captured_at`` (ISO 8601)
``{prefix}/{dev}/json``                                    yes       the whole reading as JSON
``{prefix}/{dev}/dial{k}``                                 yes       pointer dial ``k`` (1 = the
                                                                     largest factor), 0-9.9
``{prefix}/{dev}/command``                                 no        server -> device, JSON
``{prefix}/{dev}/ack``                                     no        device -> server, JSON
``{discovery_prefix}/sensor/{node}/{obj}/config``          yes       HA discovery, ``obj`` in
                                                                     ``value``, ``rate``,
                                                                     ``error``, ``dial{k}``
=========================================================  ========  ============================

The bridge hands every non-retained message on ``{prefix}/+/ack`` to the server, which decides
whether it is a valid ack (``gridlens.store.commands``); the bridge itself trusts no payload.
Broker credentials (``username``/``password``) and TLS (``tls``, ``cafile``) are options of
:class:`MqttBridge`; ``docs/broker.md`` shows the broker side (users and ACLs).

A rejected reading publishes only ``raw``, ``error`` and ``json``: never a value, so the retained
value (and Home Assistant's ``total_increasing`` statistics) only ever sees accepted readings.

Broker outages never reach the caller: publishing does not block and does not raise. QoS 1
messages published while disconnected wait in paho's in-memory queue (at most ``max_queued``,
newer ones are dropped and counted) and go out in order after the reconnect, which paho retries
with an exponential backoff between ``reconnect_delay`` bounds. On every (re)connect the bridge
publishes ``online`` on ``{prefix}/status``, re-subscribes to ``{prefix}/+/ack`` and re-publishes
the discovery configs and availability of every device it was told about, so a broker restarted
without persistence is repopulated. Commands are the exception: they are refused while
disconnected (a relay command delivered minutes late is worse than none; the server keeps it
pending and may retry).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["DeviceInfo", "MqttBridge", "device_id_of", "slugify"]

_SLUG_BAD = re.compile(r"[^a-z0-9_-]")
_SEGMENT = re.compile(r"^([1-9][0-9]{0,18})-")
_QOS = 1
_ONLINE = "online"
_OFFLINE = "offline"
_NO_ERROR = "no error"
#: Energy units Home Assistant accepts for ``device_class: energy``, with their power unit.
_ENERGY_TO_POWER = {"Wh": "W", "kWh": "kW", "MWh": "MW", "GWh": "GW"}

AckCallback = Callable[[str, Any], bool | None]


def slugify(name: str) -> str:
    """Turn a user-given device name into an MQTT topic segment.

    Parameters
    ----------
    name : str
        Device name as the user typed it.

    Returns
    -------
    str
        ``name`` lower-cased with every character outside ``[a-z0-9_-]`` replaced by ``_``
        (no collapsing, so the mapping is easy to predict). Empty for an empty name.

    Examples
    --------
    >>> slugify("Küche Zähler 2")
    'k_che_z_hler_2'
    """
    return _SLUG_BAD.sub("_", name.strip().lower())


def device_id_of(segment: str) -> int | None:
    """The device id at the head of a topic segment (``"7-cellar"`` -> 7), else ``None``."""
    m = _SEGMENT.match(segment)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class DeviceInfo:
    """What the bridge needs to know about one meter device.

    Attributes
    ----------
    device_id : int
        Database id: the head of the topic segment, so no two devices share topics.
    name : str
        User-given name; :func:`slugify` of it follows the id in the topic segment.
    unit : str
        Unit of the meter value (``kWh`` by default). Energy units (Wh, kWh, MWh, GWh) get
        ``device_class: energy`` and a power rate sensor; other units get no device class and
        a ``{unit}/h`` rate.
    dials : tuple of float
        The factors of the meter's pointer dials, largest first (a sensor each).
    """

    device_id: int
    name: str
    unit: str = "kWh"
    dials: tuple[float, ...] = ()

    @property
    def slug(self) -> str:
        """:func:`slugify` of the name (``meter`` when the name slugs to nothing)."""
        slug = slugify(self.name)
        return slug if slug.strip("_") else "meter"

    @property
    def segment(self) -> str:
        """Topic segment of this device: ``<device_id>-<slug>``, unique per server."""
        return f"{self.device_id}-{self.slug}"


def _number_text(value: Any) -> str | None:
    """Plain number text for an MQTT payload, ``None`` when ``value`` is not a finite number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return repr(number)


def _jsonable(value: Any) -> Any:
    """Make ``value`` JSON-serialisable (datetimes as ISO text, numpy scalars as Python)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _check_prefix(prefix: str, what: str) -> str:
    prefix = prefix.strip("/")
    if not prefix or any(c in prefix for c in "+#\0"):
        raise ValueError(f"invalid MQTT {what} {prefix!r}: empty or contains a wildcard")
    return prefix


class MqttBridge:
    """Publish meter readings to an MQTT broker and carry commands to devices.

    Parameters
    ----------
    host, port : str, int
        Broker address.
    prefix : str
        Root of the gridlens topics.
    discovery_prefix : str
        Home Assistant discovery prefix.
    client_id : str, optional
        MQTT client id; ``gridlens-<random>`` when omitted (two servers never kick each other).
    username, password : str, optional
        Broker credentials.
    tls : bool
        Connect over TLS, checking the broker's certificate and host name.
    cafile : str, optional
        PEM file of the certificate authority that signed the broker's certificate (for a
        private CA or a self-signed broker); the system's CAs when omitted.
    on_ack : callable, optional
        ``on_ack(segment, payload)`` is called on the network thread for every message that
        is not retained on ``{prefix}/{segment}/ack``. ``payload`` is the decoded JSON, or
        ``None`` when it is not JSON; nothing about it is checked here. It returns whether
        the ack was taken (``False`` counts it in ``stats["acks_refused"]``). Exceptions it
        raises are logged and swallowed. It must not block for long.
    max_queued : int
        Most QoS 1 messages kept (queued or in flight) while the broker is away; further
        publishes are dropped and counted in ``stats["dropped"]``.
    logger : logging.Logger, optional
        Where to log; ``gridlens.server.mqtt`` by default.
    reconnect_delay : tuple of int
        ``(min, max)`` seconds of the exponential reconnect backoff.
    keepalive : int
        MQTT keepalive in seconds.

    Notes
    -----
    Thread safety: every public method may be called from any thread. Nothing here raises
    because the broker is down; :meth:`start` only raises for a broken configuration.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        prefix: str = "gridlens",
        discovery_prefix: str = "homeassistant",
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        cafile: str | None = None,
        on_ack: AckCallback | None = None,
        max_queued: int = 100_000,
        logger: logging.Logger | None = None,
        reconnect_delay: tuple[int, int] = (1, 30),
        keepalive: int = 30,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        lo, hi = reconnect_delay
        if not 0 < lo <= hi:
            raise ValueError(f"reconnect_delay must be 0 < min <= max, got {reconnect_delay}")
        self.host = host
        self.port = port
        self.prefix = _check_prefix(prefix, "prefix")
        self.discovery_prefix = _check_prefix(discovery_prefix, "discovery prefix")
        self.status_topic = f"{self.prefix}/status"
        self._on_ack = on_ack
        self._log = logger or logging.getLogger(__name__)
        self._keepalive = keepalive

        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"gridlens-{uuid.uuid4().hex[:12]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self._client.suppress_exceptions = True
        self._client.enable_logger(self._log.getChild("paho"))
        if username is not None:
            self._client.username_pw_set(username, password)
        elif password is not None:
            raise ValueError("an MQTT password needs a user name")
        self.tls = tls or cafile is not None
        if self.tls:
            context = ssl.create_default_context(cafile=cafile)  # verifies cert and host name
            self._client.tls_set_context(context)
        self._client.max_queued_messages_set(max_queued)
        self._client.reconnect_delay_set(lo, hi)
        self._client.will_set(self.status_topic, _OFFLINE, qos=_QOS, retain=True)
        self._client.on_connect = self._handle_connect
        self._client.on_connect_fail = self._handle_connect_fail
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_publish = self._handle_publish
        self._client.on_message = self._handle_message

        # Never call into paho while holding _lock or _cond: paho calls our callbacks while
        # holding its own locks, and the reverse order would deadlock.
        self._lock = threading.Lock()
        self._connected = False
        self._started = False
        self._connects = 0
        self._connect_failures = 0
        self._devices: dict[int, DeviceInfo] = {}
        self._availability: dict[int, tuple[DeviceInfo, bool]] = {}
        self._retained: dict[str, str] = {}  # retained messages of publish(), by topic
        self._acks = 0
        self._acks_refused = 0
        self._cond = threading.Condition()
        self._handed = 0  # QoS 1 messages handed to paho
        self._acked = 0  # ... of which the broker acknowledged
        self._dropped = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background and keep reconnecting; returns at once.

        Never raises because the broker is unreachable (not even for an unknown host name):
        the network thread retries with the configured backoff.
        """
        with self._lock:
            if self._started:
                return
            self._started = True
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self._client.loop_start()
        self._log.info("MQTT bridge connecting to %s:%d", self.host, self.port)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` on ``{prefix}/status``, flush, disconnect and stop the thread.

        Parameters
        ----------
        timeout : float
            Seconds to wait for outstanding messages (including the ``offline`` status) to be
            acknowledged before disconnecting; what is still queued then is lost (the readings
            themselves are in the database).
        """
        with self._lock:
            if not self._started:
                return
            self._started = False
            connected = self._connected
        if connected:
            self._publish(self.status_topic, _OFFLINE, retain=True)
            if not self.wait_idle(timeout):
                self._log.warning("MQTT bridge stopping with %d messages unsent", self._queued())
        try:
            self._client.disconnect()
        except Exception:  # never let shutdown fail on a socket error
            self._log.exception("MQTT disconnect failed")
        self._client.loop_stop()
        with self._lock:
            self._connected = False

    def __enter__(self) -> MqttBridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        """Whether the bridge currently has a session with the broker."""
        with self._lock:
            return self._connected

    @property
    def stats(self) -> dict[str, int]:
        """Counters for ``/metrics``.

        Returns
        -------
        dict of str to int
            ``published`` (messages the broker acknowledged), ``queued`` (handed to the client,
            not yet acknowledged), ``dropped`` (refused because ``max_queued`` was reached),
            ``reconnects`` (successful connects after the first), ``connected`` (0 or 1),
            ``acks`` (acks the server took) and ``acks_refused`` (messages on an ack topic it
            refused).
        """
        with self._cond:
            published, queued, dropped = self._acked, self._queued(), self._dropped
        with self._lock:
            reconnects, connected = max(0, self._connects - 1), int(self._connected)
            acks, refused = self._acks, self._acks_refused
        return {
            "published": published,
            "queued": queued,
            "dropped": dropped,
            "reconnects": reconnects,
            "connected": connected,
            "acks": acks,
            "acks_refused": refused,
        }

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queued QoS 1 message was acknowledged by the broker.

        Parameters
        ----------
        timeout : float
            Seconds to wait at most.

        Returns
        -------
        bool
            True when nothing is outstanding, False on timeout.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._queued() == 0, timeout=timeout)

    # ------------------------------------------------------------------ publishing

    def topic(self, device: DeviceInfo, leaf: str) -> str:
        """Topic ``{prefix}/{segment}/{leaf}`` of ``device``."""
        return f"{self.prefix}/{device.segment}/{leaf}"

    def node_id(self, device: DeviceInfo) -> str:
        """Home Assistant node id of ``device``: ``<prefix>_<device_id>``.

        The prefix is taken as it is when it is made of ``[a-z0-9_-]`` only; otherwise it is
        slugged and a short hash of it appended, so that two different prefixes never give
        the same node id. It holds no name: renaming a device keeps its entities.
        """
        node = slugify(self.prefix.replace("/", "_"))
        if node != self.prefix:
            node += "_" + hashlib.sha256(self.prefix.encode()).hexdigest()[:6]
        return f"{node}_{device.device_id}"

    def discovery_topic(self, device: DeviceInfo, obj: str) -> str:
        """Home Assistant discovery config topic of sensor ``obj`` of ``device``."""
        return f"{self.discovery_prefix}/sensor/{self.node_id(device)}/{obj}/config"

    def discovery_configs(self, device: DeviceInfo) -> dict[str, dict[str, Any]]:
        """Home Assistant MQTT discovery configs of ``device``, keyed by discovery topic.

        Three sensors: ``value`` (energy, ``total_increasing``), ``rate`` (power,
        ``measurement``) and ``error`` (diagnostic). Each carries ``unique_id``, both
        ``object_id`` (HA < 2025.10) and ``default_entity_id`` (HA >= 2025.10, the only one
        honoured since 2026.4), an availability list (device connection and bridge status,
        ``availability_mode: all``) and the device block. ``unique_id`` and the device
        identifier are built on :meth:`node_id` (prefix and device id); the entity id also
        carries the name's slug, for people.
        """
        node = self.node_id(device)
        availability = [
            {"topic": t, "payload_available": _ONLINE, "payload_not_available": _OFFLINE}
            for t in (self.topic(device, "connection"), self.status_topic)
        ]
        block = {
            "identifiers": [node],
            "name": device.name,
            "manufacturer": "gridlens",
            "model": "meter retrofit",
        }
        power_unit = _ENERGY_TO_POWER.get(device.unit)
        value: dict[str, Any] = {"state_class": "total_increasing"}
        rate: dict[str, Any] = {"state_class": "measurement"}
        if power_unit is not None:
            value["device_class"] = "energy"
            rate["device_class"] = "power"
        value["unit_of_measurement"] = device.unit
        rate["unit_of_measurement"] = power_unit or f"{device.unit}/h"
        sensors: dict[str, tuple[str, dict[str, Any]]] = {
            "value": ("Value", value),
            "rate": ("Rate", rate),
            "error": ("Error", {"entity_category": "diagnostic"}),
        }
        for k, factor in enumerate(device.dials, start=1):  # the pointer position, 0-9.9
            sensors[f"dial{k}"] = (f"Dial x{factor:g}", {"state_class": "measurement"})
        configs: dict[str, dict[str, Any]] = {}
        for obj, (name, extra) in sensors.items():
            unique_id = f"{node}_{obj}"
            object_id = f"{node}_{device.slug}_{obj}".replace("-", "_")  # [a-z0-9_] only
            configs[self.discovery_topic(device, obj)] = {
                "name": name,
                "unique_id": unique_id,
                "object_id": object_id,
                "default_entity_id": f"sensor.{object_id}",
                "state_topic": self.topic(device, obj),
                **extra,
                "availability": availability,
                "availability_mode": "all",
                "device": block,
                "origin": {"name": "gridlens"},
            }
        return configs

    def publish_discovery(self, device: DeviceInfo) -> None:
        """Publish (retained) the Home Assistant discovery configs of ``device``.

        The device is remembered and its configs are re-published on every (re)connect. While
        disconnected nothing is queued: the next connect publishes them.
        """
        with self._lock:
            self._devices[device.device_id] = device
            connected = self._connected
        if connected:
            self._publish_discovery(device)

    def remove_discovery(self, device: DeviceInfo) -> None:
        """Forget ``device`` and clear its retained discovery configs (HA removes the entities)."""
        with self._lock:
            self._devices.pop(device.device_id, None)
            self._availability.pop(device.device_id, None)
        for topic in self.discovery_configs(device):
            self._publish(topic, "", retain=True)

    def publish(self, topic: str, payload: str, retain: bool = False) -> bool:
        """Publish one QoS 1 message (e.g. anomaly notifications, ``server/anomaly_notify.py``);
        never raises, never blocks on the network. A retained one is published again after
        every reconnect, as the device discovery is (a broker restarted without persistence
        has lost it); an empty retained payload clears the topic and is forgotten."""
        if retain:
            with self._lock:
                if payload:
                    self._retained[topic] = payload
                else:
                    self._retained.pop(topic, None)
        return self._publish(topic, payload, retain)

    def publish_availability(self, device: DeviceInfo, online: bool) -> None:
        """Publish (retained) ``online``/``offline`` on ``{prefix}/{segment}/connection``.

        Home Assistant shows the device's entities as unavailable until ``online`` was
        published here at least once (``availability_mode: all``). The last state is
        re-published on every (re)connect.
        """
        with self._lock:
            self._availability[device.device_id] = (device, online)
            connected = self._connected
        if connected:
            self._publish(self.topic(device, "connection"), _ONLINE if online else _OFFLINE, True)

    def publish_reading(self, device: DeviceInfo, reading: Mapping[str, Any]) -> None:
        """Publish one reading on the ``{prefix}/{segment}/...`` topics (all QoS 1, retained).

        Parameters
        ----------
        device : DeviceInfo
            The meter.
        reading : mapping
            ``status`` (``"ok"`` or ``"rejected"``), ``value``, ``raw``, ``reason``,
            ``captured_at`` (ISO text or datetime), ``rate_per_h`` and anything else (all of it
            goes to ``/json``). Only an ``ok`` reading with a finite value publishes
            ``value``, ``rate`` and ``timestamp``; otherwise ``raw``, ``error`` and ``json``.
        """
        value = _number_text(reading.get("value"))
        if reading.get("status") != "ok":
            value = None
        raw = reading.get("raw")
        self._publish(self.topic(device, "raw"), "" if raw is None else str(raw), True)
        if value is not None:
            error = _NO_ERROR
        else:
            error = str(reading.get("reason") or reading.get("status") or "no value")
        self._publish(self.topic(device, "error"), error, True)
        if value is not None:
            rate = _number_text(reading.get("rate_per_h"))
            self._publish(self.topic(device, "value"), value, True)
            self._publish(self.topic(device, "rate"), rate or "", True)
            captured = reading.get("captured_at")
            if captured is not None:
                stamp = _jsonable(captured)
                self._publish(self.topic(device, "timestamp"), str(stamp), True)
        dials = reading.get("dials") or []
        for k, dial in enumerate(dials[: len(device.dials)], start=1):
            pos = _number_text(dial.get("value") if isinstance(dial, Mapping) else None)
            self._publish(self.topic(device, f"dial{k}"), pos or "", True)
        self._publish(self.topic(device, "json"), json.dumps(_jsonable(reading)), True)

    def publish_command(self, device: DeviceInfo, command: Mapping[str, Any]) -> bool:
        """Send a command to a device on ``{prefix}/{segment}/command`` (JSON, QoS 1, not
        retained).

        Parameters
        ----------
        device : DeviceInfo
            Target device.
        command : mapping
            E.g. ``{"id": 17, "device_id": 7, "action": "relay", "state": "off", "value":
            None, "expires_at": "...", "nonce": "...", "sig": "..."}`` (the server's
            composition, see ``gridlens.store.commands``); the device answers on
            ``{prefix}/{segment}/ack`` with ``{"id": 17, "nonce": "...", "ok": true,
            "detail": "...", "sig": "..."}``.

        Returns
        -------
        bool
            True when handed to the connected client. False while disconnected (commands are
            not queued across outages) or when the payload cannot be encoded.
        """
        if not self.connected:
            return False
        try:
            payload = json.dumps(_jsonable(command))
        except (TypeError, ValueError):
            self._log.exception("cannot encode MQTT command for %s", device.segment)
            return False
        return self._publish(self.topic(device, "command"), payload, retain=False)

    # ------------------------------------------------------------------ internals

    def _queued(self) -> int:
        return max(0, self._handed - self._acked)

    def _publish(self, topic: str, payload: str, retain: bool) -> bool:
        """Hand one QoS 1 message to paho; never raises, never blocks on the network."""
        try:
            info = self._client.publish(topic, payload, qos=_QOS, retain=retain)
        except Exception:
            self._log.exception("MQTT publish to %s failed", topic)
            return False
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            with self._cond:
                self._handed += 1
            return True
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            with self._cond:
                self._dropped += 1
                first = self._dropped == 1
            (self._log.warning if first else self._log.debug)(
                "MQTT queue full, dropping message to %s", topic
            )
        else:
            self._log.warning("MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        return False

    def _publish_discovery(self, device: DeviceInfo) -> None:
        for topic, config in self.discovery_configs(device).items():
            self._publish(topic, json.dumps(config), retain=True)

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._log.error("MQTT broker %s:%d refused: %s", self.host, self.port, reason_code)
            return
        with self._lock:
            self._connected = True
            self._connects += 1
            self._connect_failures = 0
            devices = list(self._devices.values())
            availability = list(self._availability.values())
            retained = list(self._retained.items())
        self._log.info("MQTT bridge connected to %s:%d", self.host, self.port)
        self._publish(self.status_topic, _ONLINE, retain=True)
        client.subscribe(f"{self.prefix}/+/ack", qos=_QOS)
        for device in devices:
            self._publish_discovery(device)
        for device, online in availability:
            self._publish(self.topic(device, "connection"), _ONLINE if online else _OFFLINE, True)
        for topic, payload in retained:
            self._publish(topic, payload, True)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        with self._lock:
            self._connect_failures += 1
            first = self._connect_failures == 1
        (self._log.warning if first else self._log.debug)(
            "MQTT broker %s:%d unreachable, retrying", self.host, self.port
        )

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            stopping = not self._started
        if was_connected and not stopping:
            self._log.warning("MQTT connection lost (%s), reconnecting", reason_code)

    def _handle_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._cond:
            self._acked += 1
            self._cond.notify_all()

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._dispatch_ack(msg)
        except Exception:  # the network thread must survive anything a device sends
            self._log.exception("error handling MQTT message on %r", msg.topic)

    def _dispatch_ack(self, msg: mqtt.MQTTMessage) -> None:
        head, tail = f"{self.prefix}/", "/ack"
        topic = msg.topic
        if not (topic.startswith(head) and topic.endswith(tail)):
            return
        segment = topic[len(head) : -len(tail)]
        if msg.retain:  # a stale ack left retained on the broker, not an answer
            self._log.debug("ignoring retained ack on %s", topic)
            return
        payload: Any
        try:
            payload = json.loads(msg.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            payload = None
        if self._on_ack is None:
            return
        try:
            taken = self._on_ack(segment, payload)
        except Exception:
            self._log.exception("on_ack failed for %s %r", segment, msg.payload[:200])
            taken = False
        with self._lock:
            if taken is False:
                self._acks_refused += 1
            else:
                self._acks += 1
