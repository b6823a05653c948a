"""Vitals as a FHIR R4 Bundle of vital-signs Observations, for charting systems.

Plain JSON building, no FHIR library needed (``fhir.resources`` validates the result in the
tests and with ``bedside export --validate``). One Observation per quantity per interval
(``every_s``; a chart keeps one value a minute or so, not one a second): the median of that
interval's per-second estimates, with the interval as ``effectivePeriod``.

- ``code``: LOINC 8867-4 *Heart rate*, 9279-1 *Respiratory rate*; the FHIR vital-signs
  profiles ``heartrate`` and ``resprate`` are declared in ``meta.profile``.
- ``category``: ``vital-signs``; ``valueQuantity`` in UCUM ``/min``.
- ``method``: the sensor the value came from (ECG, pulse oximeter, impedance, breath sounds)
  and the estimator; a mixed interval lists each.
- ``device``: the appliance (a Device resource in the Bundle). R4's ``Observation.performer``
  cannot be a Device (Practitioner, Patient, Organization... only), so the device goes where
  R4 puts the instrument: ``Observation.device``.
- ``subject``: the bed, a Location resource in the Bundle (``physicalType`` bd = bed), which
  R4 allows as an Observation subject; or ``Patient/<id>`` when a patient id is given
  (the vital-signs profiles expect a Patient). The Device names the bed as its location.

Resources refer to each other by ``urn:uuid:`` full URLs, stable for the same input
(uuid5 of bed, device and times), so exporting the same file twice gives the same resources
(only the Bundle's ``timestamp``, when it was assembled, differs).
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from device.compat import UTC

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
PHYSICAL_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/location-physical-type"
DEVICE_ID_SYSTEM = "urn:bedside-edge:device"
NAMESPACE = uuid.UUID("6f1c3d52-5a7e-4c1b-9a63-2f8e0f3b7d10")  # this project's uuid5 namespace

#: quantity -> (LOINC code, display, vital-signs profile, decimals)
QUANTITIES = {
    "hr": ("8867-4", "Heart rate", "http://hl7.org/fhir/StructureDefinition/heartrate", 0),
    "rr": ("9279-1", "Respiratory rate", "http://hl7.org/fhir/StructureDefinition/resprate", 1),
}
SOURCE_TEXT = {
    "ecg": "ECG",
    "ppg": "pulse oximeter (photoplethysmogram)",
    "resp": "thoracic impedance",
    "audio": "breath sounds",
}


class NoTime(ValueError):
    """The records carry no wall-clock time and none was given."""


@dataclass(frozen=True)
class Second:
    end: datetime  # wall-clock end of the second the values describe
    values: dict[str, tuple[float, str, str]]  # quantity -> (value, source, estimator)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(s: str) -> datetime:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def seconds_from_records(records: Iterable[dict[str, Any]], start: datetime | None) -> list[Second]:
    """Vitals records (``bedside process`` lines or MQTT vitals payloads) -> timed seconds.
    With ``start`` (the wall time of signal t = 0) a second ends at ``start + t_s``; without,
    at the record's own ``ts``."""
    out = []
    for r in records:
        if r.get("type", "vitals") != "vitals" or "t_s" not in r:
            continue
        if start is not None:
            end = start + timedelta(seconds=float(r["t_s"]))
        elif isinstance(r.get("ts"), str):
            end = parse_iso(r["ts"])
        else:
            raise NoTime("the vitals carry no wall-clock time ('ts')")
        values = {}
        for q in QUANTITIES:
            v = r.get(f"{q}_bpm")
            if isinstance(v, int | float) and math.isfinite(v):
                values[q] = (float(v), str(r.get(f"{q}_source")), str(r.get(f"{q}_model")))
        out.append(Second(end, values))
    out.sort(key=lambda s: s.end)
    return out


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, '|'.join(parts))}"


def _method(used: list[tuple[str, str]]) -> dict[str, Any]:
    kinds = sorted(set(used))
    text = "; ".join(
        f"{SOURCE_TEXT.get(src, src)}, {'signal processing' if est == 'dsp' else f'model {est}'}"
        for src, est in kinds
    )
    return {"text": f"bedside-edge estimate from {text}"}


