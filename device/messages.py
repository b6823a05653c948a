"""Messages the core emits: frozen dataclasses with ``to_record`` (JSON lines) and
``to_payload`` (MQTT, with schema version, bed and wall-clock timestamp).

Measurements are named with their IEEE 11073-10101 (MDC) terms so consumers on the ward can
map them to their own systems without guessing.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from device.compat import UTC
from device.roles import EstimateKey, Role

SCHEMA_VERSION = 1

#: IEEE 11073-10101 nomenclature for what each source measures.
MDC_TERMS: dict[tuple[str, str], str] = {
    ("hr", "ecg"): "MDC_ECG_HEART_RATE",
    ("hr", "ppg"): "MDC_PULS_OXIM_PULS_RATE",
    ("hr", "abp"): "MDC_PULS_RATE",
    ("hr", "fused"): "MDC_PULS_RATE",
    ("hr", "audio"): "MDC_PULS_RATE",
    ("rr", "resp"): "MDC_TTHOR_RESP_RATE",
    ("rr", "ppg"): "MDC_RESP_RATE",
    ("rr", "audio"): "MDC_RESP_RATE",
    ("rr", "fused"): "MDC_RESP_RATE",
}
MDC_UNITS = {"hr": "MDC_DIM_BEAT_PER_MIN", "rr": "MDC_DIM_RESP_PER_MIN"}


def iso_utc(ts: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-23T12:00:00.000Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass(frozen=True)
class Vitals:
    """The vitals for one second of signal time."""

    kind: typing.ClassVar[str] = "vitals"  # MQTT topic leaf: <prefix>/<bed>/vitals
    t_s: float
    hr_bpm: float | None
    rr_bpm: float | None
    hr_source: Role | None
    rr_source: Role | None
    hr_model: str | None
    rr_model: str | None
    sqi: Mapping[EstimateKey, float] = field(default_factory=dict)  # quality of each estimate

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "vitals",
            "t_s": round(self.t_s, 3),
            "hr_bpm": _r(self.hr_bpm),
            "rr_bpm": _r(self.rr_bpm),
            "hr_source": self.hr_source,
            "rr_source": self.rr_source,
            "hr_model": self.hr_model,
            "rr_model": self.rr_model,
            "sqi": {str(k): round(v, 3) for k, v in sorted(self.sqi.items())},
        }

    def to_payload(self, bed: str, ts: float) -> dict[str, Any]:
        rec = self.to_record()
        measurements = []
        for q, unit_field in (("hr", "hr_bpm"), ("rr", "rr_bpm")):
            src = rec[f"{q}_source"]
            if src is None:
                continue
            measurements.append(
                {
                    "mdc": MDC_TERMS.get(
                        (q, src), "MDC_PULS_RATE" if q == "hr" else "MDC_RESP_RATE"
                    ),
                    "value": rec[unit_field],
                    "unit": MDC_UNITS[q],
                    "source": src,
                    "model": rec[f"{q}_model"],
                }
            )
        return {
            "schema_version": SCHEMA_VERSION,
            "bed": bed,
            "ts": iso_utc(ts),
            **rec,
            "measurements": measurements,
        }
