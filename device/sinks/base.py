"""The sink interface: where the core's messages go (MQTT, a JSON-lines file, ...).

The daemon and ``bedside process`` talk only to this interface; a sink never sees the core,
and the core never calls a sink. Each sink is a module with a type key, a config section and
one entry in ``device.sinks.SINKS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from device.delegates import Degraded
from device.messages import SCHEMA_VERSION
from device.monitor import Message


@dataclass(frozen=True)
class Ack:
    """A command from the ward: acknowledge alarm ``alarm_id``."""

    alarm_id: str


#: Commands a sink may hand back to the daemon.
Command = Ack


@dataclass(frozen=True)
class Status:
    """The bed's status: what the daemon is doing, with its counters and current alarms."""

    bed: str
    started: str  # ISO 8601 UTC
    mode: str  # "live" or "replay"
    t_s: float  # signal time of the last completed second
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    gap_samples: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    queue: Mapping[str, object] = field(default_factory=dict)
    sinks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    alarms: tuple[Mapping[str, Any], ...] = ()
    estimators: Mapping[str, str] = field(default_factory=dict)  # "hr_ppg" -> "dsp"
    #: running without what was configured (a delegate that did not load, models on the CPU
    #: instead); None: as configured
    degraded: Degraded | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON body (``mqtt`` adds ``ts`` and ``state``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "bed": self.bed,
            "started": self.started,
            "mode": self.mode,
            "t_s": self.t_s,
            "estimators": dict(self.estimators),
            "sources": {k: dict(v) for k, v in self.sources.items()},
            "gap_samples": {k: dict(v) for k, v in self.gap_samples.items()},
            "queue": dict(self.queue),
            **{k: dict(v) for k, v in self.sinks.items()},
            "counters": dict(self.counters),
            "alarms": [dict(a) for a in self.alarms],
            "degraded": self.degraded.to_payload() if self.degraded is not None else None,
        }


class Sink(Protocol):
    """What the daemon needs of an output.

    Optional, looked up with ``getattr`` (the ``mqtt`` sink has them): ``faults()`` returns
    the sink's technical faults for the alarm engine (condition key -> detail, e.g.
    ``{"store_failed": "..."}``); ``wall_floor`` is the latest wall-clock ``ts`` the sink has
    stored, by this run or an earlier one (a live start keeps its alarm ids above it);
    ``connects`` counts its (re)connections (the daemon refreshes the status after each).
    """

    key: str  # the registry key, e.g. "mqtt"
    #: works in a thread of its own (a network client): then the daemon's watchdog watches
    #: it, and it calls ``heartbeat`` from that thread whenever it makes progress
    threaded: bool
    heartbeat: Callable[[], None] | None

    @property
    def tried(self) -> bool:
        """Its first attempt to reach its destination is over (done or failed)."""

    def start(self) -> None:
        """Open the output (never blocks on a missing broker)."""

    def send(self, msg: Message, ts: float) -> None:
        """Deliver one message; ``ts`` is its wall-clock time (Unix s)."""

    def set_status(self, status: Status) -> None:
        """New content for the bed's status."""

    def poll(self) -> list[Command]:
        """Housekeeping from the daemon's loop; returns the commands received since."""

    def counters(self) -> dict[str, Any]:
        """Counters for the status (sent, dropped, connected, ...)."""

    def stop(self, reason: str = "stopped") -> None:
        """Deliver what is pending (within a bound) and close."""
