"""The streaming beat classifier (device/beats/classify.py) on the bundled MIT-BIH excerpt
(record 119, 60 s: sinus beats with ventricular bigeminy and trigeminy), and on the shared
records where they are present."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from device.beats.beat import BeatClass
from device.beats.classify import FINAL_S, BeatClassifier, ClassifiedBeat
from device.beats.model import MODEL_PATH, MlpModel, RuleModel, default_model
from device.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "mitdb_119_excerpt.hea"

wfdb = pytest.importorskip("wfdb", reason="wfdb (the 'dev' extra) reads the WFDB excerpt")


@pytest.fixture(scope="module")
def excerpt():  # type: ignore[no-untyped-def]
    from lab.ec57 import read_record

    return read_record(EXCERPT)


def _feed(rec, chunk: int, delay_s: float = 0.4, model=None) -> list[ClassifiedBeat]:  # type: ignore[no-untyped-def]
    """Samples in chunks of ``chunk``, each reference beat added once ``delay_s`` after its R
    peak has arrived, ``classified()`` after every push; nothing flushed at the end."""
    names = list(rec.leads)
    clf = BeatClassifier(names, rec.fs_hz, model=model)
    n = min(len(x) for x in rec.leads.values())
    beats = rec.reference.t_s
    j = 0
    out: list[ClassifiedBeat] = []
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        clf.push({k: rec.leads[k][a:b] for k in names})
        while j < len(beats) and beats[j] + delay_s <= b / rec.fs_hz:
            clf.add_beat(float(beats[j]), names)
            j += 1
        out.extend(clf.classified())
    return out


def test_chunk_size_does_not_change_a_single_class(excerpt) -> None:  # type: ignore[no-untyped-def]
    runs = [_feed(excerpt, c) for c in (1, 7, 1000)]
    assert len(runs[0]) > 50
    for other in runs[1:]:
        assert [dataclasses.astuple(b) for b in other] == [dataclasses.astuple(b) for b in runs[0]]


@pytest.mark.parametrize("model", [None, RuleModel()], ids=["shipped", "rules"])
def test_ventricular_beats_are_called_v_and_normal_ones_n(excerpt, model) -> None:  # type: ignore[no-untyped-def]
    out = _feed(excerpt, 125, model=model)
    ref = dict(zip(np.round(excerpt.reference.t_s, 6), excerpt.reference.classes, strict=True))
    got = [(ref[round(b.t_s, 6)], b.beat_class) for b in out]
    # the first beats teach the classifier the patient's dominant beat: judge from 10 s on
    judged = [(r, c) for (r, c), b in zip(got, out, strict=True) if b.t_s >= 10.0]
    v = [c for r, c in judged if r == "V"]
    n = [c for r, c in judged if r == "N"]
    assert len(v) >= 12 and len(n) >= 30
    assert sum(c == BeatClass.V for c in v) >= 0.9 * len(v)
    assert sum(c == BeatClass.N for c in n) >= 0.9 * len(n)
    for b in out:
        assert isinstance(b.beat_class, BeatClass)
        assert 0.0 <= b.quality <= 1.0
        assert b.leads == ("MLII", "V1")


def test_every_beat_comes_out_once_in_order_within_the_bound(excerpt) -> None:  # type: ignore[no-untyped-def]
    names = list(excerpt.leads)
    fs = excerpt.fs_hz
    clf = BeatClassifier(names, fs)
    beats = excerpt.reference.t_s
    last = float(beats[-1])
    n = int(round((last + 0.5) * fs))  # the recording stops 0.5 s after the last beat...
    seen: dict[float, float] = {}
    j = 0
    for a in range(0, n, 25):
        b = min(n, a + 25)
        clf.push({k: excerpt.leads[k][a:b] for k in names})
        while j < len(beats) and beats[j] + 0.4 <= b / fs:
            clf.add_beat(float(beats[j]), names)
            j += 1
        for c in clf.classified():
            seen[c.t_s] = b / fs
    assert last not in seen  # ...so the last beat waits for its successor or the deadline
    # then only gaps (NaN) arrive: no next beat ever comes
    t = n / fs
    while t < last + FINAL_S + 0.2:
        clf.push({k: np.full(5, np.nan) for k in names})
        t += 5 / fs
        for c in clf.classified():
            seen[c.t_s] = t
    assert list(seen) == [float(x) for x in beats]  # each once, in order
    assert all(t_out - t_beat <= FINAL_S + 5 / fs + 1e-9 for t_beat, t_out in seen.items())
    assert seen[last] >= last + FINAL_S - 1e-9
    assert clf.classified() == []


def test_a_beat_without_usable_leads_is_q_and_unknown_leads_are_refused() -> None:
    clf = BeatClassifier(["II", "V"])
    rng = np.random.default_rng(1)
    clf.push({"II": rng.normal(size=500), "V": rng.normal(size=500)})
    clf.add_beat(1.0, [])
    out = clf.classified()
    assert [(b.t_s, b.beat_class, b.quality) for b in out] == [(1.0, BeatClass.Q, 0.0)]
    with pytest.raises(ValueError, match="unknown leads"):
        clf.push({"aVR": np.zeros(3)})
    with pytest.raises(ValueError, match="equal lengths"):
        clf.push({"II": np.zeros(3), "V": np.zeros(4)})
    with pytest.raises(ValueError, match="at least one"):
        BeatClassifier([])


def test_a_gap_over_a_beat_makes_it_q(excerpt) -> None:  # type: ignore[no-untyped-def]
    names = list(excerpt.leads)
    fs = excerpt.fs_hz
    clf = BeatClassifier(names, fs)
    beats = excerpt.reference.t_s
    hole = float(beats[20])
    n = int(40 * fs)
    j = 0
    out: list[ClassifiedBeat] = []
    for a in range(0, n, 125):
        b = a + 125
        chunk = {k: excerpt.leads[k][a:b].copy() for k in names}
        idx = np.arange(a, b) / fs
        for x in chunk.values():
            x[np.abs(idx - hole) < 0.3] = np.nan  # every lead lost around that beat
        clf.push(chunk)
        while j < len(beats) and beats[j] + 0.4 <= b / fs:
            clf.add_beat(float(beats[j]), names)
            j += 1
        out.extend(clf.classified())
    by_t = {b.t_s: b for b in out}
    assert by_t[hole].beat_class == BeatClass.Q
    assert by_t[hole].leads == ()
    assert by_t[float(beats[25])].beat_class != BeatClass.Q


def test_the_shipped_model_matches_this_software() -> None:
    m = MlpModel.load(MODEL_PATH)
    cv = m.manifest["cv"]["pooled"]
    assert set(cv) == {"mlp", "rules"}
    assert isinstance(default_model(), (MlpModel, RuleModel))
    assert bool(m.manifest["prefer_over_dsp"]) == isinstance(default_model(), MlpModel)
    bad = dict(m.manifest, features=["corr"])
    with pytest.raises(UserError, match="bedside train beats"):
        MlpModel(bad)
