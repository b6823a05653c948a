"""MIT-BIH Arrhythmia Database (the shared DS1 records): QRS detection and ventricular ectopic
beat (VEB) classification, ANSI/AAMI EC57 gross statistics from 5 min on, 150 ms match window.

    python bench/mitdb.py [--data ../shared/data/mitdb] [--cinc ../shared/data/cinc2015]
                          [--epochs 40] [--out bench/results/mitdb.json]

Every record goes through what the appliance does (``lab.ec57.read_record``: each lead through
the device's resampler to 125 Hz; ``lab.beat_detect``: main's streaming QRS detector on every
lead and the beat stream's lead fusion, one second at a time; the streaming ``BeatClassifier``
fed the samples and each beat when the stream would pass it on). Reported:

- ``qrs``: the detector's QRS Se and +P (``score_qrs``), pooled and per record;
- ``veb``/``sveb``: the classifier's VEB and SVEB Se/+P on the detected beats, cross-validated
  leaving one patient out (201, here, and the held-back 202 are one patient): the network
  (``convert.beats``) fitted on the other 21 records each time, beside the signal-processing
  rules (``device.beats.model.RuleModel``, nothing fitted) on the same beats; and the same on
  the reference beat times (the classifier alone, without detection errors);
- ``paced``: what the shipped classifier says on the paced beats of 102, 104, 107 and 217
  (excluded from the EC57 statistics);
- ``cost``: CPU time per classified beat of the shipped classifier (push + add_beat +
  classified, the features and the model), over every DS1 record;
- ``cinc2015`` (when the folder is there): on the VT alarms, the longest run of consecutive V
  beats at > 100 bpm in the 10 s before the alarm (data up to 300 s only), against the label.

The shipped network was fitted on all of these records: figures for it on DS1 would not be
held out, so none are given; the cross-validated ones stand for it. DS2 is held back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convert import beats as B  # noqa: E402
from device.beats.beat import BeatClass  # noqa: E402
from lab import machine  # noqa: E402
from lab.ec57 import DS1, PACED, Confusion, Record, Reference, read_record  # noqa: E402
from lab.ec57 import score_detections as score_qrs  # noqa: E402

#: ECG lead names a CinC 2015 record may carry
ECG_LEADS = {"I", "II", "III", "AVR", "AVL", "AVF", "V", "V1", "V2", "V3", "V4", "V5", "V6",
             "MCL", "MCL1", "MLII"}  # fmt: skip
VT_RUN = 5
VT_RATE_BPM = 100.0


def shared(name: str) -> Path | None:
    env = os.environ.get("BEDSIDE_SHARED_DATA")
    for cand in (
        Path(env) if env else None,
        ROOT.parent / "shared/data",
        ROOT.parents[1] / "shared/data",
    ):
        if cand is not None and (cand / name).is_dir():
            return cand / name
    return None


def _round(d: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (None if v is None else round(v, 2)) for k, v in d.items()}


def qrs_section(data: Path) -> dict[str, Any]:
    from lab.beat_detect import detect_beats

    pooled = Confusion()
    per: dict[str, dict[str, Any]] = {}
    for r in DS1:
        rec = read_record(data / f"{r}.hea")
        c = score_qrs(rec.reference, np.array([b.t_s for b in detect_beats(rec)]))
        pooled += c
        st = c.statistics()
        per[r] = {
            "se": st["qrs_se"],
            "pp": st["qrs_pp"],
            "tp": c.qrs_tp,
            "fn": c.qrs_fn,
            "fp": c.qrs_fp,
        }
        print(f"  qrs {r}: Se {st['qrs_se']} +P {st['qrs_pp']}", file=sys.stderr, flush=True)
    st = pooled.statistics()
    return {"se": st["qrs_se"], "pp": st["qrs_pp"], "tp": pooled.qrs_tp, "fn": pooled.qrs_fn,
            "fp": pooled.qrs_fp, "per_record": per}  # fmt: skip


def cost_section(data: Path) -> dict[str, Any]:
    """CPU per beat of the shipped classifier, on reference beat times (the detector's own cost
    is not the classifier's)."""
    from lab.beat_replay import replay

    cpu = 0.0
    n = 0
    per = {}
    for r in DS1:
        rec = read_record(data / f"{r}.hea")
        t0 = time.process_time()
        out = replay(rec, rec.reference.t_s)
        dt = time.process_time() - t0
        cpu += dt
        n += len(out)
        per[r] = round(1e6 * dt / max(1, len(out)), 1)
    return {
        "us_per_beat": round(1e6 * cpu / max(1, n), 1),
        "beats": n,
        "per_record_us": per,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "what": "push + add_beat + classified per beat, 2 leads at 125 Hz, shipped model",
    }


def paced_section(data: Path, cache: Path) -> dict[str, Any]:
    from device.beats.model import default_model

    model = default_model()
    out: dict[str, dict[str, Any]] = {}
    for r in PACED:
        tab = B.record_table(data / f"{r}.hea", "reference", cache)
        pred = B.predict(model, tab.x)
        paced = tab.label == "Q"
        counts = {c: int((pred[paced] == c).sum()) for c in B.CLASSES}
        out[r] = {"paced_beats": int(paced.sum()), "called": counts}
    tot = {c: sum(v["called"][c] for v in out.values()) for c in B.CLASSES}
    return {"per_record": out, "called": tot, "model": getattr(model, "name", "")}


def read_cinc(path: Path, until_s: float = 300.0) -> Record:
    """A CinC 2015 record's ECG leads up to ``until_s``, at the cardiac rate, no reference."""
    import wfdb

    from device.dsp.resample import Resampler
    from device.roles import CARDIAC_FS_HZ

    rec = wfdb.rdrecord(str(path.with_suffix("")))
    n = int(round(until_s * rec.fs))
    leads = {}
    for i, name in enumerate(rec.sig_name):
        if str(name).upper() in ECG_LEADS:
            x = np.asarray(rec.p_signal[:n, i], dtype=np.float64)
            leads[str(name)] = Resampler(float(rec.fs), CARDIAC_FS_HZ)(x)
    empty = Reference(np.zeros(0), np.zeros(0, dtype="<U1"), np.zeros(0, dtype="<U1"))
    return Record(path.stem, CARDIAC_FS_HZ, leads, empty, float(rec.fs))


def longest_vt_run(t_s: np.ndarray, classes: list[str], lo: float, hi: float) -> int:
    """The longest run of consecutive V beats, each interval within the run faster than
    ``VT_RATE_BPM``, that has a beat in [lo, hi]."""
    best = run = 0
    for i, c in enumerate(classes):
        fast = i > 0 and t_s[i] - t_s[i - 1] < 60.0 / VT_RATE_BPM
        run = (run + 1 if run > 0 and fast else 1) if c == "V" else 0
        if run and lo <= t_s[i] <= hi:
            best = max(best, run)
    return best


def cinc_section(folder: Path) -> dict[str, Any]:
    from lab.beat_detect import detect_beats
    from lab.beat_replay import replay

    labels = {}
    for line in (folder / "ALARMS").read_text().splitlines():
        parts = line.strip().split(",")
        if len(parts) == 3 and parts[1] == "Ventricular_Tachycardia":
            labels[parts[0]] = parts[2] == "1"
    per: dict[str, dict[str, Any]] = {}
    for name, true in sorted(labels.items()):
        rec = read_cinc(folder / f"{name}.hea")
        if not rec.leads:
            per[name] = {"true": true, "longest_v_run": None}
            continue
        det = detect_beats(rec)
        out = replay(
            rec,
            [b.t_s for b in det],
            arrival_s=[b.arrival_s for b in det],
            beat_leads=[b.leads for b in det],
        )
        t = np.array([b.t_s for b in out])
        cls = [b.beat_class.value for b in out]
        run = longest_vt_run(t, cls, 290.0, 300.0)
        v10 = sum(1 for b in out if 290.0 <= b.t_s <= 300.0 and b.beat_class == BeatClass.V)
        per[name] = {"true": true, "longest_v_run": run, "v_beats_last_10s": v10}
        print(f"  cinc {name}: true={true} run={run}", file=sys.stderr, flush=True)
    scored = [v for v in per.values() if v["longest_v_run"] is not None]
    tp = sum(1 for v in scored if v["true"] and v["longest_v_run"] >= VT_RUN)
    fn = sum(1 for v in scored if v["true"] and v["longest_v_run"] < VT_RUN)
    fp = sum(1 for v in scored if not v["true"] and v["longest_v_run"] >= VT_RUN)
    tn = sum(1 for v in scored if not v["true"] and v["longest_v_run"] < VT_RUN)
    return {
        "rule": f">= {VT_RUN} consecutive V beats at > {VT_RATE_BPM:.0f} bpm with a beat in "
        "290-300 s, data up to 300 s",
        "records": len(per), "true_alarms": sum(v["true"] for v in per.values()),
        "tp": tp, "fn": fn, "fp": fp, "tn": tn,
        "sensitivity": round(100 * tp / (tp + fn), 1) if tp + fn else None,
        "specificity": round(100 * tn / (tn + fp), 1) if tn + fp else None,
        "per_record": per,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="the MIT-BIH folder")
    ap.add_argument("--cinc", type=Path, default=None, help="the CinC 2015 folder")
    ap.add_argument("--no-cinc", action="store_true")
    ap.add_argument("--cache", type=Path, default=ROOT / "build" / "beats")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mitdb.json")
    args = ap.parse_args(argv)
    data = args.data or shared("mitdb")
    if data is None:
        print("no ../shared/data/mitdb: pass --data", file=sys.stderr)
        return 2
    t0 = time.time()
    print("QRS detection:", file=sys.stderr)
    qrs = qrs_section(data)
    print("classification, leave one patient out:", file=sys.stderr)
    detected = B.load_tables(data, list(DS1), "main", args.cache)
    reference = B.load_tables(data, list(DS1), "reference", args.cache)
    cv = B.cross_validate(detected, test_tables={"reference": reference}, epochs=args.epochs)

    def section(kind: str, stat: str) -> dict[str, Any]:
        return {
            beats: {
                m: {
                    "se": cv[beats]["pooled"][m][f"{stat}_se"],
                    "pp": cv[beats]["pooled"][m][f"{stat}_pp"],
                }
                for m in ("mlp", "rules")
            }
            for beats in ("detected", "reference")
        }

    per_record = {
        r: {
            beats: {m: _round(v) for m, v in cv["per_record"][r][beats].items()}
            for beats in ("detected", "reference")
        }
        for r in cv["per_record"]
    }
    result: dict[str, Any] = {
        "bench": "mitdb",
        "machine": machine.describe(),
        "records": list(DS1),
        "scoring": "ANSI/AAMI EC57 gross statistics from 5 min on, 150 ms match window; "
        "VEB FP = N, S or extra beats called V; F and Q reference beats not counted",
        "qrs": qrs,
        "veb": section("veb", "veb"),
        "sveb": section("sveb", "sveb"),
        "confusion": {b: cv[b]["tables"] for b in ("detected", "reference")},
        "per_record": per_record,
    }
    print("paced records:", file=sys.stderr)
    result["paced"] = paced_section(data, args.cache)
    print("cost:", file=sys.stderr)
    result["cost"] = cost_section(data)
    cinc = args.cinc or shared("cinc2015")
    if cinc is not None and not args.no_cinc:
        print("CinC 2015 VT alarms:", file=sys.stderr)
        result["cinc2015_vt"] = cinc_section(cinc)
    result["wall_s"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("veb", "sveb")}, indent=1))
    print(f"QRS Se {qrs['se']} +P {qrs['pp']}; cost {result['cost']['us_per_beat']} us/beat")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
