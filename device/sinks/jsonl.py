"""The ``jsonl`` sink: one JSON object per line per message, as ``bedside process`` writes.

Used by ``bedside process`` (to a file or stdout) and by the daemon when ``[jsonl] path`` is
set (a local record of everything published, beside MQTT or instead of it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import IO, Any

from device.config import JsonlConfig
from device.monitor import Message
from device.sinks.base import Command, Status


class JsonlSink:
    key = "jsonl"
    threaded = False  # writes from the daemon's own loop
    heartbeat: Callable[[], None] | None = None

    @property
    def tried(self) -> bool:
        return self._out is not None

    def __init__(self, cfg: JsonlConfig) -> None:
        self.path = cfg.path
        self.append = cfg.append  # the daemon keeps one record across restarts
        self._out: IO[str] | None = None
        self.lines = 0

    def start(self) -> None:
        if self.path == "-":
            self._out = sys.stdout
            return
        try:
            self._out = open(self.path, "a" if self.append else "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            from device.access import write_error

            raise write_error(self.path, e, "jsonl.path") from None

    def send(self, msg: Message, ts: float) -> None:
        assert self._out is not None, "start() the sink first"
        self._out.write(json.dumps(msg.to_record(), separators=(",", ":")) + "\n")
        self.lines += 1

    def set_status(self, status: Status) -> None:
        """The status is not part of the record."""

    def poll(self) -> list[Command]:
        if self._out is not None:
            self._out.flush()
        return []

    def counters(self) -> dict[str, Any]:
        return {"lines": self.lines, "path": self.path}

    def stop(self, reason: str = "stopped") -> None:
        if self._out is not None and self._out is not sys.stdout:
            self._out.close()
        elif self._out is not None:
            self._out.flush()
        self._out = None
