"""Measure each model's signal-processing baseline again and write it into its manifest.

    python -m convert.rebaseline [--data ../shared/data/bidmc/bidmc_csv] [MANIFEST.json ...]

For each manifest (default: every model shipped in ``models/``), the device's own
signal-processing estimator for the model's (quantity, role) (``device.estimators.registry``,
fallbacks included: RR from PPG is ``PulseModulationRR``) is run over the same subjects the
model was cross-validated on and scored by the same rule as ``bedside train``. The manifest's
``dsp_baseline`` is replaced and ``prefer_over_dsp`` is decided again by ``bedside convert``'s
rule (CV coverage >= 95 % and CV mean MAE below the baseline's); a decision that changes is
printed, since it changes what the device runs. No model is retrained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from convert.commands.train import score
from convert.dataset import SKIP_S, load_subject
from device.features import SPECS
from device.inference import shipped_models_dir
from lab import reference

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bidmc" / "bidmc_csv"


def baseline(manifest: dict[str, Any], data: Path) -> dict[str, Any] | None:
    """The ``dsp_baseline`` block for ``manifest``, measured on its own CV subjects."""
    spec = SPECS[str(manifest["features"]["name"])]
    task = str(manifest["task"])
    per: dict[str, dict[str, float]] = {}
    for name in manifest["training"]["subjects"]:
        path = next(iter(sorted(data.glob(f"{name}_Signals.csv*"))), None)
        if path is None:
            raise SystemExit(f"{name}: no {name}_Signals.csv(.gz) in {data}")
        subject = load_subject(path, spec, task)
        if subject.dsp is None:
            return None
        per[subject.name] = score(subject.dsp, subject.target, subject.seconds, SKIP_S)
    return {
        "summary": reference.summarise(per.values()),
        "per_subject": per,
        "estimator": "device.estimators.registry.signal_estimator, same records, same scoring",
    }


def prefer(manifest: dict[str, Any]) -> bool:
    """``bedside convert``'s rule (convert/commands/convert.py)."""
    cv = manifest["cv"]["summary"]
    dsp = (manifest.get("dsp_baseline") or {}).get("summary")
    return bool(cv["mean_coverage"] >= 0.95 and (dsp is None or cv["mean_mae"] < dsp["mean_mae"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifests", nargs="*", type=Path, help="default: models/*.json")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BIDMC CSV folder")
    args = ap.parse_args(argv)
    paths = args.manifests or sorted(shipped_models_dir().glob("*.json"))
    cache: dict[tuple[str, str, tuple[str, ...]], dict[str, Any] | None] = {}
    for path in paths:
        man = json.loads(path.read_text())
        key = (str(man["features"]["name"]), str(man["task"]), tuple(man["training"]["subjects"]))
        if key not in cache:
            cache[key] = baseline(man, args.data)
        old = (man.get("dsp_baseline") or {}).get("summary") or {}
        was = bool(man.get("prefer_over_dsp"))
        man["dsp_baseline"] = cache[key]
        man["prefer_over_dsp"] = prefer(man)
        new = (cache[key] or {}).get("summary") or {}
        now = man["prefer_over_dsp"]
        print(
            f"{path.name}: baseline mean MAE {old.get('mean_mae')} -> {new.get('mean_mae')}; "
            f"model {man['cv']['summary']['mean_mae']:.3f}; prefer {was} -> {now}"
            + ("  (DECISION CHANGED)" if was != now else "")
        )
        path.write_text(json.dumps(man, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
