"""Alarm performance on real recordings: false alarms per hour, times to alarm, HR response.

    python bench/alarms.py [--data ../shared/data/bidmc/bidmc_csv] [--out bench/results/alarms.json]

1. False alarms: every shared BIDMC record through the core (``bedside process``'s code path)
   with default adult limits. A physiological alarm is false when the reference (monitor ECG HR
   for hr_* and extreme_*, annotated-breath RR for rr_*, the annotated breaths for apnea) is
   inside the limit at the moment the alarm sounds; an asystole, ventricular tachycardia or
   fibrillation on these records is always false (they hold none). Technical alarms are
   counted per hour by condition.
2. Times to alarm, on recordings spliced from real ones (lab/splice.py), for several records
   with HR near 80 bpm:
   - HR step: real ECG/PPG followed by a later stretch of the same record played faster so HR
     steps to ~130 bpm; time from the step to the hr_high alarm, and HR response time (the
     displayed HR covering 90 % of the change);
   - apnea: breathing removed from the impedance for 30 s; time to the apnea alarm;
   - sensor off: PPG held flat; time to sensor_off;
   - signal lost: PPG samples missing; time to signal_lost.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.config import (
    AlarmsConfig,  # noqa: E402
    load_config,  # noqa: E402
)
from device.offline import process_recording  # noqa: E402
from device.recording import Recording, read_csv  # noqa: E402
from lab import splice  # noqa: E402
from lab.reference import load_bidmc_reference  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bidmc" / "bidmc_csv"
STEP_RECORDS = ("bidmc_09", "bidmc_10", "bidmc_22", "bidmc_47")


def run(signals: dict[str, np.ndarray], fs: float) -> list[dict[str, Any]]:
    rec = Recording("<spliced>", fs, dict(signals), {r: r for r in signals})
    return [m.to_record() for m in process_recording(rec, load_config(None))]


def first_alarm(
    records: list[dict[str, Any]], condition: str, after_s: float, role: str | None = None
) -> float | None:
    for r in records:
        if (
            r["type"] == "alarm"
            and r["condition"] == condition
            and r["state"] == "active"
            and r["t_s"] >= after_s
            and (role is None or r["role"] == role)
        ):
            return float(r["t_s"] - after_s)
    return None


def false_alarms(files: list[Path]) -> dict[str, Any]:
    lim = AlarmsConfig()
    hours = 0.0
    phys: list[dict[str, Any]] = []
    tech: dict[str, int] = {}
    for f in files:
        rec = read_csv(f)
        ref = load_bidmc_reference(f, rec.fs_hz, rec.duration_s)
        hours += rec.duration_s / 3600.0
        breaths = np.sort(np.concatenate(ref.breaths_s))
        seen: set[str] = set()
        for r in (m.to_record() for m in process_recording(rec, load_config(None))):
            # each alarm once, as it first sounds (not escalations or latch re-announcements)
            if r["type"] != "alarm" or r["state"] != "active" or r["id"] in seen:
                continue
            seen.add(r["id"])
            if r["technical"]:
                tech[r["condition"]] = tech.get(r["condition"], 0) + 1
                continue
            k = int(r["t_s"])
            c = r["condition"]
            if c in ("extreme_bradycardia", "extreme_tachycardia"):
                # the monitor's HR beyond the extreme limit: the only way such an alarm is true
                ref_v = float(ref.hr_bpm[min(k, len(ref.hr_bpm) - 1)])
                inside = (
                    ref_v >= lim.extreme_bradycardia_bpm
                    if c == "extreme_bradycardia"
                    else ref_v <= lim.extreme_tachycardia_bpm
                )
            elif c in ("asystole", "ventricular_tachycardia", "ventricular_fibrillation"):
                # the BIDMC records hold no asystole, VT or VF (the monitor's HR stays within
                # 50-129 bpm and no alarm of theirs is recorded): every one is false; the
                # reference shown is the monitor's HR
                ref_v = float(ref.hr_bpm[min(k, len(ref.hr_bpm) - 1)])
                inside = True
            elif c.startswith("hr"):
                ref_v = float(ref.hr_bpm[min(k, len(ref.hr_bpm) - 1)])
                inside = lim.hr_low_bpm <= ref_v <= lim.hr_high_bpm
            elif c.startswith("rr"):
                ref_v = float(ref.rr_bpm[min(k, len(ref.rr_bpm) - 1)])
                inside = lim.rr_low_bpm <= ref_v <= lim.rr_high_bpm
            else:  # apnea: was there really no annotated breath for the apnea delay?
                before = breaths[breaths <= k]
                ref_v = float(k - before[-1]) if len(before) else float(k)
                inside = ref_v < lim.apnea_delay_s
            phys.append(
                {
                    "record": f.name.split("_Signals")[0],
                    "t_s": r["t_s"],
                    "condition": c,
                    "value": r["value"],
                    "reference": None if np.isnan(ref_v) else round(ref_v, 1),
                    "false": bool(inside) if np.isfinite(ref_v) else None,
                }
            )
    n_false = sum(1 for p in phys if p["false"])
    return {
        "hours": round(hours, 3),
        "records": len(files),
        "physiological_alarms": phys,
        "physiological_false": n_false,
        "physiological_false_per_hour": round(n_false / hours, 3) if hours else None,
        "physiological_unscorable": sum(1 for p in phys if p["false"] is None),
        "technical_per_hour": {k: round(v / hours, 3) for k, v in sorted(tech.items())},
    }


def response_time(
    records: list[dict[str, Any]], step_s: float
) -> tuple[float | None, float, float]:
    vit = [
        (r["t_s"], r["hr_bpm"])
        for r in records
        if r["type"] == "vitals" and r["hr_bpm"] is not None
    ]
    t = np.array([a for a, _ in vit])
    h = np.array([b for _, b in vit])
    h0 = float(np.median(h[(t > step_s - 20) & (t <= step_s)]))
    h1 = float(np.median(h[t > t[-1] - 20]))
    target = h0 + 0.9 * (h1 - h0)
    after = (t > step_s) & (h >= target)
    return (float(t[after][0] - step_s) if after.any() else None), h0, h1


def scenarios(data: Path) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {
        "hr_step": [],
        "apnea": [],
        "sensor_off": [],
        "signal_lost": [],
    }
    for name in STEP_RECORDS:
        files = sorted(data.glob(f"{name}_Signals.csv*"))
        if not files:
            continue
        rec = read_csv(files[0])
        ref = load_bidmc_reference(files[0], rec.fs_hz, rec.duration_s)
        sig = rec.role_signals()
        fs = rec.fs_hz
        h_after = float(np.nanmedian(ref.hr_bpm[120:300]))
        factor = 130.0 / h_after
        for roles in (("ecg", "ppg", "resp"), ("ppg",), ("ecg",)):
            s, step = splice.hr_step(
                {r: sig[r] for r in roles}, fs, before_s=120.0, after_s=90.0, factor=factor
            )
            res = run(s, fs)
            rt, h0, h1 = response_time(res, step)
            out["hr_step"].append(
                {
                    "record": name,
                    "roles": ",".join(roles),
                    "hr_before": round(h0, 1),
                    "hr_after": round(h1, 1),
                    "time_to_alarm_s": first_alarm(res, "hr_high", step),
                    "hr_response_90_s": rt,
                }
            )
        s, start = splice.apnea(sig, fs, start_s=150.0, duration_s=30.0)
        res = run(s, fs)
        out["apnea"].append(
            {
                "record": name,
                "duration_s": 30.0,
                "time_to_alarm_s": first_alarm(res, "apnea", start),
            }
        )
        s, start = splice.flat(sig, fs, role="ppg", start_s=150.0)
        res = run(s, fs)
        out["sensor_off"].append(
            {
                "record": name,
                "role": "ppg",
                "time_to_alarm_s": first_alarm(res, "sensor_off", start, "ppg"),
            }
        )
        s, start = splice.dropout(sig, fs, role="ppg", start_s=150.0, duration_s=30.0)
        res = run(s, fs)
        out["signal_lost"].append(
            {
                "record": name,
                "role": "ppg",
                "time_to_alarm_s": first_alarm(res, "signal_lost", start, "ppg"),
            }
        )
    summary: dict[str, Any] = {}
    for k, rows in out.items():
        tta = [r["time_to_alarm_s"] for r in rows]
        summary[k] = {
            "max_time_to_alarm_s": None if None in tta or not tta else max(tta),
            "mean_time_to_alarm_s": None
            if None in tta or not tta
            else round(float(np.mean(tta)), 2),
            "missed": sum(1 for x in tta if x is None),
            "n": len(tta),
        }
    rts = [r["hr_response_90_s"] for r in out["hr_step"]]
    summary["hr_response_90"] = {
        "max_s": None if None in rts or not rts else max(rts),
        "mean_s": None if None in rts or not rts else round(float(np.mean(rts)), 2),
    }
    return {"cases": out, "summary": summary}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "alarms.json")
    ap.add_argument("--skip-false", action="store_true", help="only the spliced scenarios")
    a = ap.parse_args()
    files = sorted(a.data.glob("bidmc_*_Signals.csv*"))
    if not files:
        print(f"no BIDMC records under {a.data}", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"machine": f"{platform.machine()} Python {platform.python_version()}"}
    sc = scenarios(a.data)
    result["scenarios"] = sc
    for k, v in sc["summary"].items():
        print(f"{k}: {v}")
    for row in sc["cases"]["hr_step"]:
        print("  hr_step", row)
    if not a.skip_false:
        fa = false_alarms(files)
        result["false_alarms"] = fa
        print(
            f"false physiological alarms: {fa['physiological_false']} in {fa['hours']} h "
            f"({fa['physiological_false_per_hour']}/h); unscorable {fa['physiological_unscorable']}"
        )
        for p in fa["physiological_alarms"]:
            print("  ", p)
        print(f"technical alarms per hour: {fa['technical_per_hour']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
