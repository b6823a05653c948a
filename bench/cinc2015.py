"""The life-threatening arrhythmia alarms on real ICU alarms: the PhysioNet/CinC Challenge
2015 records in ``../shared/data/cinc2015``, scored in real time.

    python bench/cinc2015.py [--data DIR] [--records a103l,v102s] [--jobs 2]
                             [--config FILE] [--out bench/results/cinc2015.json]

Each record is a bedside monitor's recording ending at (``s``) or running 30 s past (``l``)
an alarm that sounded at 300 s, labelled true or false. The appliance's core
(``device.offline.process_recording``, what ``bedside process RECORD.hea --jsonl OUT`` runs)
sees only the first 300 s: the data up to the monitor's alarm. It *raises* the alarm when a
matching condition is active at some time in the 10 s before 300 s: it sounded at or before
300 s and had not cleared or latched before 290 s. Matching conditions:

| alarm | conditions |
|---|---|
| asystole | asystole |
| bradycardia | extreme_bradycardia, asystole |
| tachycardia | extreme_tachycardia, ventricular_tachycardia |
| ventricular tachycardia | ventricular_tachycardia, ventricular_fibrillation |
| ventricular flutter/fibrillation | ventricular_fibrillation, ventricular_tachycardia |

Score = (TP + TN) / (TP + TN + FP + 5 FN) x 100, the challenge's; a monitor that sounds every
alarm scores 39 on the 750 challenge records. Also reported: the other life-threatening
alarms the appliance sounded before 280 s (onsets of any of the five conditions), per hour of
monitoring: on these records most such alarms are the appliance's own false alarms.

The conditions' thresholds are the challenge's definitions and the learned models were
trained on other databases (MIT-BIH, vfdb). What is chosen on these records is scored by
cross-validation (``--cv K``, default 5): the core runs each record once and keeps what the
alarm engine sees each second from 240 s on; for each fold, the alarm settings of a small grid
(``GRID``: the waveform scores and the pulse cross-checks) that score best on the other folds'
records are applied to the fold's own records, and the folds' outcomes are added up. The
settings chosen on all records are reported too: those are the defaults a deployment gets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cinc2015"
ALARM_AT_S = 300.0
WINDOW_S = 10.0
OTHERS_BEFORE_S = 280.0
#: What the alarm engine saw is kept from here on, for scoring other alarm settings: the
#: matching alarms are judged on 290-300 s, and every condition is judged on the moment
#: (its delays and latching need at most a few seconds of history).
KEEP_FROM_S = 240.0
#: The alarm settings chosen by cross-validation, and the values tried.
GRID: dict[str, list[Any]] = {
    "ventricular_rhythm_score": [0.5, 0.7, 0.9],
    "ventricular_fibrillation_score": [0.5, 0.7],
}

#: The challenge's alarm types (the ALARMS file's names) and the conditions that match each.
MATCHES: dict[str, tuple[str, ...]] = {
    "Asystole": ("asystole",),
    "Bradycardia": ("extreme_bradycardia", "asystole"),
    "Tachycardia": ("extreme_tachycardia", "ventricular_tachycardia"),
    "Ventricular_Tachycardia": ("ventricular_tachycardia", "ventricular_fibrillation"),
    "Ventricular_Flutter_Fib": ("ventricular_fibrillation", "ventricular_tachycardia"),
}
LIFE_THREATENING = (
    "asystole",
    "extreme_bradycardia",
    "extreme_tachycardia",
    "ventricular_tachycardia",
    "ventricular_fibrillation",
)


@dataclass(frozen=True)
class RecordResult:
    record: str
    alarm: str  # the challenge's alarm type
    true_alarm: bool
    raised: bool
    raised_by: tuple[str, ...]  # the matching conditions active in the last 10 s
    active: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    others_before_280: tuple[tuple[str, float], ...] = ()  # (condition, onset) of other alarms
    cpu_s: float = 0.0


def active_intervals(
    events: Iterable[dict[str, Any]], end_s: float
) -> dict[str, list[tuple[float, float]]]:
    """Per condition, the spans (s) its alarms sounded unlatched: from an ``active`` event that
    is not latched to the next event of that alarm that is latched, cleared or acknowledged."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    open_at: dict[str, float] = {}
    cond_of: dict[str, str] = {}
    for ev in events:
        aid, cond = ev["id"], ev["condition"]
        cond_of[aid] = cond
        sounding = ev["state"] == "active" and not ev["latched"]
        if sounding and aid not in open_at:
            open_at[aid] = float(ev["t_s"])
        elif not sounding and aid in open_at:
            spans[cond].append((open_at.pop(aid), float(ev["t_s"])))
    for aid, t0 in open_at.items():
        spans[cond_of[aid]].append((t0, end_s))
    return dict(spans)


