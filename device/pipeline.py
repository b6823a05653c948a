"""The streaming core: samples in, one typed ``Second`` per second of signal time out.

Plain synchronous code with no threads, sockets or wall-clock reads. Live sources, replays
and ``bedside process`` all drive it the same way::

    core = Pipeline({Role.PPG: 125.0, Role.RESP: 125.0})
    core.feed(Role.PPG, chunk_ppg); core.feed(Role.RESP, chunk_resp)
    for second in core.drain(): ...

Second ``k`` is computed once every role in use has delivered its samples up to ``k`` s, so
the output depends only on the samples, never on how they were chunked. A source that stops
delivering is fed NaN (a gap) by its shell, which keeps the clock going.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from device.dsp.gaps import HoldGaps
from device.dsp.polyphase import AudioStream
from device.dsp.resample import Resampler
from device.estimators.base import Estimate, Estimator
from device.estimators.breaths import BreathIntervalRR
from device.inputs import RoleInput, RoleTracker
from device.messages import Vitals
from device.roles import EstimateKey, Quantity, Role

if TYPE_CHECKING:
    from device.config import Config

#: Preference order of sources for each quantity: ECG is the reference for heart rate
#: (a PPG pulse rate lags and misses beats in arrhythmia); thoracic impedance is the
#: reference for breathing.
HR_PREFERENCE = (Role.ECG, Role.PPG, Role.AUDIO)
RR_PREFERENCE = (Role.RESP, Role.PPG, Role.AUDIO)


@dataclass(frozen=True)
class Second:
    """Everything the core knows about one completed second of signal time.

    - ``vitals``: what is published (HR and RR with their sources);
    - ``estimates``: every estimator's answer, by (quantity, role);
    - ``inputs``: each role's input state (samples, lost, flat or saturated, poor);
    - ``errors``: estimators that raised this second, with the error;
    - ``last_breath_s``: when the apnea breath detector on the impedance last saw a breath
      (None without an impedance role, or before the first breath).
    """

    t_s: float
    vitals: Vitals
    estimates: Mapping[EstimateKey, Estimate]
    inputs: Mapping[Role, RoleInput]
    errors: Mapping[EstimateKey, str]
    last_breath_s: float | None


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

    if cfg is None:
        return select_estimators(roles)
    return select_estimators(roles, cfg.models, unheard(cfg.audio.listens))


class Pipeline:
    """Feeds each role's samples to its estimators and assembles one ``Second`` per second."""

    def __init__(
        self,
        fs_hz: Mapping[str, float],
        estimators: Sequence[Estimator] | None = None,
        whole_hr: bool = True,
        sensor_off_s: float = 3.0,
    ) -> None:
        """``whole_hr``: publish HR in whole bpm (``whole_bpm``); False keeps the estimator's
        value, for measuring what the rounding changes (``bench/accuracy.py --unrounded``).
        ``sensor_off_s``: the shortest window judged for a flat or saturated sensor."""
        if not fs_hz:
            raise ValueError("a pipeline needs at least one role")
        self.fs_hz: dict[Role, float] = {Role(r): float(fs) for r, fs in fs_hz.items()}
        self.whole_hr = whole_hr
        self.estimators = (
            list(estimators) if estimators is not None else default_estimators(self.fs_hz)
        )
        # role -> one resampling stream per estimator rate, with the estimators it feeds
        self._routes: dict[Role, dict[float, tuple[RoleStream | AudioStream, list[Estimator]]]] = {
            r: {} for r in self.fs_hz
        }
        for est in self.estimators:
            self._route(est)
        # Apnea is judged from breaths detected on the impedance, whichever RR estimator is
        # chosen: the signal-processing one when it runs, else a detector of its own.
        self.breath_detector: BreathIntervalRR | None = None
        self._own_detector = False
        if Role.RESP in self.fs_hz:
            dsp = [e for e in self.estimators if isinstance(e, BreathIntervalRR)]
            dsp = [e for e in dsp if e.role == Role.RESP]
            if dsp:
                self.breath_detector = dsp[0]
            else:
                self.breath_detector = BreathIntervalRR(Role.RESP, name="apnea")
                self._own_detector = True
                self._route(self.breath_detector)
        self._trackers = {r: RoleTracker(r, fs, sensor_off_s) for r, fs in self.fs_hz.items()}
        self._pending: dict[Role, list[np.ndarray]] = {r: [] for r in self.fs_hz}
        self._n_pending: dict[Role, int] = dict.fromkeys(self.fs_hz, 0)
        self._consumed: dict[Role, int] = dict.fromkeys(self.fs_hz, 0)
        self.second = 0  # last second emitted

    def _route(self, est: Estimator) -> None:
        role = Role(est.role)
        if role not in self.fs_hz:
            raise ValueError(f"estimator {est.name} needs role {role!r}, which is not an input")
        if est.fs_hz not in self._routes[role]:
            # audio: vectorised polyphase FIR (device/dsp/polyphase.py); the IIR resampler runs
            # per sample and would cost several % of a core at 48 kHz
            stream = AudioStream if role == Role.AUDIO else RoleStream
            self._routes[role][est.fs_hz] = (stream(role, self.fs_hz[role], est.fs_hz), [])
        self._routes[role][est.fs_hz][1].append(est)

    # -- input ---------------------------------------------------------------------------
    def feed(self, role: str, x: np.ndarray | Sequence[float]) -> None:
        """Queue samples of one role (any chunk size; NaN marks a gap)."""
        if role not in self._pending:
            return  # a role not in use (``--use``) is hidden from the core
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
        if arr.size:
            key = Role(role)
            self._pending[key].append(arr)
            self._n_pending[key] += arr.size

    def feed_gap(self, role: str, n_samples: int) -> None:
        """Mark ``n_samples`` as missing (the source delivered nothing): keeps the clock going."""
        self.feed(role, np.full(int(n_samples), np.nan))

    def _take(self, role: Role, n: int) -> np.ndarray:
        chunks = self._pending[role]
        buf = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
        head, tail = buf[:n], buf[n:]
        self._pending[role] = [tail] if tail.size else []
        self._n_pending[role] -= n
        self._consumed[role] += n
        return head

    # -- output --------------------------------------------------------------------------
    def _boundary(self, role: Role, second: int) -> int:
        """Input samples of ``role`` that lie before ``second`` seconds."""
        return int(math.ceil(second * self.fs_hz[role] - 1e-9))

    def ready(self) -> bool:
        k = self.second + 1
        return all(
            self._consumed[r] + self._n_pending[r] >= self._boundary(r, k) for r in self.fs_hz
        )

    def drain(self) -> list[Second]:
        """Every second that is now complete on all roles."""
        out = []
        while self.ready():
            out.append(self.advance())
        return out

    def advance(self) -> Second:
        """Process exactly the next second (call only when ``ready()``)."""
        k = self.second + 1
        raw: dict[Role, np.ndarray] = {}
        for role in self.fs_hz:
            x = self._take(role, self._boundary(role, k) - self._consumed[role])
            raw[role] = x
            for stream, fed in self._routes[role].values():
                y = stream(x)
                for est in fed:
                    est.push(y)
        self.second = k
        return self._second(float(k), raw)

    def _second(self, t_s: float, raw: dict[Role, np.ndarray]) -> Second:
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
        inputs = {
            role: tracker.update(
                t_s,
                raw[role],
                any(e.value is not None for k, e in estimates.items() if k.role == role),
            )
            for role, tracker in self._trackers.items()
        }
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
    core = Pipeline(dict.fromkeys(signals, fs_hz), estimators, whole_hr)
    n = max(len(x) for x in signals.values())
    out: list[Vitals] = []
    for a in range(0, n, chunk):
        for role, x in signals.items():
            core.feed(role, x[a : a + chunk])
        out.extend(s.vitals for s in core.drain())
    return out
