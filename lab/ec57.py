"""MIT-BIH records and ANSI/AAMI EC57 beat-by-beat scoring, for the benches and training.

- ``read_record``: a WFDB record (any of the shared mitdb records, or the bundled excerpt),
  every ECG lead resampled to the device's cardiac rate (125 Hz) with the device's own causal
  ``Resampler``, as the core will see it; the reference beats mapped to the AAMI classes and
  the reference ventricular flutter/fibrillation episodes (``[`` ... ``]``).
- ``compare``: the EC57 beat-by-beat comparison. Reference and test beats are paired the way
  the standard's reference implementation (PhysioNet's ``bxb``) pairs them: the earlier of the
  two current annotations is matched to the other one when they are within the match window
  (150 ms) and no nearer partner follows; an unmatched reference beat pairs with ``O``
  (missed), an unmatched test beat with ``O`` (extra). Comparison starts 5 min into the record
  (the learning period), reference annotations inside a reference VF episode are not beats,
  and test beats inside one are not counted.
- ``Confusion``: the counts (reference class x test class, ``O`` for unmatched) and the gross
  statistics computed from the summed counts, with the standard's rules:

  * QRS Se = matched / (matched + missed), +P = matched / (matched + extra);
  * VEB: TP = Vv; FN = Vn + Vs + Vf + Vq + Vo (a missed V beat is a false negative); FP = Nv
    + Sv + Ov (an extra test beat called V is a false positive). Reference F and Q beats are
    neither: a fusion or unclassifiable beat called V costs nothing, and one called something
    else gains nothing;
  * SVEB: TP = Ss; FN = Sn + Sv + Sf + Sq + So; FP = Ns + Vs + Fs + Os (Q beats called S are
    not counted).

  ``bxb`` also has an ``X`` row and column for beats inside a signal shutdown (both leads
  unreadable, marked by a special noise annotation); the MIT-BIH reference files have no
  shutdown marks, so they never occur here.

AAMI classes from MIT-BIH beat labels (de Chazal et al. 2004 and most of the literature):
N = N L R e j, S = A a J S, V = V E, F = F, Q = / f Q. (``bxb``'s own map puts the escape
beats e and j in S for its SVEB statistics; they affect only the SVEB figures, which are
given for information.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.dsp.resample import Resampler
from device.roles import CARDIAC_FS_HZ

#: MIT-BIH beat label -> AAMI EC57 class. Labels not listed (rhythm '+', noise '~', '|',
#: comments '"', 'x' non-conducted P waves, '!' flutter waves, '[' ']' VF on/off) are not beats.
AAMI: dict[str, str] = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
CLASSES = ("N", "S", "V", "F", "Q")
#: the test side's row/column for an annotation with no partner
UNMATCHED = "O"
#: The DS1 training records of de Chazal et al. (2004), which the shared folder holds; their
#: DS2 twins are held back. 201 and 202 are one patient (202 is in DS2).
DS1 = [
    "101",
    "106",
    "108",
    "109",
    "112",
    "114",
    "115",
    "116",
    "118",
    "119",
    "122",
    "124",
    "201",
    "203",
    "205",
    "207",
    "208",
    "209",
    "215",
    "220",
    "223",
    "230",
]
#: Records with paced beats: excluded from AAMI scoring (EC57 4.1), used only to check that the
#: classifier says something sane (Q) on paced beats.
PACED = ("102", "104", "107", "217")
START_S = 300.0  # EC57: statistics from 5 min on (the learning period before)
MATCH_WINDOW_S = 0.15


@dataclass(frozen=True)
class Reference:
    """A record's reference beats (R-peak times, AAMI classes) and VF episodes, in s."""

    t_s: np.ndarray
    classes: np.ndarray  # of single-letter str
    symbols: np.ndarray  # the MIT-BIH labels
    vf_s: tuple[tuple[float, float], ...] = ()
    duration_s: float = float("inf")


