"""Would blending a learned model with the DSP estimator beat either alone? Measured on the
out-of-fold (cross-validated) answers ``bedside train`` saves, so every subject is scored by a
model that never saw it.

    bedside train rr --data DIR --out build/cv --inputs resp --folds 5 --no-final
    python bench/blend.py build/cv/rr_resp_cnn.oof.npz [--out bench/results/blend_rr_resp_cnn.json]

At each second the blend is w x DSP + (1 - w) x model where both answer (the model through
its quality gate, the spread chosen in training), and elsewhere whichever answers, or (the
"where DSP" rows) the DSP's answer only, so the model adds no seconds the DSP withheld; HR is
rounded to whole bpm, as the device publishes it. Scored per subject from t = 32 s against
the same references as training (``lab.reference.score``): the DSP alone, the model
alone, and blends with w from 0.9 to 0.2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.pipeline import whole_bpm  # noqa: E402
from lab.reference import score, summarise  # noqa: E402

SKIP_S = 32
WEIGHTS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.2)


def blend(dsp: np.ndarray, model: np.ndarray, w: float | None, fill: bool = True) -> np.ndarray:
    """``w`` x DSP + (1 - ``w``) x model where both answer, and elsewhere whichever answers
    (``fill``) or the DSP's answer only (the model never adds seconds the DSP withheld);
    ``w`` None: the model alone."""
    if w is None:
        return model
    both = np.isfinite(dsp) & np.isfinite(model)
    one = np.where(np.isfinite(dsp), dsp, model) if fill else dsp
    return np.where(both, w * dsp + (1.0 - w) * model, one)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("oof", type=Path, help="a .oof.npz written by bedside train")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results)")
    a = ap.parse_args()
    z = np.load(a.oof)
    if "b_max" not in z.files or not any(k.endswith("/dsp") for k in z.files):
        print(
            f"{a.oof}: no DSP answers or gate in it (written by an older bedside train); "
            "train again to write them",
            file=sys.stderr,
        )
        return 2
    stem = a.oof.name.removesuffix(".oof.npz")
    whole = stem.startswith("hr_")
    b_max = float(z["b_max"])
    subjects = sorted({k.split("/")[0] for k in z.files if "/" in k})
    rows = []
    # "dsp": the DSP alone (as the device publishes it); "model": the model alone
    # "blend": either answers elsewhere; "blend_where_dsp": only where the DSP answers
    kinds = [("dsp", 1.0), ("model", None)]
    kinds += [(k, w) for k in ("blend", "blend_where_dsp") for w in WEIGHTS]
    for what, w in kinds:
        per = {}
        for s in subjects:
            keep = z[f"{s}/seconds"] >= SKIP_S
            ok = z[f"{s}/usable"] & (z[f"{s}/spread"] <= b_max)
            model = np.where(ok, z[f"{s}/rate"], np.nan)
            dsp = z[f"{s}/dsp"]
            est = dsp if what == "dsp" else blend(dsp, model, w, what != "blend_where_dsp")
            if whole:
                est = np.array([np.nan if not np.isfinite(v) else whole_bpm(v) for v in est])
            per[s] = score(est[keep], z[f"{s}/target"][keep])
        rows.append({"what": what, "dsp_weight": w, **summarise(per.values())})
        r = rows[-1]
        label = {"dsp": "DSP alone", "model": "model alone"}.get(what) or (
            f"DSP weight {w}" + (", DSP's seconds" if what == "blend_where_dsp" else "")
        )
        print(
            f"{label:15s}: mean MAE {r['mean_mae']:.3f}, median {r['median_mae']:.3f}, "
            f"worst {r['worst_mae']:.2f}; coverage mean {r['mean_coverage']:.1%}, "
            f"min {r['min_coverage']:.1%}"
        )
    out = a.out or Path(__file__).parent / "results" / f"blend_{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()} {platform.processor() or ''} {platform.python_version()}"
    out.write_text(
        json.dumps(
            {
                "machine": machine.strip(),
                "oof": str(a.oof),
                "subjects": len(subjects),
                "whole_bpm": whole,
                "blends": rows,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
