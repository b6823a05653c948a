"""Fit the beat classifier's network on the shared MIT-BIH DS1 records, record-held-out.

Every record goes through what the appliance does: its leads through the device's resampler
to 125 Hz, main's streaming QRS detector and lead fusion (``lab.beat_detect``), and the
streaming ``BeatClassifier`` fed one second at a time with each beat added when the stream
would pass it on; each classified beat's feature vector (``device.beats.classify.FEATURES``)
is logged. Each detected beat is labelled with the AAMI class of the reference beat within
150 ms (``Q`` when there is none: an extra detection should not be called V or S).

The network (``device.beats.model.MlpModel``: standardised, clipped features, two ReLU
layers, softmax over N S V F Q; ``MEMBERS`` networks from different seeds, averaged) is
fitted with Adam on a class-weighted cross-entropy, in numpy. An extra detection and a
reference Q beat are trained as N (MIT-BIH's Q beats are paced; the paced records 102 104 107
217 are neither trained on nor scored). Cross-validation leaves one DS1 patient out at a time
(201 is one patient with the held-back 202), scoring VEB and SVEB gross statistics on the
left-out record from 5 min on, beside the signal-processing rules (``RuleModel``) on the same
beats. The final network is fitted on every DS1 record and written with its CV figures; the
appliance prefers it over the rules when its pooled CV VEB Se + +P is at least the rules'.

    python -m convert.beats [--data ../shared/data/mitdb] [--out device/beats/beat_mlp.json]
    bedside train beats --data ../shared/data/mitdb      # the same, through the CLI registry
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.beats.classify import FEATURES
from device.beats.model import CLASS_ORDER, MODEL_PATH, MlpModel, RuleModel

CLASSES = tuple(c.value for c in CLASS_ORDER)
CACHE_VERSION = 7
#: the network's hidden layers
HIDDEN = (32, 16)
#: class weights in training: (class share)^-BALANCE (0: none; 1: every class counts equally)
BALANCE = 0.7


def shared_mitdb() -> Path:
    env = os.environ.get("BEDSIDE_SHARED_DATA")
    root = Path(__file__).resolve().parents[1]
    for cand in (
        Path(env) if env else None,
        root.parent / "shared" / "data",
        root.parents[1] / "shared" / "data",
    ):
        if cand is not None and (cand / "mitdb").is_dir():
            return cand / "mitdb"
    return root.parent / "shared" / "data" / "mitdb"


@dataclass(frozen=True)
class Table:
    """One record's classified beats: features, the classifier's own class (with the model it
    ran with), the matched reference class (``Q`` for an extra detection) and the times."""

    name: str
    t_s: np.ndarray
    x: np.ndarray  # (n, len(FEATURES))
    label: np.ndarray  # reference AAMI class, or 'O' for an extra detection
    ref_t_s: np.ndarray
    ref_class: np.ndarray
    vf_s: tuple[tuple[float, float], ...]
    duration_s: float


def _match(ref_t: np.ndarray, ref_c: np.ndarray, t: np.ndarray, window: float = 0.15) -> np.ndarray:
    out = np.full(len(t), "O", dtype="<U1")
    if len(ref_t) == 0:
        return out
    k = np.clip(np.searchsorted(ref_t, t), 1, len(ref_t) - 1)
    near = np.where(np.abs(ref_t[k - 1] - t) <= np.abs(ref_t[k] - t), k - 1, k)
    ok = np.abs(ref_t[near] - t) <= window
    out[ok] = ref_c[near[ok]]
    return out


def record_table(path: Path, detector: str = "main", cache: Path | None = None) -> Table:
    """The table of one record (``path``: its .hea), cached under ``cache`` when given."""
    from lab.beat_replay import replay
    from lab.ec57 import read_record

    name = path.stem
    cpath = cache / f"{name}_{detector}_v{CACHE_VERSION}.npz" if cache is not None else None
    if cpath is not None and cpath.is_file():
        z = np.load(cpath, allow_pickle=False)
        if tuple(z["features"]) == FEATURES:
            return Table(
                name, z["t_s"], z["x"], z["label"], z["ref_t_s"], z["ref_class"],
                tuple(map(tuple, z["vf_s"].reshape(-1, 2))), float(z["duration_s"]),
            )  # fmt: skip
    rec = read_record(path)
    log0: list[tuple[float, np.ndarray]] = []
    if detector == "reference":
        t = rec.reference.t_s
        beats = replay(rec, t, model=RuleModel(), features=(log := log0))
    else:
        from lab.beat_detect import detect_beats

        det = detect_beats(rec)
        beats = replay(
            rec,
            [b.t_s for b in det],
            model=RuleModel(),
            features=(log := log0),
            arrival_s=[b.arrival_s for b in det],
            beat_leads=[b.leads for b in det],
        )
    # a beat with no usable lead has no features (NaN row): it is Q whatever the model
    feats = dict(log)
    t_s = np.array([b.t_s for b in beats], dtype=np.float64)
    x = np.full((len(beats), len(FEATURES)), np.nan)
    for i, b in enumerate(beats):
        f = feats.get(b.t_s)
        if f is not None:
            x[i] = f
    label = _match(rec.reference.t_s, rec.reference.classes, t_s)
    vf = np.asarray(rec.reference.vf_s, dtype=np.float64).reshape(-1, 2)
    tab = Table(
        name, t_s, x, label, rec.reference.t_s, rec.reference.classes,
        tuple(map(tuple, vf)), float(rec.reference.duration_s),
    )  # fmt: skip
    if cpath is not None:
        cpath.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            cpath, t_s=t_s, x=x, label=label, ref_t_s=tab.ref_t_s, ref_class=tab.ref_class,
            vf_s=vf, duration_s=tab.duration_s, features=np.array(FEATURES),
        )  # fmt: skip
    return tab


# -- the network -----------------------------------------------------------------------------
def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden: tuple[int, ...] | None = None,
    epochs: int = 40,
    seed: int = 0,
    lr: float = 3e-3,
    l2: float = 1e-4,
    batch: int = 256,
    balance: float | None = None,
    clip: float = 6.0,
) -> dict[str, Any]:
    """Weights of a softmax MLP (the ``MlpModel`` JSON's numeric part). Class weights are
    (count share)^-``balance``, so rare classes count more without swamping N."""
    hidden = HIDDEN if hidden is None else hidden
    balance = BALANCE if balance is None else balance
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    h0 = np.clip((x - mean) / scale, -clip, clip)
    n_cls = len(CLASSES)
    counts = np.bincount(y, minlength=n_cls).astype(np.float64)
    share = np.maximum(counts / counts.sum(), 1e-4)
    cw = share**-balance
    cw /= (cw * share).sum()
    sizes = (x.shape[1], *hidden, n_cls)
    ws = [rng.normal(0, np.sqrt(2.0 / a), (a, b)) for a, b in zip(sizes, sizes[1:], strict=False)]
    bs = [np.zeros(b) for b in sizes[1:]]
    params = [*ws, *bs]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    step = 0
    n = len(y)
    for _ep in range(epochs):
        perm = rng.permutation(n)
        for a in range(0, n, batch):
            idx = perm[a : a + batch]
            hs = [h0[idx]]
            for j in range(len(ws)):
                z = hs[-1] @ ws[j] + bs[j]
                hs.append(np.maximum(z, 0.0) if j < len(ws) - 1 else z)
            z = hs[-1] - hs[-1].max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            yi = y[idx]
            wi = cw[yi]
            g = p.copy()
            g[np.arange(len(idx)), yi] -= 1.0
            g *= (wi / wi.sum())[:, None]
            gw: list[np.ndarray] = [np.zeros(0)] * len(ws)
            gb: list[np.ndarray] = [np.zeros(0)] * len(ws)
            for j in range(len(ws) - 1, -1, -1):
                gw[j] = hs[j].T @ g + l2 * ws[j]
                gb[j] = g.sum(axis=0)
                if j > 0:
                    g = (g @ ws[j].T) * (hs[j] > 0)
            grads = [*gw, *gb]
            step += 1
            for q, (pp, gg) in enumerate(zip(params, grads, strict=True)):
                m1[q] = 0.9 * m1[q] + 0.1 * gg
                m2[q] = 0.999 * m2[q] + 0.001 * gg * gg
                mh = m1[q] / (1 - 0.9**step)
                vh = m2[q] / (1 - 0.999**step)
                pp -= lr * mh / (np.sqrt(vh) + 1e-8)
    return {
        "clip": clip,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "layers": [[w.tolist(), b.tolist()] for w, b in zip(ws, bs, strict=True)],
    }


#: networks fitted from different seeds and averaged (one alone varies from seed to seed by a
#: few points of VEB +P on a left-out record)
MEMBERS = 3


def fit_members(x: np.ndarray, y: np.ndarray, members: int = MEMBERS, **kw: Any) -> dict[str, Any]:
    """``members`` networks, seeds 0.., as the ``MlpModel`` JSON's numeric part."""
    return {"members": [fit_mlp(x, y, seed=s, **kw) for s in range(members)]}


def make_model(weights: dict[str, Any], **extra: Any) -> MlpModel:
    data = {"features": list(FEATURES), "classes": list(CLASSES), **weights, **extra}
    return MlpModel(data)


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Class letters of the rows of ``x`` (``Q`` for a row without features)."""
    ok = np.isfinite(x).all(axis=1)
    out = np.full(len(x), "Q", dtype="<U1")
    if not ok.any():
        return out
    if isinstance(model, MlpModel):
        p = model.probabilities(x[ok])
        out[ok] = [CLASSES[k] for k in p.argmax(axis=1)]
    else:
        out[ok] = [model.classify(r)[0].value for r in x[ok]]
    return out


def training_rows(tables: list[Table]) -> tuple[np.ndarray, np.ndarray]:
    """Features and target class indices of every beat with features. An extra detection
    ('O') and an unclassifiable reference beat are trained as N: the network has no Q output
    worth learning from these (MIT-BIH's Q beats are paced, and paced records are not
    trained on); Q is what the classifier says for a beat with no usable lead."""
    x = np.concatenate([t.x for t in tables])
    lab = np.concatenate([t.label for t in tables])
    ok = np.isfinite(x).all(axis=1)
    lab = np.where((lab == "O") | (lab == "Q"), "N", lab)
    y = np.array([CLASSES.index(c) for c in lab], dtype=np.int64)
    return x[ok], y[ok]


# -- scoring ---------------------------------------------------------------------------------
def score(tab: Table, classes: np.ndarray) -> Any:
    """EC57 counts of one record's beats called ``classes``."""
    from lab.ec57 import compare

    return compare(
        tab.ref_t_s,
        list(tab.ref_class),
        tab.t_s,
        list(classes),
        end_s=tab.duration_s,
        vf_s=tab.vf_s,
    )


def patient_of(name: str) -> str:
    return "201+202" if name in ("201", "202") else name


def cross_validate(
    tables: list[Table],
    *,
    test_tables: dict[str, list[Table]] | None = None,
    log: bool = True,
    **fit_kw: Any,
) -> dict[str, Any]:
    """Leave one patient out: each record's beats classified by a network fitted on every
    other patient's records, and by the rules. ``test_tables``: other beat sets of the same
    records to score the same out-of-fold networks on (name -> one table per record, in the
    order of ``tables``). Returns pooled and per-record EC57 statistics, per beat set."""
    from lab.ec57 import Confusion

    sets = {"detected": tables, **(test_tables or {})}
    pooled = {(k, m): Confusion() for k in sets for m in ("mlp", "rules")}
    per: dict[str, dict[str, Any]] = {}
    rules = RuleModel()
    for i, tab in enumerate(tables):
        train = [t for t in tables if patient_of(t.name) != patient_of(tab.name)]
        model = make_model(fit_members(*training_rows(train), **fit_kw))
        per[tab.name] = {}
        for k, tl in sets.items():
            t = tl[i]
            c_m, c_r = score(t, predict(model, t.x)), score(t, predict(rules, t.x))
            pooled[(k, "mlp")] += c_m
            pooled[(k, "rules")] += c_r
            per[tab.name][k] = {"mlp": c_m.statistics(), "rules": c_r.statistics()}
            if log:
                print(
                    f"  {tab.name} {k}: mlp VEB {c_m.veb_tp}/{c_m.veb_tp + c_m.veb_fn} FP "
                    f"{c_m.veb_fp} | rules {c_r.veb_tp}/{c_r.veb_tp + c_r.veb_fn} FP {c_r.veb_fp}",
                    file=sys.stderr,
                    flush=True,
                )
    return {
        k: {
            "pooled": {m: pooled[(k, m)].statistics() for m in ("mlp", "rules")},
            "tables": {m: pooled[(k, m)].table() for m in ("mlp", "rules")},
        }
        for k in sets
    } | {"per_record": per}


def load_tables(data: Path, names: list[str], detector: str, cache: Path | None) -> list[Table]:
    out = []
    for r in names:
        t0 = time.perf_counter()
        out.append(record_table(data / f"{r}.hea", detector, cache))
        print(
            f"  {r}: {len(out[-1].t_s)} beats ({time.perf_counter() - t0:.1f} s)", file=sys.stderr
        )
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None, help="folder of the MIT-BIH records")
    p.add_argument("--out", type=Path, default=MODEL_PATH, help="the model JSON to write")
    p.add_argument("--cache", type=Path, default=Path("build/beats"), help="feature tables")
    p.add_argument("--detector", choices=("main", "reference"), default="main")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--no-cv", action="store_true", help="fit the final network only")


