"""Markdown tables for docs/models.md from the shipped manifests (and bench results).

    python -m convert.model_card [models/] [bench/results/inference.json]

Prints, per model: its cross-validated summary against the DSP baseline, the quantisation
check, size and invoke time; then one per-subject table per task. Only reads JSON: no
TensorFlow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def fmt(v: Any, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv: list[str]) -> int:
    models = Path(argv[0]) if argv else Path("models")
    bench_path = Path(argv[1]) if len(argv) > 1 else Path("bench/results/inference.json")
    bench = json.loads(bench_path.read_text())["models"] if bench_path.is_file() else {}
    mans = [json.loads(p.read_text()) for p in sorted(models.glob("*.json"))]
    print(
        "| model | CV mean MAE | median | worst | coverage mean (min) "
        "| DSP mean MAE (same subjects) "
        "| preferred | TFLite-Keras mean abs diff | delta MAE | size | invoke (1 thread) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in mans:
        cv = m["cv"]["summary"]
        dsp = (m.get("dsp_baseline") or {}).get("summary") or {}
        ver = m["verification"]
        inv = bench.get(m["name"], {}).get("invoke_1_thread", {}).get("median_us")
        print(
            f"| {m['name']} | {fmt(cv['mean_mae'])} | {fmt(cv['median_mae'])} "
            f"| {fmt(cv['worst_mae'])} "
            f"| {cv['mean_coverage']:.1%} ({cv['min_coverage']:.1%}) | {fmt(dsp.get('mean_mae'))} "
            f"| {'yes' if m['prefer_over_dsp'] else 'no'} | {fmt(ver['mean_abs_diff'], 3)} "
            f"| {ver['delta_mae']:+.3f} | {m['size_bytes'] / 1024:.1f} KB | {fmt(inv, 0)} us |"
        )
    seen = set()
    for m in mans:
        key = (m["task"], tuple(m["inputs"]), m["arch"])
        if key in seen:
            continue
        seen.add(key)
        per = m["cv"]["per_subject"]
        dsp = (m.get("dsp_baseline") or {}).get("per_subject") or {}
        print(
            f"\n#### {m['task']} from {'+'.join(m['inputs'])} ({m['arch']}): per subject, "
            f"{m['output']['units']} (out-of-fold)\n"
        )
        print("| subject | MAE | RMSE | coverage | DSP MAE | DSP coverage |")
        print("|---|---|---|---|---|---|")
        for s in sorted(per):
            d = dsp.get(s, {})
            print(
                f"| {s} | {fmt(per[s]['mae'])} | {fmt(per[s]['rmse'])} | {per[s]['coverage']:.0%} "
                f"| {fmt(d.get('mae'))} "
                f"| {'-' if 'coverage' not in d else format(d['coverage'], '.0%')} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
