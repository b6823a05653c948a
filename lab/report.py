"""``bedside eval --report DIR`` without ``--model``: how the appliance's core does on BIDMC
records, as one HTML page with PNGs, side by side with NeuroKit2 where it is installed.

For each record (``bidmc_NN_Signals.csv[.gz]``, or the bundled excerpt, with its
``_Numerics`` and ``_Breaths`` beside it):

- **bedside**: the whole core as the daemon runs it (``device.offline.process_recording``,
  i.e. ``bedside process``) with the default configuration and every channel the record has
  (``--use`` hides some), so HR and RR come from whichever source the core chooses;
- **NeuroKit2** (optional, ``pip install neurokit2``): its default pipelines, offline and
  non-causal, on the channel the core used most for that quantity: ECG R peaks
  (``ecg_clean`` + ``ecg_peaks``), PPG peaks (``ppg_process``) or the breathing signal
  (``rsp_process``); its per-sample rate averaged over each second. NeuroKit2 has no default
  pipeline for RR from a pulse wave, so a record whose RR came from the PPG has none there;
- both scored per second from t = 32 s against the same references
  (``lab.reference``: the monitor's ECG HR; the mean of the two annotators' breath rates)
  with the one scoring rule (``lab.reference.score``).

Output: ``index.html`` (summary and per-subject tables, Bland-Altman plots, one time-series
plot per subject), the PNGs, and ``report.json`` with every number in the tables.
"""

from __future__ import annotations

import html
import json
import platform
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.dsp.gaps import forward_fill
from device.errors import UserError
from lab import reference

SKIP_S = 32  # the RR reference needs 32 s of breaths; HR is scored from the same second
QUANTITIES = {"hr": ("HR", "bpm"), "rr": ("RR", "breaths/min")}
METHODS = ("bedside", "neurokit2")


@dataclass
class Subject:
    name: str
    duration_s: float
    ref: dict[str, np.ndarray]
    est: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # method -> q -> series
    source: dict[str, str] = field(default_factory=dict)  # q -> role the core used most
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def find_records(data: Path, records: list[str] | None) -> list[Path]:
    """A signals file, or a folder of ``bidmc_NN_Signals.csv[.gz]``."""
    if data.is_file():
        return [data]
    from convert.dataset import record_files

    return record_files(data, records)


def subject_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    return name.removesuffix("_Signals")


