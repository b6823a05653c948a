"""The streaming core: samples in, one typed ``Second`` per second of signal time out.

Plain synchronous code with no threads, sockets or wall-clock reads. Live sources, replays
and ``bedside process`` all drive it the same way::

    core = Pipeline({Role.PPG: 125.0, Role.RESP: 125.0})
    core.feed(Role.PPG, chunk_ppg); core.feed(Role.RESP, chunk_resp)
    for second in core.drain(): ...

Inputs are channels (``device.roles.Channel``): a role, and for the ECG its lead (``ecg:II``,
``ecg:V``); a role's first channel is the one its estimators read. Every cardiac channel (each
ECG lead, the pleth, the arterial line) feeds the beat stream (``device.beats``), which
detects each beat once as it arrives; heart rate and the arrhythmia conditions read it.

Second ``k`` is computed once every channel in use has delivered its samples up to ``k`` s,
so the output depends only on the samples, never on how they were chunked. A source that
stops delivering is fed NaN (a gap) by its shell, which keeps the clock going.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from device.beats.beat import Beat
from device.beats.evidence import CardiacEvidence, EvidenceTracker
from device.beats.stream import BeatsStep, BeatStream
from device.dsp.gaps import HoldGaps
from device.dsp.polyphase import AudioStream
from device.dsp.resample import Resampler
from device.estimators.base import Estimate, Estimator
from device.estimators.breaths import BreathIntervalRR
from device.inputs import RoleInput, RoleTracker
from device.messages import Vitals
from device.roles import CARDIAC, CARDIAC_FS_HZ, Channel, EstimateKey, Quantity, Role

if TYPE_CHECKING:
    from device.config import Config

#: Preference order of sources for each quantity: ECG is the reference for heart rate
#: (a PPG or arterial pulse rate lags and misses beats in arrhythmia); thoracic impedance is
#: the reference for breathing.
HR_PREFERENCE = (Role.ECG, Role.PPG, Role.ABP, Role.AUDIO)
RR_PREFERENCE = (Role.RESP, Role.PPG, Role.AUDIO)


@dataclass(frozen=True)
class Second:
    """Everything the core knows about one completed second of signal time.

    - ``vitals``: what is published (HR and RR with their sources);
    - ``estimates``: every estimator's answer, by (quantity, role);
    - ``inputs``: each channel's input state (samples, lost, flat or saturated, poor);
    - ``errors``: estimators that raised this second, with the error;
    - ``last_breath_s``: when the apnea breath detector on the impedance last saw a breath
      (None without an impedance role, or before the first breath);
    - ``beats``: what the beat stream says of this second (the beats now final, each
      channel's detections, the ECG leads' weights);
    - ``raw``: each channel's samples of this second as they arrived (NaN: missing);
    - ``cardiac``: the evidence the arrhythmia conditions judge (None without a cardiac
      channel).
    """

    t_s: float
    vitals: Vitals
    estimates: Mapping[EstimateKey, Estimate]
    inputs: Mapping[Channel, RoleInput]
    errors: Mapping[EstimateKey, str]
    last_breath_s: float | None
    beats: BeatsStep = field(default_factory=lambda: BeatsStep({}, ()))
    raw: Mapping[Channel, np.ndarray] = field(default_factory=dict)
    cardiac: CardiacEvidence | None = None

    def input(self, role: Role) -> RoleInput | None:
        """The input state of ``role``'s first channel (None: not an input)."""
        for ch, inp in self.inputs.items():
            if ch.role == role:
                return inp
        return None

    @property
    def new_beats(self) -> tuple[Beat, ...]:
        return self.beats.beats


