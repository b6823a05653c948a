"""What a station knows about the beds, built from the MQTT messages it receives.

Plain code, no I/O: ``Ward.apply(topic, payload, now_s)`` folds one message in; the terminal
watch renders it (the web page keeps the same rules in JavaScript, station/web/station.js):

- ``vitals``: the last live second is the current value; ``"historical": true`` seconds
  (store-and-forward, delivered late) are never current; a ``seq`` already seen is a repeat.
- ``alarms``: events by ``id``; ``cleared`` removes the alarm.
- ``status`` (retained): online/offline; an online status lists the bed's current alarms,
  which replace what the station had (the truth after a reconnect). Offline keeps the last
  known alarms, marked as such by the bed being offline. ``degraded`` (a bed running without
  what it was configured for, e.g. its accelerator's delegate did not load) is shown with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}
TECHNICAL = frozenset({"signal_lost", "sensor_off", "poor_signal", "inference_error"})
#: seq numbers remembered per bed to drop repeats (store-and-forward after a reconnect)
SEQ_MEMORY = 4096


@dataclass
class Bed:
    id: str
    online: bool | None = None  # None: no status received yet
    reason: str = ""
    vitals: dict[str, Any] | None = None  # the last live second
    vitals_at_s: float | None = None  # when it arrived (the caller's clock)
    last_message_at_s: float | None = None
    historical_received: int = 0
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    seqs: set[int] = field(default_factory=set)
    #: the status's ``degraded`` (e.g. {"delegate": "edgetpu", "running_on": "cpu", ...})
    degraded: dict[str, Any] | None = None

    @property
    def degraded_text(self) -> str:
        """One line for a degraded bed ('' when it runs as configured)."""
        d = self.degraded
        if not d:
            return ""
        what = d.get("delegate") or "?"
        return f"degraded: {what} unavailable, models on the {d.get('running_on') or 'cpu'}"

    def sorted_alarms(self) -> list[dict[str, Any]]:
        """Highest priority first; within one, unacknowledged first, then newest onset."""
        return sorted(
            self.alarms.values(),
            key=lambda a: (
                PRIORITY_RANK.get(str(a.get("priority")), 3),
                a.get("state") == "acknowledged",
                -float(a.get("onset_t_s") or 0.0),
                str(a.get("id")),
            ),
        )


def is_technical(alarm: dict[str, Any]) -> bool:
    return alarm.get("technical") is True or alarm.get("condition") in TECHNICAL


class Ward:
    def __init__(self, prefix: str = "bedside", bed: str | None = None) -> None:
        self.prefix = prefix.strip("/")
        self.only_bed = bed
        self.beds: dict[str, Bed] = {}

    def topics(self) -> list[str]:
        bed = self.only_bed or "+"
        return [f"{self.prefix}/{bed}/{leaf}" for leaf in ("status", "vitals", "alarms")]

    def apply(self, topic: str, payload: bytes, now_s: float) -> Bed | None:
        """Fold one message in; returns the bed it was about, or None if it was not ours."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 2 or (self.only_bed and parts[0] != self.only_bed):
            return None
        bed_id, leaf = parts
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        bed = self.beds.get(bed_id)
        if bed is None:
            bed = self.beds[bed_id] = Bed(bed_id)
        bed.last_message_at_s = now_s
        if leaf == "vitals":
            self._vitals(bed, body, now_s)
        elif leaf == "alarms":
            self._alarm(bed, body)
        elif leaf == "status":
            self._status(bed, body)
        return bed

    @staticmethod
    def _vitals(bed: Bed, v: dict[str, Any], now_s: float) -> None:
        seq = v.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            if seq in bed.seqs:
                return
            bed.seqs.add(seq)
            if len(bed.seqs) > SEQ_MEMORY:
                bed.seqs = set(sorted(bed.seqs)[-SEQ_MEMORY // 2 :])
        if v.get("historical") is True:
            bed.historical_received += 1
            return
        bed.vitals = v
        bed.vitals_at_s = now_s

    @staticmethod
    def _alarm(bed: Bed, a: dict[str, Any]) -> None:
        alarm_id = a.get("id")
        if not isinstance(alarm_id, str):
            return
        if a.get("state") == "cleared":
            bed.alarms.pop(alarm_id, None)
        else:
            bed.alarms[alarm_id] = {**bed.alarms.get(alarm_id, {}), **a}

    @staticmethod
    def _status(bed: Bed, s: dict[str, Any]) -> None:
        bed.online = s.get("state") == "online"
        bed.reason = str(s.get("reason") or s.get("mode") or "")
        if "degraded" in s or bed.online:  # a last will says nothing about it: keep
            deg = s.get("degraded")
            bed.degraded = deg if isinstance(deg, dict) and deg else None
        listed = s.get("alarms")
        if bed.online and isinstance(listed, list):
            bed.alarms = {
                a["id"]: {**bed.alarms.get(a["id"], {}), **a}
                for a in listed
                if isinstance(a, dict) and isinstance(a.get("id"), str)
                and a.get("state") != "cleared"
            }  # fmt: skip
