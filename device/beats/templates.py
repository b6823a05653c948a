"""Beat shapes a patient has shown (clusters of like beats), and which one is their own
dominant beat.

Inter-patient beat classification is hard because QRS shapes differ more between patients
than between a patient's normal and ectopic beats; what generalises is how a beat differs
from that patient's usual beat. So each bed learns its own templates as beats arrive:

- a beat joins the cluster whose template it matches best (mean correlation of the QRS over
  the usable leads, at the best alignment within +-48 ms) when that correlation is at least
  ``JOIN_CORR`` and its amplitude is within a factor ``JOIN_AMP`` of the template's; else it
  starts a new cluster (the weakest one is forgotten when ``MAX_CLUSTERS`` exist);
- a template is the running mean of its beats (1/n for its first ``AVERAGE_BEATS``, then an
  exponential mean over that many), lead by lead, so slow changes of axis or amplitude are
  followed;
- each cluster keeps two exponentially decaying counts over about ``MEMORY_BEATS`` beats: of
  its beats, and of its beats that came *on time* (not premature: the interval before is at
  least 90 % of the interval after and 80 % of the local median). The dominant cluster is the
  one with the most on-time beats, kept until another has ``SWITCH`` times as many: in a
  bigeminy half the beats are ventricular, but only the sinus beats come on time; in a short
  run of ventricular tachycardia the ventricular beats come on time, but not for long enough
  to take over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_CLUSTERS = 8
JOIN_CORR = 0.86
JOIN_AMP = 1.6
AVERAGE_BEATS = 16
MEMORY_BEATS = 128.0
SWITCH = 1.3
#: Two clusters whose templates correlate this well (and match in amplitude) become one.
MERGE_CORR = 0.96
MERGE_AMP = 1.25


@dataclass
class Cluster:
    """One shape: a template per lead (``None`` for a lead it has never seen), counts."""

    templates: list[np.ndarray | None]
    n: list[int]  # beats averaged into each lead's template
    mass: float = 1.0  # decaying count of beats
    on_time: float = 0.0  # decaying count of on-time beats
    premature: float = 0.0  # decaying count of premature beats
    ident: int = 0
    fit: list[float] = field(default_factory=list)  # running correlation of members per lead


class Clusters:
    """The clusters of one bed; ``dominant`` indexes the patient's dominant beat shape."""

    def __init__(self, n_leads: int) -> None:
        self.n_leads = n_leads
        self.items: list[Cluster] = []
        self.dominant: int | None = None
        self._next_id = 0
        self._decay = 1.0 - 1.0 / MEMORY_BEATS

    def new(self, segs: list[np.ndarray | None]) -> int:
        """Start a cluster from one beat's aligned segments; returns its index."""
        c = Cluster(
            [None if s is None else s.copy() for s in segs],
            [0 if s is None else 1 for s in segs],
            ident=self._next_id,
            fit=[0.7] * self.n_leads,
        )
        self._next_id += 1
        if len(self.items) < MAX_CLUSTERS:
            self.items.append(c)
            k = len(self.items) - 1
        else:
            # forget the weakest cluster that is not the dominant one
            cand = [i for i in range(len(self.items)) if i != self.dominant]
            k = min(cand, key=lambda i: self.items[i].mass)
            self.items[k] = c
        if self.dominant is None:
            self.dominant = k
        return k

    def update(
        self,
        k: int,
        segs: list[np.ndarray | None],
        corr: list[float | None],
        on_time: bool | None,
    ) -> None:
        """Beat joined cluster ``k`` (``segs``: its aligned segments, None where unusable;
        ``corr``: its correlation with the template per lead; ``on_time``: its timing, None
        when unknown)."""
        for c in self.items:
            c.mass *= self._decay
            c.on_time *= self._decay
            c.premature *= self._decay
        c = self.items[k]
        c.mass += 1.0
        if on_time is True:
            c.on_time += 1.0
        elif on_time is False:
            c.premature += 1.0
        for li, s in enumerate(segs):
            if s is None:
                continue
            t = c.templates[li]
            if t is None:
                c.templates[li] = s.copy()
                c.n[li] = 1
                continue
            c.n[li] += 1
            a = 1.0 / min(c.n[li], AVERAGE_BEATS)
            t += a * (s - t)
            r = corr[li]
            if r is not None:
                c.fit[li] += max(0.05, 1.0 / c.n[li]) * (r - c.fit[li])
        self._choose_dominant()

    def _choose_dominant(self) -> None:
        if not self.items:
            self.dominant = None
            return
        best = max(range(len(self.items)), key=lambda i: self.items[i].on_time)
        d = self.dominant
        if d is None or (best != d and self.items[best].on_time > SWITCH * self.items[d].on_time):
            self.dominant = best

    def merge_into(self, keep: int, drop: int) -> None:
        """Fold cluster ``drop`` into ``keep`` (counts add; templates stay ``keep``'s)."""
        a, b = self.items[keep], self.items[drop]
        a.mass += b.mass
        a.on_time += b.on_time
        a.premature += b.premature
        for li in range(self.n_leads):
            if a.templates[li] is None and b.templates[li] is not None:
                a.templates[li], a.n[li] = b.templates[li], b.n[li]
        was_dominant = self.dominant in (keep, drop)
        del self.items[drop]
        if self.dominant is not None:
            if was_dominant:
                self.dominant = keep if keep < drop else keep - 1
            elif self.dominant > drop:
                self.dominant -= 1
        self._choose_dominant()
