"""The bedside daemon: read sensors, estimate HR and RR, raise alarms, publish over MQTT.

It publishes under <prefix>/<bed>/ (default prefix 'bedside'):
  vitals   QoS 1        one JSON message per second of signal (HR, RR, sources, quality)
  alarms   QoS 1        alarm events
  (both are written to a store in the state folder first, and kept there until the broker
  has them: sent after an outage or a restart, late vitals marked "historical": true)
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
  bedside run --replay rec.csv.gz --broker mqtts://broker.ward:8883 --state-dir /tmp/bed1
  bedside run --config bed.toml --delegate edgetpu --fallback cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from types import FrameType

from device import logs
from device.config import Config, load_config
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
        help="deprecated: use --state-dir (its folder becomes the state folder)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="state folder: the store of messages the broker has not yet acknowledged "
        "(default $STATE_DIRECTORY under systemd, else ~/.local/state/bedside)",
    )
    add_model_flags(p)


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """--delegate, --delegate-path, --fallback (``bedside run`` and ``bedside process``)."""
    from device.delegates import DELEGATES, FALLBACKS

    g = p.add_argument_group("models (override [models] of the config)")
    g.add_argument(
        "--delegate",
        choices=sorted(DELEGATES),
        help="where the models run: cpu, gpu (LiteRT's GPU accelerator over Vulkan, or "
        "--delegate-path) or edgetpu (needs libedgetpu.so.1)",
    )
    g.add_argument(
        "--delegate-path",
        metavar="LIB",
        help="gpu: a TFLite GPU delegate library built for the board (default: LiteRT's own "
        "GPU accelerator)",
    )
    g.add_argument(
        "--fallback",
        choices=FALLBACKS,
        help="a delegate that cannot load: fail = refuse to start (exit 2); cpu = warn, run "
        'on the CPU, report "degraded" in the status',
    )


def apply_model_flags(cfg: Config, args: argparse.Namespace) -> Config:
    models = {
        k: v
        for k, v in (
            ("delegate", getattr(args, "delegate", None)),
            ("delegate_path", getattr(args, "delegate_path", None)),
            ("fallback", getattr(args, "fallback", None)),
        )
        if v is not None
    }
    if models:
        cfg.models = dataclasses.replace(cfg.models, **models)
    return cfg


def apply_flags(cfg: Config, args: argparse.Namespace) -> Config:
    """Command-line flags override the config file."""
    apply_model_flags(cfg, args)
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
    if args.state_dir:
        cfg.state = dataclasses.replace(cfg.state, dir=args.state_dir)
    replay = {
        k: v
        for k, v in (("path", args.replay), ("speed", args.speed), ("loop", args.loop))
        if v is not None
    }
    if args.use:
        replay["use"] = [r.strip() for r in args.use.split(",") if r.strip()]
    if replay:
        cfg.replay = dataclasses.replace(cfg.replay, **replay)
    if args.serial:
        from device.sources.serial import parse_serial_arg

        url, baud = parse_serial_arg(args.serial)
        cfg.serial = dataclasses.replace(cfg.serial, url=url)
        if baud is not None:
            cfg.serial = dataclasses.replace(cfg.serial, baud=baud)
    if args.format:
        cfg.serial = dataclasses.replace(cfg.serial, format=args.format)
    if args.fs:
        cfg.serial = dataclasses.replace(cfg.serial, fs_hz=float(args.fs))
    if args.audio is not None:
        cfg.audio = dataclasses.replace(cfg.audio, device=args.audio)
    if args.audio_rate:
        cfg.audio = dataclasses.replace(cfg.audio, fs_hz=float(args.audio_rate))
    return cfg


def run(args: argparse.Namespace) -> int:
    from device.preflight import preflight

    if args.check_config:
        try:
            preflight(apply_flags(load_config(args.config), args))
        except UserError as e:
            print(f"bedside run: config error: {e.message}", file=sys.stderr)
            return 1
        print(f"bedside run: {args.config or 'flags'}: configuration is valid")
        return 0
    # a stop asked for while starting (systemd may send SIGTERM then) is a clean stop too
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cfg = apply_flags(load_config(args.config), args)
    logs.apply_config(cfg.log, getattr(args, "verbose", 0))
    return run_daemon(cfg, stop)


def run_daemon(cfg: Config, stop: threading.Event) -> int:
    """Check ``cfg``, build the sources, core and sinks, and run until stopped or done.
    ``bedside run`` and ``bedside demo`` both come through here."""
    from device.daemon import Daemon
    from device.preflight import preflight

    plan = preflight(cfg)
    log.info(
        "bed %s publishing to %s under %s/%s/",
        cfg.bed.id,
        cfg.mqtt.broker if cfg.mqtt.enabled else "(no MQTT)",
        cfg.mqtt.prefix,
        cfg.bed.id,
    )
    return Daemon(
        cfg, plan.sources, plan.sinks, stop=stop, monitor=plan.monitor, degraded=plan.degraded
    ).run()
