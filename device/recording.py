"""Recordings: named channels at one sample rate, read from BIDMC-format CSV, WAV or a
PhysioNet WFDB record (``.hea``).

A recording is what a replay plays into the pipeline and what ``bedside process`` reads.
Channels carry *roles* that tell the pipeline what a channel measures:

- ``ecg``:   electrocardiogram; several leads are several inputs, ``ecg:II``, ``ecg:V``
- ``ppg``:   photoplethysmogram (pulse oximeter pleth, monitor polarity: systole up)
- ``abp``:   invasive arterial blood pressure
- ``resp``:  thoracic impedance respiration
- ``audio``: breathing or heart sounds from a microphone or electronic stethoscope

``Recording.roles`` maps each *input* (``device.roles.Channel`` written as a string: ``ppg``,
``ecg:II``) to the column that feeds it. BIDMC column names map to inputs by default (lead II
only, the lead its monitor's heart rate came from); WFDB signal names map by
``wfdb_channel`` (every ECG lead); other mappings come from config (``[recording.roles]``) or
``role_map=``.
"""

from __future__ import annotations

import gzip
import math
import struct
import warnings
import wave
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.access import read_error
from device.errors import UserError

ROLES = ("ecg", "ppg", "resp", "audio", "abp")
VITAL_ROLES = ("ecg", "ppg", "resp", "abp")


def role_of(name: str) -> str:
    """The role of an input name: ``"ecg:II"`` -> ``"ecg"``."""
    return name.partition(":")[0]


#: BIDMC ``_Signals.csv`` column -> role. Lead II is the ECG the monitor's HR comes from.
BIDMC_ROLE_MAP: dict[str, str] = {"II": "ecg", "PLETH": "ppg", "RESP": "resp"}

TIME_COLUMN = "Time [s]"

#: Vital-sign channels are resampled to the pipeline's internal rates; these bounds are
#: the rates the front ends of real bedside boards use (HealthyPi 125 Hz .. 1 kHz ECG).
MIN_VITAL_FS_HZ = 50.0
MAX_VITAL_FS_HZ = 1000.0
#: Heart sounds (S1/S2, 25-200 Hz) are often recorded at 1 kHz (phonocardiogram databases);
#: breath sounds need 2 kHz (their 150-800 Hz band), and the breath-sound estimator answers
#: nothing from a slower file. 192 kHz is the highest rate recorders write.
MIN_AUDIO_FS_HZ = 1000.0
MAX_AUDIO_FS_HZ = 192000.0


@dataclass(frozen=True)
class Recording:
    """Named channels sampled together at ``fs_hz``; ``roles`` maps role -> channel name."""

    path: str
    fs_hz: float
    channels: Mapping[str, np.ndarray]
    roles: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the reader left out, and why (shown to the user)

    @property
    def n_samples(self) -> int:
        return len(next(iter(self.channels.values()))) if self.channels else 0

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs_hz

    def role(self, role: str) -> np.ndarray:
        return self.channels[self.roles[role]]

    def role_signals(self) -> dict[str, np.ndarray]:
        """Role -> samples, for every role this recording has."""
        return {r: self.channels[c] for r, c in self.roles.items()}

    def restricted(self, roles: list[str] | tuple[str, ...]) -> Recording:
        """The same recording with every role not in ``roles`` hidden (``--use``): ``ecg``
        keeps every ECG lead, ``ecg:II`` only that one."""
        have_roles = set(self.roles) | {role_of(k) for k in self.roles}
        missing = [r for r in roles if r not in have_roles]
        if missing:
            have = ", ".join(sorted(self.roles)) or "none"
            raise UserError(
                f"{self.path}: --use asks for role(s) {', '.join(missing)} the recording lacks "
                f"(it has: {have})",
                "choose from the roles it has, or map its columns to roles in the config "
                "[recording.roles] table",
            )
        keep = {k: c for k, c in self.roles.items() if k in roles or role_of(k) in roles}
        return Recording(self.path, self.fs_hz, {c: self.channels[c] for c in keep.values()}, keep)

    def excerpt(self, start_s: float, stop_s: float) -> Recording:
        a, b = int(round(start_s * self.fs_hz)), int(round(stop_s * self.fs_hz))
        return Recording(
            self.path, self.fs_hz, {k: v[a:b] for k, v in self.channels.items()}, dict(self.roles)
        )


