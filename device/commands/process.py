"""Run the streaming core over a recording as fast as the CPU allows and write JSON lines.

Each second of signal time gives one line:

  {"type": "vitals", "t_s": 12.0, "hr_bpm": 72.0, "rr_bpm": 14.2, "hr_source": "ppg", ...}

followed by alarm events (``"type": "alarm"``) as they happen. This is the same core the
daemon runs, so a recording processed here gives what the ward would have seen.

With ``--beats``, each beat the core detected is a line too, once it is final (its class
needs a beat or two after it), before the second it became final in:

  {"type": "beat", "t_s": 12.345, "role": "ecg", "lead": "MLII", "class": "N", "quality": 0.93,
   "leads": ["MLII", "V1"]}

``t_s`` is the R peak (ECG; one line per heartbeat however many leads saw it) or the pulse
upstroke (a PPG or ABP pulse: role ppg or abp, class Q) in signal seconds.

Examples:
  bedside process bidmc_01_Signals.csv.gz --jsonl out.jsonl
  bedside process bidmc_01_Signals.csv.gz --jsonl - --use ppg     # as if only a pulse oximeter
  bedside process 208.hea --jsonl beats.jsonl --beats             # a WFDB record (MIT-BIH)
"""

from __future__ import annotations

import argparse
import sys

from device.beats.beat import Beat
from device.messages import Vitals


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input",
        help="recording: BIDMC-format .csv/.csv.gz, .wav, or a WFDB record's .hea "
        "(formats 16, 212, 516 and .mat; needs the wfdb extra)",
    )
    p.add_argument(
        "--jsonl", required=True, metavar="OUT", help="where to write JSON lines ('-' for stdout)"
    )
    p.add_argument(
        "--use",
        metavar="ROLES",
        help="comma list of roles the pipeline may see (ecg,ppg,abp,resp,audio; one ECG lead "
        "as ecg:LEAD); others are hidden as if the device lacked those sensors. Default: every "
        "role the recording has",
    )
    p.add_argument(
        "--beats",
        action="store_true",
        help="also write one line per detected beat (time, role, lead, AAMI class, quality)",
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
    n_vitals = n_hr = n_rr = n_alarms = n_beats = 0
    used: dict[str, set[str]] = {"hr": set(), "rr": set()}
    try:
        for msg in process_recording(rec, cfg, chunk=args.chunk, beats=args.beats):
            sink.send(msg, 0.0)
            if isinstance(msg, Beat):
                n_beats += 1
            elif isinstance(msg, Vitals):
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
        + (f"{n_beats} beats, " if args.beats else "")
        + f"{took:.1f} s ({rec.duration_s / max(took, 1e-9):.0f}x real time)",
        file=sys.stderr,
    )
    return 0


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / total:.0f} %" if total else "0 %"
