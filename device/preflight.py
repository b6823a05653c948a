"""Everything the daemon checks and builds before it starts, in one place.

``bedside run --check-config`` runs exactly this and throws the result away; ``bedside run``
runs it and starts what it built. So a config that ``--check-config`` accepts starts (the test
``tests/test_check_config.py`` holds that line), and one the daemon would refuse is refused
by ``--check-config`` with the same one-line error naming the key.

What is checked: the values (bed id, topic prefix, broker URL, speeds, limits: the config
sections' own ``validate``); at least one source, and no role from two sources; files that
must exist (a replayed recording, the broker password file, the TLS CA, client certificate and
key, which must also load); the models folder and every manifest in it; the delegate (loaded
once; one that cannot load is refused unless ``[models] fallback = "cpu"``); the models
chosen for the roles in use (loaded, as the core will run them);
at least one sink. A serial port that is absent is allowed: a board may be plugged in later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from device.access import read_error
from device.config import Config, ConfigError
from device.delegates import Degraded
from device.errors import UserError
from device.monitor import Monitor
from device.sinks import Sink, build_sinks
from device.sources import Source, build_sources

log = logging.getLogger("bedside.preflight")


@dataclass
class Plan:
    """What the daemon runs: its sources, its core and its sinks, all built and checked."""

    sources: list[Source]
    monitor: Monitor
    sinks: list[Sink]
    #: the configured delegate did not load and the models run on the CPU (fallback = "cpu")
    degraded: Degraded | None = None


def check_values(cfg: Config) -> None:
    """Checks of values across sections (each section checks its own when parsed)."""
    from device.sinks.mqtt import parse_broker_url

    try:
        parse_broker_url(cfg.mqtt.broker)
    except UserError as e:
        raise ConfigError(e.what, e.fix) from None
    check_tls(cfg)
    if not cfg.bed.id or any(c in cfg.bed.id for c in "/+#") or not cfg.bed.id.isprintable():
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
    for name in ("serial", "audio", "alarms", "models", "log", "state"):
        problem = getattr(cfg, name).validate()
        if problem:
            raise ConfigError(f"'{name}.{problem[0]}': {problem[1]}", "see docs/configuration.md")


def check_tls(cfg: Config) -> None:
    """TLS files: given only with ``mqtts://``, readable, and loadable (a CA that is not a
    certificate, a key that does not match its certificate, are refused now, not at the first
    connection attempt in the background)."""
    from device.sinks.mqtt import tls_context, uses_tls

    m = cfg.mqtt
    files = {"ca_file": m.ca_file, "cert_file": m.cert_file, "key_file": m.key_file}
    given = [k for k, v in files.items() if v]
    if not m.enabled:
        return
    if given and not uses_tls(m.broker):
        raise ConfigError(
            f"mqtt.{given[0]} is set but mqtt.broker = {m.broker!r} is plain TCP",
            "use mqtts://HOST:PORT for TLS (or remove the TLS files)",
        )
    if m.key_file and not m.cert_file:
        raise ConfigError(
            "mqtt.key_file is set without mqtt.cert_file", "give the client certificate too"
        )
    for key in given:
        path = files[key]
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as e:
            err = read_error(path, e, f"mqtt.{key}")
            raise ConfigError(err.what, err.fix) from None
    if uses_tls(m.broker):
        try:
            tls_context(m)
        except UserError as e:
            raise ConfigError(e.what, e.fix) from None


def check_models(cfg: Config) -> None:
    """The models folder exists and every manifest in it is sound (not only the ones the
    roles in use choose: a broken model waiting to be picked up is found now)."""
    from device.inference import check_manifest, models_dir, read_manifest

    if not cfg.models.enabled:
        return
    directory = models_dir(cfg.models)
    for path in sorted(directory.glob("*.tflite")):
        check_manifest(path, read_manifest(path))


def check_delegate(cfg: Config) -> Degraded | None:
    """The configured delegate loads; or, with ``fallback = "cpu"``, what the bed runs without.
    Tried even when no model is chosen for the roles in use: a bed configured for an
    accelerator that is not there is refused (or reported degraded) at once, not when a
    model is first picked up."""
    from device.delegates import resolve_delegate

    if not cfg.models.enabled:
        return None
    return resolve_delegate(cfg.models).degraded


def preflight(cfg: Config) -> Plan:
    """Check ``cfg`` and build what the daemon runs; a ``UserError`` names what is wrong."""
    check_values(cfg)
    check_models(cfg)
    degraded = check_delegate(cfg)
    sources = build_sources(cfg)
    fs: dict[str, float] = {}
    for s in sources:
        fs.update(s.roles)
    monitor = Monitor.for_inputs(fs, cfg)
    sinks = build_sinks(cfg)
    if not sinks:
        raise ConfigError(
            "no output configured ([mqtt] enabled = false and no [jsonl] path)",
            "enable [mqtt] or set [jsonl] path",
        )
    return Plan(sources, monitor, sinks, degraded)
