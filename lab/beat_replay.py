"""Replaying a record's ECG and beat times into the streaming beat classifier the way the core
does: samples in chunks, each beat added once the detector would have confirmed it (its R peak
plus the confirmation delay has arrived), then the final classes collected."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from device.beats.classify import BeatClassifier, ClassifiedBeat
from device.beats.model import BeatModel
from lab.ec57 import Record

#: the detector's confirmation delay assumed when replaying beat times
DELAY_S = 0.4


def replay(
    record: Record,
    beat_t_s: Sequence[float] | np.ndarray,
    *,
    chunk: int = 125,
    delay_s: float = DELAY_S,
    model: BeatModel | None = None,
    leads: Sequence[str] | None = None,
    features: list[tuple[float, np.ndarray]] | None = None,
    arrival_s: Sequence[float] | np.ndarray | None = None,
    beat_leads: Sequence[Collection[str]] | None = None,
) -> list[ClassifiedBeat]:
    """Every beat of ``beat_t_s`` classified (in time order). ``features``, when a list,
    receives each beat's feature vector. ``arrival_s``: when each beat reaches the classifier
    (default its time plus ``delay_s``); ``beat_leads``: the leads that saw each (default
    all)."""
    names = list(leads) if leads is not None else list(record.leads)
    clf = BeatClassifier(names, record.fs_hz, model=model)
    clf.feature_log = features
    n = min(len(record.leads[k]) for k in names)
    beats = np.asarray(beat_t_s, dtype=np.float64)
    order = np.argsort(beats, kind="stable")
    beats = beats[order]
    arrive = (
        beats + delay_s
        if arrival_s is None
        else np.maximum.accumulate(np.asarray(arrival_s, dtype=np.float64)[order])
    )
    everyone = frozenset(names)
    usable = (
        [everyone] * len(beats)
        if beat_leads is None
        else [frozenset(beat_leads[int(i)]) for i in order]
    )
    j = 0
    out: list[ClassifiedBeat] = []
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        clf.push({k: record.leads[k][a:b] for k in names})
        now = b / record.fs_hz
        while j < len(beats) and arrive[j] <= now + 1e-9:
            clf.add_beat(float(beats[j]), usable[j])
            j += 1
        out.extend(clf.classified())
    # the end of the recording: flush what is left with a stretch of gap
    tail = int(4 * record.fs_hz)
    clf.push({k: np.full(tail, np.nan) for k in names})
    while j < len(beats):
        clf.add_beat(float(beats[j]), usable[j])
        j += 1
    out.extend(clf.classified())
    return out