def open_text(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise UserError(
            f"{path}: cannot read ({e.__class__.__name__}: {e})",
            "the file is truncated or not gzip/CSV; copy it again from its source",
        ) from None
    except OSError as e:  # not found, no permission, hidden from the service...
        raise read_error(path, e) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file", "give a CSV, CSV.gz or WAV file") from None


def read_csv(
    path: str | Path,
    fs_hz: float | None = None,
    role_map: Mapping[str, str] | None = None,
) -> Recording:
    """Read a BIDMC-style CSV (plain or gzip): a header row of names, then numbers.

    Columns are selected by name (leading/trailing spaces stripped; column order differs
    between BIDMC records). ``Time [s]`` is optional when ``fs_hz`` is given; when present the
    sample rate is taken from it and checked against ``fs_hz``.
    """
    p = Path(path)
    parsed = _parse_csv_stream(p)
    names, table = parsed if parsed is not None else _parse_csv_lines(p, open_text(p))
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(
            f"{p}: column(s) {', '.join(repr(n) for n in twice)} appear more than once in the "
            "header",
            "rename or drop the repeated column so that each name is unique",
        )
    cols = {n: table[:, j] for j, n in enumerate(names)}
    if TIME_COLUMN in cols:
        t = cols.pop(TIME_COLUMN)
        tf = t[np.isfinite(t)]
        # PhysioNet prints times with limited precision (100.01, 100.01, 100.02...), so the
        # rate comes from the whole span, and the column need only be non-decreasing.
        if len(tf) < 2 or tf[-1] <= tf[0] or np.any(np.diff(tf) < 0):
            raise UserError(
                f"{p}: '{TIME_COLUMN}' is not increasing",
                "fix the time column or drop it and give --fs",
            )
        fs_file = (len(tf) - 1) / float(tf[-1] - tf[0])
        if fs_hz is not None and abs(fs_file - fs_hz) > 0.01 * fs_hz:
            raise UserError(
                f"{p}: '{TIME_COLUMN}' says {fs_file:.3f} Hz but {fs_hz:g} Hz was given",
                "drop the fs setting or correct it",
            )
        fs = fs_hz if fs_hz is not None else round(fs_file, 6)
    elif fs_hz is None:
        raise UserError(
            f"{p}: no '{TIME_COLUMN}' column and no sample rate given",
            "give the rate with --fs HZ or [recording] fs_hz in the config",
        )
    else:
        fs = float(fs_hz)

    mapping = dict(BIDMC_ROLE_MAP if role_map is None else role_map)
    roles: dict[str, str] = {}
    for col, role in mapping.items():
        if role_of(role) not in ROLES:
            raise UserError(
                f"{p}: unknown role '{role}' for column '{col}'",
                f"use one of {', '.join(ROLES)} (an ECG lead as ecg:LEAD, e.g. ecg:V)",
            )
        if col in cols:
            roles[role] = col
    if role_map is not None:
        absent = [c for c in mapping if c not in cols]
        if absent:
            raise UserError(
                f"{p}: column(s) {', '.join(absent)} named in the role map are not in the file "
                f"(it has: {', '.join(names)})",
                "correct [recording.roles] to name columns the file has",
            )
    if not roles:
        raise UserError(
            f"{p}: no column maps to a role (columns: {', '.join(names)})",
            'map columns to roles in the config, e.g. [recording.roles] PLETH = "ppg"',
        )
    return _checked(Recording(str(p), fs, cols, roles))


def _parse_csv_stream(p: Path) -> tuple[list[str], np.ndarray] | None:
    """(column names, samples x columns) read straight from the (gzip) file by numpy's C
    parser, for the common case: a header, then at least two rows of numbers and no blank
    lines. None for anything else (or any error), which ``_parse_csv_lines`` then reads and
    names. Streaming keeps a whole file's text and lines from ever being in memory at once
    (an 8-minute BIDMC record: 3 MB of samples, not 15 MB of peak RSS)."""
    try:
        with (
            gzip.open(p, "rt", encoding="utf-8", newline="")
            if p.suffix == ".gz"
            else p.open(encoding="utf-8", newline="")
        ) as f:
            header = f.readline()
            while header and not header.strip():
                header = f.readline()
            names = _column_names(header)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data": said below
                table = np.loadtxt(f, delimiter=",", dtype=np.float64, comments=None, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error):
        return None  # blank fields or lines, a short row, a word, a bad file: said line by line
    if table.shape[0] < 2 or table.shape[1] != len(names):
        return None
    return names, table


def _column_names(header: str) -> list[str]:
    return [n.strip().strip('"') for n in header.split(",")]


def _parse_csv_lines(p: Path, text: str) -> tuple[list[str], np.ndarray]:
    """Line by line: blank lines skipped, blank fields read as NaN, and one clear error for a
    line with the wrong number of fields or a field that is not a number."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"{p}: empty file", "give a CSV with a header row and samples")
    names = _column_names(lines[0])
    if len(lines) < 3:
        raise UserError(f"{p}: no samples after the header", "the file is truncated; copy it again")
    width = len(names)
    rows: list[list[str]] = []
    for i, ln in enumerate(lines[1:], start=2):
        parts = ln.split(",")
        if len(parts) != width:
            raise UserError(
                f"{p}: line {i} has {len(parts)} fields, the header has {width}",
                "the file is truncated or corrupt; copy it again from its source",
            )
        rows.append([s.strip() or "nan" for s in parts])
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError as e:
        raise UserError(
            f"{p}: non-numeric sample ({e})", "only numbers or 'nan' may follow the header"
        ) from None

    return names, table


def read_wav(path: str | Path, role: str = "audio") -> Recording:
    """Read a PCM WAV file (8/16/24/32-bit integer) as one ``audio`` channel per WAV channel.

    Samples are scaled to [-1, 1). Multichannel files give ``ch0``, ``ch1``...; the first is
    the one the role points at.
    """

    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            n_ch, width, fs, n = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            raw = w.readframes(n)
    except OSError as e:  # not found, no permission, hidden from the service...
        raise read_error(p, e) from None
    except (wave.Error, EOFError, RuntimeError, ValueError, struct.error) as e:
        # wave raises a bare RuntimeError for a chunk it cannot skip, struct.error for a
        # short header
        # Float WAVs are not PCM for the stdlib reader; scipy reads them.
        try:
            from scipy.io import wavfile

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the error below says what is wrong
                fs, data = wavfile.read(str(p))
        except Exception:
            raise UserError(
                f"{p}: not a readable WAV file ({str(e) or 'corrupt or truncated header'})",
                "convert it to PCM WAV, e.g. with sox",
            ) from None
        x = np.asarray(data, dtype=np.float64)
        x = x.reshape(len(x), -1)
        chans = {f"ch{i}": x[:, i] for i in range(x.shape[1])}
        return _checked(Recording(str(p), float(fs), chans, {role: "ch0"}))
    if n == 0 or len(raw) < n * n_ch * width:
        raise UserError(
            f"{p}: WAV holds fewer frames than its header says (truncated)", "copy the file again"
        )
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        v = (
            b[:, 0].astype(np.int32)
            | (b[:, 1].astype(np.int32) << 8)
            | (b[:, 2].astype(np.int32) << 16)
        )
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float64) / float(1 << 23)
    else:
        dt = {2: "<i2", 4: "<i4"}[width]
        x = np.frombuffer(raw, dt).astype(np.float64) / float(1 << (8 * width - 1))
    x = x.reshape(-1, n_ch)
    chans = {f"ch{i}": x[:, i].copy() for i in range(n_ch)}
    return _checked(Recording(str(p), float(fs), chans, {role: "ch0"}))


def _checked(rec: Recording) -> Recording:
    if not (math.isfinite(rec.fs_hz) and rec.fs_hz > 0):
        raise UserError(
            f"{rec.path}: sample rate {rec.fs_hz:g} Hz is not a positive number",
            "check the rate (Time column, --fs or fs_hz in the config, or the WAV header)",
        )
    if "audio" in rec.roles and not (MIN_AUDIO_FS_HZ <= rec.fs_hz <= MAX_AUDIO_FS_HZ):
        raise UserError(
            f"{rec.path}: sample rate {rec.fs_hz:g} Hz is outside "
            f"{MIN_AUDIO_FS_HZ:g}-{MAX_AUDIO_FS_HZ:g} Hz for audio",
            "record or resample the sound at 1-192 kHz (e.g. sox IN -r 8000 OUT)",
        )
    vital = [r for r in rec.roles if role_of(r) in VITAL_ROLES]
    if vital and not (MIN_VITAL_FS_HZ <= rec.fs_hz <= MAX_VITAL_FS_HZ):
        raise UserError(
            f"{rec.path}: sample rate {rec.fs_hz:g} Hz is outside "
            f"{MIN_VITAL_FS_HZ:g}-{MAX_VITAL_FS_HZ:g} Hz for vital-sign channels",
            "check the rate (Time column, --fs or fs_hz in the config)",
        )
    for role, col in rec.roles.items():
        x = rec.channels[col]
        if not np.any(np.isfinite(x)):
            raise UserError(
                f"{rec.path}: channel '{col}' ({role}) holds no numbers, only NaN",
                f"drop it with --use, or map another column to '{role}'",
            )
    return rec


def nan_runs(x: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of NaN samples: reported, then processed as gaps."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return []
    edges = np.diff(np.concatenate(([0], bad.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b - a)) for a, b in zip(starts, stops, strict=True)]


def read_recording(
    path: str | Path,
    fs_hz: float | None = None,
    role_map: Mapping[str, str] | None = None,
) -> Recording:
    """Read any supported recording by its extension (.csv, .csv.gz, .wav, .hea)."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".wav"):
        return read_wav(p)
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return read_csv(p, fs_hz=fs_hz, role_map=role_map)
    if name.endswith(".hea"):
        return read_wfdb(p, role_map=role_map)
    raise UserError(
        f"{p}: unknown recording format",
        "give a .csv, .csv.gz (BIDMC format), .wav or a WFDB record's .hea file",
    )


#: WFDB signal names of ECG leads (limb, augmented, precordial, and the modified chest and
#: limb leads of Holter recordings such as MIT-BIH's MLII and MCL1); matched without case.
ECG_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V", "V1", "V2", "V3", "V4", "V5", "V6") + (
    "MLI",
    "MLII",
    "MLIII",
    "MCL",
    "MCL1",
    "MV1",
    "MV2",
    "MV5",
    "ECG",
)
_ECG_BY_UPPER = {lead.upper(): lead for lead in ECG_LEADS}
#: Other signals by name: the pulse oximeter's pleth, the arterial line, impedance breathing.
WFDB_SIGNALS = {"PLETH": "ppg", "ABP": "abp", "ART": "abp", "RESP": "resp"}