def run_record(
    path: str, alarm: str, label: bool, config: str | None
) -> tuple[RecordResult, list[tuple[float, Any]]]:
    """The record through the core up to 300 s: its result with ``config``'s settings, and
    what the alarm engine saw each second from ``KEEP_FROM_S`` on (for other settings)."""
    from device.config import load_config
    from device.monitor import Monitor
    from device.recording import read_recording

    cfg = load_config(config)
    rec = read_recording(path).excerpt(0.0, ALARM_AT_S)
    t0 = time.process_time()
    signals = rec.role_signals()
    monitor = Monitor.for_inputs(dict.fromkeys(signals, rec.fs_hz), cfg)
    step = int(round(rec.fs_hz))
    events: list[dict[str, Any]] = []
    kept: list[tuple[float, Any]] = []
    for a in range(0, rec.n_samples, step):
        for role, x in signals.items():
            monitor.feed(role, x[a : a + step])
        for m in monitor.step():
            if getattr(m, "kind", "") == "alarm":
                events.append(m.to_record())
        last = monitor.last
        if last is not None and last.t_s >= KEEP_FROM_S and (not kept or kept[-1][0] < last.t_s):
            kept.append((last.t_s, monitor.alarm_inputs(last)))
    cpu = time.process_time() - t0
    return result_of(Path(path).stem, alarm, label, events, round(cpu, 3)), kept


def result_of(
    record: str, alarm: str, label: bool, events: list[dict[str, Any]], cpu_s: float = 0.0
) -> RecordResult:
    spans = active_intervals(events, ALARM_AT_S)
    hit = tuple(
        c
        for c in MATCHES[alarm]
        if any(a <= ALARM_AT_S and b > ALARM_AT_S - WINDOW_S for a, b in spans.get(c, []))
    )
    first: dict[str, dict[str, Any]] = {}
    for e in events:
        first.setdefault(e["id"], e)
    others = tuple(
        (e["condition"], float(e["onset_t_s"]))
        for e in first.values()
        if e["condition"] in LIFE_THREATENING and float(e["onset_t_s"]) < OTHERS_BEFORE_S
    )
    return RecordResult(
        record=record,
        alarm=alarm,
        true_alarm=label,
        raised=bool(hit),
        raised_by=hit,
        active={k: [(round(a, 1), round(b, 1)) for a, b in v] for k, v in spans.items()},
        others_before_280=others,
        cpu_s=cpu_s,
    )


def replay_alarms(kept: list[tuple[float, Any]], alarms_cfg: Any) -> list[dict[str, Any]]:
    """The alarm events the engine gives for the kept seconds with other alarm settings."""
    from device.alarms import AlarmEngine

    engine = AlarmEngine(alarms_cfg)
    out: list[dict[str, Any]] = []
    for t_s, inp in kept:
        out.extend(e.to_record() for e in engine.update(t_s, inp))
    return out


def variants() -> list[dict[str, Any]]:
    """Every combination of the ``GRID`` settings."""
    combos: list[dict[str, Any]] = [{}]
    for key, values in GRID.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def cross_validate(
    results: list[RecordResult], kept: dict[str, list[tuple[float, Any]]], folds: int
) -> dict[str, Any]:
    """Settings chosen on the other folds, applied to each fold (see the module docstring)."""
    from device.config import AlarmsConfig

    grid = variants()
    by_record = {r.record: r for r in results}
    # each record's outcome under each variant (the engine alone: cheap)
    outcome: dict[str, list[RecordResult]] = {}
    for name, r in by_record.items():
        outcome[name] = []
        for v in grid:
            events = replay_alarms(kept[name], AlarmsConfig(**v))
            outcome[name].append(result_of(name, r.alarm, r.true_alarm, events))
    # folds stratified by alarm type and label, in record-name order
    order: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for name in sorted(by_record):
        order[(by_record[name].alarm, by_record[name].true_alarm)].append(name)
    fold_of: dict[str, int] = {}
    i = 0
    for key in sorted(order):
        for name in order[key]:
            fold_of[name] = i % folds
            i += 1

    def best(names: list[str]) -> int:
        scores = [score(outcome[n][j] for n in names)["score"] or 0.0 for j in range(len(grid))]
        return max(range(len(grid)), key=lambda j: (scores[j], -j))

    tested: list[RecordResult] = []
    chosen = []
    for k in range(folds):
        train = [n for n in by_record if fold_of[n] != k]
        test = [n for n in by_record if fold_of[n] == k]
        j = best(train)
        chosen.append(grid[j])
        tested.extend(outcome[n][j] for n in test)
    j_all = best(list(by_record))
    return {
        "folds": folds,
        "grid": GRID,
        "overall": score(tested),
        "by_type": {t: score(r for r in tested if r.alarm == t) for t in MATCHES},
        "chosen_per_fold": chosen,
        "chosen_on_all_records": grid[j_all],
        "score_on_all_records_with_that_choice": score(outcome[n][j_all] for n in by_record),
    }


