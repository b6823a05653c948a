"""A simple causal multi-lead QRS detector, for scoring the beat classifier on detected beats.

This is a stand-in: the appliance's streaming beat detector (one beat per heartbeat, fused
over leads) is built on main by the lead engineer, and ``bench/mitdb.py`` will switch to its
``bedside process RECORD.hea --beats`` output. Until then the benches need beats the way a
detector gives them (a few ms off the reference, a few missed, a few extra), not the
reference annotations themselves.

After Pan and Tompkins (1985), per lead: 5-15 Hz band-pass, derivative, squaring and a
150 ms moving integration; the leads' integrated energies are added, each divided by its own
recent beat level, so a small lead counts as much as a large one. A local maximum of the sum
is a beat when it exceeds a fraction of the recent beat level; a maximum within 360 ms of the
last beat and under half its slope is its T wave; an interval over 1.66 times the recent mean
is searched again at half the threshold (search-back). The R-peak time is the largest
deflection of the 1-40 Hz signal of the most energetic lead within 150 ms before the energy
peak. Each decision uses only samples up to 0.3 s after the candidate (its confirmation
delay) and beats before it: causal, although run over a whole record at once (except that the
first 8 s set their own level).
"""

from __future__ import annotations

import numpy as np

from device.dsp.filters import CausalFilter
from device.dsp.gaps import forward_fill
from device.dsp.peaks import find_peaks

REFRACTORY_S = 0.25
INTEGRATION_S = 0.15
T_WAVE_S = 0.36
THRESHOLD = 0.3
SEARCHBACK_RR = 1.66
#: how long after its R peak the detector confirms a beat (what the classifier must expect)
CONFIRM_DELAY_S = 0.4


def detect(leads: dict[str, np.ndarray], fs_hz: float) -> np.ndarray:
    """R-peak times (s) of the beats in ``leads`` (equal lengths, NaN = missing)."""
    if not leads:
        return np.zeros(0)
    n = min(len(x) for x in leads.values())
    w = max(1, int(round(INTEGRATION_S * fs_hz)))
    energies, wide = [], []
    for x in leads.values():
        y, bad = forward_fill(np.asarray(x[:n], dtype=np.float64))
        qrs = CausalFilter.butter(2, (5.0, 15.0), fs_hz, "bandpass")(y)
        d = np.diff(qrs, prepend=qrs[0])
        c = np.cumsum(d * d)
        e = np.empty(n)
        e[:w] = c[:w] / w
        e[w:] = (c[w:] - c[:-w]) / w
        e[bad] = 0.0
        energies.append(e)
        wide.append(CausalFilter.butter(2, (1.0, 40.0), fs_hz, "bandpass")(y))
    refractory = int(REFRACTORY_S * fs_hz)
    # each lead's level: a running high percentile of its energy over the last 8 s, causal;
    # its weight: how far its beats stand above its median (noise) level, relative to the
    # cleanest lead, squared (a lead of noise with tiny QRS complexes adds little)
    span = int(8 * fs_hz)
    levels = [_running_level(e, span, 98) for e in energies]
    snr = [
        lv / np.maximum(_running_level(e, span, 50), 1e-12)
        for e, lv in zip(energies, levels, strict=True)
    ]
    best = np.maximum.reduce(snr)
    f = np.zeros(n)
    for e, lv, q in zip(energies, levels, snr, strict=True):
        f += (q / best) ** 2 * e / np.maximum(lv, 1e-12)
    peaks, _ = find_peaks(f, distance=refractory)
    beats: list[int] = []
    heights: list[float] = []
    slopes: list[float] = []
    level = float(np.median(f[peaks[: max(1, int(8 * fs_hz / refractory))]])) if len(peaks) else 1
    t_wave = int(T_WAVE_S * fs_hz)

    def slope(p: int) -> float:
        a = max(0, p - w)
        return float(max(np.max(np.abs(np.diff(wd[a : p + 1]))) if p > a else 0.0 for wd in wide))

    def accept(p: int) -> None:
        nonlocal level
        beats.append(p)
        heights.append(float(f[p]))
        slopes.append(slope(p))
        level = float(np.median(heights[-8:]))

    k = 0
    for k, p in enumerate(peaks):
        p = int(p)
        if beats and len(beats) >= 3:
            rr = np.diff(beats[-9:]).mean()
            # search-back over the candidates between the last beat and this one
            if p - beats[-1] > SEARCHBACK_RR * rr:
                cand = [
                    int(q)
                    for q in peaks[max(0, k - 20) : k]
                    if beats[-1] + refractory <= q < p - refractory
                    and f[q] >= 0.5 * THRESHOLD * level
                ]
                if cand:
                    accept(max(cand, key=lambda q: f[q]))
        if f[p] < THRESHOLD * level:
            continue
        if beats and p - beats[-1] < t_wave and slope(p) < 0.5 * slopes[-1]:
            continue
        accept(p)
    # R-peak time: the largest deflection of the most energetic lead's wide-band signal
    # in the 150 ms before the energy peak (the integration lags the QRS)
    out = []
    for p in beats:
        lead = int(
            np.argmax([e[p] / max(lv[p], 1e-12) for e, lv in zip(energies, levels, strict=True)])
        )
        a = max(0, p - w)
        seg = wide[lead][a : p + 1]
        base = np.median(seg)
        out.append((a + int(np.argmax(np.abs(seg - base)))) / fs_hz)
    return np.unique(np.asarray(out))


def _running_level(e: np.ndarray, span: int, pct: float) -> np.ndarray:
    """A causal running level of an energy trace: the ``pct`` percentile of each past block
    of ``span`` samples, held for the next block (the first block uses its own)."""
    out = np.empty_like(e)
    prev = None
    for a in range(0, len(e), span):
        blk = e[a : a + span]
        lv = float(np.percentile(blk, pct)) if len(blk) else 1.0
        out[a : a + span] = prev if prev is not None else lv
        prev = max(lv, 1e-12)
    return out
