# ruff: noqa: UP031, SIM105  (MicroPython: %-formatting everywhere, no contextlib)
"""gridlens meter camera: ESP32-CAM client for MicroPython (see ../README.md).

Every ``interval_s`` the camera takes a JPEG of the meter and uploads it to the gridlens
server::

    POST {server}/api/v1/devices/{device_id}/images
    Authorization: Bearer <token>
    Content-Type: image/jpeg
    X-Capture-Id: <boot id>-<counter>
    X-Captured-At: 2026-11-21T10:00:00Z

Photos wait in a bounded queue on flash (or the SD card) until the server has answered 200
or 201, so a photo whose answer was lost is sent again with the same capture id and the
server reports it as a duplicate. Commands (relay, flash, capture, interval) arrive in every
upload answer, from ``GET .../commands`` and optionally over MQTT; each is executed once and
acknowledged.

Every command carries a nonce, issued by the server with it. A command is executed only
once per nonce (one delivered again is acknowledged again, not executed again), and only
before it expires. Over MQTT, where anyone allowed on the broker might publish, a command
counts only when it is not retained, came on this device's own topic, names this device and
carries the server's signature: HMAC-SHA256 keyed with the SHA-256 of this device's token,
which only the server and the device know. Acks repeat the nonce and are signed the same way.

Needs a MicroPython firmware with a camera module: either the ``camera.init/capture``
functions of lemariva/micropython-camera-driver (and its forks) or the ``camera.Camera``
class of cnadler86/micropython-camera-API. Configuration: ``config.json`` next to this file
(see ``config.example.json``).

Under CPython (``python main.py --once``) it runs against a server with a JPEG file in
place of the camera (``"fake_jpeg"`` in the config), to try the protocol on a PC.
"""

import binascii
import hashlib
import json
import os
import sys
import time

try:  # MicroPython on the ESP32
    import machine
    import network
    import ntptime

    try:
        import requests
    except ImportError:
        import urequests as requests
    MICROPYTHON = True
except ImportError:  # CPython: a dry run on a PC
    machine = network = ntptime = requests = None
    MICROPYTHON = False

try:
    import camera
except ImportError:
    camera = None

try:
    from umqtt.simple import MQTTClient
except ImportError:
    MQTTClient = None

try:
    import esp32
except ImportError:
    esp32 = None

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
MAX_BYTES = 2_000_000
MIN_INTERVAL, MAX_INTERVAL = 10, 86400
NTP_EVERY_S = 6 * 3600
KEEP_DONE = 32  # remembered executed command nonces (a redelivered command is only acked)

DEFAULTS = {
    "wifi_ssid": "",
    "wifi_password": "",
    "server": "http://192.168.1.10:8000",
    "device_id": 0,
    "token": "",
    "name": "",
    "interval_s": 300,
    "relay_pin": 13,
    "relay_active_high": True,
    "flash_pin": 4,
    "flash": "on",
    "flash_ms": 150,
    "framesize": "VGA",
    "jpeg_quality": 12,
    "use_sd": False,
    "queue_max": 20,
    "ntp_host": "pool.ntp.org",
    "deep_sleep": False,
    "watchdog_s": 120,
    "http_timeout_s": 20,
    "mqtt_host": "",
    "mqtt_port": 1883,
    "mqtt_user": "",
    "mqtt_password": "",
    "mqtt_prefix": "gridlens",
    "mqtt_slug": "",
    "mqtt_tls": False,
    "mqtt_cafile": "",
    "fake_jpeg": "",
}


# ------------------------------------------------------------------------- helpers


def log(*args):
    print("[gridlens]", *args)


def ticks_ms():
    if MICROPYTHON:
        return time.ticks_ms()
    return int(time.monotonic() * 1000)


def ticks_since(t0):
    if MICROPYTHON:
        return time.ticks_diff(time.ticks_ms(), t0)
    return ticks_ms() - t0


def sleep_ms(ms):
    if MICROPYTHON:
        time.sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