class RoleStream:
    """One role's input: gap handling and resampling to the estimators' rate."""

    def __init__(self, role: str, fs_in: float, fs_out: float) -> None:
        self.role, self.fs_in, self.fs_out = role, fs_in, fs_out
        self._hold = HoldGaps()
        self._resample = Resampler(fs_in, fs_out)
        self._resample_gap = Resampler(fs_in, fs_out)
        self._gap_seen = False  # a sample has been missing at least once

    def __call__(self, x: np.ndarray) -> np.ndarray:
        held, bad = self._hold(x)
        y = self._resample(held)
        any_bad = bool(bad.any())
        self._gap_seen = self._gap_seen or any_bad
        if any_bad or (self._gap_seen and not self._resample_gap.identity):
            gap = self._resample_gap(bad.astype(np.float64))
            y = np.where(gap > 0.01, np.nan, y)
        else:
            # no gap yet: the resampled gap mask would be all zeros and mark nothing
            self._resample_gap.skip_zeros(len(x))
        return y


def default_estimators(roles: Iterable[str], cfg: Config | None = None) -> list[Estimator]:
    """The estimators the core runs for these roles (``estimators.registry``), by ``cfg``'s
    ``[models]`` and what its ``[audio]`` channel listens to."""
    from device.estimators.audio_vitals import unheard
    from device.estimators.registry import select_estimators

    roles = list(dict.fromkeys(Channel.parse(r).role.value for r in roles))
    if cfg is None:
        return select_estimators(roles)
    return select_estimators(roles, cfg.models, unheard(cfg.audio.listens))