@dataclass(frozen=True)
class Record:
    """One record as the device sees it: every ECG lead at ``fs_hz`` (NaN where missing)."""

    name: str
    fs_hz: float
    leads: dict[str, np.ndarray]
    reference: Reference
    source_fs_hz: float
    comments: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        n = min((len(x) for x in self.leads.values()), default=0)
        return n / self.fs_hz


def read_reference(path: Path | str, fs_hz: float, n_samples: int | None = None) -> Reference:
    """The ``atr`` annotations of a WFDB record beside ``path`` (without extension)."""
    import wfdb

    ann = wfdb.rdann(str(path), "atr")
    t, c, s = [], [], []
    vf: list[tuple[float, float]] = []
    vf_on: float | None = None
    for sample, sym in zip(ann.sample, ann.symbol, strict=True):
        ts = float(sample) / fs_hz
        if sym == "[":
            vf_on = ts
        elif sym == "]":
            vf.append((vf_on if vf_on is not None else 0.0, ts))
            vf_on = None
        elif sym in AAMI and vf_on is None:
            t.append(ts)
            c.append(AAMI[sym])
            s.append(sym)
    duration = n_samples / fs_hz if n_samples else float("inf")
    if vf_on is not None:
        vf.append((vf_on, duration))
    return Reference(
        np.asarray(t, dtype=np.float64),
        np.asarray(c, dtype="<U1"),
        np.asarray(s, dtype="<U1"),
        tuple(vf),
        duration,
    )


def read_record(path: Path | str, fs_hz: float = CARDIAC_FS_HZ) -> Record:
    """A WFDB record (``.hea`` path or its stem), every lead resampled to ``fs_hz`` causally."""
    import wfdb

    stem = str(path)[:-4] if str(path).endswith(".hea") else str(path)
    rec = wfdb.rdrecord(stem)
    if rec.p_signal is None:
        raise ValueError(f"{stem}: no physical signal")
    leads = {}
    for i, name in enumerate(rec.sig_name):
        x = np.asarray(rec.p_signal[:, i], dtype=np.float64)
        leads[str(name)] = Resampler(float(rec.fs), fs_hz)(x)
    ref = read_reference(stem, float(rec.fs), int(rec.sig_len))
    return Record(
        Path(stem).name,
        fs_hz,
        leads,
        ref,
        float(rec.fs),
        tuple(str(c) for c in (rec.comments or [])),
    )


def shared_mitdb(shared: Path) -> Path:
    return shared / "mitdb"