def build_bundle(
    seconds: list[Second],
    bed: str,
    device_id: str,
    every_s: int = 60,
    patient: str | None = None,
    device_version: str | None = None,
    assembled: datetime | None = None,
) -> dict[str, Any]:
    """The Bundle (type ``collection``) as a JSON-ready dict."""
    if every_s < 1:
        raise ValueError("every_s must be >= 1")
    location_url = _urn("location", bed)
    device_url = _urn("device", device_id)
    location = {
        "resourceType": "Location",
        "identifier": [{"system": "urn:bedside-edge:bed", "value": bed}],
        "status": "active",
        "name": bed,
        "mode": "instance",
        "physicalType": {
            "coding": [{"system": PHYSICAL_TYPE_SYSTEM, "code": "bd", "display": "Bed"}]
        },
    }
    device: dict[str, Any] = {
        "resourceType": "Device",
        "identifier": [{"system": DEVICE_ID_SYSTEM, "value": device_id}],
        "status": "active",
        "manufacturer": "bedside-edge (open source)",
        "deviceName": [{"name": device_id, "type": "user-friendly-name"}],
        "location": {"reference": location_url, "display": f"bed {bed}"},
    }
    if device_version:
        device["version"] = [{"value": device_version}]
    subject = (
        {"reference": f"Patient/{patient}"}
        if patient
        else {"reference": location_url, "display": f"bed {bed}"}
    )
    entries: list[dict[str, Any]] = [
        {"fullUrl": location_url, "resource": location},
        {"fullUrl": device_url, "resource": device},
    ]
    if seconds:
        # intervals of every_s seconds from the first second's start
        t0 = seconds[0].end - timedelta(seconds=1)
        groups: dict[int, list[Second]] = {}
        for s in seconds:
            offset = (s.end - t0).total_seconds()
            groups.setdefault(max(0, math.ceil(offset / every_s - 1e-9) - 1), []).append(s)
        last_end = seconds[-1].end
        for k in sorted(groups):
            begin = t0 + timedelta(seconds=k * every_s)
            end = min(t0 + timedelta(seconds=(k + 1) * every_s), last_end)
            for q, (loinc, display, profile, decimals) in QUANTITIES.items():
                vals = [s.values[q] for s in groups[k] if q in s.values]
                if not vals:
                    continue  # no estimate in the interval: nothing to chart
                value = round(statistics.median(v for v, _, _ in vals), decimals)
                url = _urn("observation", bed, device_id, q, iso(begin), iso(end))
                obs = {
                    "resourceType": "Observation",
                    "meta": {"profile": [profile]},
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": CATEGORY_SYSTEM,
                                    "code": "vital-signs",
                                    "display": "Vital Signs",
                                }
                            ],
                            "text": "Vital Signs",
                        }
                    ],
                    "code": {
                        "coding": [{"system": LOINC, "code": loinc, "display": display}],
                        "text": display,
                    },
                    "subject": subject,
                    "effectivePeriod": {"start": iso(begin), "end": iso(end)},
                    "valueQuantity": {
                        "value": int(value) if decimals == 0 else value,
                        "unit": "/min",
                        "system": UCUM,
                        "code": "/min",
                    },
                    "method": _method([(src, est) for _, src, est in vals]),
                    "device": {"reference": device_url, "display": device_id},
                    "note": [
                        {
                            "text": f"median of {len(vals)} per-second estimates "
                            f"over {(end - begin).total_seconds():g} s"
                        }
                    ],
                }
                entries.append({"fullUrl": url, "resource": obs})
    span = f"{iso(seconds[0].end)}|{iso(seconds[-1].end)}" if seconds else "empty"
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(NAMESPACE, f"bundle|{bed}|{device_id}|{span}|{every_s}")),
        "type": "collection",
        "timestamp": iso(assembled or datetime.now(UTC)),
        "entry": entries,
    }