def wfdb_channel(name: str) -> str | None:
    """The input a WFDB signal feeds (``"ecg:II"``, ``"ppg"``...), or None for a signal the
    core does not use (CVP, PAP, a second pleth...)."""
    key = name.strip().upper()
    if key in _ECG_BY_UPPER:
        return f"ecg:{_ECG_BY_UPPER[key]}"
    return WFDB_SIGNALS.get(key)


def read_wfdb(path: str | Path, role_map: Mapping[str, str] | None = None) -> Recording:
    """Read a PhysioNet WFDB record from its header (``.hea``) with the ``wfdb`` package:
    signal formats 16, 212 and 516 (FLAC) and ``.mat`` signal files, in physical units at the
    record's own rate. Missing samples (the format's invalid value) are NaN: gaps.

    Signals map to inputs by name (``wfdb_channel``): every ECG lead, PLETH, ABP/ART and RESP;
    ``role_map`` (signal name -> input, e.g. ``{"CVP": "abp"}``) adds or overrides."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file", "check the path (give the record's .hea file)")
    try:
        import wfdb
    except ImportError:
        raise UserError(
            f"{p}: reading WFDB records needs the wfdb package",
            "pip install 'bedside-edge[wfdb]' (or pip install wfdb)",
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = wfdb.rdrecord(str(p.with_suffix("")))
    except Exception as e:  # wfdb raises many kinds for a bad header or a missing .dat
        raise UserError(
            f"{p}: not a readable WFDB record ({e.__class__.__name__}: {e})",
            "check that the header and its signal files (.dat/.mat) are all there and "
            "complete; copy the record again from its source",
        ) from None
    names = [str(n) for n in (rec.sig_name or [])]
    signal = rec.p_signal
    if signal is None or not names:
        raise UserError(f"{p}: the record holds no signals", "give a record with signals")
    cols: dict[str, np.ndarray] = {}
    for j, n in enumerate(names):
        col = n if n not in cols else f"{n}#{j}"
        cols[col] = np.ascontiguousarray(signal[:, j], dtype=np.float64)
    roles: dict[str, str] = {}
    for col in cols:
        inp = wfdb_channel(col.partition("#")[0])
        if inp is not None and inp not in roles:
            roles[inp] = col
    for col, inp in (role_map or {}).items():
        if role_of(inp) not in ROLES:
            raise UserError(
                f"{p}: unknown role '{inp}' for signal '{col}'",
                f"use one of {', '.join(ROLES)} (an ECG lead as ecg:LEAD)",
            )
        if col not in cols:
            raise UserError(
                f"{p}: signal '{col}' named in the role map is not in the record "
                f"(it has: {', '.join(names)})",
                "correct [recording.roles] to name signals the record has",
            )
        roles = {k: c for k, c in roles.items() if c != col}
        roles[inp] = col
    if not roles:
        raise UserError(
            f"{p}: no signal maps to a role (signals: {', '.join(names)})",
            'map signals to roles in the config, e.g. [recording.roles] PLETH = "ppg"',
        )
    # a channel that is missing for the whole record (CinC 2015 has some) is no input at all
    empty = [k for k, c in roles.items() if not np.any(np.isfinite(cols[c]))]
    notes = tuple(f"{p}: {k} ('{roles[k]}') holds no samples: left out" for k in empty)
    for k in empty:
        del roles[k]
    if not roles:
        raise UserError(f"{p}: every mapped signal is missing (only NaN)", "give another record")
    return _checked(Recording(str(p), float(rec.fs), cols, roles, notes))


def describe_gaps(rec: Recording) -> list[str]:
    """One line per channel with NaN runs, for the user to see what becomes a gap (and what
    the reader left out)."""
    out = list(rec.notes)
    for role, col in rec.roles.items():
        runs = nan_runs(rec.channels[col])
        if runs:
            total = sum(n for _, n in runs)
            longest = max(n for _, n in runs)
            out.append(
                f"{rec.path}: {role} ('{col}') has {len(runs)} NaN run(s), "
                f"{total / rec.fs_hz:.1f} s in all (longest {longest / rec.fs_hz:.1f} s); "
                "processed as signal gaps (null vitals while gapped)"
            )
    return out
