"""Score a TFLite model on BIDMC-format recordings through the device's streaming estimator;
or, without --model, report how the appliance's whole core does (an HTML page).

The model runs exactly as the daemon runs it: the recording is fed to the pipeline (the
same resampling, windows and quality gate), one estimate per second. Scores from t = 32 s on,
against the monitor's ECG HR or the annotated breaths; per subject and overall: MAE, RMSE,
coverage (share of seconds with a reference that have an estimate). The signal-processing
estimator is scored alongside where one exists for the role.

--report DIR writes report.json, a Bland-Altman plot and a time-series plot per subject.

Generalisation checks:
  --resample HZ   resample each recording to HZ first (e.g. 300): the device resamples back
  --speed F       play each recording F times faster (declared rate x F): every rate and the
                  reference scale by F (1.6 turns adult HR 50-129 into 80-206 bpm, like children)

Without --model, --report DIR renders index.html with PNGs and report.json: HR and RR from
the appliance's core (as `bedside process`, every channel unless --use) against the same
references, per subject and overall, with Bland-Altman plots and time series, side by side
with NeuroKit2 when it is installed (the [peers] extra; --no-peers leaves it out). --data
may also be one signals file, e.g. the bundled excerpt. See lab/report.py.

Examples:
  bedside eval --report build/report --data device/data/bidmc_09_excerpt.csv.gz
  bedside eval --report build/report --data ../shared/data/bidmc/bidmc_csv --records 1,5,9
  bedside eval --model models/hr_ppg_cnn_int8.tflite --data ../shared/data/bidmc/bidmc_csv \
      --report build/eval_hr
  bedside eval --model models/hr_ppg_cnn_int8.tflite --data DIR --records 1,2,3 --resample 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import UserError
from lab import reference

SKIP_S = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        type=Path,
        metavar="FILE.tflite",
        help="the model to score (without it: a report of the appliance's core, needs --report)",
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder of bidmc_NN_Signals.csv(.gz) (without --model also one signals file)",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write report.json and PNG plots here (without --model: index.html too)",
    )
    p.add_argument("--records", default="", help="comma list of record numbers (default all)")
    p.add_argument(
        "--resample", type=float, metavar="HZ", help="resample recordings to this rate first"
    )
    p.add_argument(
        "--speed", type=float, default=1.0, metavar="F", help="play recordings F times faster"
    )
    p.add_argument("--no-dsp", action="store_true", help="do not score the DSP estimator alongside")
    p.add_argument(
        "--use",
        metavar="ROLES",
        help="without --model: comma list of roles the core may see (ecg,ppg,resp); default all",
    )
    p.add_argument(
        "--no-peers",
        action="store_true",
        help="without --model: leave NeuroKit2 out even when it is installed",
    )


def run_core_report(args: argparse.Namespace) -> int:
    import sys

    from lab.report import run_report

    if args.report is None:
        raise UserError("without --model, bedside eval needs --report DIR", "add --report DIR")
    if args.resample or args.speed != 1.0:
        raise UserError("--resample and --speed apply to --model only", "drop them")
    records = [r for r in args.records.split(",") if r.strip()] or None
    use = [r.strip() for r in args.use.split(",") if r.strip()] if args.use else None
    report = run_report(
        args.data,
        args.report,
        records,
        use,
        peers=not args.no_peers,
        command="bedside " + " ".join(sys.argv[1:]),
    )
    for m in report["methods"]:
        for q, label in (("hr", "HR"), ("rr", "RR")):
            sm = report["summary"][m][q]
            print(
                f"{m:>9} {label}: mean subject MAE {sm['mean_mae']:.3f}, median "
                f"{sm['median_mae']:.3f}, worst {sm['worst_mae']:.2f}; coverage mean "
                f"{sm['mean_coverage']:.1%} ({sm['subjects']} subjects)"
            )
    print(f"report: {args.report / 'index.html'}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model is None:
        return run_core_report(args)
    from scipy.signal import resample_poly
    from tqdm import tqdm

    from convert.dataset import record_files, subject_name
    from device.estimators.model import ModelEstimator
    from device.estimators.registry import signal_estimator
    from device.inference import TfliteModel
    from device.pipeline import run_recording
    from device.recording import read_csv
    from device.roles import EstimateKey, Quantity, Role
    from lab.reference import load_bidmc_reference

    if not args.model.is_file():
        raise UserError(
            f"{args.model}: no such model", "give a .tflite file with its .json manifest"
        )
    probe = TfliteModel(args.model)
    task, role = str(probe.manifest["task"]), probe.spec.role
    units = probe.manifest["output"]["units"]
    records = [r for r in args.records.split(",") if r.strip()] or None
    per: dict[str, dict[str, Any]] = {}
    series: dict[str, dict[str, list[float]]] = {}
    for path in tqdm(record_files(args.data, records), desc=f"eval {probe.name}", unit="rec"):
        rec = read_csv(path)
        if role not in rec.roles:
            continue
        ref = load_bidmc_reference(path, rec.fs_hz, rec.duration_s)
        ref_series = ref.hr_bpm if task == "hr" else ref.rr_bpm
        x = rec.role(role)
        fs = rec.fs_hz
        if args.resample:
            up, down = int(round(args.resample)), int(round(fs))
            x = resample_poly(x, up, down)
            fs = float(args.resample)
        fs_declared = fs * args.speed
        est_model = run_seconds(
            run_recording(
                {role: x}, fs_declared, estimators=[ModelEstimator(TfliteModel(args.model))]
            ),
            task,
        )
        dsp_est = signal_estimator(EstimateKey(Quantity(task), Role(role)))
        dsp_list = [dsp_est] if dsp_est is not None else []
        est_dsp = (
            run_seconds(run_recording({role: x}, fs_declared, estimators=dsp_list), task)
            if dsp_list and not args.no_dsp
            else None
        )
        n = len(est_model)
        # second k of the sped-up stream is original second k*F; rates scale by F
        orig_s = np.arange(n) * args.speed
        ref_now = (
            np.interp(orig_s, np.arange(len(ref_series)), ref_series, left=np.nan, right=np.nan)
            * args.speed
        )
        name = subject_name(path)
        per[name] = {"model": score(est_model, ref_now, SKIP_S)}
        if est_dsp is not None:
            per[name]["dsp"] = score(est_dsp[:n], ref_now[: len(est_dsp)], SKIP_S)
        series[name] = {
            "t": list(range(n)),
            "ref": ref_now.tolist(),
            "model": est_model.tolist(),
            "dsp": est_dsp.tolist() if est_dsp is not None else [],
        }
    if not per:
        raise UserError(
            f"{args.data}: no record has a {role} channel", f"evaluate on records with {role}"
        )
    overall = {k: pooled(series, k) for k in ("model", "dsp") if all(series[s][k] for s in series)}
    summary = {
        k: reference.summarise([per[s][k] for s in per if k in per[s]])
        for k in ("model", "dsp")
        if any(k in per[s] for s in per)
    }
    for s, v in per.items():
        line = "  ".join(
            f"{k}: MAE {r['mae']:.2f} RMSE {r['rmse']:.2f} cov {r['coverage']:.0%}"
            for k, r in v.items()
        )
        print(f"{s}  {line}")
    for k, sm in summary.items():
        pool = overall.get(k, {})
        print(
            f"{k}: mean subject MAE {sm['mean_mae']:.3f} {units}, median {sm['median_mae']:.3f}, "
            f"worst {sm['worst_mae']:.2f}; coverage mean {sm['mean_coverage']:.1%}, "
            f"min {sm['min_coverage']:.1%}; pooled MAE {pool.get('mae', float('nan')):.3f}, "
            f"RMSE {pool.get('rmse', float('nan')):.3f}"
        )
    if args.report:
        write_report(args, probe.name, units, per, summary, overall, series)
    return 0


def run_seconds(vitals: list[Any], task: str) -> np.ndarray:
    out = np.full(len(vitals) + 1, np.nan)
    for v in vitals:
        val = v.hr_bpm if task == "hr" else v.rr_bpm
        if val is not None:
            out[int(v.t_s)] = val
    return out


def score(est: np.ndarray, ref: np.ndarray, skip_s: int) -> dict[str, float]:
    """The shared scoring rule (lab.reference.score), from ``skip_s`` on."""
    return reference.score(est[skip_s:], ref[skip_s:])


def pooled(series: dict[str, dict[str, list[float]]], key: str) -> dict[str, float]:
    ests, refs = [], []
    for s in series.values():
        n = min(len(s[key]), len(s["ref"]))
        ests.append(np.asarray(s[key][SKIP_S:n], dtype=float))
        refs.append(np.asarray(s["ref"][SKIP_S:n], dtype=float))
    return score(np.concatenate(ests), np.concatenate(refs), 0)


def write_report(
    args: argparse.Namespace,
    name: str,
    units: str,
    per: dict[str, Any],
    summary: dict[str, Any],
    overall: dict[str, Any],
    series: dict[str, dict[str, list[float]]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: Path = args.report
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps(
            {
                "model": str(args.model),
                "data": str(args.data),
                "resample_hz": args.resample,
                "speed": args.speed,
                "scored_from_s": SKIP_S,
                "units": units,
                "summary": summary,
                "pooled": overall,
                "per_subject": per,
            },
            indent=1,
        )
    )
    # Bland-Altman over every scored second of every subject
    est = np.concatenate(
        [np.asarray(s["model"][SKIP_S:], float)[: len(s["ref"][SKIP_S:])] for s in series.values()]
    )
    ref = np.concatenate(
        [np.asarray(s["ref"][SKIP_S:], float)[: len(s["model"][SKIP_S:])] for s in series.values()]
    )
    ok = np.isfinite(est) & np.isfinite(ref)
    mean, diff = (est[ok] + ref[ok]) / 2, est[ok] - ref[ok]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(mean, diff, s=2, alpha=0.3)
    if ok.any():
        bias, sd = float(diff.mean()), float(diff.std())
        for yv, ls in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
            ax.axhline(yv, color="k", ls=ls, lw=1)
        ax.set_title(f"{name}: bias {bias:+.2f}, limits of agreement +-{1.96 * sd:.2f} {units}")
    ax.set_xlabel(f"mean of model and reference ({units})")
    ax.set_ylabel(f"model - reference ({units})")
    fig.tight_layout()
    fig.savefig(out / "bland_altman.png", dpi=100)
    plt.close(fig)
    for subj, s in series.items():
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.plot(s["t"][: len(s["ref"])], s["ref"][: len(s["t"])], "k-", lw=1, label="reference")
        ax.plot(s["t"], s["model"], "b.", ms=2, label=name)
        if s["dsp"]:
            ax.plot(
                s["t"][: len(s["dsp"])], s["dsp"][: len(s["t"])], "r.", ms=1, alpha=0.5, label="dsp"
            )
        ax.set_xlabel("time (s)")
        ax.set_ylabel(units)
        ax.set_title(f"{subj}: model MAE {per[subj]['model']['mae']:.2f} {units}")
        ax.legend(loc="upper right", fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"timeseries_{subj}.png", dpi=80)
        plt.close(fig)
    print(f"report in {out}")
