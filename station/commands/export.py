"""Convert vitals JSON lines to a FHIR R4 Bundle of vital-signs Observations (--fhir OUT.json).

Input: the JSON lines of `bedside process` (or vitals payloads captured from MQTT, one per
line, e.g. with `mosquitto_sub -t bedside/icu-3/vitals`). Alarm lines are skipped.
Output: a Bundle (type collection) holding the bed (Location), the appliance (Device) and
one Observation per quantity per --every seconds: heart rate (LOINC 8867-4) and respiratory
rate (LOINC 9279-1) in UCUM /min, category vital-signs, the interval's median value, the
interval as effectivePeriod, the device as Observation.device and the bed (or --patient) as
subject. See station/fhir.py for the mapping.

`bedside process` lines carry signal time only (t_s, seconds from the start of the
recording); give the wall-clock time of its start with --start, since charting a value at a
made-up time would be worse than not charting it. Captured MQTT payloads carry their own
'ts' and need no --start.

Examples:
  bedside process rec.csv.gz --jsonl out.jsonl
  bedside export out.jsonl --fhir bundle.json --start 2026-03-01T08:00:00Z --bed icu-3
  bedside export captured.jsonl --fhir bundle.json --every 300 --patient 12345 --validate
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from device.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("jsonl", type=Path, metavar="JSONL", help="vitals JSON lines ('-' for stdin)")
    p.add_argument(
        "--fhir", required=True, metavar="OUT.json", help="write the FHIR R4 Bundle here"
    )
    p.add_argument(
        "--start",
        metavar="ISO8601",
        help="wall-clock time of signal t = 0, e.g. 2026-03-01T08:00:00Z (needed when the "
        "lines have no 'ts'; overrides 'ts' when given)",
    )
    p.add_argument(
        "--every",
        type=int,
        default=60,
        metavar="S",
        help="one Observation per quantity per S seconds: the median (default 60; 1 = every "
        "second)",
    )
    p.add_argument("--bed", metavar="ID", help="bed id (default: the lines' 'bed')")
    p.add_argument("--device", metavar="ID", help="the appliance's id (default: bedside-<bed>)")
    p.add_argument(
        "--patient", metavar="ID", help="subject Patient/<ID> instead of the bed's Location"
    )
    p.add_argument(
        "--validate",
        action="store_true",
        help="validate the Bundle with the fhir.resources package (FHIR R4B models) first",
    )


def read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})", "give a JSON-lines file") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise UserError(
                f"{path}:{n}: not JSON", "give the JSON lines of 'bedside process'"
            ) from None
        if isinstance(rec, dict):
            out.append(rec)
    return out


def validate(bundle: dict[str, Any]) -> None:
    try:
        from fhir.resources.R4B.bundle import Bundle
    except ImportError:
        raise UserError(
            "--validate needs the fhir.resources package", "pip install 'bedside-edge[station]'"
        ) from None
    from pydantic import ValidationError

    try:
        Bundle.model_validate(bundle)
    except ValidationError as e:
        raise UserError(f"the Bundle is not valid FHIR: {e}") from None


def run(args: argparse.Namespace) -> int:
    from device import __version__
    from station.fhir import NoTime, build_bundle, parse_iso, seconds_from_records

    if args.every < 1:
        raise UserError(f"--every {args.every} must be >= 1", "e.g. --every 60")
    start: datetime | None = None
    if args.start:
        try:
            start = parse_iso(args.start)
        except ValueError:
            raise UserError(
                f"--start {args.start!r} is not an ISO 8601 time", "e.g. 2026-03-01T08:00:00Z"
            ) from None
    records = read_lines(args.jsonl)
    try:
        seconds = seconds_from_records(records, start)
    except NoTime:
        raise UserError(
            f"{args.jsonl}: the lines carry signal time only (no 'ts')",
            "give --start, the wall-clock time the recording began (e.g. 2026-03-01T08:00:00Z)",
        ) from None
    if not seconds:
        raise UserError(
            f"{args.jsonl}: no vitals lines", "give the JSON lines of 'bedside process'"
        )
    bed = args.bed or next((str(r["bed"]) for r in records if r.get("bed")), None)
    if not bed:
        raise UserError(f"{args.jsonl}: the lines do not name the bed", "give --bed ID")
    bundle = build_bundle(
        seconds,
        bed=bed,
        device_id=args.device or f"bedside-{bed}",
        every_s=args.every,
        patient=args.patient,
        device_version=__version__,
    )
    if args.validate:
        validate(bundle)
    n_obs = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    text = json.dumps(bundle, indent=1) + "\n"
    if args.fhir == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(args.fhir).write_text(text, encoding="utf-8")
        except OSError as e:
            raise UserError(f"{args.fhir}: cannot write ({e.strerror})") from None
        print(
            f"bedside export: {n_obs} Observations ({len(seconds)} s of vitals, one per "
            f"{args.every} s) for bed {bed} -> {args.fhir}",
            file=sys.stderr,
        )
    return 0
