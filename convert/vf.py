"""Fit the ventricular-rhythm model (VF/flutter, VT, other) on vfdb and mitdb, record-held-out.

``device/rhythm/vf.py`` computes published VF features on each 4 s window of an ECG lead;
this module builds the training table through the device's own code (each record read with
``wfdb``, resampled to 125 Hz by the pipeline's ``RoleStream``, fed second by second to
``VentricularRhythm``), labels every window from the records' rhythm annotations, fits a
small model (multinomial logistic regression or a one-hidden-layer MLP, numpy at run time)
and measures it by cross-validation with whole records held out. ``bench/vfdb.py`` reports the
figures; ``bedside train vf`` writes the shipped model with them::

    bedside train vf --data ../shared/data --out device/rhythm/vf_model.json

Labels (per window, from the ``+`` rhythm annotations' ``aux_note``): ``vf`` for ``(VF``,
``(VFL`` and ``(VFIB``; ``vt`` for ``(VT``; ``noise`` for ``(NOISE``; ``other`` for every other
rhythm; ``mixed`` when the window spans a rhythm change (left out of training and scoring),
``none`` before the first annotation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import UserError
from device.pipeline import RoleStream
from device.rhythm.vf import (
    CLASSES,
    FEATURE_NAMES,
    FEATURES_VERSION,
    SHIPPED_MODEL,
    RhythmModel,
    VentricularRhythm,
)
from device.roles import CARDIAC_FS_HZ

#: ``../shared/data`` beside the checkout, or BEDSIDE_SHARED_DATA
SHARED = Path(
    os.environ.get("BEDSIDE_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
#: The window-end times are whole seconds; each window covers the 4 s before.
WINDOW_S = 4
VF_RHYTHMS = ("(VF", "(VFL", "(VFIB")
VT_RHYTHMS = ("(VT",)
NOISE_RHYTHMS = ("(NOISE",)
#: ECG channel names the readers take as leads (the CinC and MIT-BIH names)
ECG_NAMES = (
    "ECG", "I", "II", "III", "AVR", "AVL", "AVF", "V", "V1", "V2", "V3", "V4", "V5", "V6",
    "MLII", "MLI", "MLIII", "MCL", "MCL1",
)  # fmt: skip
#: Features entered as logarithms: positive and heavy-tailed (rates, moments, ratios).
LOG_FEATURES = frozenset(
    {"kurtosis", "m_moment", "half_period_s", "peak_hz", "acf_lag_s", "tc_rate_hz",
     "zc_rate_hz", "psr", "hf_share", "a1", "a3"}
)  # fmt: skip
#: L2 penalty (on standardised inputs) and hidden width; fixed beforehand, not searched.
L2 = 1e-3
HIDDEN = 16
#: Seconds between training windows.
TRAIN_HOP_S = 2


# -- records ------------------------------------------------------------------------------------
@dataclass
class LeadTable:
    """Every per-second window of one lead of one record."""

    record: str  # e.g. "vfdb/418"
    lead: str
    t_s: np.ndarray  # (n,) int: window end
    features: np.ndarray  # (n, len(FEATURE_NAMES)); NaN rows where the window was flat
    quality: np.ndarray  # (n,)
    rhythm: np.ndarray  # (n,) str: the annotation (e.g. "(VFL"), "mixed" or "none"
    label: np.ndarray  # (n,) str: vf, vt, noise, other, mixed, none
    amplitude_mv: np.ndarray  # (n,) peak-to-peak of the band-passed window (physical units)


def zero_model() -> RhythmModel:
    """A model that answers 1/3 each: for building feature tables without a fitted model."""
    n = len(FEATURE_NAMES)
    return RhythmModel.from_dict(
        {
            "name": "zero",
            "features": list(FEATURE_NAMES),
            "classes": list(CLASSES),
            "mean": [0.0] * n,
            "scale": [1.0] * n,
            "layers": [[np.zeros((n, 3)).tolist(), [0.0, 0.0, 0.0]]],
        }
    )


def read_record(path: Path) -> tuple[float, list[str], np.ndarray]:
    """(fs, channel names, physical signal (n, channels) with NaN gaps) of a WFDB record."""
    import wfdb

    rec = wfdb.rdrecord(str(path))
    sig = np.asarray(rec.p_signal, dtype=np.float64)
    return float(rec.fs), [str(s) for s in rec.sig_name], sig


def rhythm_episodes(path: Path, fs: float) -> tuple[np.ndarray, list[str]]:
    """(start times in s, rhythm strings) of a record's ``+`` annotations."""
    import wfdb

    ann = wfdb.rdann(str(path), "atr")
    starts, names = [], []
    for s, sym, aux in zip(ann.sample, ann.symbol, ann.aux_note, strict=True):
        if sym == "+" and aux:
            starts.append(float(s) / fs)
            names.append(str(aux).strip("\x00").strip())
    return np.asarray(starts), names


