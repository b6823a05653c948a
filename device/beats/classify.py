"""Streaming beat classification: each detected heartbeat gets an AAMI EC57 class and a quality.

The core calls, per bed and with every ECG lead together::

    clf = BeatClassifier(["II", "V"])            # the bed's ECG leads, any names, 1 or more
    clf.push({"II": x_ii, "V": x_v})             # raw samples at 125 Hz, equal lengths, NaN = gap
    clf.add_beat(t_s, usable_leads={"II", "V"})  # each detected beat, in time order
    for beat in clf.classified():                # beats whose class is final, each once
        ...beat.t_s, beat.beat_class, beat.quality...

after each push, add the beats the detector confirmed up to then, then ask for what is
final. A beat's class waits for the next beat (the interval after it tells a premature beat
with a compensatory pause from a normal one) but never longer than ``FINAL_S`` after its R
peak (``rr_next`` is then "more than ``RR_CAP_S``"), so asystole holds no beat back. The
outcome does not depend on how the samples are chunked as long as the detector confirms each
beat within ``FINAL_S - RR_CAP_S`` (0.5 s) of its R peak.

How (see ``templates.py`` and ``morphology.py``): each beat is aligned with and compared to
the bed's own dominant beat (correlation, amplitude, width, slope, area, residual, lead by
lead, weighted by how well each lead's beats repeat), and its timing to the local rhythm
(prematurity, the pause after it); a model (``model.py``: a small network fitted with
record-held-out cross-validation on MIT-BIH, or the signal-processing rules it must beat)
turns these into a class. Beats with no usable lead are ``Q``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from device.beats.beat import BeatClass
from device.beats.morphology import Geometry, Shape, normalised_qrs, normalised_windows, shape
from device.beats.templates import JOIN_AMP, JOIN_CORR, MERGE_AMP, MERGE_CORR, Clusters
from device.roles import CARDIAC_FS_HZ

if TYPE_CHECKING:
    from device.beats.model import BeatModel


@dataclass(frozen=True)
class ClassifiedBeat:
    """One beat with its final class. ``quality`` in [0, 1]: the model's confidence in the
    class times how clean the leads were. The evidence fields are None when not measured."""

    t_s: float  # R-peak time, signal seconds (as given to add_beat)
    beat_class: BeatClass
    quality: float
    leads: tuple[str, ...]  # the leads the class was judged on
    width_ms: float | None = None  # QRS equivalent width on the cleanest lead
    template_corr: float | None = None  # QRS correlation with the dominant beat (lead mean)
    amplitude_ratio: float | None = None  # QRS size / the dominant beat's (lead mean)
    rr_prev_s: float | None = None
    rr_next_s: float | None = None  # None when over RR_CAP_S (or no next beat in time)
    prematurity: float | None = None  # rr_prev / the local median interval


#: a class is final at most this long after the beat's R peak
FINAL_S = 2.5
#: the interval after a beat counts up to this long ("longer" beyond)
RR_CAP_S = 2.0
#: intervals in the local median rhythm
LOCAL_BEATS = 8
#: a cluster a beat joined is compared with the others for a merge every this many joins
MERGE_EVERY = 4
#: the interval assumed before the rhythm is known
DEFAULT_RR_S = 0.8

#: The model's inputs, in order (``model.py`` and ``convert/beats.py`` use this list).
FEATURES = (
    "corr",  # QRS correlation with the dominant template, lead-weighted mean
    "corr_min",  # the lowest of the clean leads'
    "corr_wide",  # correlation over the whole complex with its ST-T
    "log_amp",  # log(QRS peak-to-peak / dominant's), weighted mean
    "log_amp_max",  # largest |log amplitude ratio| over clean leads
    "log_width",  # log(equivalent width / dominant's), weighted mean
    "log_width_max",  # largest over clean leads
    "width_ms",  # equivalent width on the cleanest lead
    "dom_width_ms",  # the dominant template's, same lead
    "resid",  # energy of (beat - template) / template's, QRS window, weighted mean
    "log_slope",  # log(largest slope / dominant's)
    "area_diff",  # normalised signed area minus the dominant's
    "rr_prev",  # interval before / local median interval
    "rr_next",  # interval after / local median (capped)
    "rr_prev_next",  # interval before / interval after
    "rr_local_s",  # the local median interval itself
    "in_dominant",  # 1 when the beat joined the dominant cluster
    "cluster_share",  # its cluster's share of the recent beats
    "cluster_corr",  # its cluster's template vs the dominant's (1 for the dominant)
    "cluster_premature",  # share of its cluster's beats that came early
    "noise",  # high-frequency content relative to the QRS size
    "n_leads",  # leads used
    "log_sharp",  # log(QRS sharpness / dominant's): a ventricular QRS is slurred
    "cluster_log_width",  # log(its cluster template's width / the dominant's)
    "prev_corr",  # the previous beat's "corr" (a run of unlike beats)
    "prev_in_dominant",  # the previous beat's "in_dominant"
)


@dataclass(frozen=True)
class _Pending:
    t_s: float
    usable: frozenset[str]


class BeatClassifier:
    """Classifies the beats of one bed, streaming (see the module docstring)."""

    def __init__(
        self,
        leads: Sequence[str],
        fs_hz: float = CARDIAC_FS_HZ,
        *,
        model: BeatModel | None = None,
    ) -> None:
        from device.beats.model import default_model
        from device.beats.trace import LeadTrace

        if not leads:
            raise ValueError("BeatClassifier needs at least one ECG lead")
        if len(set(leads)) != len(leads):
            raise ValueError(f"lead names must be distinct, got {list(leads)}")
        self.leads = tuple(leads)
        self.fs_hz = float(fs_hz)
        self.model = model if model is not None else default_model()
        self.g = Geometry.at(self.fs_hz)
        keep_s = FINAL_S + (self.g.pre + self.g.shift) / self.fs_hz + 1.0
        self._traces = [LeadTrace(self.fs_hz, keep_s) for _ in self.leads]
        self._index = {name: i for i, name in enumerate(self.leads)}
        self._clusters = Clusters(len(self.leads))
        # per cluster ident, per lead: cached normalised QRS and shape of its template
        self._cache: dict[int, list[tuple[np.ndarray, Shape] | None]] = {}
        self._pending: deque[_Pending] = deque()
        self._last_t: float | None = None  # last beat classified
        self._rr: deque[float] = deque(maxlen=LOCAL_BEATS)
        self._prev_feats = (1.0, 1.0)  # the previous beat's corr and in_dominant
        self._n_joined = 0  # beats that joined a cluster (merges are looked for every few)
        self._out: list[ClassifiedBeat] = []
        #: when a list, each classified beat's (t_s, feature vector) is appended (training)
        self.feature_log: list[tuple[float, np.ndarray]] | None = None

    # -- input ---------------------------------------------------------------------------
    @property
    def t_s(self) -> float:
        """Signal time: samples received / rate."""
        return self._traces[0].total / self.fs_hz

    def push(self, samples: Mapping[str, np.ndarray]) -> None:
        """Raw samples of every lead (a lead left out is a gap), equal lengths."""
        unknown = set(samples) - set(self.leads)
        if unknown:
            raise ValueError(f"unknown leads {sorted(unknown)}; this classifier has {self.leads}")
        lengths = {len(np.asarray(x)) for x in samples.values()}
        if len(lengths) > 1:
            raise ValueError(f"leads must bring equal lengths per push, got {sorted(lengths)}")
        m = lengths.pop() if lengths else 0
        if m == 0:
            return
        first_needed = self._traces[0].total - self._traces[0].keep
        if self._pending:
            first_needed = min(first_needed, self._sample(self._pending[0].t_s) - self._reach())
        for name, tr in zip(self.leads, self._traces, strict=True):
            x = samples.get(name)
            tr.push(
                np.full(m, np.nan) if x is None else np.asarray(x, dtype=np.float64), first_needed
            )

    def add_beat(self, t_s: float, usable_leads: Collection[str]) -> None:
        """A detected heartbeat (R-peak time in signal seconds), with the leads judged usable
        for it (names not among this classifier's leads are ignored)."""
        t = float(t_s)
        if not math.isfinite(t):
            raise ValueError(f"beat time {t_s!r} is not a finite number")
        usable = frozenset(u for u in usable_leads if u in self._index)
        if (self._last_t is not None and t <= self._last_t) or (
            self._pending and t <= self._pending[-1].t_s
        ):
            if self._pending and t > (self._last_t if self._last_t is not None else -math.inf):
                # late but still open: insert in order
                items = sorted([*self._pending, _Pending(t, usable)], key=lambda p: p.t_s)
                if any(b.t_s == a.t_s for a, b in zip(items, items[1:], strict=False)):
                    return  # the same beat twice
                self._pending = deque(items)
                return
            # after a beat already final: too late to judge in context
            self._out.append(ClassifiedBeat(t, BeatClass.Q, 0.0, ()))
            return
        self._pending.append(_Pending(t, usable))

    def classified(self) -> list[ClassifiedBeat]:
        """Beats whose class became final since the last call, in time order."""
        now = self._traces[0].total
        while self._pending:
            b = self._pending[0]
            c = self._sample(b.t_s)
            if now < c + self.g.post + self.g.shift + 1:
                break  # the complex itself has not all arrived
            nxt = self._pending[1].t_s if len(self._pending) > 1 else None
            if nxt is None and now < (b.t_s + FINAL_S) * self.fs_hz:
                break
            self._pending.popleft()
            self._out.append(self._classify(b, nxt))
        out, self._out = self._out, []
        out.sort(key=lambda x: x.t_s)
        return out

    # -- one beat ------------------------------------------------------------------------
    def _sample(self, t_s: float) -> int:
        return int(round(t_s * self.fs_hz))

    def _reach(self) -> int:
        return self.g.pre + self.g.shift

    def _segments(self, b: _Pending) -> list[np.ndarray | None]:
        c = self._sample(b.t_s)
        a, e = c - self._reach(), c + self.g.post + self.g.shift + 1
        out: list[np.ndarray | None] = []
        for name, tr in zip(self.leads, self._traces, strict=True):
            if name not in b.usable:
                out.append(None)
                continue
            got = tr.segment(a, e)
            out.append(None if got is None or got[1] else got[0])
        return out

    def _template_cache(self, k: int) -> list[tuple[np.ndarray, Shape] | None]:
        cl = self._clusters.items[k]
        got = self._cache.get(cl.ident)
        if got is None:
            got = [
                None if t is None else (normalised_qrs(t, self.g), shape(t, self.g))
                for t in cl.templates
            ]
            self._cache[cl.ident] = got
        return got

    def _classify(self, b: _Pending, nxt: float | None) -> ClassifiedBeat:
        g = self.g
        raw = self._segments(b)
        used = [i for i, r in enumerate(raw) if r is not None]
        rr_prev = b.t_s - self._last_t if self._last_t is not None else None
        rr_next = nxt - b.t_s if nxt is not None and nxt - b.t_s <= RR_CAP_S else None
        rr_local = float(np.median(self._rr)) if self._rr else None
        if rr_prev is not None:
            self._rr.append(min(rr_prev, RR_CAP_S))
        self._last_t = b.t_s
        if not used:
            return ClassifiedBeat(b.t_s, BeatClass.Q, 0.0, (), rr_prev_s=rr_prev, rr_next_s=rr_next)
        wins = {i: normalised_windows(raw[i], g) for i in used}  # type: ignore[arg-type]
        cl = self._clusters
        weights = self._lead_weights(used)
        # best alignment and mean correlation with every cluster
        match: list[tuple[float, int, list[float | None]]] = []
        for k in range(len(cl.items)):
            cache = self._template_cache(k)
            tot = np.zeros(2 * g.shift + 1)
            wsum = 0.0
            per: dict[int, np.ndarray] = {}
            for i in used:
                ci = cache[i]
                if ci is None:
                    continue
                r = wins[i][0] @ ci[0]
                per[i] = r
                tot += weights[i] * r
                wsum += weights[i]
            if wsum == 0.0:
                match.append((-1.0, g.shift, [None] * len(self.leads)))
                continue
            s = int(np.argmax(tot))
            corr_l: list[float | None] = [
                float(per[i][s]) if i in per else None for i in range(len(self.leads))
            ]
            match.append((float(tot[s] / wsum), s, corr_l))
        # the cluster the beat joins
        join: int | None = None
        if match:
            order = sorted(range(len(match)), key=lambda k: -match[k][0])
            for k in order[:3]:
                if match[k][0] < JOIN_CORR:
                    break
                amp = self._amp_ratio(k, match[k][1], used, wins, weights)
                if 1.0 / JOIN_AMP <= amp <= JOIN_AMP:
                    join = k
                    break
        feats, evidence = self._features(
            b, raw, used, wins, weights, match, join, rr_prev, rr_next, rr_local
        )
        if self.feature_log is not None:
            self.feature_log.append((b.t_s, feats))
        cls, conf = self.model.classify(feats)
        quality = float(conf * max(weights[i] for i in used))
        # learn from the beat
        on_time = None
        if rr_prev is not None:
            lim = 0.9 * rr_next if rr_next is not None else 0.0
            on_time = rr_prev >= lim and (rr_local is None or rr_prev >= 0.8 * rr_local)
        if join is None:
            segs = [None if r is None else r[g.shift : g.shift + g.length] for r in raw]
            k = cl.new(segs)
            self._cache.pop(cl.items[k].ident, None)
            cl.update(k, segs, [None] * len(self.leads), on_time)
        else:
            s = match[join][1]
            segs = [None if r is None else r[s : s + g.length] for r in raw]
            cl.update(join, segs, match[join][2], on_time)
            self._cache.pop(cl.items[join].ident, None)
            self._n_joined += 1
            if self._n_joined % MERGE_EVERY == 0 and len(cl.items) > 1:
                self._maybe_merge(join)
        return ClassifiedBeat(
            b.t_s,
            cls,
            round(quality, 3),
            tuple(self.leads[i] for i in used),
            rr_prev_s=rr_prev,
            rr_next_s=rr_next,
            **evidence,
        )

    def _lead_weights(self, used: list[int]) -> dict[int, float]:
        """How much each lead counts: how well the dominant cluster's beats repeat on it
        (a lead of noise, or one that shows the QRS barely, repeats poorly)."""
        d = self._clusters.dominant
        if d is None:
            return dict.fromkeys(used, 1.0)
        fit = self._clusters.items[d].fit
        # 1 - correlation grows with the noise-to-signal variance ratio: inverse-noise weights
        w = {i: (1.0 / (1.0 - min(fit[i], 0.99) + 0.01)) ** 1.5 for i in used}
        top = max(w.values())
        return {i: v / top for i, v in w.items()}

    def _amp_ratio(
        self,
        k: int,
        s: int,
        used: list[int],
        wins: dict[int, tuple[np.ndarray, np.ndarray]],
        weights: dict[int, float],
    ) -> float:
        cache = self._template_cache(k)
        num = den = 0.0
        for i in used:
            ci = cache[i]
            if ci is None:
                continue
            t = self._clusters.items[k].templates[i]
            assert t is not None
            a, e = self.g.qrs
            tp = float(t[a:e].max() - t[a:e].min())
            if tp <= 0:
                continue
            num += weights[i] * math.log(max(float(wins[i][1][s]), 1e-12) / tp)
            den += weights[i]
        return math.exp(num / den) if den > 0 else 1.0

    def _maybe_merge(self, k: int) -> None:
        cl = self._clusters
        ck = self._template_cache(k)
        for j in range(len(cl.items)):
            if j == k:
                continue
            cj = self._template_cache(j)
            rs = [
                float(a[0] @ b[0])
                for a, b in zip(ck, cj, strict=True)
                if a is not None and b is not None
            ]
            amps = [
                a[1].p2p / b[1].p2p
                for a, b in zip(ck, cj, strict=True)
                if a is not None and b is not None and b[1].p2p > 0
            ]
            if not rs:
                continue
            w = self._lead_weights(
                [i for i in range(len(ck)) if ck[i] is not None and cj[i] is not None]
            )
            r_mean = sum(wi * r for wi, r in zip(w.values(), rs, strict=True)) / sum(w.values())
            if r_mean >= MERGE_CORR and all(1 / MERGE_AMP <= r <= MERGE_AMP for r in amps):
                keep, drop = (k, j) if cl.items[k].mass >= cl.items[j].mass else (j, k)
                self._cache.pop(cl.items[drop].ident, None)
                cl.merge_into(keep, drop)
                return

    def _features(
        self,
        b: _Pending,
        raw: list[np.ndarray | None],
        used: list[int],
        wins: dict[int, tuple[np.ndarray, np.ndarray]],
        weights: dict[int, float],
        match: list[tuple[float, int, list[float | None]]],
        join: int | None,
        rr_prev: float | None,
        rr_next: float | None,
        rr_local: float | None,
    ) -> tuple[np.ndarray, dict[str, float | None]]:
        g = self.g
        cl = self._clusters
        dom = cl.dominant
        loc = rr_local if rr_local is not None else (rr_prev or DEFAULT_RR_S)
        prev = rr_prev if rr_prev is not None else loc
        after = rr_next if rr_next is not None else RR_CAP_S
        rr = (
            min(prev / loc, 3.0),
            min(after / loc, 3.0),
            min(prev / after, 3.0),
            loc,
        )
        if dom is None:  # the very first beat: it is its own reference
            s = g.shift
            sh0 = {i: shape(raw[i][s : s + g.length], g) for i in used}  # type: ignore[index]
            best = max(used, key=lambda i: weights[i])
            w_ms = 1000.0 * sh0[best].width_s
            noise = float(np.mean([sh0[i].noise for i in used]))
            f = np.array(
                [1, 1, 1, 0, 0, 0, 0, w_ms, w_ms, 0, 0, 0, *rr, 1, 1, 1, 0, noise, len(used)]
                + [0, 0, 1, 1],
                dtype=np.float64,
            )
            return f, {
                "width_ms": w_ms,
                "template_corr": 1.0,
                "amplitude_ratio": 1.0,
                "prematurity": rr[0] if rr_prev is not None else None,
            }
        corr_d, s, corr_l = match[dom]
        dcache = self._template_cache(dom)
        dtempl = cl.items[dom].templates
        num = {k: 0.0 for k in ("wide", "amp", "width", "resid", "slope", "area", "noise", "sharp")}
        wsum = 0.0
        amp_max = 0.0
        width_max = -math.inf
        corr_min = math.inf
        best = max(used, key=lambda i: weights[i] if dcache[i] is not None else -1.0)
        w_ms = d_ms = 0.0
        for i in used:
            ci = dcache[i]
            if ci is None:
                continue
            seg = raw[i][s : s + g.length]  # type: ignore[index]
            sh = shape(seg, g)
            t = dtempl[i]
            assert t is not None
            tsh = ci[1]
            w = weights[i]
            ri = corr_l[i]
            r = ri if ri is not None else 0.0
            a, e = g.qrs
            xc = seg[a:e] - seg[a:e].mean()
            tc = t[a:e] - t[a:e].mean()
            tn = float(tc @ tc)
            ratio = math.sqrt(float(xc @ xc) / tn) if tn > 0 else 1.0
            resid = min(ratio * ratio - 2.0 * ratio * r + 1.0, 10.0)
            la = math.log(max(sh.p2p, 1e-12) / max(tsh.p2p, 1e-12))
            lw = math.log(max(sh.width_s, 1e-6) / max(tsh.width_s, 1e-6))
            ls = math.log(max(sh.slope, 1e-12) / max(tsh.slope, 1e-12))
            n_span = g.span[1] - g.span[0]
            ad = sh.area / max(sh.p2p * n_span, 1e-12) - tsh.area / max(tsh.p2p * n_span, 1e-12)
            lsh = math.log(max(sh.sharpness, 1e-6) / max(tsh.sharpness, 1e-6))
            xw, tw = seg - seg.mean(), t - t.mean()
            den = math.sqrt(float(xw @ xw) * float(tw @ tw))
            wide = float(xw @ tw) / den if den > 0 else 0.0
            for key, v in (
                ("wide", wide),
                ("amp", la),
                ("width", lw),
                ("resid", resid),
                ("slope", ls),
                ("area", ad),
                ("noise", sh.noise),
                ("sharp", lsh),
            ):
                num[key] += w * v
            wsum += w
            if w >= 0.25 or i == best:
                amp_max = max(amp_max, abs(la))
                width_max = max(width_max, lw)
                corr_min = min(corr_min, r)
            if i == best:
                w_ms, d_ms = 1000.0 * sh.width_s, 1000.0 * tsh.width_s
        if wsum == 0.0:  # the dominant shape was never seen on the leads usable now
            wsum = 1.0
            corr_d = 0.0
            width_max = 0.0
            corr_min = 0.0
        m = {k: v / wsum for k, v in num.items()}
        k = join
        if k is None:
            in_dom, share, ccorr, cprem = 0.0, 0.0, float(corr_d), 1.0
            cwidth = m["width"]
        else:
            ck = cl.items[k]
            total = sum(c.mass for c in cl.items)
            share = ck.mass / total if total > 0 else 0.0
            in_dom = 1.0 if k == dom else 0.0
            ccorr = 1.0 if k == dom else self._cluster_corr(k, dom)
            cprem = ck.premature / (ck.premature + ck.on_time + 1.0)
            cwidth = 0.0 if k == dom else self._cluster_log_width(k, dom, weights)
        f = np.array(
            [
                corr_d,
                corr_min,
                m["wide"],
                m["amp"],
                amp_max,
                m["width"],
                width_max,
                w_ms,
                d_ms,
                m["resid"],
                m["slope"],
                m["area"],
                *rr,
                in_dom,
                share,
                ccorr,
                cprem,
                m["noise"],
                len(used),
                m["sharp"],
                cwidth,
                *self._prev_feats,
            ],
            dtype=np.float64,
        )
        self._prev_feats = (float(corr_d), in_dom)
        evidence: dict[str, float | None] = {
            "width_ms": round(w_ms, 1),
            "template_corr": round(float(corr_d), 3),
            "amplitude_ratio": round(math.exp(m["amp"]), 3),
            "prematurity": round(rr[0], 3) if rr_prev is not None else None,
        }
        return f, evidence

    def _cluster_log_width(self, k: int, d: int, weights: dict[int, float]) -> float:
        ck, cd = self._template_cache(k), self._template_cache(d)
        num = den = 0.0
        for i, w in weights.items():
            a, b = ck[i], cd[i]
            if a is None or b is None:
                continue
            num += w * math.log(max(a[1].width_s, 1e-6) / max(b[1].width_s, 1e-6))
            den += w
        return num / den if den > 0 else 0.0

    def _cluster_corr(self, k: int, d: int) -> float:
        ck, cd = self._template_cache(k), self._template_cache(d)
        rs = [
            float(a[0] @ b[0])
            for a, b in zip(ck, cd, strict=True)
            if a is not None and b is not None
        ]
        return float(np.mean(rs)) if rs else 0.0
