"""Beats the way the appliance's beat stream finds them, for the MIT-BIH bench and training.

Each ECG lead of a record (at the cardiac rate, as ``lab.ec57.read_record`` gives it) goes
through its own streaming ``device.beats.qrs.QrsDetector`` one second at a time, and the
leads' detections are fused into one beat per heartbeat with the rule of main's
``device.beats.stream.BeatStream`` (detections of different leads within 150 ms are one beat;
it counts when the leads that saw it outweigh, by their running weights, the leads that did
not; the best-weighted lead times it). The fusion is restated here, not imported, because the
stream also wires in the VF/VT rhythm judgement, which this branch does not carry; the
detector itself is main's ``qrs.py``, copied unchanged.

Each beat also says *when* the stream would have handed it to the beat classifier (the end of
the one-second step in which it was fused), so a replay can add it at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.beats.beat import Detection
from device.beats.qrs import QrsDetector
from device.dsp.resample import Resampler
from lab.ec57 import Record

#: the stream's fusion window and weight smoothing (main's ``stream.FUSE_S``, ``WEIGHT_ALPHA``)
FUSE_S = 0.15
WEIGHT_ALPHA = 0.1


@dataclass(frozen=True)
class DetectedBeat:
    """One fused beat: its R-peak time, the leads that saw it, and the signal time at which the
    stream would pass it on (``arrival_s``)."""

    t_s: float
    leads: tuple[str, ...]
    arrival_s: float


def resampler_delay_s(source_fs_hz: float, fs_hz: float, at_hz: float = 10.0) -> float:
    """The group delay of the device's resampler's anti-alias filter at ``at_hz`` (what main's
    ``Resampler.delay_s`` returns and the stream subtracts from beat times)."""
    return float(Resampler(source_fs_hz, fs_hz).delay_s(at_hz))


class _Weight:
    def __init__(self) -> None:
        self.shape = self.seen = self.confirmed = 1.0

    @property
    def value(self) -> float:
        return self.shape * self.seen * self.confirmed

    def update(self, attr: str, x: float) -> None:
        setattr(self, attr, getattr(self, attr) + WEIGHT_ALPHA * (x - getattr(self, attr)))


def detect_beats(record: Record, leads: list[str] | None = None) -> list[DetectedBeat]:
    """Every fused beat of ``record``, in time order."""
    names = list(leads) if leads is not None else list(record.leads)
    fs = record.fs_hz
    delay = resampler_delay_s(record.source_fs_hz, fs)
    dets = {k: QrsDetector(fs, delay, k) for k in names}
    weights = {k: _Weight() for k in names}
    n = min(len(record.leads[k]) for k in names)
    step = int(round(fs))
    pending: list[tuple[str, Detection]] = []
    out: list[DetectedBeat] = []

    def vote(group: dict[str, Detection], arrival: float) -> None:
        w = {k: max(weights[k].value, 1e-3) for k in names}
        saw = list(group)
        for_ = sum(w[k] for k in saw)
        against = sum(w[k] for k in names if k not in group)
        accepted = len(names) == 1 or for_ >= against
        for k in names:
            weights[k].update("seen" if accepted else "confirmed", 1.0)
        for k in saw:
            weights[k].update("shape", group[k].corr)
            weights[k].update("confirmed", 1.0 if accepted else 0.0)
        if not accepted:
            return
        for k in names:
            if k not in group:
                weights[k].update("seen", 0.0)
        timing = max(saw, key=lambda k: w[k])
        out.append(DetectedBeat(group[timing].t_s, tuple(saw), arrival))

    for a in range(0, n, step):
        b = min(n, a + step)
        for k in names:
            pending.extend((k, d) for d in dets[k].push(record.leads[k][a:b]))
        d0 = dets[names[0]]
        decided = (d0.total - 1 - d0.refractory) / fs - delay
        horizon = decided - FUSE_S
        pending.sort(key=lambda kd: kd[1].t_s)
        while pending and pending[0][1].t_s < horizon:
            first = pending[0][1].t_s
            group: dict[str, Detection] = {}
            rest: list[tuple[str, Detection]] = []
            for k, d in pending:
                if d.t_s - first <= FUSE_S and k not in group:
                    group[k] = d
                else:
                    rest.append((k, d))
            pending = rest
            vote(group, b / fs)
    return out
