"""The ``mqtt`` sink: vitals, alarms and the retained status of one bed, and its command inbox.

Topics under ``<prefix>/<bed>/`` (see docs/mqtt.md):

- ``vitals``  QoS 1, not retained: one message per second of signal.
- ``alarms``  QoS 1, not retained: every alarm event.
- ``status``  QoS 1, retained: ``"state": "online"`` once the broker has accepted the
  connection (CONNACK success), a retained last will ``"state": "offline"`` that the broker
  publishes when the connection is lost, and ``offline`` published on a clean stop.
- ``cmd/#``   subscribed on every (re)connect; commands are checked for size, schema and rate
  here and land on ``commands`` for the main loop.

Store and forward: every vitals and alarm message is written to the bed's store
(``device.sinks.store``, SQLite in the state folder) with its per-bed ``seq`` *before* it is
handed to the network, and leaves the store only when the broker acknowledges it (PUBACK).
While connected, each new vitals message is sent at once ("live"); what the store holds from
an outage or an earlier run is sent oldest first, alarms before vitals, at most
``INFLIGHT_WINDOW`` messages unacknowledged at a time, vitals marked ``"historical": true``.

Security: ``mqtts://`` verifies the broker's certificate (``ca_file``, else the system's
CAs) and its host name; a client certificate is optional; the password comes from a file or
a systemd credential, never from the command line, and is never logged.

paho-mqtt 2.x with callback API version 2 runs the network thread and reconnects with backoff.
``Publisher`` owns the connection; ``MqttSink`` is what the daemon sees (``device.sinks.base``):
it turns messages into payloads and commands from ``cmd/`` into typed ``Ack``s.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from device.config import MqttConfig, StateConfig
from device.credentials import MQTT_PASSWORD, credential, state_directory
from device.errors import UserError
from device.messages import SCHEMA_VERSION, iso_utc
from device.monitor import Message
from device.sinks.base import Ack, Command, Status
from device.sinks.store import SECONDS_PER_HOUR, Store, Stored, dumps, historical
from device.sinks.store import import_jsonl_outbox as _import_jsonl_outbox

log = logging.getLogger("bedside.mqtt")

#: the state folder outside systemd (under systemd: $STATE_DIRECTORY, from StateDirectory=)
HOME_STATE_DIR = Path("~/.local/state/bedside")
#: reconnect backoff: first retry after 1 s, doubling up to 30 s, so a broker back after a
#: restart is found within half a minute without hammering one that is down for long
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
#: stored messages handed to the network and not yet acknowledged, at most. The main loop
#: refills the window every 0.1 s, so a backlog drains at up to ~1000 messages/s (a day of
#: vitals in under two minutes) without ever holding more than this in paho's memory
INFLIGHT_WINDOW = 100
#: schemes of ``mqtt.broker``: plain TCP, or TLS
PLAIN_SCHEMES = ("mqtt", "tcp")
TLS_SCHEMES = ("mqtts", "ssl")
#: registered ports: 1883 plain, 8883 over TLS
DEFAULT_PORT = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}


def parse_broker_url(url: str, key: str = "mqtt.broker") -> tuple[str, int]:
    """``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` -> (host, port); 1883 and 8883 are
    MQTT's registered ports (plain, TLS)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in PLAIN_SCHEMES + TLS_SCHEMES:
        raise UserError(
            f"{key} = {url!r}: unsupported scheme '{parts.scheme}'",
            "use mqtt://HOST:PORT (plain TCP) or mqtts://HOST:PORT (TLS)",
        )
    try:
        port = parts.port or DEFAULT_PORT[parts.scheme]
    except ValueError:
        raise UserError(
            f"{key} = {url!r}: the port is not a number", "use mqtt://HOST:PORT"
        ) from None
    if not parts.hostname:
        raise UserError(
            f"{key} = {url!r}: no host", "use mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883"
        )
    return parts.hostname, port


def uses_tls(url: str) -> bool:
    """``mqtts://`` (or ``ssl://``): the connection is TLS."""
    return urlsplit(url if "://" in url else f"mqtt://{url}").scheme in TLS_SCHEMES


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verify the broker's certificate against ``ca_file`` (else the system's CAs) and its
    host name; present ``cert_file``/``key_file`` when given. Errors name the key."""
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
    except (OSError, ssl.SSLError) as e:
        raise UserError(
            f"mqtt.ca_file = {cfg.ca_file!r}: cannot load the CA certificate ({_why(e)})",
            "give the PEM file of the CA that signed the broker's certificate",
        ) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert_file:
        try:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
        except (OSError, ssl.SSLError) as e:
            raise UserError(
                f"mqtt.cert_file = {cfg.cert_file!r} / mqtt.key_file = {cfg.key_file!r}: cannot "
                f"load the client certificate ({_why(e)})",
                "give a PEM certificate and its unencrypted private key, readable by the service",
            ) from None
    return ctx


def authenticate(client: Any, cfg: MqttConfig) -> None:
    """Give a paho client ``cfg``'s credentials (user name, password from its file or the
    systemd credential) and, for ``mqtts://``, the TLS context. Used by the daemon and by the
    station's clients (``bedside watch``, ``bedside ack``), so both connect the same way."""
    if cfg.username:
        client.username_pw_set(cfg.username, _read_password(cfg.password_file))
    if uses_tls(cfg.broker):
        client.tls_set_context(tls_context(cfg))


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def state_dir(state: StateConfig, mqtt_cfg: MqttConfig | None = None) -> Path:
    """The state folder: ``[state] dir``; else the folder of the deprecated
    ``mqtt.outbox_path``; else ``$STATE_DIRECTORY`` (systemd) or ~/.local/state/bedside."""
    if state.dir:
        return Path(state.dir).expanduser()
    if mqtt_cfg is not None and mqtt_cfg.outbox_path:
        return Path(mqtt_cfg.outbox_path).expanduser().parent
    return state_directory(HOME_STATE_DIR).expanduser()


def store_path(directory: Path, bed: str) -> Path:
    """The bed's store in the state folder (one file per bed, so beds may share a folder)."""
    return directory / f"{bed}-store.sqlite3"


class Publisher:
    """One bed's MQTT connection. The daemon's main loop publishes and polls; paho's network
    thread runs the callbacks; commands come back on ``commands``. The store is used from the
    main loop only; the network thread never waits on a lock the main loop holds while it
    calls paho (paho runs ``on_publish`` under its own lock), which is why acknowledgements are
    read from each message's ``MQTTMessageInfo`` in ``poll`` rather than from a callback."""

    def __init__(
        self,
        cfg: MqttConfig,
        bed: str,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        window: int = INFLIGHT_WINDOW,
    ) -> None:
        self.cfg = cfg
        self.bed = bed
        self.host, self.port = parse_broker_url(cfg.broker)
        self.tls = uses_tls(cfg.broker)
        base = f"{cfg.prefix}/{bed}"
        self.topic_vitals = f"{base}/vitals"
        self.topic_alarms = f"{base}/alarms"
        self.topic_status = f"{base}/status"
        self.topic_cmd = f"{base}/cmd/#"
        self._cmd_prefix = f"{base}/cmd/"
        self.store = store if store is not None else Store(None, clock=clock)
        self._clock = clock
        self.window = window
        #: (command leaf such as "ack", raw payload) for the main loop
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=1000)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = False
        self._in_outage = False  # an outage has been logged; the next success ends it
        self._refused = False  # the last CONNACK refused us
        self._status: dict[str, Any] = {}
        #: called from paho's network thread in each callback: the daemon's watchdog counts it
        #: as the sink's progress (device.notify); None: nobody listens
        self.heartbeat: Callable[[], None] | None = None
        #: stored messages handed to paho: store key -> what paho tells of its delivery
        self._inflight: dict[int, mqtt.MQTTMessageInfo] = {}
        #: commands: a token bucket (network thread only)
        self._tokens = float(COMMAND_BURST)
        self._tokens_at = time.monotonic()
        self.counters = {
            "connects": 0,
            "connection_failures": 0,
            "disconnects": 0,
            "vitals_sent": 0,  # acknowledged by the broker
            "vitals_live": 0,  # handed to the network as they were made
            "vitals_historical": 0,  # sent late, from the store
            "alarms_queued": 0,
            "alarms_acked": 0,
            "commands_received": 0,
            "commands_dropped": 0,  # the main loop's queue was full
            "commands_rate_limited": 0,
        }
        client_id = cfg.client_id or f"bedside-{bed}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        authenticate(self.client, cfg)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        # the store bounds what is handed over (the window); paho must never refuse one
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._set_will()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (never blocks or fails on a missing broker); what the
        store kept from a previous run is sent once connected."""
        self.client.connect_async(self.host, self.port, keepalive=max(1, int(self.cfg.keepalive_s)))
        self.client.loop_start()

    def stop(self, timeout_s: float = 5.0, reason: str = "stopped") -> bool:
        """Deliver what is pending (within ``timeout_s``), publish the retained ``offline``
        status, disconnect and close the store.

        Returns True when the broker acknowledged the ``offline`` status. Messages not
        acknowledged stay in the store for the next run.
        """
        deadline = time.monotonic() + timeout_s
        delivered = False
        if self._connected.is_set():
            while self.store.depth and self._connected.is_set() and time.monotonic() < deadline:
                self.poll()
                time.sleep(0.02)
            with self._lock:
                self._stopping = True
                if isinstance(self._status.get("mqtt"), dict):
                    # the daemon's last status was taken before this drain: bring ours up to date
                    self._status["mqtt"] = {**self._status["mqtt"], **self.status_counters()}
            info = self.client.publish(
                self.topic_status, self._status_payload("offline", reason), qos=1, retain=True
            )
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
                delivered = info.is_published()
            except (RuntimeError, ValueError):
                delivered = False
        with self._lock:
            self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        self._collect_acks()
        if not delivered:
            log.warning(
                "could not publish the offline status (broker unreachable); the last will says it"
            )
        pending = self.store.depth
        if pending:
            where = self.store.path if self.store.path and not self.store.failed else None
            log.warning(
                "%d message(s) (%d alarm(s)) not yet acknowledged by the broker %s",
                pending,
                self.store.depth_of("alarm"),
                f"kept in {where} for the next run" if where else "lost (no writable store)",
            )
        self.store.close()
        return delivered

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- publishing (main loop) ------------------------------------------------------------
    def publish(self, kind: str, body: dict[str, Any], ts: float | None = None) -> Stored:
        """Store ``body`` (it gets its ``seq``), then send it: a vitals message at once when
        connected (live), an alarm after any older alarm still waiting."""
        msg = self.store.add(kind, body, ts)
        if kind == "alarm":
            self.counters["alarms_queued"] += 1
        if self._connected.is_set():
            if kind == "vitals":
                live = self.store.take_key(msg.key)
                if live is not None:
                    self._send([live], live=True)
            self._drain()
        return msg

    def publish_vitals(self, payload: dict[str, Any], ts: float | None = None) -> Stored:
        return self.publish("vitals", payload, ts)

    def publish_alarm(self, payload: dict[str, Any], ts: float | None = None) -> Stored:
        return self.publish("alarm", payload, ts)

    def set_status(self, status: dict[str, Any]) -> None:
        """New content for the retained status; published now when connected, and on connect."""
        with self._lock:
            self._status = dict(status)
        if self._connected.is_set():
            self.client.publish(
                self.topic_status, self._status_payload("online"), qos=1, retain=True
            )

    def poll(self) -> None:
        """Remove what the broker acknowledged from the store, send more of what is waiting,
        and look after the store (called by the main loop every <= 0.1 s)."""
        self._collect_acks()
        if self._connected.is_set():
            self._drain()
        self.store.maintain()

    def status_counters(self) -> dict[str, Any]:
        s = self.store
        return {
            **self.counters,
            "connected": self.connected,
            "tls": self.tls,
            # messages not yet acknowledged by the broker (the name of the older alarm outbox,
            # kept for notify.summary_line and existing dashboards)
            "outbox_pending": s.depth,
            "store": {
                "alarms": s.depth_of("alarm"),
                "vitals": s.depth_of("vitals"),
                "in_flight": s.inflight,
                "oldest_s": round(s.oldest_age_s(), 1),
                "vitals_dropped": s.counters["vitals_dropped"],
                "write_errors": s.counters["write_errors"],
                "failed": s.failed,
                "bytes": s.file_bytes(),
            },
            "seq": {"alarms": s.last_seq("alarm"), "vitals": s.last_seq("vitals")},
        }

    # -- internals -------------------------------------------------------------------------
    def _collect_acks(self) -> None:
        done = [key for key, info in self._inflight.items() if info.is_published()]
        if not done:
            return
        for key in done:
            del self._inflight[key]
        for msg in self.store.done(done):
            if msg.kind == "alarm":
                self.counters["alarms_acked"] += 1
            else:
                self.counters["vitals_sent"] += 1

    def _drain(self) -> None:
        """Hand waiting messages to the network: every alarm, and vitals up to the window."""
        room = self.window - len(self._inflight)
        alarms = self.store.unsent("alarm")
        if alarms or room > 0:
            self._send(self.store.take(max(room, alarms)), live=False)

    def _send(self, batch: list[Stored], live: bool) -> None:
        for i, msg in enumerate(batch):
            if msg.kind == "alarm":
                topic, payload = self.topic_alarms, msg.payload
            else:
                topic = self.topic_vitals
                payload = msg.payload if live else historical(msg.payload)
            # paho keeps a QoS 1 message until the broker acknowledges it, and sends it again
            # (same message id, DUP) after a reconnect
            info = self.client.publish(topic, payload, qos=1, retain=False)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self.store.untake(m.key for m in batch[i:])
                return
            self._inflight[msg.key] = info
            if msg.kind == "vitals":
                self.counters["vitals_live" if live else "vitals_historical"] += 1

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
        return dumps(body)

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
        self.client.will_set(self.topic_status, dumps(will), qos=1, retain=True)

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
            self._refused = True  # the disconnect that follows is the same failure
            self.counters["connection_failures"] += 1
            if not self._in_outage:
                log.error(
                    "broker %s:%d refused the connection: %s", self.host, self.port, reason_code
                )
                self._in_outage = True
            return
        self._connected.set()
        self.counters["connects"] += 1
        how = " over TLS" if self.tls else ""
        if self._in_outage or self.counters["connects"] > 1:
            log.info("connected to broker %s:%d%s again", self.host, self.port, how)
        else:
            log.info("connected to broker %s:%d%s", self.host, self.port, how)
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
                "cannot reach broker %s:%d (%s); retrying in the background, messages kept in "
                "the store",
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
        refused, self._refused = self._refused, False
        if not was and not refused:
            # closed before the broker accepted us: e.g. a TLS broker that wants a client
            # certificate drops the connection after the handshake (TLS 1.3)
            self.counters["connection_failures"] += 1
            if not self._in_outage:
                log.error(
                    "broker %s:%d closed the connection before accepting it (%s); check the "
                    "TLS settings (mqtt.ca_file, cert_file, key_file) and the credentials",
                    self.host,
                    self.port,
                    reason_code,
                )
                self._in_outage = True
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

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._beat()
        if not msg.topic.startswith(self._cmd_prefix):
            return
        self.counters["commands_received"] += 1
        now = time.monotonic()
        self._tokens = min(
            float(COMMAND_BURST), self._tokens + (now - self._tokens_at) * COMMAND_RATE_PER_S
        )
        self._tokens_at = now
        if self._tokens < 1.0:
            self.counters["commands_rate_limited"] += 1
            return
        self._tokens -= 1.0
        try:
            self.commands.put_nowait((msg.topic[len(self._cmd_prefix) :], bytes(msg.payload)))
        except queue.Full:
            self.counters["commands_dropped"] += 1


def _read_password(path: str) -> str | None:
    if not path:
        return credential(MQTT_PASSWORD)  # LoadCredential= in the unit
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        from device.access import read_error

        raise read_error(path, e, "mqtt.password_file") from None


#: A command payload larger than this is not an acknowledgement: refused unread.
MAX_COMMAND_BYTES = 1024
#: An alarm id is the bed id, the condition, the role and a time: far below this.
MAX_ALARM_ID_CHARS = 200
#: Commands accepted per second on average, and in a burst: a station acknowledging every
#: alarm of a bed at once sends a handful; a flood beyond this is refused (and counted)
#: before it reaches the main loop.
COMMAND_RATE_PER_S = 5.0
COMMAND_BURST = 20


class MqttSink:
    """The daemon's view of MQTT: messages to topics, ``cmd/ack`` to ``Ack`` commands."""

    key = "mqtt"
    threaded = True  # paho's network thread

    def __init__(
        self,
        cfg: MqttConfig,
        bed: str,
        state: StateConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        state = state or StateConfig()
        self.cfg = cfg
        self.bed = bed
        self.directory = state_dir(state, cfg)
        self._vitals_max = max(1, int(round(state.vitals_keep_h * SECONDS_PER_HOUR)))
        self._clock = clock
        # until start() opens the bed's store (so that --check-config, which builds the sinks,
        # writes nothing), a store in memory
        self.store = Store(None, vitals_max=self._vitals_max, clock=clock)
        self.publisher = Publisher(cfg, bed, self.store, clock=clock)
        self.rejected: dict[str, int] = {}  # kind of rejected command -> count

    def start(self) -> None:
        """Open the bed's store in the state folder (a folder that cannot be written is no
        reason not to start: the store keeps messages in memory and says so), take over what
        an older JSON-lines outbox left, and connect."""
        if self.cfg.outbox_path:
            log.warning(
                "mqtt.outbox_path is deprecated: messages are now kept in a store in the state "
                "folder ([state] dir, --state-dir); using %s",
                self.directory,
            )
        store = Store(
            store_path(self.directory, self.bed), vitals_max=self._vitals_max, clock=self._clock
        )
        legacy = [self.directory / f"{self.bed}-outbox.jsonl"]
        if self.cfg.outbox_path:
            legacy.insert(0, Path(self.cfg.outbox_path).expanduser())
        for path in dict.fromkeys(legacy):
            _import_jsonl_outbox(store, path)
        self.store = self.publisher.store = store
        self.publisher.start()

    def send(self, msg: Message, ts: float) -> None:
        self.publisher.publish(
            "alarm" if msg.kind == "alarm" else "vitals", msg.to_payload(self.bed, ts), ts
        )

    def set_status(self, status: Status) -> None:
        self.publisher.set_status(status.to_payload())

    def poll(self) -> list[Command]:
        self.publisher.poll()
        limited = self.publisher.counters["commands_rate_limited"]
        if limited and not self.rejected.get("rate_limited"):
            log.warning(
                "commands on cmd/ arrive faster than %g/s (burst %d): refused (further ones are "
                "only counted)",
                COMMAND_RATE_PER_S,
                COMMAND_BURST,
            )
        if limited:
            self.rejected["rate_limited"] = limited
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
            self._reject(
                "unknown_topic", f"ignored command topic cmd/{leaf[:100]} (known: cmd/ack)"
            )
            return None
        if len(raw) > MAX_COMMAND_BYTES:
            self._reject("too_large", f"ignored cmd/ack of {len(raw)} bytes")
            return None
        try:
            body = json.loads(raw.decode("utf-8"))
            alarm_id = body["id"]
            if not isinstance(alarm_id, str) or not 0 < len(alarm_id) <= MAX_ALARM_ID_CHARS:
                raise TypeError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self._reject(
                "bad_schema", f'ignored cmd/ack {raw[:200]!r}: expected JSON {{"id": "<alarm id>"}}'
            )
            return None
        if not alarm_id.startswith(f"{self.bed}-"):
            self._reject(
                "other_bed",
                f"ignored cmd/ack for {alarm_id[:100]!r}: not an alarm of bed {self.bed}",
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

    def faults(self) -> dict[str, str]:
        """Technical faults of this sink for the alarm engine: condition -> detail."""
        failed = self.store.failed
        return {"store_failed": failed} if failed else {}

    @property
    def wall_floor(self) -> float:
        """The latest ``ts`` this bed's store has issued (this run or an earlier one)."""
        return self.store.wall_floor

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
