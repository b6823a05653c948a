"""The ``mqtt`` sink: vitals, alarms and the retained status of one bed, and its command inbox.

Topics under ``<prefix>/<bed>/`` (see docs/mqtt.md):

- ``vitals``  QoS 0, not retained: one message per second; a second missed while the broker
  is away is not worth queueing (the next one supersedes it), so those are counted and dropped.
- ``alarms``  QoS 1, not retained: every alarm event goes through a durable outbox (a JSON-lines
  file) and stays there until the broker acknowledges it (PUBACK), so alarms raised while the
  broker is down, or before a restart, are delivered when the broker is back.
- ``status``  QoS 1, retained: ``"state": "online"`` once the broker has accepted the
  connection (CONNACK success), a retained last will ``"state": "offline"`` that the broker
  publishes when the connection is lost, and ``offline`` published on a clean stop.
- ``cmd/#``   subscribed on every (re)connect; messages land on ``commands`` for the main loop.

paho-mqtt 2.x with callback API version 2 runs the network thread and reconnects with backoff.
``Publisher`` owns the connection; ``MqttSink`` is what the daemon sees (``device.sinks.base``):
it turns messages into payloads and commands from ``cmd/`` into typed ``Ack``s.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from device.config import MqttConfig
from device.credentials import MQTT_PASSWORD, credential, state_directory
from device.errors import UserError
from device.messages import SCHEMA_VERSION, iso_utc
from device.monitor import Message
from device.sinks.base import Ack, Command, Status

log = logging.getLogger("bedside.mqtt")

#: default place for the outbox; systemd's StateDirectory=bedside creates it for the service
#: and names it in $STATE_DIRECTORY
DEFAULT_STATE_DIR = state_directory(Path("/var/lib/bedside"))
#: reconnect backoff: first retry after 1 s, doubling up to 30 s, so a broker back after a
#: restart is found within half a minute without hammering one that is down for long
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
#: an acknowledged message id not matched to an alarm within this time was not an alarm
#: (message ids wrap only after 65535 messages, hours at a few messages per second)
ACK_MATCH_S = 30.0


def parse_broker_url(url: str, key: str = "mqtt.broker") -> tuple[str, int]:
    """``mqtt://HOST[:PORT]`` -> (host, port); 1883 is MQTT's registered port."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp"):
        raise UserError(
            f"{key} = {url!r}: unsupported scheme '{parts.scheme}'",
            "use mqtt://HOST:PORT (plain TCP)",
        )
    try:
        port = parts.port or 1883
    except ValueError:
        raise UserError(
            f"{key} = {url!r}: the port is not a number", "use mqtt://HOST:PORT"
        ) from None
    if not parts.hostname:
        raise UserError(
            f"{key} = {url!r}: no host", "use mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883"
        )
    return parts.hostname, port


@dataclass(frozen=True)
class OutboxEntry:
    key: str
    topic: str
    payload: str


class Outbox:
    """QoS 1 messages not yet acknowledged by the broker, kept in a JSON-lines file.

    Each new message is appended and fsync'd before it is handed to the network, so a power cut
    or restart loses none; an acknowledged one is removed by rewriting the file (alarms are rare,
    so the rewrite is cheap). ``path=None`` keeps them in memory only (lost on restart).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, OutboxEntry] = {}
        self._lock = threading.Lock()
        self.corrupt_lines = 0
        self.write_errors = 0
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as e:
            raise UserError(
                f"{path}: cannot read the MQTT outbox ({e.strerror})",
                "check mqtt.outbox_path and its permissions",
            ) from None
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                entry = OutboxEntry(str(d["key"]), str(d["topic"]), str(d["payload"]))
            except (ValueError, KeyError, TypeError):
                # a line cut short by a crash while appending; the rest are intact
                self.corrupt_lines += 1
                continue
            self._entries[entry.key] = entry
        if self.corrupt_lines:
            log.warning("%s: skipped %d unreadable outbox line(s)", path, self.corrupt_lines)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def pending(self) -> list[OutboxEntry]:
        with self._lock:
            return list(self._entries.values())

    def add(self, topic: str, payload: str) -> OutboxEntry:
        entry = OutboxEntry(uuid.uuid4().hex, topic, payload)
        with self._lock:
            self._entries[entry.key] = entry
            if self.path is not None:
                line = json.dumps(
                    {"key": entry.key, "topic": topic, "payload": payload}, separators=(",", ":")
                )
                try:
                    with open(self.path, "a", encoding="utf-8") as f:
                        f.write(line + "\n")
                        f.flush()
                        os.fsync(f.fileno())
                except OSError as e:
                    # a full or failing disk must not stop alarms from being sent: this one is
                    # still delivered from memory, only not across a restart
                    self.write_errors += 1
                    if self.write_errors == 1:
                        log.error(
                            "%s: cannot write the outbox (%s); alarms kept in memory", self.path, e
                        )
        return entry

    def remove(self, key: str) -> None:
        with self._lock:
            if self._entries.pop(key, None) is None or self.path is None:
                return
            try:
                self._rewrite(self.path)
            except OSError as e:
                self.write_errors += 1
                log.error("%s: cannot rewrite the outbox (%s)", self.path, e)

    def _rewrite(self, path: Path) -> None:
        """Replace the file atomically with the entries still pending (caller holds the lock)."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for e in self._entries.values():
                record = {"key": e.key, "topic": e.topic, "payload": e.payload}
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def outbox_path_for(cfg: MqttConfig, bed: str) -> Path | None:
    """The configured outbox file, or the default one when its directory is writable, else None."""
    if cfg.outbox_path:
        p = Path(cfg.outbox_path)
        if not p.parent.is_dir():
            raise UserError(
                f"mqtt.outbox_path = {cfg.outbox_path!r}: directory {p.parent} does not exist",
                "create it or choose another path",
            )
        if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
            raise UserError(
                f"mqtt.outbox_path = {cfg.outbox_path!r} is not writable",
                "fix its permissions or choose another path",
            )
        return p
    if DEFAULT_STATE_DIR.is_dir() and os.access(DEFAULT_STATE_DIR, os.W_OK):
        return DEFAULT_STATE_DIR / f"{bed}-outbox.jsonl"
    return None


