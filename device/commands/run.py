"""The bedside daemon: read sensors, estimate HR and RR, raise alarms, publish over MQTT.

It publishes under <prefix>/<bed>/ (default prefix 'bedside'):
  vitals   QoS 0        one JSON message per second of signal (HR, RR, sources, quality)
  alarms   QoS 1        alarm events; kept in a durable outbox until the broker has them
  status   retained     "online" with counters and current alarms; "offline" on stop,
                        and by the broker's last will if the daemon dies
  cmd/ack  subscribed   {"id": "<alarm id>"} acknowledges an alarm
See docs/mqtt.md. A broker that is down at start-up is retried in the background.

Flags override the config file; without a config file the flags are enough to run.
SIGTERM and SIGINT stop it cleanly (exit 0); a replay without --loop ends when it is done.

Examples:
  bedside run --replay device/data/bidmc_09_excerpt.csv.gz --speed 10 --bed icu-3
  bedside run --replay rec.csv.gz --loop --use ppg --broker mqtt://10.0.0.2:1883
  bedside run --serial /dev/ttyACM0@115200 --format openview --bed icu-3
  bedside run --serial /dev/ttyUSB0 --format text --fs 250 --broker mqtt://broker.ward:1883
  bedside run --audio "USB Audio" --audio-rate 8000 --bed ward2-7
  bedside run --config /etc/bedside/bedside.toml
  bedside run --config /etc/bedside/bedside.toml --check-config
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from types import FrameType

from device.config import Config, ConfigError, load_config
from device.errors import UserError

log = logging.getLogger("bedside.run")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (see docs/configuration.md); flags override it",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config (and flags) and exit: 0 if good, 1 naming the bad key",
    )
    g = p.add_argument_group("replay a recording as if it were live")
    g.add_argument("--replay", metavar="PATH", help="recording to play: BIDMC .csv/.csv.gz or .wav")
    g.add_argument(
        "--speed", type=float, metavar="X", help="replay speed factor (1 = real time; default 1)"
    )
    g.add_argument(
        "--loop",
        action="store_true",
        default=None,
        help="start the replay again at its end, forever",
    )
    g.add_argument(
        "--use",
        metavar="ROLES",
        help="comma list of roles to replay (ecg,ppg,resp,audio); default all",
    )
    g = p.add_argument_group("a serial sensor board")
    g.add_argument(
        "--serial",
        metavar="PATH[@BAUD]",
        help="serial port or pyserial URL, e.g. /dev/ttyACM0@115200, socket://host:port",
    )
    g.add_argument(
        "--format",
        choices=("openview", "text"),
        help="openview: HealthyPi binary packets; text: lines of numbers",
    )
    g.add_argument("--fs", type=float, metavar="HZ", help="the board's sample rate (default 125)")
    g = p.add_argument_group("an audio input (microphone, electronic stethoscope)")
    g.add_argument(
        "--audio", metavar="DEVICE", help="PortAudio device name (or part of it) or index"
    )
    g.add_argument("--audio-rate", type=float, metavar="HZ", help="capture sample rate")
    g = p.add_argument_group("MQTT")
    g.add_argument(
        "--broker", metavar="URL", help="mqtt://HOST:PORT (default mqtt://127.0.0.1:1883)"
    )
    g.add_argument("--bed", metavar="ID", help="bed identifier used in topics and alarm ids")
    g.add_argument("--prefix", metavar="P", help="topic prefix (default 'bedside')")
    g.add_argument(
        "--keepalive",
        type=int,
        metavar="S",
        help="MQTT keepalive; the broker publishes the last will 1.5 x S after losing us",
    )
    g.add_argument(
        "--outbox",
        metavar="FILE",
        help="file keeping unacknowledged alarm messages across restarts",
    )


def _section(cfg: Config, key: str) -> object:
    section = cfg.extra.get(key)
    if section is None or not dataclasses.is_dataclass(section):
        raise UserError(
            f"{key} source not available in this build",
            "use --replay, or install a complete release",
        )
    return section


def apply_flags(cfg: Config, args: argparse.Namespace) -> Config:
    """Command-line flags override the config file."""
    if args.bed:
        cfg.bed = dataclasses.replace(cfg.bed, id=args.bed)
    mqtt = {
        k: v
        for k, v in (
            ("broker", args.broker),
            ("prefix", args.prefix),
            ("keepalive_s", args.keepalive),
            ("outbox_path", args.outbox),
        )
        if v is not None
    }
    if mqtt:
        cfg.mqtt = dataclasses.replace(cfg.mqtt, **mqtt)
    replay = {
        k: v
        for k, v in (("path", args.replay), ("speed", args.speed), ("loop", args.loop))
        if v is not None
    }
    if args.use:
        replay["use"] = [r.strip() for r in args.use.split(",") if r.strip()]
    if replay:
        cfg.replay = dataclasses.replace(cfg.replay, **replay)
    if args.serial or args.format or args.fs:
        section = _section(cfg, "serial")
        changes: dict[str, object] = {}
        if args.serial:
            from device.sources.serial import parse_serial_arg

            url, baud = parse_serial_arg(args.serial)
            changes["url"] = url
            if baud is not None:
                changes["baud"] = baud
        if args.format:
            changes["format"] = args.format
        if args.fs:
            changes["fs_hz"] = float(args.fs)
        cfg.extra["serial"] = dataclasses.replace(section, **changes)  # type: ignore[type-var]
    if args.audio is not None or args.audio_rate:
        section = _section(cfg, "audio")
        changes = {}
        if args.audio is not None:
            changes["device"] = args.audio
        if args.audio_rate:
            changes["fs_hz"] = float(args.audio_rate)
        try:
            cfg.extra["audio"] = dataclasses.replace(section, **changes)  # type: ignore[type-var]
        except TypeError as e:
            raise UserError(
                f"--audio: this build's [audio] section does not take these settings ({e})",
                "configure the audio source in the config file",
            ) from None
    return cfg


def validate(cfg: Config) -> None:
    """Checks beyond the types: values the daemon cannot run with (ConfigError names the key)."""
    from device.publisher import parse_broker_url

    try:
        parse_broker_url(cfg.mqtt.broker)
    except UserError as e:
        raise ConfigError(e.what, e.fix) from None
    if not cfg.bed.id or "/" in cfg.bed.id or "+" in cfg.bed.id or "#" in cfg.bed.id:
        raise ConfigError(
            f"bed.id = {cfg.bed.id!r} cannot be an MQTT topic level",
            "use letters, digits, '-' or '_' (no '/', '+', '#')",
        )
    if not cfg.mqtt.prefix or "+" in cfg.mqtt.prefix or "#" in cfg.mqtt.prefix:
        raise ConfigError(
            f"mqtt.prefix = {cfg.mqtt.prefix!r} is not a valid topic prefix", "e.g. 'bedside'"
        )
    if cfg.mqtt.keepalive_s < 1:
        raise ConfigError(
            f"mqtt.keepalive_s = {cfg.mqtt.keepalive_s} must be at least 1", "e.g. 10"
        )
    if not cfg.replay.speed > 0:
        raise ConfigError(f"replay.speed = {cfg.replay.speed} must be > 0", "1.0 is real time")
    for key in ("serial", "audio"):
        section = cfg.extra.get(key)
        check = getattr(section, "validate", None)
        problem = check() if callable(check) else None
        if problem:
            raise ConfigError(f"'{key}.{problem[0]}': {problem[1]}", "see docs/configuration.md")
    models = cfg.extra.get("models")
    if models is not None and getattr(models, "enabled", False):
        # every manifest in the models folder is read at start-up (a broken one stops it)
        from device.inference import models_dir, shipped_models

        try:
            shipped_models(models_dir(models), getattr(models, "disable", ()))
        except UserError as e:
            raise ConfigError(e.what, e.fix) from None


def run(args: argparse.Namespace) -> int:
    if args.check_config:
        try:
            cfg = apply_flags(load_config(args.config), args)
            validate(cfg)
        except UserError as e:
            print(f"bedside run: config error: {e.message}", file=sys.stderr)
            return 1
        print(f"bedside run: {args.config or 'flags'}: configuration is valid")
        return 0
    cfg = apply_flags(load_config(args.config), args)
    validate(cfg)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run_daemon(cfg, stop)


def run_daemon(cfg: Config, stop: threading.Event) -> int:
    """Build the sources, publisher and daemon from ``cfg`` and run until stopped or done.
    ``bedside run`` and ``bedside demo`` both come through here."""
    from device.daemon import Daemon
    from device.publisher import Outbox, Publisher, outbox_path_for
    from device.sources import build_sources

    sources = build_sources(cfg)
    outbox_path = outbox_path_for(cfg.mqtt, cfg.bed.id)
    outbox = Outbox(outbox_path)
    if outbox_path is None:
        log.warning(
            "no writable outbox file (mqtt.outbox_path): unacknowledged alarms kept in memory only"
        )
    publisher = Publisher(cfg.mqtt, cfg.bed.id, outbox)
    log.info(
        "bed %s publishing to %s under %s/%s/",
        cfg.bed.id,
        cfg.mqtt.broker,
        cfg.mqtt.prefix,
        cfg.bed.id,
    )
    return Daemon(cfg, sources, publisher, stop=stop).run()
