"""The life-threatening arrhythmia conditions: asystole, extreme bradycardia and tachycardia,
ventricular tachycardia and ventricular fibrillation. Each is one registry entry, high
priority and latching, judged once a second from the beat stream's evidence
(``device.beats.evidence.CardiacEvidence``) with the thresholds of ``[alarms]``.

A lead that is lost, flat, saturated or noisy never counts: it can neither show nor fail to
show a QRS. A pulse channel (pleth, arterial line) that carries a readable pulse wave is the
cross-check: regular pulses refute an asystole, and a pulse rate well above the ECG's refutes
a bradycardia counted from QRS complexes the leads failed to show. Each event's ``detail``
names the evidence: the leads used, and whether a pulse was present.

The definitions follow the PhysioNet/CinC Challenge 2015 (after the monitors' own):
asystole, no QRS for 4 s; extreme bradycardia, under 40 bpm for 5 consecutive beats; extreme
tachycardia, over 140 bpm for 17 consecutive beats; ventricular tachycardia, 5 or more
ventricular beats at over 100 bpm; ventricular fibrillation or flutter, a fibrillatory,
flutter or oscillatory waveform for at least 4 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from device.alarms.conditions import AlarmInputs, Check, register
from device.beats.beat import Beat, BeatClass
from device.beats.evidence import CardiacEvidence, LeadEvidence, PulseEvidence
from device.config import AlarmsConfig
from device.rhythm.vf import MIN_QUALITY

#: A rate counted over beats must end this recently: after a pause the condition is judged by
#: asystole (or by the next beats), not by a rhythm that has stopped.
RECENT_S = 3.0
#: A waveform judgement counts once it held for this many consecutive judgements (a second
#: apart, each of the last 4 s), after the lead has been judged for as long as this warm-up:
#: one window can be a burst of artefact, and a filter just started is not settled.
RHYTHM_CONFIRM = 2
RHYTHM_WARMUP = 6
#: the waveform's VT evidence is set aside while at least this share of the beats classified
#: in the last ``SINUS_WINDOW_S`` are normal (N): a sinus tachycardia's narrow beats
SINUS_SHARE = 0.75
SINUS_WINDOW_S = 4.0
SINUS_MIN_BEATS = 3
#: A pulse channel refutes an ECG bradycardia when its own rate is this much higher.
PULSE_REFUTES_BRADY_BPM = 10.0


def _check(
    key: str,
    present: bool,
    value: float | None,
    limit: float | None,
    unit: str,
    detail: str,
    unknown: bool = False,
) -> Check:
    return Check(
        (key, None),
        present=present,
        still=present,
        value=value,
        limit=limit,
        unit=unit,
        priority="high",
        detail=detail,
        unknown=unknown,
    )


def _leads(ev: CardiacEvidence) -> list[LeadEvidence]:
    return [lead for lead in ev.leads if lead.usable]


def _pulses(ev: CardiacEvidence) -> list[PulseEvidence]:
    return [p for p in ev.pulses if p.usable]


def _names(items: Iterable[LeadEvidence | PulseEvidence]) -> str:
    return ", ".join(i.name for i in items) or "none"


def _pulse_note(ev: CardiacEvidence) -> str:
    usable = _pulses(ev)
    if not ev.pulses:
        return "no pulse channel"
    if not usable:
        return (
            "pulse channels unreadable ("
            + ", ".join(f"{p.name}: {p.reason}" for p in ev.pulses)
            + ")"
        )
    return "pulse " + ", ".join(
        f"{p.name} {p.rate_bpm:.0f}/min" if p.rate_bpm is not None else f"{p.name} present"
        for p in usable
    )


def consecutive_rate_bpm(times: Sequence[float], n: int, t_s: float) -> float | None:
    """The mean rate over the last ``n`` beats (n - 1 intervals), when the last of them is
    recent; None otherwise."""
    if len(times) < n or n < 2:
        return None
    last = times[-n:]
    if t_s - last[-1] > RECENT_S + 60.0 / 40.0:
        return None
    span = last[-1] - last[0]
    return 60.0 * (n - 1) / span if span > 0 else None


def mostly_normal(beats: Sequence[Beat], t_s: float) -> bool:
    """Whether the beats classified in the last ``SINUS_WINDOW_S`` (at least
    ``SINUS_MIN_BEATS``) are at least ``SINUS_SHARE`` normal."""
    recent = [b for b in beats if t_s - b.t_s <= SINUS_WINDOW_S and b.beat_class != BeatClass.Q]
    if len(recent) < SINUS_MIN_BEATS:
        return False
    return sum(b.beat_class == BeatClass.N for b in recent) >= SINUS_SHARE * len(recent)


def ventricular_run(beats: Sequence[Beat]) -> list[Beat]:
    """The run of consecutive ventricular beats that the beats end with (empty if the last
    beat is not ventricular)."""
    run: list[Beat] = []
    for b in reversed(beats):
        if b.beat_class != BeatClass.V:
            break
        run.append(b)
    return run[::-1]


@dataclass(frozen=True)
class Asystole:
    key: str = "asystole"
    technical: bool = False

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        ev = inp.cardiac
        if ev is None or not ev.monitored:
            return []
        leads = _leads(ev)
        if not leads:  # no lead can show a QRS: a technical alarm says why, not an asystole
            return [_check(self.key, False, None, cfg.asystole_s, "s", "", unknown=True)]
        pause = min((lead.since_qrs_s if lead.since_qrs_s is not None else t_s) for lead in leads)
        no_qrs = pause >= cfg.asystole_s
        pulsing = [p for p in _pulses(ev) if p.pulses_4s >= 2]
        present = no_qrs and not pulsing
        detail = f"no QRS for {pause:.0f} s on {_names(leads)}; " + (
            f"pulse present on {_names(pulsing)}" if pulsing else _pulse_note(ev)
        )
        return [_check(self.key, present, round(pause, 1), cfg.asystole_s, "s", detail)]


@dataclass(frozen=True)
class RateOverBeats:
    """A rate over a number of consecutive ECG beats beyond a limit (``side`` +1 above)."""

    key: str
    side: int
    technical: bool = False

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        ev = inp.cardiac
        if ev is None or not ev.monitored:
            return []
        slow = self.side < 0
        limit = cfg.extreme_bradycardia_bpm if slow else cfg.extreme_tachycardia_bpm
        n = cfg.extreme_bradycardia_beats if slow else cfg.extreme_tachycardia_beats
        leads = _leads(ev)
        rate = consecutive_rate_bpm(ev.beat_times, n, t_s) if leads else None
        if rate is None:
            return [_check(self.key, False, None, limit, "bpm", "", unknown=True)]
        present = self.side * (rate - limit) > 0
        still = self.side * (rate - (limit - self.side * cfg.hr_hysteresis_bpm)) > 0
        refuted = ""
        if present and slow:
            faster = [
                p
                for p in _pulses(ev)
                if p.rate_bpm is not None and p.rate_bpm >= limit + PULSE_REFUTES_BRADY_BPM
            ]
            if faster:
                present = still = False
                refuted = f"; refuted: {_names(faster)} shows {faster[0].rate_bpm:.0f}/min"
        detail = f"{rate:.0f} bpm over {n} beats on {_names(leads)}; {_pulse_note(ev)}{refuted}"
        chk = _check(self.key, present, round(rate, 1), limit, "bpm", detail)
        return [replace(chk, still=still or present)]


def _rhythm_lead(ev: CardiacEvidence) -> LeadEvidence | None:
    """The usable lead whose waveform is the most analysable, when it is analysable enough
    (``device.rhythm.vf.MIN_QUALITY``): VF and VT are judged on it, since one noisy lead
    is enough to look like either."""
    scored = [
        lead
        for lead in _leads(ev)
        if lead.vf_score is not None and lead.rhythm_quality >= MIN_QUALITY
    ]
    return max(scored, key=lambda lead: lead.rhythm_quality) if scored else None


def _sustained(lead: LeadEvidence, judged: Callable[[float, float, float | None], bool]) -> bool:
    """The lead's last ``RHYTHM_CONFIRM`` judgements all say so (each analysable), after at
    least ``RHYTHM_WARMUP`` judgements."""
    hist = lead.rhythm_history
    if len(hist) < RHYTHM_WARMUP:
        return False
    return all(
        q >= MIN_QUALITY and judged(vf, vt, rate) for vf, vt, rate, q in hist[-RHYTHM_CONFIRM:]
    )


@dataclass(frozen=True)
class VentricularTachycardia:
    """A run of ventricular beats (``ventricular_run``) at over the rate limit; or, on the
    most analysable lead, a waveform the rhythm model calls ventricular (VT or VF) at over the
    rate limit (a VT whose broad complexes the beat detector cannot separate). A pulse channel
    with regular pulses below the rate limit, or beats the classifier calls mostly normal
    (``mostly_normal``), refute the waveform evidence."""

    key: str = "ventricular_tachycardia"
    technical: bool = False

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        ev = inp.cardiac
        if ev is None or not ev.monitored:
            return []
        limit = cfg.ventricular_tachycardia_bpm
        run = ventricular_run(ev.beats)
        recent = bool(run) and t_s - run[-1].t_s <= RECENT_S
        n = len(run)
        rate = (
            60.0 * (n - 1) / (run[-1].t_s - run[0].t_s)
            if n >= 2 and run[-1].t_s > run[0].t_s
            else None
        )
        by_beats = (
            recent and n >= cfg.ventricular_tachycardia_beats and rate is not None and rate > limit
        )
        lead = _rhythm_lead(ev)
        by_wave = False
        if lead is not None and lead.rhythm_rate is not None and lead.rhythm_rate > limit:
            by_wave = _sustained(
                lead,
                lambda vf, vt, rate: (
                    vf + vt >= cfg.ventricular_rhythm_score and rate is not None and rate > limit
                ),
            )
            slower = [p for p in _pulses(ev) if p.rate_bpm is not None and p.rate_bpm < limit]
            if by_wave and (slower or mostly_normal(ev.beats, t_s)):
                by_wave = False
        present = by_beats or by_wave
        if by_beats and rate is not None:
            value: float | None = round(rate, 1)
            detail = f"{n} ventricular beats at {rate:.0f} bpm on {_names(_leads(ev))}"
        elif by_wave and lead is not None and lead.rhythm_rate is not None:
            value = round(lead.rhythm_rate, 1)
            detail = (
                f"ventricular waveform at {lead.rhythm_rate:.0f}/min on {lead.name} "
                f"(VT {lead.vt_score:.2f}, VF {lead.vf_score:.2f})"
            )
        else:
            value, detail = (None if rate is None else round(rate, 1)), ""
        if detail:
            detail += f"; {_pulse_note(ev)}"
        return [_check(self.key, present, value, limit, "bpm", detail)]


@dataclass(frozen=True)
class VentricularFibrillation:
    """On the most analysable lead, a waveform the rhythm model scores as VF or flutter, for
    two consecutive judgements of its 4 s window; regular pulses on a pulse channel refute
    it (a fibrillating heart ejects nothing)."""

    key: str = "ventricular_fibrillation"
    technical: bool = False

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        ev = inp.cardiac
        if ev is None or not ev.monitored:
            return []
        lead = _rhythm_lead(ev)
        if lead is None or lead.vf_score is None:
            return [_check(self.key, False, None, cfg.ventricular_fibrillation_score, "", "", True)]
        fib = _sustained(lead, lambda vf, vt, rate: vf >= cfg.ventricular_fibrillation_score)
        pulsing = [p for p in _pulses(ev) if p.pulses_4s >= 2]
        present = fib and not pulsing
        detail = (
            f"fibrillatory waveform on {lead.name} (VF {lead.vf_score:.2f} over "
            f"{cfg.ventricular_fibrillation_s:.0f} s); "
            + (f"pulse present on {_names(pulsing)}" if pulsing else _pulse_note(ev))
        )
        return [
            _check(self.key, present, lead.vf_score, cfg.ventricular_fibrillation_score, "", detail)
        ]


for _c in (
    Asystole(),
    RateOverBeats("extreme_bradycardia", side=-1),
    RateOverBeats("extreme_tachycardia", side=+1),
    VentricularTachycardia(),
    VentricularFibrillation(),
):
    register(_c)