def core_series(path: Path, use: list[str] | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per-second HR and RR from the appliance's core, and the source it used most for each."""
    from device.config import load_config
    from device.offline import process_recording
    from device.recording import read_recording

    rec = read_recording(str(path))
    if use:
        rec = rec.restricted(use)
    n = int(rec.duration_s) + 2
    out = {q: np.full(n, np.nan) for q in QUANTITIES}
    used: dict[str, Counter[str]] = {q: Counter() for q in QUANTITIES}
    for msg in process_recording(rec, load_config(None)):
        if msg.kind != "vitals":
            continue
        r = msg.to_record()
        k = int(round(r["t_s"]))
        for q in QUANTITIES:
            v = r.get(f"{q}_bpm")
            if v is not None and 0 <= k < n:
                out[q][k] = v
                used[q][str(r.get(f"{q}_source"))] += 1
    return out, {q: (c.most_common(1)[0][0] if c else "") for q, c in used.items()}


def hold_gaps(x: np.ndarray) -> np.ndarray:
    """For the peers (NeuroKit2, HeartPy), whose filters do not take NaN (a gap in a
    recording): each gap holds the last value, a leading gap the first one; all gap: zeros."""
    x = np.asarray(x, dtype=float)
    finite = np.flatnonzero(np.isfinite(x))
    if finite.size == 0:
        return np.zeros_like(x)
    return forward_fill(x, before=float(x[finite[0]]))[0]


def _per_second_mean(rate: np.ndarray, fs: float, n: int) -> np.ndarray:
    """Second k gets the mean of the per-sample rate over (k - 1, k] s."""
    out = np.full(n, np.nan)
    for k in range(1, n):
        a, b = int(round((k - 1) * fs)), int(round(k * fs))
        seg = rate[a:b]
        seg = seg[np.isfinite(seg)]
        if len(seg):
            out[k] = float(seg.mean())
    return out


def neurokit_series(
    path: Path, source: dict[str, str], n: int
) -> tuple[dict[str, np.ndarray], list[str]]:
    """NeuroKit2's HR and RR for the same record, on the roles the core used."""
    import neurokit2 as nk

    from device.recording import read_recording

    rec = read_recording(str(path))
    fs = rec.fs_hz
    sr = int(round(fs))
    out = {q: np.full(n, np.nan) for q in QUANTITIES}
    notes = []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns freely about short or odd segments
        hr_role = source.get("hr") or ("ecg" if "ecg" in rec.roles else "ppg")
        try:
            if hr_role == "ecg" and "ecg" in rec.roles:
                x = nk.ecg_clean(hold_gaps(rec.role("ecg")), sampling_rate=sr)
                _, info = nk.ecg_peaks(x, sampling_rate=sr)
                peaks = info["ECG_R_Peaks"]
            elif hr_role == "ppg" and "ppg" in rec.roles:
                _, info = nk.ppg_process(hold_gaps(rec.role("ppg")), sampling_rate=sr)
                peaks = info["PPG_Peaks"]
            else:
                peaks = None
                notes.append(f"NeuroKit2: no HR pipeline for the {hr_role or 'missing'} channel")
            if peaks is not None and len(peaks) > 2:
                rate = nk.signal_rate(peaks, sampling_rate=sr, desired_length=rec.n_samples)
                out["hr"] = _per_second_mean(np.asarray(rate, float), fs, n)
        except Exception as e:  # a peer that fails on a record is reported, not fatal
            notes.append(f"NeuroKit2 HR failed: {type(e).__name__}: {e}")
        rr_role = source.get("rr") or ("resp" if "resp" in rec.roles else "")
        try:
            if rr_role == "resp" and "resp" in rec.roles:
                signals, _ = nk.rsp_process(hold_gaps(rec.role("resp")), sampling_rate=sr)
                out["rr"] = _per_second_mean(signals["RSP_Rate"].to_numpy(float), fs, n)
            else:
                notes.append(
                    f"NeuroKit2: no default RR pipeline for the {rr_role or 'missing'} channel"
                )
        except Exception as e:
            notes.append(f"NeuroKit2 RR failed: {type(e).__name__}: {e}")
    return out, notes


def evaluate(path: Path, use: list[str] | None, peers: bool) -> Subject:
    from device.recording import read_recording

    rec = read_recording(str(path))
    ref = reference.load_bidmc_reference(path, rec.fs_hz, rec.duration_s)
    est, source = core_series(path, use)
    n = len(est["hr"])
    refs = {q: _fit(getattr(ref, f"{q}_bpm"), n) for q in QUANTITIES}
    s = Subject(subject_name(path), rec.duration_s, refs, {"bedside": est}, source)
    if peers:
        s.est["neurokit2"], s.notes = neurokit_series(path, source, n)
    for method, series in s.est.items():
        s.scores[method] = {
            q: reference.score(series[q][SKIP_S:], refs[q][SKIP_S:]) for q in QUANTITIES
        }
    return s


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    m = min(n, len(x))
    out[:m] = x[:m]
    return out


# -- figures ---------------------------------------------------------------------------------
def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "the report needs matplotlib", "pip install matplotlib (or the [convert] extra)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLOURS = {"bedside": "#1f5fbf", "neurokit2": "#d9730d"}


def bland_altman(subjects: list[Subject], q: str, methods: list[str], out: Path) -> dict[str, Any]:
    """One panel per method: difference against mean over every scored second of every subject;
    bias and 95 % limits of agreement (bias +- 1.96 SD)."""
    plt = _plt()
    label, unit = QUANTITIES[q]
    fig, axes = plt.subplots(
        1, len(methods), figsize=(5.2 * len(methods), 4), squeeze=False, sharey=True
    )
    stats = {}
    for ax, m in zip(axes[0], methods, strict=True):
        est = np.concatenate([s.est[m][q][SKIP_S:] for s in subjects])
        ref = np.concatenate([s.ref[q][SKIP_S:] for s in subjects])
        ok = np.isfinite(est) & np.isfinite(ref)
        mean, diff = (est[ok] + ref[ok]) / 2, est[ok] - ref[ok]
        ax.scatter(mean, diff, s=3, alpha=0.25, color=COLOURS[m], edgecolors="none")
        if ok.any():
            bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if ok.sum() > 1 else 0.0
            for yv, ls in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
                ax.axhline(yv, color="k", ls=ls, lw=1)
            ax.set_title(f"{m}: bias {bias:+.2f}, 95% LoA {bias - 1.96 * sd:+.2f} to "
                         f"{bias + 1.96 * sd:+.2f}", fontsize=9)  # fmt: skip
            stats[m] = {"bias": bias, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd,
                        "seconds": int(ok.sum())}  # fmt: skip
        ax.set_xlabel(f"mean of estimate and reference ({unit})")
        ax.set_ylabel(f"estimate - reference ({unit})")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{label}: Bland-Altman, every scored second (t >= {SKIP_S} s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return stats


def time_series(s: Subject, methods: list[str], out: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for ax, q in zip(axes, QUANTITIES, strict=True):
        label, unit = QUANTITIES[q]
        t = np.arange(len(s.ref[q]))
        ax.plot(t, s.ref[q], color="k", lw=1.2, label="reference")
        for m in methods:
            mae = s.scores[m][q]["mae"]
            name = f"{m} (MAE {mae:.2f})" if np.isfinite(mae) else f"{m} (none)"
            ax.plot(t, s.est[m][q], ".", ms=2, color=COLOURS[m], label=name)
        ax.axvspan(0, SKIP_S, color="0.9", lw=0)
        ax.set_ylabel(f"{label} ({unit})")
        ax.legend(loc="upper right", fontsize=7, markerscale=4)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s); grey: not scored")
    src = ", ".join(f"{QUANTITIES[q][0]} from {s.source[q] or '-'}" for q in QUANTITIES)
    axes[0].set_title(f"{s.name}: {src}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


# -- the page --------------------------------------------------------------------------------
def _f(x: float, digits: int = 2) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.0%}"


CSS = """
body{font:14px/1.4 system-ui,'DejaVu Sans',sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0} th,td{padding:3px 9px;border:1px solid #ccc;
text-align:right} th{background:#f1f3f6} td:first-child,th:first-child{text-align:left}
.bedside{color:#1f5fbf} .neurokit2{color:#d9730d} .note{color:#666;font-size:12px}
img{max-width:100%;border:1px solid #ddd;margin:4px 0} .meta td{text-align:left}
"""


def write_page(
    out: Path,
    subjects: list[Subject],
    methods: list[str],
    summary: dict[str, Any],
    ba: dict[str, Any],
    meta: dict[str, str],
) -> None:
    e = html.escape
    head = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in meta.items())
    rows = []
    for q, (label, unit) in QUANTITIES.items():
        for m in methods:
            sm = summary[m][q]
            b = ba.get(q, {}).get(m, {})
            nan = float("nan")
            loa = f"{_f(b.get('loa_low', nan))} to {_f(b.get('loa_high', nan))}"
            rows.append(
                f"<tr><td>{label} ({unit})</td><td class='{m}'>{m}</td>"
                f"<td>{_f(sm['mean_mae'])}</td><td>{_f(sm['median_mae'])}</td>"
                f"<td>{_f(sm['worst_mae'])}</td><td>{_f(sm['pooled_rmse'])}</td>"
                f"<td>{_f(b.get('bias', nan))}</td><td>{loa}</td>"
                f"<td>{_pct(sm['mean_coverage'])}</td><td>{_pct(sm['min_coverage'])}</td>"
                f"<td>{sm['subjects']}</td></tr>"
            )
    summary_table = (
        "<table><tr><th>quantity</th><th>method</th><th>mean MAE</th><th>median MAE</th>"
        "<th>worst MAE</th><th>pooled RMSE</th><th>bias</th><th>95% limits of agreement</th>"
        "<th>mean coverage</th><th>min coverage</th><th>subjects</th></tr>"
        + "".join(rows) + "</table>"
    )  # fmt: skip
    per_subject = ""
    for q, (label, unit) in QUANTITIES.items():
        head_cells = "".join(
            f"<th class='{m}'>{m} {k}</th>" for m in methods for k in ("MAE", "bias", "coverage")
        )
        body = []
        for s in subjects:
            cells = "".join(
                f"<td>{_f(s.scores[m][q]['mae'])}</td><td>{_f(s.scores[m][q]['bias'])}</td>"
                f"<td>{_pct(s.scores[m][q]['coverage'])}</td>"
                for m in methods
            )
            body.append(
                f"<tr><td><a href='#{e(s.name)}'>{e(s.name)}</a></td>"
                f"<td>{e(s.source[q] or '-')}</td>{cells}</tr>"
            )
        per_subject += (
            f"<h3>{label} ({unit})</h3><table class='subjects' data-quantity='{q}'>"
            f"<tr><th>record</th><th>source</th>{head_cells}</tr>{''.join(body)}</table>"
        )
    series = "".join(
        f"<h3 id='{e(s.name)}'>{e(s.name)}</h3><img src='timeseries_{e(s.name)}.png' "
        f"alt='HR and RR of {e(s.name)} against the reference'>"
        + "".join(f"<p class='note'>{e(n)}</p>" for n in s.notes)
        for s in subjects
    )
    peers_note = (
        "" if "neurokit2" in methods
        else "<p class='note'>NeuroKit2 is not installed here (pip install neurokit2): "
        "the appliance's core alone.</p>"
    )  # fmt: skip
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bedside-edge evaluation report</title>
<style>{CSS}</style></head><body>
<h1>bedside-edge: HR and RR against the BIDMC references</h1>
<table class="meta">{head}</table>
<p>Scored per second from t = {SKIP_S} s. HR reference: the bedside monitor's ECG heart rate
(<code>_Numerics</code>); RR reference: the mean of the two annotators' breath rates over 32 s
(<code>_Breaths</code>). MAE over seconds with both an estimate and a reference; coverage: the
share of seconds with a reference that have an estimate. <span class="bedside">bedside</span>:
the appliance's streaming core (as <code>bedside process</code>, causal);
<span class="neurokit2">neurokit2</span>: NeuroKit2's default pipelines on the same channel
(offline, non-causal), per-sample rate averaged over each second.</p>
{peers_note}
<h2>Summary</h2>{summary_table}
<h2>Bland-Altman</h2>
<img src="bland_altman_hr.png" alt="Bland-Altman plot of HR">
<img src="bland_altman_rr.png" alt="Bland-Altman plot of RR">
<h2>Per subject</h2>{per_subject}
<h2>Time series</h2>{series}
</body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")


def _git_commit() -> str:
    try:
        r = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return r.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _json_safe(x: Any) -> Any:
    """NaN (no value) -> null, so report.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def run_report(
    data: Path,
    out: Path,
    records: list[str] | None,
    use: list[str] | None,
    peers: bool,
    command: str = "bedside eval --report",
) -> dict[str, Any]:
    from device import __version__

    files = find_records(data, records)
    nk_version = None
    if peers:
        try:
            import neurokit2

            nk_version = str(neurokit2.__version__)
        except ImportError:
            peers = False
    methods = ["bedside"] + (["neurokit2"] if peers else [])
    out.mkdir(parents=True, exist_ok=True)
    subjects = []
    t0 = time.monotonic()
    for i, path in enumerate(files, 1):
        print(f"bedside eval: {i}/{len(files)} {path.name}", file=sys.stderr, flush=True)
        s = evaluate(path, use, peers)
        time_series(s, methods, out / f"timeseries_{s.name}.png")
        subjects.append(s)
    summary: dict[str, Any] = {}
    for m in methods:
        summary[m] = {}
        for q in QUANTITIES:
            summary[m][q] = reference.summarise([s.scores[m][q] for s in subjects])
            est = np.concatenate([s.est[m][q][SKIP_S:] for s in subjects])
            ref = np.concatenate([s.ref[q][SKIP_S:] for s in subjects])
            summary[m][q]["pooled_rmse"] = reference.score(est, ref)["rmse"]
    ba = {q: bland_altman(subjects, q, methods, out / f"bland_altman_{q}.png") for q in QUANTITIES}
    meta = {
        "data": str(data),
        "records": f"{len(subjects)}: " + ", ".join(s.name for s in subjects),
        "roles used": ",".join(use) if use else "every channel the record has",
        "bedside-edge": f"{__version__} (commit {_git_commit()})",
        "NeuroKit2": nk_version or "not installed",
        "made on": f"{platform.machine()}, {platform.processor() or platform.system()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "command": command,
    }
    write_page(out, subjects, methods, summary, ba, meta)
    report = {
        "data": str(data),
        "scored_from_s": SKIP_S,
        "methods": methods,
        "neurokit2": nk_version,
        "summary": summary,
        "bland_altman": ba,
        "per_subject": {
            s.name: {"source": s.source, "scores": s.scores, "notes": s.notes} for s in subjects
        },
        "seconds": round(time.monotonic() - t0, 1),
    }
    (out / "report.json").write_text(json.dumps(_json_safe(report), indent=1) + "\n")
    return report