def score(results: Iterable[RecordResult]) -> dict[str, Any]:
    rs = list(results)
    tp = sum(r.raised and r.true_alarm for r in rs)
    tn = sum(not r.raised and not r.true_alarm for r in rs)
    fp = sum(r.raised and not r.true_alarm for r in rs)
    fn = sum(not r.raised and r.true_alarm for r in rs)
    den = tp + tn + fp + 5 * fn
    return {
        "records": len(rs),
        "true_alarms": tp + fn,
        "false_alarms": tn + fp,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tpr": round(tp / (tp + fn), 3) if tp + fn else None,
        "tnr": round(tn / (tn + fp), 3) if tn + fp else None,
        "score": round(100.0 * (tp + tn) / den, 1) if den else None,
        "score_if_all_raised": round(100.0 * (tp + fn) / (tp + fn + tn + fp), 1) if rs else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--records", default="", help="comma list of record names (default all)")
    ap.add_argument("--jobs", type=int, default=2, help="records processed in parallel")
    ap.add_argument("--config", default=None, help="TOML config for the core (default: defaults)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cinc2015.json")
    ap.add_argument("--cv", type=int, default=5, help="cross-validation folds (0: none)")
    args = ap.parse_args(argv)
    alarms_file = args.data / "ALARMS"
    if not alarms_file.is_file():
        print(f"cinc2015: {alarms_file} not found; give --data DIR (../shared/data/cinc2015)")
        return 2
    labels = {}
    for line in alarms_file.read_text().split():
        name, kind, lab = line.split(",")
        labels[name] = (kind, lab == "1")
    names = [n for n in args.records.split(",") if n] or sorted(labels)
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(run_record, str(args.data / f"{n}.hea"), *labels[n], args.config)
            for n in names
        ]
        results = []
        kept: dict[str, list[tuple[float, Any]]] = {}
        for i, fut in enumerate(futures, 1):
            r, k = fut.result()
            results.append(r)
            kept[r.record] = k
            mark = (
                "TP"
                if r.raised and r.true_alarm
                else "FP"
                if r.raised
                else "FN"
                if r.true_alarm
                else "TN"
            )
            print(
                f"[{i}/{len(names)}] {r.record} {r.alarm:24s} {mark} {','.join(r.raised_by)}",
                flush=True,
            )
    cv = cross_validate(results, kept, args.cv) if args.cv > 1 else None
    wall = time.monotonic() - t0
    by_type = {k: score(r for r in results if r.alarm == k) for k in MATCHES}
    overall = score(results)
    hours = len(results) * OTHERS_BEFORE_S / 3600.0
    others: dict[str, int] = defaultdict(int)
    for r in results:
        for cond, _t in r.others_before_280:
            others[cond] += 1
    from lab.machine import describe

    out = {
        "machine": describe(),
        "what": "CinC 2015 real time: data up to 300 s; raised = a matching condition sounding "
        "unlatched at some time in [290, 300] s",
        "config": args.config,
        "overall": overall,
        "by_type": by_type,
        "cross_validation": cv,
        "other_life_threatening_before_280s": {
            "hours": round(hours, 2),
            "alarms": dict(others),
            "per_hour": round(sum(others.values()) / hours, 2) if hours else None,
        },
        "cpu_s_per_record_mean": round(sum(r.cpu_s for r in results) / max(1, len(results)), 3),
        "wall_s": round(wall, 1),
        "records": [asdict(r) for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\n{'type':26s} {'n':>4s} {'TP':>4s} {'TN':>4s} {'FP':>4s} {'FN':>4s} {'score':>6s}")
    for k, s in [*by_type.items(), ("all", overall)]:
        print(
            f"{k:26s} {s['records']:4d} {s['tp']:4d} {s['tn']:4d} {s['fp']:4d} {s['fn']:4d}"
            f" {s['score']!s:>6s}"
        )
    if cv is not None:
        print(f"\ncross-validated ({cv['folds']} folds, settings chosen on the other folds):")
        for k, s in [*cv["by_type"].items(), ("all", cv["overall"])]:
            print(
                f"{k:26s} {s['records']:4d} {s['tp']:4d} {s['tn']:4d} {s['fp']:4d} {s['fn']:4d} "
                f"{s['score']!s:>6s}"
            )
        print(f"chosen on all records: {cv['chosen_on_all_records']}")
    print(
        f"other life-threatening alarms before 280 s: {out['other_life_threatening_before_280s']}"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