class Publisher:
    """One bed's MQTT connection. Thread-safe: the daemon's main loop publishes, paho's network
    thread runs the callbacks, and commands come back on ``commands``."""

    def __init__(
        self,
        cfg: MqttConfig,
        bed: str,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.bed = bed
        self.host, self.port = parse_broker_url(cfg.broker)
        base = f"{cfg.prefix}/{bed}"
        self.topic_vitals = f"{base}/vitals"
        self.topic_alarms = f"{base}/alarms"
        self.topic_status = f"{base}/status"
        self.topic_cmd = f"{base}/cmd/#"
        self._cmd_prefix = f"{base}/cmd/"
        self.outbox = outbox if outbox is not None else Outbox(None)
        self._clock = clock
        #: (command leaf such as "ack", raw payload) for the main loop
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=1000)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = False
        self._in_outage = False  # an outage has been logged; the next success ends it
        self._status: dict[str, Any] = {}
        #: called from paho's network thread in each callback: the daemon's watchdog counts it
        #: as the sink's progress (device.notify); None: nobody listens
        self.heartbeat: Callable[[], None] | None = None
        self._mid_key: dict[int, str] = {}  # paho message id of an alarm -> its outbox key
        self._acked: dict[int, float] = {}  # message ids the broker acknowledged -> when
        self.counters = {
            "connects": 0,
            "connection_failures": 0,
            "disconnects": 0,
            "vitals_sent": 0,
            "vitals_dropped_offline": 0,
            "alarms_queued": 0,
            "alarms_acked": 0,
            "commands_received": 0,
            "commands_dropped": 0,
        }
        client_id = cfg.client_id or f"bedside-{bed}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if cfg.username:
            self.client.username_pw_set(cfg.username, _read_password(cfg.password_file))
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        # alarms are few; never let paho refuse one because its queue is "full"
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self._set_will()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (never blocks or fails on a missing broker), and hand what
        the outbox kept from a previous run to the network first."""
        for entry in self.outbox.pending():
            self._send_outbox(entry)
        if self.outbox.pending():
            log.info(
                "outbox: %d alarm message(s) from before waiting for the broker", len(self.outbox)
            )
        self.client.connect_async(self.host, self.port, keepalive=max(1, int(self.cfg.keepalive_s)))
        self.client.loop_start()

    def stop(self, timeout_s: float = 5.0, reason: str = "stopped") -> bool:
        """Deliver what is pending, publish the retained ``offline`` status, disconnect.

        Returns True when the broker acknowledged the ``offline`` status. Alarms still not
        acknowledged stay in the outbox for the next run.
        """
        deadline = time.monotonic() + timeout_s
        delivered = False
        if self._connected.is_set():
            while self._inflight_count() and time.monotonic() < deadline:
                self.poll()
                time.sleep(0.02)
            with self._lock:
                self._stopping = True
            info = self.client.publish(
                self.topic_status, self._status_payload("offline", reason), qos=1, retain=True
            )
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
                delivered = info.is_published()
            except (RuntimeError, ValueError):
                delivered = False
            self.poll()
        with self._lock:
            self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        self.poll()
        if not delivered:
            log.warning(
                "could not publish the offline status (broker unreachable); the last will says it"
            )
        if len(self.outbox):
            where = self.outbox.path or "memory (lost now: no writable outbox_path)"
            log.warning(
                "%d alarm message(s) not yet acknowledged by the broker kept in %s",
                len(self.outbox),
                where,
            )
        return delivered

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- publishing (main loop) ------------------------------------------------------------
    def publish_vitals(self, payload: dict[str, Any]) -> None:
        if not self._connected.is_set():
            self.counters["vitals_dropped_offline"] += 1
            return
        info = self.client.publish(self.topic_vitals, _dumps(payload), qos=0, retain=False)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.counters["vitals_sent"] += 1
        else:
            self.counters["vitals_dropped_offline"] += 1

    def publish_alarm(self, payload: dict[str, Any]) -> None:
        """Store the alarm in the outbox, then hand it to paho (which queues it while offline)."""
        entry = self.outbox.add(self.topic_alarms, _dumps(payload))
        self.counters["alarms_queued"] += 1
        self._send_outbox(entry)

    def set_status(self, status: dict[str, Any]) -> None:
        """New content for the retained status; published now when connected, and on connect."""
        with self._lock:
            self._status = dict(status)
        if self._connected.is_set():
            self.client.publish(
                self.topic_status, self._status_payload("online"), qos=1, retain=True
            )

    def poll(self) -> None:
        """Remove acknowledged alarms from the outbox (called by the main loop, so the file is
        written from one thread and never from paho's network thread)."""
        now = time.monotonic()
        done = []
        with self._lock:
            for mid, when in list(self._acked.items()):
                key = self._mid_key.pop(mid, None)
                if key is not None:
                    done.append(key)
                    del self._acked[mid]
                elif now - when > ACK_MATCH_S:
                    del self._acked[mid]  # a status or vitals message, not an alarm
        for key in done:
            self.outbox.remove(key)
            self.counters["alarms_acked"] += 1

    def status_counters(self) -> dict[str, Any]:
        return {
            **self.counters,
            "connected": self.connected,
            "outbox_pending": len(self.outbox),
            "outbox_write_errors": self.outbox.write_errors,
        }

    # -- internals -------------------------------------------------------------------------
    def _inflight_count(self) -> int:
        with self._lock:
            return len(self._mid_key)

    def _send_outbox(self, entry: OutboxEntry) -> None:
        # paho keeps QoS 1 messages queued while disconnected and resends them (same message
        # id) after reconnecting; the PUBACK may even arrive before publish() returns here,
        # which is why acknowledgements are matched to keys later, in poll()
        info = self.client.publish(entry.topic, entry.payload, qos=1, retain=False)
        with self._lock:
            self._mid_key[info.mid] = entry.key

    def _status_payload(self, state: str, reason: str | None = None) -> str:
        with self._lock:
            body = dict(self._status)
        body.update(
            {
                "schema_version": SCHEMA_VERSION,
                "bed": self.bed,
                "ts": iso_utc(self._clock()),
                "state": state,
            }
        )
        if reason:
            body["reason"] = reason
        return _dumps(body)

    def _set_will(self) -> None:
        # the broker publishes this, retained, when it loses the connection without a
        # DISCONNECT (crash, power cut, network): 1.5 x keepalive after the last packet
        will = {
            "schema_version": SCHEMA_VERSION,
            "bed": self.bed,
            "ts": iso_utc(self._clock()),
            "state": "offline",
            "reason": "connection lost (last will)",
        }
        self.client.will_set(self.topic_status, _dumps(will), qos=1, retain=True)

    # -- paho callbacks (network thread) ---------------------------------------------------
    def _beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._beat()
        if reason_code.is_failure:
            self.counters["connection_failures"] += 1
            if not self._in_outage:
                log.error(
                    "broker %s:%d refused the connection: %s", self.host, self.port, reason_code
                )
                self._in_outage = True
            return
        self._connected.set()
        self.counters["connects"] += 1
        if self._in_outage or self.counters["connects"] > 1:
            log.info("connected to broker %s:%d again", self.host, self.port)
        else:
            log.info("connected to broker %s:%d", self.host, self.port)
        self._in_outage = False
        client.subscribe(self.topic_cmd, qos=1)
        client.publish(self.topic_status, self._status_payload("online"), qos=1, retain=True)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._beat()
        self.counters["connection_failures"] += 1
        if not self._in_outage:
            # paho calls this from inside its ``except OSError``: the reason is the active exception
            err = sys.exc_info()[1]
            log.warning(
                "cannot reach broker %s:%d (%s); retrying in the background, alarms kept in outbox",
                self.host,
                self.port,
                err or "connection failed",
            )
            self._in_outage = True

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._beat()
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            self.counters["disconnects"] += 1
        with self._lock:
            stopping = self._stopping
        if stopping:
            return
        if was and not self._in_outage:
            log.warning(
                "lost the connection to broker %s:%d (%s); reconnecting",
                self.host,
                self.port,
                reason_code,
            )
            self._in_outage = True
        self._set_will()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Any
    ) -> None:
        self._beat()
        with self._lock:
            self._acked[mid] = time.monotonic()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._beat()
        if not msg.topic.startswith(self._cmd_prefix):
            return
        self.counters["commands_received"] += 1
        try:
            self.commands.put_nowait((msg.topic[len(self._cmd_prefix) :], bytes(msg.payload)))
        except queue.Full:
            self.counters["commands_dropped"] += 1


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # JSON has no NaN: a value the core could not compute is published as null
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _read_password(path: str) -> str | None:
    if not path:
        return credential(MQTT_PASSWORD)  # LoadCredential= in the unit
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise UserError(
            f"mqtt.password_file = {path!r}: cannot read ({e.strerror})",
            "check the path and permissions",
        ) from None


