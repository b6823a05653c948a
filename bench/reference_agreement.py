"""How well the references agree with themselves: the floor under the accuracy targets.

    python bench/reference_agreement.py [--data DIR] [--out bench/results/reference_agreement.json]

- RR: each BIDMC record has two annotators' breath marks; the reference is the mean of their
  rates (lab/reference.py). Printed: annotator 1 against annotator 2, and each against
  the mean, per subject from t = 32 s, with the scoring rule of bench/accuracy.py.
- HR: the monitor's own pulse rate (``PULSE`` in ``_Numerics``, from its pulse oximeter)
  against its ECG heart rate (``HR``, the reference), the same way.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accuracy import DEFAULT_DATA, score  # noqa: E402  (the same records and scoring)

from lab.reference import (  # noqa: E402
    bidmc_paths,
    load_bidmc_reference,
    per_second,
    rate_series,
    read_table,
)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "reference_agreement.json"
    )
    a = ap.parse_args()
    files = sorted(a.data.glob("bidmc_*_Signals.csv*"))
    if not files:
        print(f"no BIDMC records under {a.data}", file=sys.stderr)
        return 2
    rows: dict[str, dict[str, float]] = {}
    for f in files:
        ref = load_bidmc_reference(f)
        n = len(ref.rr_bpm)
        a1, a2 = (rate_series(b, n) for b in ref.breaths_s[:2])
        names, num = read_table(bidmc_paths(f)[0])
        pulse = per_second(num[:, names.index("PULSE")], num[:, names.index("Time [s]")], n)
        rows[f.name.split("_Signals")[0]] = {
            "rr_annotator1_vs_annotator2": score(a1, a2)["mae"],
            "rr_annotator1_vs_reference": score(a1, ref.rr_bpm)["mae"],
            "rr_annotator2_vs_reference": score(a2, ref.rr_bpm)["mae"],
            "hr_monitor_pulse_vs_reference": score(pulse, ref.hr_bpm)["mae"],
        }
    keys = next(iter(rows.values())).keys()
    summary = {
        key: {
            "mean_subject_mae": float(np.nanmean([r[key] for r in rows.values()])),
            "median_subject_mae": float(np.nanmedian([r[key] for r in rows.values()])),
        }
        for key in keys
    }
    for key, s in summary.items():
        print(f"{key}: mean MAE {s['mean_subject_mae']:.3f}, median {s['median_subject_mae']:.3f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()} {platform.python_version()}"
    a.out.write_text(
        json.dumps(
            {"machine": machine, "records": len(files), "summary": summary, "per_subject": rows},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