def label_windows(t_s: np.ndarray, starts: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The rhythm of each window (t-4, t], "mixed" across a change, "none" before any."""
    out = np.full(len(t_s), "none", dtype=object)
    if not len(starts):
        return out
    first = np.searchsorted(starts, t_s - WINDOW_S, side="right") - 1
    last = np.searchsorted(starts, t_s, side="right") - 1
    for i, (a, b) in enumerate(zip(first, last, strict=True)):
        if a < 0:
            continue
        out[i] = names[a] if a == b else "mixed"
    return out


def label_of(rhythm: str) -> str:
    if rhythm in ("mixed", "none"):
        return rhythm
    if rhythm in VF_RHYTHMS:
        return "vf"
    if rhythm in VT_RHYTHMS:
        return "vt"
    if rhythm in NOISE_RHYTHMS:
        return "noise"
    return "other"


def lead_judgements(
    x: np.ndarray, fs: float, until_s: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feed one lead (physical units, NaN gaps, at ``fs``) through the pipeline's resampling
    and the detector second by second: (t_s, features, quality, band peak-to-peak)."""
    stream = RoleStream("ecg", fs, CARDIAC_FS_HZ)
    det = VentricularRhythm(zero_model())
    n_sec = int(len(x) // fs) if until_s is None else min(int(until_s), int(len(x) // fs))
    ts, feats, qual, amp = [], [], [], []
    nan_row = np.full(len(FEATURE_NAMES), np.nan)
    for k in range(1, n_sec + 1):
        a, b = int(round((k - 1) * fs)), int(round(k * fs))
        det.push(stream(x[a:b]))
        need = int(round(k * CARDIAC_FS_HZ))
        if det.samples_seen < need:  # the resampler holds back its last input sample
            continue
        j = det.judge(float(k))
        if k < WINDOW_S:
            continue
        ts.append(k)
        feats.append(j.features.vector() if j.features is not None else nan_row)
        qual.append(j.quality)
        w = det._b.latest(det._t.n + det.samples_seen - need)[: det._t.n]
        amp.append(float(w.max() - w.min()))
    return (
        np.asarray(ts, dtype=np.int64),
        np.asarray(feats).reshape(-1, len(FEATURE_NAMES)),
        np.asarray(qual),
        np.asarray(amp),
    )


def annotated_tables(path: Path) -> list[LeadTable]:
    """One table per ECG lead of an annotated record (vfdb, mitdb)."""
    fs, names, sig = read_record(path)
    starts, rhythms = rhythm_episodes(path, fs)
    out = []
    for c, name in enumerate(names):
        if name.upper() not in ECG_NAMES:
            continue
        t, f, q, amp = lead_judgements(sig[:, c], fs)
        rhythm = label_windows(t.astype(np.float64), starts, rhythms)
        label = np.array([label_of(r) for r in rhythm], dtype=object)
        rec = f"{path.parent.name}/{path.name}"
        out.append(LeadTable(rec, name, t, f, q, rhythm.astype(str), label.astype(str), amp))
    return out


def records(data: Path, db: str) -> list[Path]:
    folder = data / db
    if not (folder / "RECORDS").is_file():
        raise UserError(
            f"{folder}: no RECORDS file (the {db} database is not there)",
            "pass --data pointing at ../shared/data",
        )
    return [folder / r for r in (folder / "RECORDS").read_text().split()]


def load_tables(
    data: Path, dbs: Iterable[str] = ("vfdb", "mitdb"), cache: Path | None = None
) -> list[LeadTable]:
    """Tables of every lead of every record of ``dbs``; cached in ``cache`` (an .npz folder)
    keyed by ``FEATURES_VERSION``, so a changed feature definition is recomputed."""
    key = f"v{FEATURES_VERSION}"
    tables: list[LeadTable] = []
    for db in dbs:
        for path in records(data, db):
            cached = cache / f"{db}_{path.name}_{key}.npz" if cache else None
            if cached is not None and cached.is_file():
                z = np.load(cached, allow_pickle=False)
                n = int(z["n_leads"])
                for i in range(n):
                    tables.append(
                        LeadTable(
                            str(z[f"record{i}"]),
                            str(z[f"lead{i}"]),
                            z[f"t{i}"],
                            z[f"f{i}"],
                            z[f"q{i}"],
                            z[f"r{i}"],
                            z[f"l{i}"],
                            z[f"a{i}"],
                        )  # fmt: skip
                    )
                continue
            got = annotated_tables(path)
            tables += got
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                arrays: dict[str, Any] = {"n_leads": len(got)}
                for i, tb in enumerate(got):
                    arrays |= {
                        f"record{i}": tb.record, f"lead{i}": tb.lead, f"t{i}": tb.t_s,
                        f"f{i}": tb.features, f"q{i}": tb.quality, f"r{i}": tb.rhythm,
                        f"l{i}": tb.label, f"a{i}": tb.amplitude_mv,
                    }  # fmt: skip
                np.savez_compressed(cached, **arrays)
    return tables


# -- fitting ------------------------------------------------------------------------------------
def model_features() -> list[str]:
    return [f"log:{n}" if n in LOG_FEATURES else n for n in FEATURE_NAMES]


def _training_rows(tables: Sequence[LeadTable]) -> tuple[np.ndarray, np.ndarray]:
    """(features, class index) of every training window: pure rhythm, finite features;
    noise windows count as "other" (the model must not call artefact VF)."""
    xs, ys = [], []
    idx = {"vf": 0, "vt": 1, "other": 2, "noise": 2}
    for tb in tables:
        keep = np.isin(tb.label, list(idx)) & np.all(np.isfinite(tb.features), axis=1)
        # every TRAIN_HOP_S-th window (neighbours overlap by 3 s and teach little more)
        keep &= tb.t_s % TRAIN_HOP_S == 0
        xs.append(tb.features[keep])
        ys.append(np.array([idx[s] for s in tb.label[keep]], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def fit(
    tables: Sequence[LeadTable],
    hidden: int = HIDDEN,
    seed: int = 1,
    features: Sequence[str] | None = None,
    name: str = "vf_mlp",
) -> RhythmModel:
    """Fit a softmax model (``hidden`` = 0: multinomial logistic regression) on ``tables``,
    with class-balanced weights and an L2 penalty, by L-BFGS."""
    from scipy.optimize import minimize

    x_raw, y = _training_rows(tables)
    feats = list(features) if features is not None else model_features()
    probe = RhythmModel(
        "probe", tuple(feats), np.zeros(len(feats)), np.ones(len(feats)),
        ((np.zeros((len(feats), 3)), np.zeros(3)),), CLASSES, {},
    )  # fmt: skip
    raw_in = probe.inputs(x_raw)
    mean = raw_in.mean(axis=0)
    scale = np.maximum(raw_in.std(axis=0), 1e-9)
    x = np.clip((raw_in - mean) / scale, -6.0, 6.0)
    counts = np.bincount(y, minlength=3).astype(np.float64)
    w_class = np.where(counts > 0, len(y) / (3.0 * np.maximum(counts, 1.0)), 0.0)
    w = w_class[y] / len(y)
    onehot = np.eye(3)[y]
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    shapes = [(d, hidden), (hidden,), (hidden, 3), (3,)] if hidden else [(d, 3), (3,)]
    sizes = [int(np.prod(s)) for s in shapes]

    def unpack(theta: np.ndarray) -> list[np.ndarray]:
        out, i = [], 0
        for s, n in zip(shapes, sizes, strict=True):
            out.append(theta[i : i + n].reshape(s))
            i += n
        return out

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        ps = unpack(theta)
        if hidden:
            w1, b1, w2, b2 = ps
            pre = x @ w1 + b1
            h = np.maximum(pre, 0.0)
            z = h @ w2 + b2
        else:
            w2, b2 = ps
            h, z = x, x @ w2 + b2
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp = z - lse
        val = -float((w * (onehot * logp).sum(axis=1)).sum())
        g = (np.exp(logp) - onehot) * w[:, None]
        grads: list[np.ndarray] = []
        gw2, gb2 = h.T @ g, g.sum(axis=0)
        if hidden:
            gh = (g @ w2.T) * (pre > 0)
            grads = [x.T @ gh, gh.sum(axis=0), gw2, gb2]
        else:
            grads = [gw2, gb2]
        for i, p in enumerate(ps):
            if p.ndim == 2:  # weights, not biases
                val += 0.5 * L2 * float((p * p).sum())
                grads[i] = grads[i] + L2 * p
        return val, np.concatenate([gr.ravel() for gr in grads])

    theta0 = np.concatenate(
        [
            (rng.normal(0.0, 1.0 / np.sqrt(s[0]), s) if len(s) == 2 else np.zeros(s)).ravel()
            for s in shapes
        ]
    )
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    ps = unpack(res.x)
    layers = ((ps[0], ps[1]), (ps[2], ps[3])) if hidden else ((ps[0], ps[1]),)
    return RhythmModel(
        name, tuple(feats), mean, scale, layers, CLASSES,
        {"kind": "mlp" if hidden else "logistic", "hidden": hidden, "l2": L2,
         "train_windows": int(len(y)), "train_class_counts": counts.astype(int).tolist()},
    )  # fmt: skip


def folds(tables: Sequence[LeadTable], k: int) -> list[list[str]]:
    """Records split into ``k`` folds: each database's records in their listed order dealt
    round-robin, so every fold holds records of each database (never a window split)."""
    by_db: dict[str, list[str]] = {}
    for tb in tables:
        db = tb.record.split("/")[0]
        if tb.record not in by_db.setdefault(db, []):
            by_db[db].append(tb.record)
    out: list[list[str]] = [[] for _ in range(k)]
    i = 0
    for db in sorted(by_db):
        for rec in by_db[db]:
            out[i % k].append(rec)
            i += 1
    return [f for f in out if f]


def cross_validate(
    tables: Sequence[LeadTable],
    k: int,
    make: Callable[[Sequence[LeadTable]], Callable[[np.ndarray], np.ndarray]],
) -> dict[str, np.ndarray]:
    """Out-of-fold scores: ``make(train tables)`` returns a scorer of feature rows -> (n, 3)
    probabilities (vf, vt, other); each lead is scored by the scorer of the fold that held its
    record out. Returns record -> lead key ``record:lead`` -> (n, 3) scores."""
    out: dict[str, np.ndarray] = {}
    for held in folds(tables, k):
        train = [tb for tb in tables if tb.record not in held]
        scorer = make(train)
        for tb in tables:
            if tb.record in held:
                s = np.zeros((len(tb.t_s), 3))
                ok = np.all(np.isfinite(tb.features), axis=1)
                if ok.any():
                    s[ok] = scorer(tb.features[ok])
                s[~ok] = (0.0, 0.0, 1.0)  # flat: nothing ventricular to see
                out[f"{tb.record}:{tb.lead}"] = s
    return out


def model_scorer(
    hidden: int, seed: int = 1
) -> Callable[[Sequence[LeadTable]], Callable[[np.ndarray], np.ndarray]]:
    def make(train: Sequence[LeadTable]) -> Callable[[np.ndarray], np.ndarray]:
        return fit(train, hidden=hidden, seed=seed).probabilities

    return make


# -- bedside train vf ----------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", type=Path, default=SHARED, metavar="DIR",
        help="the shared data folder holding vfdb/ and mitdb/ (default ../shared/data)",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=SHIPPED_MODEL, metavar="FILE",
        help=f"where to write the model JSON (default {SHIPPED_MODEL})",
    )  # fmt: skip
    p.add_argument(
        "--arch", choices=("logistic", "mlp"), default="logistic",
        help="logistic (what ships: it won the CV) or a 16-unit mlp",
    )  # fmt: skip
    p.add_argument("--folds", type=int, default=11, help="record-held-out folds (default 11)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--cache", type=Path, default=Path("build/vf_tables"), metavar="DIR",
        help="feature tables cache (default build/vf_tables)",
    )  # fmt: skip


# -- scoring ------------------------------------------------------------------------------------
def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; ties count one half)."""
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate((pos, neg))
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks of ties
    i = 0
    while i < len(sorted_v):
        j = i
        while j + 1 < len(sorted_v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    r_pos = float(ranks[: len(pos)].sum())
    return (r_pos - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg))


def binary_metrics(score: np.ndarray, positive: np.ndarray, threshold: float) -> dict[str, Any]:
    """Se, Sp, +P and accuracy of ``score >= threshold`` against ``positive``, with counts."""
    called = np.asarray(score) >= threshold
    pos = np.asarray(positive, dtype=bool)
    tp = int(np.count_nonzero(called & pos))
    fn = int(np.count_nonzero(~called & pos))
    fp = int(np.count_nonzero(called & ~pos))
    tn = int(np.count_nonzero(~called & ~pos))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "threshold": threshold,
        "se": ratio(tp, tp + fn),
        "sp": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "acc": ratio(tp + tn, tp + tn + fp + fn),
        "tp": tp, "fn": fn, "fp": fp, "tn": tn,
        "auc": auc(np.asarray(score)[pos], np.asarray(score)[~pos]),
    }  # fmt: skip


def segments(tables: Sequence[LeadTable], db: str) -> list[tuple[LeadTable, np.ndarray]]:
    """Each lead of ``db`` with the indices of its non-overlapping 4 s segments (windows
    ending at multiples of 4 s)."""
    return [
        (tb, np.flatnonzero(tb.t_s % WINDOW_S == 0))
        for tb in tables
        if tb.record.startswith(db + "/")
    ]


def threshold_rule(
    feature: str, direction: int
) -> Callable[[Sequence[LeadTable]], Callable[[np.ndarray], np.ndarray]]:
    """A single published feature with its threshold fitted on the training records (the one
    maximising (Se + Sp) / 2 of VF against everything else but noise): the signal-processing
    baseline. ``direction`` +1: VF above the threshold, -1: below."""
    col = FEATURE_NAMES.index(feature)

    def make(train: Sequence[LeadTable]) -> Callable[[np.ndarray], np.ndarray]:
        x, y = _training_rows(train)
        v = direction * x[:, col]
        pos = y == 0
        cand = np.unique(np.percentile(v, np.linspace(1, 99, 197)))
        best, best_t = -1.0, 0.0
        for thr in cand:
            c = v >= thr
            bal = 0.5 * (np.mean(c[pos]) + np.mean(~c[~pos]))
            if bal > best:
                best, best_t = float(bal), float(thr)

        def score(f: np.ndarray) -> np.ndarray:
            s = (direction * f[:, col] >= best_t).astype(np.float64)
            return np.stack((s, np.zeros_like(s), 1.0 - s), axis=1)

        return score

    return make


def barro_rule(f: np.ndarray) -> np.ndarray:
    """The spectral algorithm's published decision (Barro et al. 1989, thresholds as
    re-implemented by Amann et al. 2005): VF when M <= 1.55, A1 < 0.38, A2 >= 0.55 and
    A3 <= 0.09. Not fitted: the same on every fold."""
    g = {n: f[:, i] for i, n in enumerate(FEATURE_NAMES)}
    s = (g["m_moment"] <= 1.55) & (g["a1"] < 0.38) & (g["a2"] >= 0.55) & (g["a3"] <= 0.09)
    s = s.astype(np.float64)
    return np.stack((s, np.zeros_like(s), 1.0 - s), axis=1)


def vf_filter_rule(f: np.ndarray) -> np.ndarray:
    """The VF filter's published decision (Kuo and Dillman 1978): VF when the leakage is
    below 0.406 (the value Amann et al. 2005 used)."""
    s = (f[:, FEATURE_NAMES.index("leakage")] < 0.406).astype(np.float64)
    return np.stack((s, np.zeros_like(s), 1.0 - s), axis=1)


#: Direction of each feature for VF (+1: higher in VF), from its published rationale.
VF_DIRECTION = {
    "tcsc": 1, "mav": 1, "leakage": -1, "m_moment": -1, "a2": 1, "a3": -1, "psr": 1,
    "count2": 1, "kurtosis": -1, "hf_share": -1, "spectral_entropy": -1,
}  # fmt: skip


def vf_report(
    tables: Sequence[LeadTable],
    oof: dict[str, np.ndarray],
    db: str = "vfdb",
    threshold: float = 0.5,
) -> dict[str, Any]:
    """VF detection on ``db``'s 4 s segments from out-of-fold scores: VF (VF, VFL, VFIB)
    against every other rhythm, leaving out segments that span a rhythm change, that are
    annotated noise, or that lie before the first annotation (counted). The score is used
    whatever the detector's quality. Also the share called VF per annotated rhythm and the AHA
    groups (coarse VF >= 0.2 mV peak-to-peak of the band-passed window, fine VF below)."""
    sc, lab, rhy, amp = [], [], [], []
    for tb, idx in segments(tables, db):
        s = oof[f"{tb.record}:{tb.lead}"][idx, 0]
        sc.append(s)
        lab.append(tb.label[idx])
        rhy.append(tb.rhythm[idx])
        amp.append(tb.amplitude_mv[idx])
    score, label = np.concatenate(sc), np.concatenate(lab)
    rhythm, ampl = np.concatenate(rhy), np.concatenate(amp)
    keep = np.isin(label, ("vf", "vt", "other"))
    out = binary_metrics(score[keep], label[keep] == "vf", threshold)
    out["excluded"] = {
        "mixed (spans a rhythm change)": int(np.count_nonzero(label == "mixed")),
        "noise": int(np.count_nonzero(label == "noise")),
        "before the first annotation": int(np.count_nonzero(label == "none")),
    }
    per: dict[str, Any] = {}
    for r in sorted(set(rhythm[keep | (label == "noise")].tolist())):
        m = rhythm == r
        per[r] = {"segments": int(m.sum()), "called_vf": float(np.mean(score[m] >= threshold))}
    out["per_rhythm"] = per
    vf = keep & (label == "vf")
    coarse, fine = vf & (ampl >= 0.2), vf & (ampl < 0.2)
    nsr = keep & np.isin(rhythm, ("(N", "(NSR"))
    asys = keep & (rhythm == "(ASYS")
    vt = keep & (label == "vt")
    other = keep & ~vf & ~nsr & ~asys & ~vt
    out["aha_groups"] = {
        "coarse_vf_se": float(np.mean(score[coarse] >= threshold)) if coarse.any() else None,
        "fine_vf_se": float(np.mean(score[fine] >= threshold)) if fine.any() else None,
        "nsr_sp": float(np.mean(score[nsr] < threshold)) if nsr.any() else None,
        "vt_called_vf": float(np.mean(score[vt] >= threshold)) if vt.any() else None,
        "other_nonshockable_sp": float(np.mean(score[other] < threshold)) if other.any() else None,
        "asystole_sp": float(np.mean(score[asys] < threshold)) if asys.any() else None,
        "n": {"coarse_vf": int(coarse.sum()), "fine_vf": int(fine.sum()), "nsr": int(nsr.sum()),
              "vt": int(vt.sum()), "other": int(other.sum()), "asystole": int(asys.sum())},
    }  # fmt: skip
    return out


def vt_report(
    tables: Sequence[LeadTable], oof: dict[str, np.ndarray], threshold: float = 0.5
) -> dict[str, Any]:
    """VT (rhythm annotation ``(VT``) against every non-VF rhythm, 4 s segments of vfdb and
    mitdb (each lead of mitdb counted), plus ventricular (VF or VT) against the rest."""
    out: dict[str, Any] = {}
    for db in ("vfdb", "mitdb", "all"):
        sv, sf, lab = [], [], []
        for tb, idx in (
            segments(tables, db)
            if db != "all"
            else (segments(tables, "vfdb") + segments(tables, "mitdb"))
        ):
            s = oof[f"{tb.record}:{tb.lead}"][idx]
            sv.append(s[:, 1])
            sf.append(s[:, 0])
            lab.append(tb.label[idx])
        v, f, label = np.concatenate(sv), np.concatenate(sf), np.concatenate(lab)
        keep = np.isin(label, ("vt", "other"))
        entry = binary_metrics(v[keep], label[keep] == "vt", threshold)
        vent = np.isin(label, ("vf", "vt", "other"))
        entry["ventricular_vf_or_vt"] = binary_metrics(
            (v + f)[vent], np.isin(label[vent], ("vf", "vt")), threshold
        )
        out[db] = entry
    return out


# -- bedside train vf ----------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Cross-validate, fit on every record, and write the model with its CV figures."""
    t0 = time.time()
    if args.folds < 2:
        raise UserError(f"--folds {args.folds}: need at least 2", "use --folds 11")
    tables = load_tables(args.data, cache=args.cache)
    hidden = HIDDEN if args.arch == "mlp" else 0
    oof = cross_validate(tables, args.folds, model_scorer(hidden, args.seed))
    base = cross_validate(tables, args.folds, threshold_rule("psr", 1))
    model = fit(tables, hidden=hidden, seed=args.seed, name=f"vf_ecg_{args.arch}")
    data = model.to_dict()
    data |= {
        "task": "vf",
        "inputs": ["ecg"],
        "window": {"fs_hz": CARDIAC_FS_HZ, "window_s": 4.0, "hop_s": 1.0,
                   "band_hz": [1.0, 30.0], "definition": "device.rhythm.vf.window_features"},
        "data": "vfdb (22 records) and mitdb (26 shared records, both leads), ../shared/data",
        "cv": {"folds": args.folds, "split": "by record", "vfdb_vf": vf_report(tables, oof),
               "vt": vt_report(tables, oof)},
        "dsp_baseline": {"rule": "psr (phase-space) threshold fitted on the training folds",
                         "vfdb_vf": vf_report(tables, base)},
        "trained": datetime.date.today().isoformat(),
        "elapsed_s": round(time.time() - t0, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, default=_json_default) + "\n", encoding="utf-8")
    cv = data["cv"]["vfdb_vf"]
    print(
        f"wrote {args.out}: vfdb VF Se {cv['se']:.3f} Sp {cv['sp']:.3f} AUC {cv['auc']:.3f} "
        f"(baseline AUC {data['dsp_baseline']['vfdb_vf']['auc']:.3f})"
    )
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)
