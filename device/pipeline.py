"""The streaming core: samples in, one vitals record per second of signal time out.

Plain synchronous code with no threads, sockets or wall-clock reads. Live sources, replays
and ``bedside process`` all drive it the same way::

    core = Pipeline({"ppg": 125.0, "resp": 125.0})
    core.feed("ppg", chunk_ppg); core.feed("resp", chunk_resp)
    for vitals in core.drain(): ...

Second ``k`` is computed once every role in use has delivered its samples up to ``k`` s, so
the output depends only on the samples, never on how they were chunked. A source that stops
delivering is fed NaN (a gap) by its shell, which keeps the clock going.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from device.dsp import HoldGaps, Resampler
from device.estimators.base import Estimate, Estimator
from device.messages import Vitals
from device.polyphase import AudioStream

#: Preference order of sources for each quantity: ECG is the reference for heart rate
#: (a PPG pulse rate lags and misses beats in arrhythmia); thoracic impedance is the
#: reference for breathing.
HR_PREFERENCE = ("ecg", "ppg", "audio")
RR_PREFERENCE = ("resp", "ppg", "audio")


class RoleStream:
    """One role's input: gap handling and resampling to the estimators' rate."""

    def __init__(self, role: str, fs_in: float, fs_out: float) -> None:
        self.role, self.fs_in, self.fs_out = role, fs_in, fs_out
        self._hold = HoldGaps()
        self._resample = Resampler(fs_in, fs_out)
        self._resample_gap = Resampler(fs_in, fs_out)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        held, bad = self._hold(x)
        y = self._resample(held)
        if bad.any() or not self._resample_gap.identity:
            gap = self._resample_gap(bad.astype(np.float64))
            y = np.where(gap > 0.01, np.nan, y)
        return y


def default_estimators(roles: Iterable[str], cfg: object | None = None) -> list[Estimator]:
    """The estimators the core runs for these roles (see ``estimators.registry``); ``cfg``
    (a ``Config``) carries the ``[models]`` section: models dir, delegate, disabled models."""
    from device.estimators.registry import select_estimators

    roles = list(roles)
    chosen = select_estimators(roles, cfg)
    if "ppg" in roles and not any(e.quantity == "rr" for e in chosen):
        # Only a pulse oximeter for breathing: RR from the PPG's breathing modulation
        # (less accurate than impedance, so only as the fallback).
        from device.estimators.dsp import PulseModulationRR

        chosen.append(PulseModulationRR("ppg"))
    return chosen


class Pipeline:
    """Feeds each role's samples to its estimators and assembles vitals once per second."""

    def __init__(
        self,
        fs_hz: dict[str, float],
        estimators: Sequence[Estimator] | None = None,
        whole_hr: bool = True,
    ) -> None:
        """``whole_hr``: publish HR in whole bpm (``whole_bpm``); False keeps the estimator's
        value, for measuring what the rounding changes (``bench/accuracy.py --unrounded``)."""
        if not fs_hz:
            raise ValueError("a pipeline needs at least one role")
        self.fs_hz = dict(fs_hz)
        self.whole_hr = whole_hr
        self.estimators = list(estimators) if estimators is not None else default_estimators(fs_hz)
        # role -> one resampling stream per estimator rate, with the estimators it feeds
        self._routes: dict[str, dict[float, tuple[RoleStream | AudioStream, list[Estimator]]]] = {
            r: {} for r in fs_hz
        }
        for est in self.estimators:
            if est.role not in self.fs_hz:
                raise ValueError(
                    f"estimator {est.name} needs role {est.role!r}, which is not an input"
                )
            if est.fs_hz not in self._routes[est.role]:
                # audio: vectorised polyphase FIR (device/polyphase.py); the IIR resampler
                # runs per sample and costs several % of a core at 48 kHz
                stream_cls = AudioStream if est.role == "audio" else RoleStream
                self._routes[est.role][est.fs_hz] = (
                    stream_cls(est.role, self.fs_hz[est.role], est.fs_hz),
                    [],
                )
            route = self._routes[est.role][est.fs_hz]
            route[1].append(est)
        self._pending: dict[str, list[np.ndarray]] = {r: [] for r in fs_hz}
        self._n_pending: dict[str, int] = dict.fromkeys(fs_hz, 0)
        self._consumed: dict[str, int] = dict.fromkeys(fs_hz, 0)
        self.second = 0  # last second emitted
        self.last: dict[str, Estimate] = {}
        #: each role's raw input samples of the last completed second (for technical checks)
        self.last_input: dict[str, np.ndarray] = {r: np.zeros(0) for r in fs_hz}
        #: estimators whose estimate() raised in the last second: name/role -> error text
        self.errors: dict[str, str] = {}

    # -- input ---------------------------------------------------------------------------
    def feed(self, role: str, x: np.ndarray | Sequence[float]) -> None:
        """Queue samples of one role (any chunk size; NaN marks a gap)."""
        if role not in self._pending:
            return  # a role not in use (``--use``) is hidden from the core
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
        if arr.size:
            self._pending[role].append(arr)
            self._n_pending[role] += arr.size

    def feed_gap(self, role: str, n_samples: int) -> None:
        """Mark ``n_samples`` as missing (the source delivered nothing): keeps the clock going."""
        self.feed(role, np.full(int(n_samples), np.nan))

    def _take(self, role: str, n: int) -> np.ndarray:
        chunks = self._pending[role]
        buf = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
        head, tail = buf[:n], buf[n:]
        self._pending[role] = [tail] if tail.size else []
        self._n_pending[role] -= n
        self._consumed[role] += n
        return head

    # -- output --------------------------------------------------------------------------
    def _boundary(self, role: str, second: int) -> int:
        """Input samples of ``role`` that lie before ``second`` seconds."""
        return int(math.ceil(second * self.fs_hz[role] - 1e-9))

    def ready(self) -> bool:
        k = self.second + 1
        return all(
            self._consumed[r] + self._n_pending[r] >= self._boundary(r, k) for r in self.fs_hz
        )

    def drain(self) -> list[Vitals]:
        """Every vitals record whose second is now complete on all roles."""
        out = []
        while self.ready():
            out.append(self.advance())
        return out

    def advance(self) -> Vitals:
        """Process exactly the next second (call only when ``ready()``) and return its vitals.

        ``last``, ``last_input`` and ``errors`` then describe this second.
        """
        k = self.second + 1
        for role in self.fs_hz:
            x = self._take(role, self._boundary(role, k) - self._consumed[role])
            self.last_input[role] = x
            for stream, fed in self._routes[role].values():
                y = stream(x)
                for est in fed:
                    est.push(y)
        self.second = k
        return self._vitals(float(k))

    def _vitals(self, t_s: float) -> Vitals:
        estimates = []
        self.errors = {}
        for est in self.estimators:
            try:
                estimates.append(est.estimate(t_s))
            except Exception as e:  # a failing model must not stop the monitor: it is alarmed
                self.errors[f"{est.quantity}_{est.role}"] = (
                    f"{est.name}: {e.__class__.__name__}: {e}"
                )
                estimates.append(Estimate(None, 0.0, est.name, est.role, est.quantity))
        self.last = {f"{e.quantity}_{e.role}": e for e in estimates}
        sqi = {f"{e.quantity}_{e.role}": e.quality for e in estimates}
        hr = _choose(estimates, "hr", HR_PREFERENCE)
        rr = _choose(estimates, "rr", RR_PREFERENCE)
        return Vitals(
            t_s=t_s,
            hr_bpm=(whole_bpm(hr.value) if self.whole_hr else hr.value) if hr else None,
            rr_bpm=rr.value if rr else None,
            hr_source=hr.role if hr else None,
            rr_source=rr.role if rr else None,
            hr_model=hr.estimator if hr else None,
            rr_model=rr.estimator if rr else None,
            sqi=sqi,
        )


def whole_bpm(x: float | None) -> float | None:
    """Heart rate in whole beats per minute, halves rounded up: what bedside monitors show,
    record and compare with alarm limits (the BIDMC reference is the monitor's integer HR).
    A tenth of a beat per minute would be false precision for an average over ~10 beats."""
    return None if x is None else float(math.floor(x + 0.5))


def _choose(estimates: list[Estimate], quantity: str, preference: Sequence[str]) -> Estimate | None:
    valid = [e for e in estimates if e.quantity == quantity and e.value is not None]
    if not valid:
        return None
    rank = {r: i for i, r in enumerate(preference)}
    return min(valid, key=lambda e: (rank.get(e.role, len(rank)), -e.quality))


def run_recording(
    signals: dict[str, np.ndarray],
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
        out.extend(core.drain())
    return out