# -- the comparison --------------------------------------------------------------------------
@dataclass
class Confusion:
    """Beat-by-beat counts: ``counts[(ref, test)]``, ref and test in N S V F Q or O."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, ref: str, test: str) -> None:
        self.counts[(ref, test)] = self.counts.get((ref, test), 0) + 1

    def __iadd__(self, other: Confusion) -> Confusion:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        return self

    def n(self, refs: Iterable[str], tests: Iterable[str]) -> int:
        tests = list(tests)
        return sum(self.counts.get((r, t), 0) for r in refs for t in tests)

    # QRS detection
    @property
    def qrs_tp(self) -> int:
        return self.n(CLASSES, CLASSES)

    @property
    def qrs_fn(self) -> int:
        return self.n(CLASSES, UNMATCHED)

    @property
    def qrs_fp(self) -> int:
        return self.n(UNMATCHED, CLASSES)

    # ventricular ectopic beats
    @property
    def veb_tp(self) -> int:
        return self.n("V", "V")

    @property
    def veb_fn(self) -> int:
        return self.n("V", "NSFQO")

    @property
    def veb_fp(self) -> int:
        return self.n("NSO", "V")

    # supraventricular ectopic beats
    @property
    def sveb_tp(self) -> int:
        return self.n("S", "S")

    @property
    def sveb_fn(self) -> int:
        return self.n("S", "NVFQO")

    @property
    def sveb_fp(self) -> int:
        return self.n("NVFO", "S")

    def statistics(self) -> dict[str, float | None]:
        """Se and +P in percent (None where undefined), gross over whatever was summed."""

        def pct(a: int, b: int) -> float | None:
            return round(100.0 * a / b, 2) if b > 0 else None

        return {
            "qrs_se": pct(self.qrs_tp, self.qrs_tp + self.qrs_fn),
            "qrs_pp": pct(self.qrs_tp, self.qrs_tp + self.qrs_fp),
            "veb_se": pct(self.veb_tp, self.veb_tp + self.veb_fn),
            "veb_pp": pct(self.veb_tp, self.veb_tp + self.veb_fp),
            "sveb_se": pct(self.sveb_tp, self.sveb_tp + self.sveb_fn),
            "sveb_pp": pct(self.sveb_tp, self.sveb_tp + self.sveb_fp),
        }

    def table(self) -> dict[str, dict[str, int]]:
        """Reference row -> test column -> count (every cell, zeros included)."""
        rows = (*CLASSES, UNMATCHED)
        return {
            r: {t: self.counts.get((r, t), 0) for t in rows if not (r == t == UNMATCHED)}
            for r in rows
        }


def _in_episodes(t: float, episodes: Sequence[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in episodes)


def compare(
    ref_t: np.ndarray,
    ref_c: Sequence[str],
    test_t: np.ndarray,
    test_c: Sequence[str],
    *,
    start_s: float = START_S,
    end_s: float = float("inf"),
    window_s: float = MATCH_WINDOW_S,
    vf_s: Sequence[tuple[float, float]] = (),
) -> Confusion:
    """Pair reference and test beats as EC57's reference comparator does; return the counts.

    Both sequences are in time order. Beats before ``start_s`` are not scored, except that a
    test beat just before it may match the first scored reference beat (and a test beat just
    after it that matches nothing better is passed over), as the standard's comparator treats
    the start of the test period. Test beats inside a reference VF episode are not counted.
    """
    inf = float("inf")
    R = [(float(t), str(c)) for t, c in zip(ref_t, ref_c, strict=True) if t <= end_s]
    A = [(float(t), str(c)) for t, c in zip(test_t, test_c, strict=True) if t <= end_s]
    out = Confusion()
    i = 0
    while i < len(R) and R[i][0] < start_s:
        i += 1
    j = 0
    while j < len(A) and A[j][0] < start_s:
        j += 1

    def T(k: int) -> float:
        return R[k][0] if k < len(R) else inf

    def t(k: int) -> float:
        return A[k][0] if k < len(A) else inf

    def extra(k: int) -> None:
        if not _in_episodes(A[k][0], vf_s):
            out.add(UNMATCHED, A[k][1])

    # the test beat before the start may match the first reference beat
    if i < len(R):
        prev = j - 1
        if prev >= 0 and T(i) - t(prev) <= window_s and T(i) - t(prev) < abs(T(i) - t(j)):
            out.add(R[i][1], A[prev][1])
            i += 1
        elif t(j) - start_s <= window_s and abs(T(i) - t(j + 1)) < abs(T(i) - t(j)):
            j += 1  # the first test beat matches nothing better than its successor: skipped
    while i < len(R) or j < len(A):
        if t(j) < T(i):
            if T(i) - t(j) <= window_s and T(i) - t(j) < abs(T(i) - t(j + 1)):
                out.add(R[i][1], A[j][1])
                i += 1
                j += 1
            else:
                extra(j)
                j += 1
        else:
            if t(j) - T(i) <= window_s and t(j) - T(i) < abs(t(j) - T(i + 1)):
                out.add(R[i][1], A[j][1])
                i += 1
                j += 1
            else:
                out.add(R[i][1], UNMATCHED)
                i += 1
    return out


def score_detections(
    reference: Reference, detected_t_s: np.ndarray, *, start_s: float = START_S
) -> Confusion:
    """QRS detection alone: every detected beat labelled N against the reference beats
    (``Confusion.statistics()['qrs_se']`` and ``['qrs_pp']``); the place where the streaming
    detector's Se/+P is measured."""
    return compare(
        reference.t_s,
        list(reference.classes),
        np.asarray(detected_t_s, dtype=np.float64),
        ["N"] * len(detected_t_s),
        start_s=start_s,
        end_s=reference.duration_s,
        vf_s=reference.vf_s,
    )