class Pipeline:
    """Feeds each channel's samples to the beat stream and the estimators and assembles one
    ``Second`` per second."""

    def __init__(
        self,
        fs_hz: Mapping[str, float] | Mapping[Channel, float],
        estimators: Sequence[Estimator] | None = None,
        whole_hr: bool = True,
        sensor_off_s: float = 3.0,
    ) -> None:
        """``fs_hz``: each input channel (``"ppg"``, ``"ecg:II"`` or a ``Channel``) and its rate.
        ``whole_hr``: publish HR in whole bpm (``whole_bpm``); False keeps the estimator's
        value, for measuring what the rounding changes (``bench/accuracy.py --unrounded``).
        ``sensor_off_s``: the shortest window judged for a flat or saturated sensor."""
        if not fs_hz:
            raise ValueError("a pipeline needs at least one role")
        self.channels: dict[Channel, float] = {
            Channel.parse(k): float(fs) for k, fs in fs_hz.items()
        }
        #: each input's rate by its name (``"ecg:II"``), as sources and frames name them
        self.fs_hz: dict[str, float] = {str(ch): fs for ch, fs in self.channels.items()}
        #: each role's first channel: the one its estimators read
        self.primary: dict[Role, Channel] = {}
        for ch in self.channels:
            self.primary.setdefault(ch.role, ch)
        self.role_fs_hz: dict[Role, float] = {r: self.channels[c] for r, c in self.primary.items()}
        self.whole_hr = whole_hr
        self.estimators = (
            list(estimators) if estimators is not None else default_estimators(self.role_fs_hz)
        )
        # channel -> one resampling stream per rate, with the estimators it feeds
        self._routes: dict[
            Channel, dict[float, tuple[RoleStream | AudioStream, list[Estimator]]]
        ] = {ch: {} for ch in self.channels}
        # every cardiac channel feeds the beat stream at the cardiac rate
        delays: dict[Channel, float] = {}
        for ch, fs in self.channels.items():
            if ch.role in CARDIAC:
                self._stream(ch, CARDIAC_FS_HZ)
                delays[ch] = Resampler(fs, CARDIAC_FS_HZ).delay_s()
        self.beats = BeatStream(delays)
        self._evidence = EvidenceTracker(list(delays)) if delays else None
        self._beat_fed = [e for e in self.estimators if getattr(e, "beat_role", None) is not None]
        for est in self.estimators:
            self._route(est)
        # Apnea is judged from breaths detected on the impedance, whichever RR estimator is
        # chosen: the signal-processing one when it runs, else a detector of its own.
        self.breath_detector: BreathIntervalRR | None = None
        self._own_detector = False
        if Role.RESP in self.primary:
            dsp = [e for e in self.estimators if isinstance(e, BreathIntervalRR)]
            dsp = [e for e in dsp if e.role == Role.RESP]
            if dsp:
                self.breath_detector = dsp[0]
            else:
                self.breath_detector = BreathIntervalRR(Role.RESP, name="apnea")
                self._own_detector = True
                self._route(self.breath_detector)
        self._trackers = {
            ch: RoleTracker(ch.role, fs, sensor_off_s) for ch, fs in self.channels.items()
        }
        self._present: dict[Channel, bool] = dict.fromkeys(self.channels, True)
        self._pending: dict[Channel, list[np.ndarray]] = {ch: [] for ch in self.channels}
        self._n_pending: dict[Channel, int] = dict.fromkeys(self.channels, 0)
        self._consumed: dict[Channel, int] = dict.fromkeys(self.channels, 0)
        self.second = 0  # last second emitted

    def _stream(self, ch: Channel, fs_out: float) -> list[Estimator]:
        """The estimators fed by ``ch``'s stream at ``fs_out`` (made on first use)."""
        if fs_out not in self._routes[ch]:
            # audio: vectorised polyphase FIR (device/dsp/polyphase.py); the IIR resampler runs
            # per sample and would cost several % of a core at 48 kHz
            stream = AudioStream if ch.role == Role.AUDIO else RoleStream
            self._routes[ch][fs_out] = (stream(str(ch), self.channels[ch], fs_out), [])
        return self._routes[ch][fs_out][1]

    def _route(self, est: Estimator) -> None:
        role = Role(est.role)
        if role not in self.primary:
            raise ValueError(f"estimator {est.name} needs role {role!r}, which is not an input")
        if getattr(est, "takes_samples", True):
            self._stream(self.primary[role], est.fs_hz).append(est)

    # -- input ---------------------------------------------------------------------------
    def feed(self, channel: str | Channel, x: np.ndarray | Sequence[float]) -> None:
        """Queue samples of one channel (any chunk size; NaN marks a gap)."""
        try:
            key = Channel.parse(channel)
        except ValueError:
            return
        if key not in self._pending:
            return  # a channel not in use (``--use``) is hidden from the core
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
        if arr.size:
            self._pending[key].append(arr)
            self._n_pending[key] += arr.size

    def feed_gap(self, channel: str | Channel, n_samples: int) -> None:
        """Mark ``n_samples`` as missing (the source delivered nothing): keeps the clock going."""
        self.feed(channel, np.full(int(n_samples), np.nan))

    def _take(self, ch: Channel, n: int) -> np.ndarray:
        chunks = self._pending[ch]
        buf = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
        head, tail = buf[:n], buf[n:]
        self._pending[ch] = [tail] if tail.size else []
        self._n_pending[ch] -= n
        self._consumed[ch] += n
        return head

    # -- output --------------------------------------------------------------------------
    def _boundary(self, ch: Channel, second: int) -> int:
        """Input samples of ``ch`` that lie before ``second`` seconds."""
        return int(math.ceil(second * self.channels[ch] - 1e-9))

    def ready(self) -> bool:
        k = self.second + 1
        return all(
            self._consumed[c] + self._n_pending[c] >= self._boundary(c, k) for c in self.channels
        )

    def drain(self) -> list[Second]:
        """Every second that is now complete on all channels."""
        out = []
        while self.ready():
            out.append(self.advance())
        return out

    def advance(self) -> Second:
        """Process exactly the next second (call only when ``ready()``)."""
        k = self.second + 1
        raw: dict[Channel, np.ndarray] = {}
        leads: dict[Channel, np.ndarray] = {}
        for ch in self.channels:
            x = self._take(ch, self._boundary(ch, k) - self._consumed[ch])
            raw[ch] = x
            for fs_out, (stream, fed) in self._routes[ch].items():
                y = stream(x)
                for est in fed:
                    est.push(y)
                if fs_out == CARDIAC_FS_HZ and ch.role in CARDIAC:
                    self.beats.push(ch, y)
                    if ch.role == Role.ECG:
                        leads[ch] = y
        if leads:
            self.beats.push_leads(leads)
        self.second = k
        return self._second(float(k), raw)

    def _second(self, t_s: float, raw: dict[Channel, np.ndarray]) -> Second:
        beats = self.beats.step(t_s, self._present)
        for est in self._beat_fed:
            est.push_beats(beats.detections.get(est.beat_role, ()))  # type: ignore[attr-defined]
        estimates: dict[EstimateKey, Estimate] = {}
        errors: dict[EstimateKey, str] = {}
        for est in self.estimators:
            key = EstimateKey(est.quantity, est.role)
            try:
                estimates[key] = est.estimate(t_s)
            except Exception as e:  # a failing model must not stop the monitor: it is alarmed
                errors[key] = f"{est.name}: {e.__class__.__name__}: {e}"
                estimates[key] = Estimate(None, 0.0, est.name, est.role, est.quantity)
        if self._own_detector and self.breath_detector is not None:
            self.breath_detector.estimate(t_s)
        has_estimate = {
            role: any(e.value is not None for k, e in estimates.items() if k.role == role)
            for role in self.primary
        }
        inputs = {
            ch: tracker.update(t_s, raw[ch], has_estimate[ch.role])
            for ch, tracker in self._trackers.items()
        }
        self._present = {ch: inp.lost_s < 1.0 and inp.off_s == 0 for ch, inp in inputs.items()}
        cardiac = (
            self._evidence.update(t_s, beats, inputs, self.beats.last_beat_s)
            if self._evidence is not None
            else None
        )
        hr = _choose(estimates.values(), Quantity.HR, HR_PREFERENCE)
        rr = _choose(estimates.values(), Quantity.RR, RR_PREFERENCE)
        vitals = Vitals(
            t_s=t_s,
            hr_bpm=(whole_bpm(hr.value) if self.whole_hr else hr.value) if hr else None,
            rr_bpm=rr.value if rr else None,
            hr_source=hr.role if hr else None,
            rr_source=rr.role if rr else None,
            hr_model=hr.estimator if hr else None,
            rr_model=rr.estimator if rr else None,
            sqi={k: e.quality for k, e in estimates.items()},
        )
        detector = self.breath_detector
        return Second(
            t_s=t_s,
            vitals=vitals,
            estimates=estimates,
            inputs=inputs,
            errors=errors,
            last_breath_s=detector.last_breath_s if detector is not None else None,
            beats=beats,
            raw=raw,
            cardiac=cardiac,
        )