def utc_now():
    """(year, month, day, hour, minute, second) in UTC, from the RTC set by NTP."""
    return tuple(time.gmtime()[:6])


def clock_ok():
    return utc_now()[0] >= 2024


def iso(t):
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % t


def compact(t):
    return "%04d%02d%02dT%02d%02d%02dZ" % t


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def read_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    try:
        os.remove(path)
    except OSError:
        pass
    os.rename(tmp, path)


def slugify(name):
    """The server's slug of a device name: [a-z0-9_-], every other character becomes _."""
    out = ""
    for ch in name.strip().lower():
        out += ch if ("a" <= ch <= "z" or "0" <= ch <= "9" or ch in "_-") else "_"
    return out


def hexlify(data):
    return binascii.hexlify(data).decode()


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) of bytes ``msg`` under bytes ``key``, as hex text."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\0" * (64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + msg).digest()
    return hexlify(hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest())


def same_text(a, b):
    """Compare two strings in a time that does not depend on where they differ."""
    if not isinstance(a, str) or not isinstance(b, str) or len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):  # MicroPython's zip() has no strict=
        diff |= ord(a[i]) ^ ord(b[i])
    return diff == 0


def field(v):
    return "" if v is None else "%s" % v


def command_message(device_id, cmd):
    """What the server signs for a command (see gridlens.store.commands)."""
    parts = ["gridlens-command", "%d" % device_id]
    for k in ("id", "action", "state", "value", "expires_at", "nonce"):
        parts.append(field(cmd.get(k)))
    return "\n".join(parts).encode()


def ack_message(device_id, command_id, nonce, ok, detail):
    """What the device signs for an ack."""
    parts = ["gridlens-ack", "%d" % device_id, field(command_id), nonce, "1" if ok else "0"]
    parts.append(field(detail))
    return "\n".join(parts).encode()


def valid_nonce(nonce):
    if not isinstance(nonce, str) or len(nonce) != 32:
        return False
    return all("0" <= ch <= "9" or "a" <= ch <= "f" for ch in nonce)


def time_tuple(text):
    """(year, month, day, hour, minute, second) of ISO text ``2026-11-21T10:00:00Z``."""
    spans = ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19))
    try:
        return tuple(int(text[a:b]) for a, b in spans)
    except (TypeError, ValueError):
        return None


# -------------------------------------------------------------------------- device