#: A command payload larger than this is not an acknowledgement: refused unread.
MAX_COMMAND_BYTES = 1024


class MqttSink:
    """The daemon's view of MQTT: messages to topics, ``cmd/ack`` to ``Ack`` commands."""

    key = "mqtt"
    threaded = True  # paho's network thread

    def __init__(self, cfg: MqttConfig, bed: str) -> None:
        path = outbox_path_for(cfg, bed)
        if path is None:
            log.warning(
                "no writable outbox file (mqtt.outbox_path): unacknowledged alarms kept in "
                "memory only"
            )
        self.publisher = Publisher(cfg, bed, Outbox(path))
        self.bed = bed
        self.rejected: dict[str, int] = {}  # kind of rejected command -> count

    def start(self) -> None:
        self.publisher.start()

    def send(self, msg: Message, ts: float) -> None:
        payload = msg.to_payload(self.bed, ts)
        if msg.kind == "alarm":
            self.publisher.publish_alarm(payload)
        else:
            self.publisher.publish_vitals(payload)

    def set_status(self, status: Status) -> None:
        self.publisher.set_status(status.to_payload())

    def poll(self) -> list[Command]:
        self.publisher.poll()
        if self.publisher.commands.empty():  # the usual case: no command since last time
            return []
        out: list[Command] = []
        while True:
            try:
                leaf, raw = self.publisher.commands.get_nowait()
            except queue.Empty:
                return out
            cmd = self._parse(leaf, raw)
            if cmd is not None:
                out.append(cmd)

    def _parse(self, leaf: str, raw: bytes) -> Command | None:
        if leaf != "ack":
            self._reject("unknown_topic", f"ignored command topic cmd/{leaf} (known: cmd/ack)")
            return None
        if len(raw) > MAX_COMMAND_BYTES:
            self._reject("too_large", f"ignored cmd/ack of {len(raw)} bytes")
            return None
        try:
            body = json.loads(raw.decode("utf-8"))
            alarm_id = body["id"]
            if not isinstance(alarm_id, str):
                raise TypeError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self._reject(
                "bad_schema", f'ignored cmd/ack {raw[:200]!r}: expected JSON {{"id": "<alarm id>"}}'
            )
            return None
        return Ack(alarm_id)

    def _reject(self, kind: str, message: str) -> None:
        """Count a refused command; log the first of each kind (a flood must not flood the
        log)."""
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        if self.rejected[kind] == 1:
            log.warning("%s (further ones of this kind are only counted)", message)

    def counters(self) -> dict[str, Any]:
        return {**self.publisher.status_counters(), "commands_rejected": dict(self.rejected)}

    @property
    def heartbeat(self) -> Callable[[], None] | None:
        return self.publisher.heartbeat

    @heartbeat.setter
    def heartbeat(self, beat: Callable[[], None] | None) -> None:
        self.publisher.heartbeat = beat  # called in each paho callback

    @property
    def tried(self) -> bool:
        c = self.publisher.counters
        return bool(c["connects"] or c["connection_failures"])

    @property
    def connects(self) -> int:
        return int(self.publisher.counters["connects"])

    def stop(self, reason: str = "stopped") -> None:
        self.publisher.stop(reason=reason)