def whole_bpm(x: float | None) -> float | None:
    """Heart rate in whole beats per minute, halves rounded up: what bedside monitors show,
    record and compare with alarm limits (the BIDMC reference is the monitor's integer HR).
    A tenth of a beat per minute would be false precision for an average over ~10 beats."""
    return None if x is None else float(math.floor(x + 0.5))


def _choose(
    estimates: Iterable[Estimate], quantity: Quantity, preference: Sequence[Role]
) -> Estimate | None:
    valid = [e for e in estimates if e.quantity == quantity and e.value is not None]
    if not valid:
        return None
    rank = {r: i for i, r in enumerate(preference)}
    return min(valid, key=lambda e: (rank.get(e.role, len(rank)), -e.quality))


def run_recording(
    signals: Mapping[str, np.ndarray],
    fs_hz: float,
    chunk: int = 1000,
    estimators: Sequence[Estimator] | None = None,
    whole_hr: bool = True,
) -> list[Vitals]:
    """Drive a pipeline over whole signals in chunks of ``chunk`` samples (offline use)."""
    core = Pipeline({k: fs_hz for k in signals}, estimators, whole_hr)
    n = max(len(x) for x in signals.values())
    out: list[Vitals] = []
    for a in range(0, n, chunk):
        for role, x in signals.items():
            core.feed(role, x[a : a + chunk])
        out.extend(s.vitals for s in core.drain())
    return out