class Device:
    def __init__(self, cfg):
        self.cfg = cfg
        self.state = read_json(STATE_FILE, {})
        self.wdt = None
        self.mqtt = None
        self.mqtt_inbox = []
        self.capture_requested = False
        self.last_ntp = None
        self.interval_s = int(self.state.get("interval_s", cfg["interval_s"]))
        self.flash = self.state.get("flash", cfg["flash"])
        self.relay = self.state.get("relay", "on")
        self.base = cfg["server"].rstrip("/") + "/api/v1/devices/%d" % cfg["device_id"]
        # the key of the signatures: SHA-256 of the token, as the server stores it
        self.key = hexlify(hashlib.sha256(cfg["token"].encode()).digest()).encode()
        self.queue_dir = "/sd/queue" if cfg["use_sd"] else "queue"
        self.cam = None
        self.relay_pin = None
        self.flash_pin = None

    # --- boot ---------------------------------------------------------------

    def boot(self):
        woke = MICROPYTHON and machine.reset_cause() == machine.DEEPSLEEP_RESET
        if "install" not in self.state:  # a fresh flash gets new capture ids
            self.state["install"] = "".join("%02x" % b for b in os.urandom(3))
        if not woke or "boot" not in self.state:
            self.state["boot"] = self.state.get("boot", 0) + 1
            self.state["counter"] = 0
        write_json(STATE_FILE, self.state)
        if MICROPYTHON:
            if self.cfg["watchdog_s"]:
                self.wdt = machine.WDT(timeout=int(self.cfg["watchdog_s"]) * 1000)
            self.flash_pin = machine.Pin(self.cfg["flash_pin"], machine.Pin.OUT, value=0)
            self.relay_pin = machine.Pin(self.cfg["relay_pin"], machine.Pin.OUT)
            try:
                self.relay_pin.init(hold=False)  # held through deep sleep: release it
            except (TypeError, ValueError):
                pass
            self.set_relay(self.relay)
        if self.cfg["use_sd"] and MICROPYTHON:
            # 1-bit mode leaves GPIO 4 (flash LED), 12 and 13 to us
            os.mount(machine.SDCard(slot=1, width=1), "/sd")
        if not exists(self.queue_dir):
            os.mkdir(self.queue_dir)
        log("boot", self.boot_id(), "interval", self.interval_s, "s")

    def boot_id(self):
        return "%s%04x" % (self.state["install"], self.state["boot"])

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    # --- network ------------------------------------------------------------

    def wifi(self):
        if not MICROPYTHON:
            return True
        sta = network.WLAN(network.STA_IF)
        if sta.isconnected():
            return True
        sta.active(True)
        sta.connect(self.cfg["wifi_ssid"], self.cfg["wifi_password"])
        t0 = ticks_ms()
        while not sta.isconnected() and ticks_since(t0) < 20000:
            sleep_ms(200)
            self.feed()
        if sta.isconnected():
            log("wifi", sta.ifconfig()[0])
        else:
            log("wifi: not connected")
        return sta.isconnected()

    def sync_clock(self):
        if not MICROPYTHON:
            return
        if self.last_ntp is not None and ticks_since(self.last_ntp) < NTP_EVERY_S * 1000:
            return
        try:
            ntptime.host = self.cfg["ntp_host"]
            ntptime.settime()  # the RTC runs in UTC
            self.last_ntp = ticks_ms()
            log("time", iso(utc_now()))
        except (OSError, IndexError) as exc:
            log("ntp failed:", exc)

    def http(self, method, url, data=None, json_doc=None, content_type=None, headers=None):
        """(status, parsed JSON or None); status 0 for a network error."""
        h = {"Authorization": "Bearer " + self.cfg["token"]}
        if headers:
            h.update(headers)
        if json_doc is not None:
            data = json.dumps(json_doc).encode()
            content_type = "application/json"
        if content_type:
            h["Content-Type"] = content_type
        if not MICROPYTHON:
            return _urllib(method, url, data, h, self.cfg["http_timeout_s"])
        r = None
        try:
            try:
                r = requests.request(
                    method, url, data=data, headers=h, timeout=self.cfg["http_timeout_s"]
                )
            except TypeError:  # an older urequests without timeout
                r = requests.request(method, url, data=data, headers=h)
            try:
                body = r.json()
            except ValueError:
                body = None
            return r.status_code, body
        except OSError as exc:
            log(method, url, "network error:", exc)
            return 0, None
        finally:
            if r is not None:
                r.close()

    # --- camera and GPIO ------------------------------------------------------

    def camera_on(self):
        if self.cam is not None or camera is None:
            return
        q = int(self.cfg["jpeg_quality"])
        if hasattr(camera, "Camera"):  # cnadler86/micropython-camera-API
            self.cam = camera.Camera()
            try:
                self.cam.set_quality(q)
            except AttributeError:
                pass
        else:  # lemariva/micropython-camera-driver
            camera.init(0, format=camera.JPEG, fb_location=camera.PSRAM)
            camera.framesize(getattr(camera, "FRAME_" + self.cfg["framesize"]))
            camera.quality(q)
            self.cam = camera

    def camera_off(self):
        if self.cam is not None and hasattr(self.cam, "deinit"):
            self.cam.deinit()
        self.cam = None

    def capture(self):
        if camera is None:  # CPython dry run
            with open(self.cfg["fake_jpeg"], "rb") as f:
                return f.read()
        self.camera_on()
        use_flash = self.flash == "on" and self.flash_pin is not None
        if use_flash:
            self.flash_pin.value(1)
            sleep_ms(int(self.cfg["flash_ms"]))
        try:
            self.cam.capture()  # the first frame is often stale or under-exposed
            buf = self.cam.capture()
        finally:
            if use_flash:
                self.flash_pin.value(0)
        return bytes(buf) if buf else None

    def set_relay(self, state):
        self.relay = state
        if self.relay_pin is not None:
            on = state == "on"
            self.relay_pin.value(1 if on == bool(self.cfg["relay_active_high"]) else 0)

    # --- photos -------------------------------------------------------------

    def take_photo(self):
        """Capture and queue a photo; False without a valid clock or a picture."""
        if not clock_ok():
            log("no valid time yet (NTP); photo skipped")
            return False
        now = utc_now()
        jpeg = self.capture()
        if not jpeg or jpeg[:2] != b"\xff\xd8":
            log("camera gave no JPEG")
            return False
        self.state["counter"] = self.state.get("counter", 0) + 1
        write_json(STATE_FILE, self.state)
        cid = "%s-%d" % (self.boot_id(), self.state["counter"])
        # the name sorts by capture time and carries the capture id and time
        with open("%s/%s_%s.jpg" % (self.queue_dir, compact(now), cid), "wb") as f:
            f.write(jpeg)
        self.trim_queue()
        return True

    def queued(self):
        return sorted(n for n in os.listdir(self.queue_dir) if n.endswith(".jpg"))

    def trim_queue(self):
        names = self.queued()
        for name in names[: max(0, len(names) - int(self.cfg["queue_max"]))]:
            log("queue full, dropping", name)
            os.remove(self.queue_dir + "/" + name)

    def send_queue(self):
        """Upload queued photos, oldest first; stop at the first that must wait."""
        sent = 0
        for name in self.queued():
            self.feed()
            stamp, cid = name[:-4].split("_", 1)
            t = (
                int(stamp[0:4]),
                int(stamp[4:6]),
                int(stamp[6:8]),
                int(stamp[9:11]),
                int(stamp[11:13]),
                int(stamp[13:15]),
            )
            path = self.queue_dir + "/" + name
            with open(path, "rb") as f:
                jpeg = f.read()
            status, body = self.http(
                "POST",
                self.base + "/images",
                data=jpeg,
                content_type="image/jpeg",
                headers={"X-Capture-Id": cid, "X-Captured-At": iso(t)},
            )
            if status in (200, 201):  # stored (201) or stored before (200, duplicate)
                os.remove(path)
                sent += 1
                body = body or {}
                reading = body.get("reading") or {}
                log(
                    cid,
                    "duplicate" if body.get("duplicate") else reading.get("status"),
                    reading.get("value"),
                    reading.get("reason") or "",
                )
                self.handle_commands(body.get("commands") or [], "http")
            elif status == 413:  # too large: drop it and lower the quality (higher number)
                log(cid, "too large, dropped")
                os.remove(path)
                self.cfg["jpeg_quality"] = min(63, int(self.cfg["jpeg_quality"]) + 5)
                self.camera_off()
            elif status in (400, 422):  # not a JPEG / bad request: it will never pass
                log(cid, "refused (%d), dropped" % status)
                os.remove(path)
            elif status in (401, 403, 404):  # token or device id wrong: keep, fix config
                log("server refused the device token or id (%d); check config.json" % status)
                break
            else:  # 5xx, 429 or network error: keep it, retry later, same capture id
                log(cid, "not delivered (%s), will retry" % (status or "network"))
                break
        return sent

    # --- commands -----------------------------------------------------------

    def poll_commands(self):
        status, body = self.http("GET", self.base + "/commands")
        if status == 200 and isinstance(body, dict):
            self.handle_commands(body.get("commands") or [], "http")

    def handle_commands(self, commands, via):
        """Execute each new command once and ack it; ack a repeated one again."""
        if not commands:
            return
        done = self.state.get("done")
        if not isinstance(done, list):  # a state file of an older version: ids, no nonces
            done = self.state["done"] = []
        for cmd in commands:
            if not isinstance(cmd, dict) or not valid_nonce(cmd.get("nonce")):
                log("command without a valid nonce ignored")
                continue
            nonce = cmd["nonce"]
            seen = None
            for entry in done:
                if entry[0] == nonce:
                    seen = entry
            if seen is not None:  # delivered again: our ack got lost; ack again, do not repeat
                self.ack(seen[1], nonce, seen[2], seen[3], via)
                continue
            exp = time_tuple(cmd.get("expires_at"))
            if clock_ok() and (exp is None or utc_now() >= exp):
                log("expired command", cmd.get("id"), "ignored")
                continue
            ok, detail = self.execute(cmd)
            done.append([nonce, cmd.get("id"), ok, detail])
            while len(done) > KEEP_DONE:
                done.pop(0)
            self.ack(cmd.get("id"), nonce, ok, detail, via)
        self.state["interval_s"], self.state["relay"] = self.interval_s, self.relay
        self.state["flash"] = self.flash
        write_json(STATE_FILE, self.state)

    def execute(self, cmd):
        action, state, value = cmd.get("action"), cmd.get("state"), cmd.get("value")
        if action == "relay" and state in ("on", "off"):
            self.set_relay(state)
            log("relay", state)
            return True, "relay " + state
        if action == "flash" and state in ("on", "off"):
            self.flash = state
            log("flash", state)
            return True, "flash " + state
        if action == "capture":
            self.capture_requested = True
            return True, "capture now"
        if action == "interval":
            try:
                v = int(value)
            except (TypeError, ValueError):
                v = -1
            if MIN_INTERVAL <= v <= MAX_INTERVAL:
                self.interval_s = v
                log("interval", v, "s")
                return True, "interval %d s" % v
            return False, "interval must be %d..%d s" % (MIN_INTERVAL, MAX_INTERVAL)
        return False, "unknown command %s %s" % (action, state)

    def ack(self, command_id, nonce, ok, detail, via):
        doc = {"id": command_id, "nonce": nonce, "ok": ok, "detail": detail}
        if via == "mqtt" and self.mqtt is not None:
            msg = ack_message(self.cfg["device_id"], command_id, nonce, ok, detail)
            doc["sig"] = hmac_sha256(self.key, msg)
            try:
                self.mqtt.publish(self.topic("ack"), json.dumps(doc), qos=1)
                return
            except OSError:
                self.mqtt = None  # fall back to HTTP
        status, _ = self.http(
            "POST",
            self.base + "/commands/%s/ack" % command_id,
            json_doc={"ok": ok, "detail": detail, "nonce": nonce},
        )
        if status != 200:  # a redelivered command is acked again (not executed again)
            log("ack of", command_id, "failed:", status)

    # --- MQTT ---------------------------------------------------------------

    def topic(self, leaf):
        """``<prefix>/<device id>-<slug>/<leaf>``, as the server names this device's topics."""
        slug = self.cfg["mqtt_slug"] or slugify(self.cfg["name"])
        if not slug.strip("_"):
            slug = "meter"
        return "%s/%d-%s/%s" % (self.cfg["mqtt_prefix"], self.cfg["device_id"], slug, leaf)

    def mqtt_tls(self):
        """An SSL context checking the broker against ``mqtt_cafile``, or None for plain MQTT."""
        if not self.cfg["mqtt_tls"]:
            return None
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.cfg["mqtt_cafile"]:
            ctx.load_verify_locations(cafile=self.cfg["mqtt_cafile"])
        elif hasattr(ctx, "load_default_certs"):
            ctx.load_default_certs()
        return ctx

    def mqtt_connect(self):
        if not self.cfg["mqtt_host"] or MQTTClient is None or self.cfg["deep_sleep"]:
            return
        if self.mqtt is not None:
            return
        try:
            tls = self.mqtt_tls()
            kw = {"ssl": tls} if tls is not None else {}
            c = MQTTClient(
                "gridlens-%d-%s" % (self.cfg["device_id"], self.state["install"]),
                self.cfg["mqtt_host"],
                port=int(self.cfg["mqtt_port"]),
                user=self.cfg["mqtt_user"] or None,
                password=self.cfg["mqtt_password"] or None,
                keepalive=60,
                **kw,
            )
            c.set_callback(self.on_mqtt)
            c.connect()
            c.subscribe(self.topic("command"), qos=1)
            self.mqtt = c
            self.mqtt_ping = ticks_ms()
            log("mqtt", self.topic("command"))
        except Exception as exc:  # network, TLS, or umqtt's MQTTException (refused)
            log("mqtt connect failed:", exc)

    def on_mqtt(self, topic, msg, retained=False, dup=False):
        """Queue a command that came over MQTT if it is genuine and for this device.

        umqtt.simple calls ``cb(topic, msg)``; clients that report the retain flag (such as
        umqtt.simple2) pass it third. A retained message is never a live command.
        """
        if retained:
            log("retained command ignored")
            return
        if isinstance(topic, bytes):
            topic = topic.decode()
        if topic != self.topic("command"):
            log("command on another topic ignored:", topic)
            return
        try:
            cmd = json.loads(msg)
        except ValueError:
            return
        if not isinstance(cmd, dict) or cmd.get("device_id") != self.cfg["device_id"]:
            log("command for another device ignored")
            return
        sig = hmac_sha256(self.key, command_message(self.cfg["device_id"], cmd))
        if not same_text(cmd.get("sig"), sig):
            log("command with a wrong signature ignored:", cmd.get("id"))
            return
        self.mqtt_inbox.append(cmd)

    def mqtt_poll(self):
        if self.mqtt is None:
            return
        try:
            self.mqtt.check_msg()
            if ticks_since(self.mqtt_ping) > 30000:
                self.mqtt.ping()
                self.mqtt_ping = ticks_ms()
        except OSError as exc:
            log("mqtt lost:", exc)
            self.mqtt = None
        if self.mqtt_inbox:
            inbox, self.mqtt_inbox = self.mqtt_inbox, []
            self.handle_commands(inbox, "mqtt")

    # --- main loop ------------------------------------------------------------

    def cycle(self):
        self.feed()
        if not self.wifi():
            self.take_photo()  # queued until the network is back
            return
        self.sync_clock()
        self.take_photo()
        if self.send_queue() == 0 or self.mqtt is None:
            # commands also come with every upload answer; without an MQTT session, those
            # the server published over MQTT come only from the poll
            self.poll_commands()
        self.mqtt_connect()

    def run(self, once=False):
        self.boot()
        while True:
            t0 = ticks_ms()
            self.capture_requested = False
            try:
                self.cycle()
            except Exception as exc:  # keep the camera alive; the watchdog covers hangs
                log("cycle failed:", exc)
            if once:
                return
            if self.cfg["deep_sleep"] and MICROPYTHON and not self.capture_requested:
                self.camera_off()
                if esp32 is not None and self.relay_pin is not None:
                    self.relay_pin.init(hold=True)  # keep the relay through deep sleep
                    esp32.gpio_deep_sleep_hold(True)
                machine.deepsleep(self.interval_s * 1000)
            while ticks_since(t0) < self.interval_s * 1000 and not self.capture_requested:
                self.feed()
                self.mqtt_poll()
                sleep_ms(200)


def _urllib(method, url, data, headers, timeout):
    """CPython stand-in for MicroPython's requests (dry runs only)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except OSError as exc:
        log(method, url, "network error:", exc)
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def load_config(path=CONFIG_FILE):
    cfg = dict(DEFAULTS)
    cfg.update(read_json(path, {}))
    if not cfg["token"] or not cfg["device_id"]:
        log("config.json needs device_id and token (see config.example.json)")
    return cfg


def main():
    once = "--once" in getattr(sys, "argv", [])
    Device(load_config()).run(once=once)


if __name__ == "__main__":  # MicroPython runs main.py as __main__ after boot.py
    main()
