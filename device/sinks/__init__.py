"""The sink registry: a type key -> the class that implements it, imported only when used.

``mqtt`` publishes to a broker (``[mqtt]``, on unless ``enabled = false``); ``jsonl`` writes a
local JSON-lines record (``[jsonl] path``). Adding a sink is a module with a class that
implements ``base.Sink``, a config section, and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from device.config import Config
from device.sinks.base import Ack, Command, Sink, Status

__all__ = ["SINKS", "Ack", "Command", "Sink", "Status", "build_sinks", "register"]


def _mqtt(cfg: Config) -> Sink | None:
    if not cfg.mqtt.enabled:
        return None
    from device.sinks.mqtt import MqttSink

    return MqttSink(cfg.mqtt, cfg.bed.id, cfg.state)


def _jsonl(cfg: Config) -> Sink | None:
    if not cfg.jsonl.path:
        return None
    from device.sinks.jsonl import JsonlSink

    return JsonlSink(cfg.jsonl)


#: sink key -> a builder that returns the sink when the config puts it in use, else None
SINKS: dict[str, Callable[[Config], Sink | None]] = {"mqtt": _mqtt, "jsonl": _jsonl}


def register(key: str, build: Callable[[Config], Sink | None]) -> None:
    """Add a sink type (e.g. from a plug-in module)."""
    SINKS[key] = build


def build_sinks(cfg: Config) -> list[Sink]:
    """Every sink ``cfg`` puts in use, in registry order."""
    return [s for build in SINKS.values() if (s := build(cfg)) is not None]