def run(args: argparse.Namespace) -> int:
    from lab.ec57 import DS1

    data = args.data or shared_mitdb()
    names = list(DS1)
    print(f"feature tables ({args.detector} detector):", file=sys.stderr)
    tables = load_tables(data, names, args.detector, args.cache)
    cv: dict[str, Any] = {}
    if not args.no_cv:
        print("leave-one-patient-out:", file=sys.stderr)
        cv = cross_validate(tables, epochs=args.epochs, balance=BALANCE)["detected"]
    weights = fit_members(*training_rows(tables), epochs=args.epochs, balance=BALANCE)
    n_beats = int(sum(np.isfinite(t.x).all(axis=1).sum() for t in tables))
    pooled = cv.get("pooled", {})
    m, r = pooled.get("mlp", {}), pooled.get("rules", {})
    prefer = bool(
        m
        and all(m.get(k) is not None and r.get(k) is not None for k in ("veb_se", "veb_pp"))
        and m["veb_se"] + m["veb_pp"] >= r["veb_se"] + r["veb_pp"]
    )
    manifest = {
        "name": "beat_mlp",
        "fitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trained_on": {"records": names, "detector": args.detector, "beats": n_beats},
        "architecture": {
            "hidden": list(HIDDEN),
            "activation": "relu",
            "epochs": args.epochs,
            "members": MEMBERS,
            "class_balance": BALANCE,
        },
        "cv": {
            "scheme": "leave one DS1 patient out, EC57 gross statistics from 5 min on, "
            "150 ms match window, on the beats of main's QRS detector and lead fusion",
            "pooled": pooled,
            "tables": cv.get("tables", {}),
        },
        "prefer_over_dsp": prefer,
        "prefer_rule": "VEB Se + VEB +P of the network >= the rules' (pooled CV)",
    }
    make_model(weights)  # validates the layout
    data_out = {"features": list(FEATURES), "classes": list(CLASSES), **manifest, **weights}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data_out, separators=(",", ":")) + "\n", encoding="utf-8")
    print(json.dumps({"pooled": pooled, "prefer_over_dsp": prefer}, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.beats", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
