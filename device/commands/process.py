"""Run the streaming core over a recording as fast as the CPU allows and write JSON lines.

Each second of signal time gives one line:

  {"type": "vitals", "t_s": 12.0, "hr_bpm": 72.0, "rr_bpm": 14.2, "hr_source": "ppg", ...}

followed by alarm events (``"type": "alarm"``) as they happen. This is the same core the
daemon runs, so a recording processed here gives what the ward would have seen.

Examples:
  bedside process bidmc_01_Signals.csv.gz --jsonl out.jsonl
  bedside process bidmc_01_Signals.csv.gz --jsonl - --use ppg     # as if only a pulse oximeter
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO

from device.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="recording: BIDMC-format .csv/.csv.gz, or .wav")
    p.add_argument(
        "--jsonl", required=True, metavar="OUT", help="where to write JSON lines ('-' for stdout)"
    )
    p.add_argument(
        "--use",
        metavar="ROLES",
        help="comma list of roles the pipeline may see (ecg,ppg,resp,audio); others are hidden "
        "as if the device lacked those sensors. Default: every role the recording has",
    )
    p.add_argument(
        "--config", metavar="FILE", help="TOML config (limits, estimators, column roles)"
    )
    p.add_argument(
        "--fs",
        type=float,
        metavar="HZ",
        help="sample rate, for CSV files without a 'Time [s]' column",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=1000,
        metavar="N",
        help="samples fed to the core at a time (the output does not depend on it; default 1000)",
    )


def run(args: argparse.Namespace) -> int:
    from device.config import load_config
    from device.offline import process_recording
    from device.recording import describe_gaps, read_recording

    cfg = load_config(args.config)
    rec = read_recording(
        args.input, fs_hz=args.fs or cfg.recording.fs_hz, role_map=cfg.recording.roles or None
    )
    if args.use:
        rec = rec.restricted([r.strip() for r in args.use.split(",") if r.strip()])
    for line in describe_gaps(rec):
        print(f"bedside process: warning: {line}", file=sys.stderr)
    out: IO[str]
    if args.jsonl == "-":
        out = sys.stdout
    else:
        try:
            out = open(args.jsonl, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise UserError(
                f"{args.jsonl}: cannot write ({e.strerror})", "choose a writable path"
            ) from None
    try:
        for msg in process_recording(rec, cfg, chunk=args.chunk):
            out.write(json.dumps(msg.to_record(), separators=(",", ":")) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
