"""The ventricular-rhythm detector (device/rhythm/vf.py) on real ECG and on broken leads.

The bundled excerpt (``device/data/vfdb_426_excerpt.csv.gz``, vfdb record 426, ODC-By) holds
15 s of sinus rhythm and then 14 s of ventricular fibrillation. It is fed through the pipeline's
own resampling (250 -> 125 Hz), as the core feeds the detector. The shipped model was fitted
on every vfdb record, this one included, so these tests check the detector works end to end,
not how well it generalises (that is bench/vfdb.py's record-held-out cross-validation).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from device.errors import UserError
from device.pipeline import RoleStream
from device.rhythm.vf import (
    FEATURE_NAMES,
    MIN_QUALITY,
    SHIPPED_MODEL,
    RhythmJudgement,
    RhythmModel,
    VentricularRhythm,
)
from device.roles import CARDIAC_FS_HZ

EXCERPT = Path(__file__).resolve().parents[1] / "device" / "data" / "vfdb_426_excerpt.csv.gz"
FS_IN = 250.0
#: VF starts 16 s into the excerpt (the record's annotation at 646 s)
ONSET_S = 16


def excerpt_125() -> np.ndarray:
    with gzip.open(EXCERPT, "rt", encoding="utf-8") as f:
        rows = f.read().splitlines()[1:]
    x = np.array([float(r.split(",")[1]) for r in rows])
    return RoleStream("ecg", FS_IN, CARDIAC_FS_HZ)(x)


def run(x: np.ndarray, chunk: int) -> list[RhythmJudgement]:
    """Push ``x`` in chunks of ``chunk`` samples and judge every whole second as soon as its
    samples are in."""
    det = VentricularRhythm()
    out: list[RhythmJudgement] = []
    k = 1
    for i in range(0, len(x), chunk):
        det.push(x[i : i + chunk])
        while det.samples_seen >= round(k * CARDIAC_FS_HZ):
            out.append(det.judge(float(k)))
            k += 1
    return out


def test_chunk_size_invariant() -> None:
    x = excerpt_125()
    x[900:1000] = np.nan  # a gap too
    runs = [run(x, c) for c in (1, 7, 1000)]
    assert len(runs[0]) == int(len(x) // CARDIAC_FS_HZ)
    assert runs[0] == runs[1] == runs[2]


def test_vf_high_sinus_low() -> None:
    js = {int(j.t_s): j for j in run(excerpt_125(), 125)}
    sinus = [js[t] for t in range(5, ONSET_S + 1)]  # windows wholly before the onset
    vf = [js[t] for t in range(ONSET_S + 5, 31)]  # wholly after it
    # sinus rhythm: neither VF nor VT
    assert max(j.vf_score for j in sinus) < 0.1, [round(j.vf_score, 2) for j in sinus]
    assert max(j.vt_score for j in sinus) < 0.3, [round(j.vt_score, 2) for j in sinus]
    # VF: ventricular beyond doubt, and more VF than VT (the model splits the two less
    # cleanly than it tells either from other rhythms: bench/vfdb.py)
    assert min(j.vf_score + j.vt_score for j in vf) > 0.9
    assert float(np.median([j.vf_score for j in vf])) > 0.5
    assert all(j.quality >= MIN_QUALITY for j in sinus + vf)
    assert all(j.detail == "ok" for j in sinus + vf)
    # VF oscillates at 3-5 Hz; the sinus rhythm here is about 75/min
    assert all(j.rate_per_min is not None and j.rate_per_min > 150 for j in vf)
    assert all(j.rate_per_min is not None and j.rate_per_min < 130 for j in sinus)


def judge_after(x_bad: np.ndarray) -> RhythmJudgement:
    """Real sinus rhythm for 15 s, then ``x_bad``; the judgement at its end."""
    x = np.concatenate((excerpt_125()[: ONSET_S * 125], x_bad))
    return run(x, 125)[-1]


def test_broken_leads_have_low_quality() -> None:
    good = excerpt_125()[: ONSET_S * 125]
    scale = float(np.ptp(good))
    rng = np.random.default_rng(0)
    n = 6 * 125
    cases = {
        "gap": np.full(n, np.nan),
        "long gap": np.full(5 * n, np.nan),
        "flat": np.full(n, float(good[-1])),
        "lead off (amplifier noise)": good[-1] + 0.002 * scale * rng.standard_normal(n),
        "saturated": np.full(n, float(good.max()) * 3),
        "clipped": np.clip(np.resize(good, n) * 20, -scale, scale),
        "muscle noise": np.resize(good, n) + 0.5 * scale * rng.standard_normal(n),
        "artefact": 40 * scale * np.sin(2 * np.pi * 1.5 * np.arange(n) / 125),
    }
    for name, bad in cases.items():
        j = judge_after(bad)
        assert j.quality < MIN_QUALITY, (name, j)
        assert j.detail != "ok", (name, j)
    assert judge_after(np.resize(good, n)).quality >= MIN_QUALITY


def test_judge_refuses_the_future_and_the_far_past() -> None:
    det = VentricularRhythm()
    det.push(np.zeros(125))
    with pytest.raises(ValueError, match="pushed"):
        det.judge(2.0)
    det.push(np.zeros(125 * 20))
    with pytest.raises(ValueError, match="behind"):
        det.judge(1.0)
    j = det.judge(21.0)
    assert j.quality == 0.0 and j.detail == "flat" and j.vf_score == 0.0


def test_shipped_model_and_broken_models() -> None:
    data = json.loads(SHIPPED_MODEL.read_text())
    model = RhythmModel.from_dict(data)
    p = model.probabilities(np.ones((2, len(FEATURE_NAMES))))
    assert p.shape == (2, 3) and np.allclose(p.sum(axis=1), 1.0)
    rows = np.abs(np.random.default_rng(1).standard_normal((50, len(FEATURE_NAMES))))
    one = np.stack([model.probabilities_one(r) for r in rows])  # the detector's path
    assert np.allclose(one, model.probabilities(rows), rtol=0, atol=1e-12)
    assert data["cv"]["split"] == "by record"
    for broken in (
        {**data, "features": ["no_such_feature"]},
        {**data, "classes": ["vf", "other"]},
        {**data, "layers": []},
    ):
        with pytest.raises(UserError, match="bedside train vf"):
            RhythmModel.from_dict(broken)


@pytest.mark.slow
def test_vfdb_labels_follow_the_annotations(shared_data: Path) -> None:
    """The training table of a real record: VF windows where vfdb 426 annotates VF."""
    pytest.importorskip("wfdb")
    from convert.vf import annotated_tables

    (tb,) = annotated_tables(shared_data / "vfdb" / "426")
    at = {int(t): str(lab) for t, lab in zip(tb.t_s, tb.label, strict=True)}
    assert at[700] == "vf" and at[600] == "other" and at[648] == "mixed"
    assert tb.features.shape == (len(tb.t_s), len(FEATURE_NAMES))
