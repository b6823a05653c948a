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
import sys

from device.messages import Vitals


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
    from device.commands.run import add_model_flags

    add_model_flags(p)


def run(args: argparse.Namespace) -> int:
    import time

    from device.config import JsonlConfig, load_config
    from device.offline import process_recording
    from device.recording import describe_gaps, read_recording
    from device.sinks.jsonl import JsonlSink

    t0 = time.monotonic()
    from device.commands.run import apply_model_flags

    cfg = apply_model_flags(load_config(args.config), args)
    rec = read_recording(
        args.input, fs_hz=args.fs or cfg.recording.fs_hz, role_map=cfg.recording.roles or None
    )
    if args.use:
        rec = rec.restricted([r.strip() for r in args.use.split(",") if r.strip()])
    for line in describe_gaps(rec):
        print(f"bedside process: warning: {line}", file=sys.stderr)
    sink = JsonlSink(JsonlConfig(path=args.jsonl, append=False))
    sink.start()
    n_vitals = n_hr = n_rr = n_alarms = 0
    used: dict[str, set[str]] = {"hr": set(), "rr": set()}
    try:
        for msg in process_recording(rec, cfg, chunk=args.chunk):
            sink.send(msg, 0.0)
            if isinstance(msg, Vitals):
                n_vitals += 1
                n_hr += msg.hr_bpm is not None
                n_rr += msg.rr_bpm is not None
                for q, src, model in (
                    ("hr", msg.hr_source, msg.hr_model),
                    ("rr", msg.rr_source, msg.rr_model),
                ):
                    if src is not None:
                        used[q].add(f"{src}/{model}")
            else:
                n_alarms += 1
    finally:
        sink.stop()
    took = time.monotonic() - t0
    print(
        f"bedside process: {rec.duration_s:.0f} s of {', '.join(sorted(rec.roles))} -> "
        f"{n_vitals} vitals (HR in {_share(n_hr, n_vitals)}, from "
        f"{', '.join(sorted(used['hr'])) or '-'}; RR in {_share(n_rr, n_vitals)}, from "
        f"{', '.join(sorted(used['rr'])) or '-'}), {n_alarms} alarm events, "
        f"{took:.1f} s ({rec.duration_s / max(took, 1e-9):.0f}x real time)",
        file=sys.stderr,
    )
    return 0


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / total:.0f} %" if total else "0 %"
