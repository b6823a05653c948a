"""ProtoCentral OpenView packets: the binary stream of HealthyPi boards.

A packet is::

    0x0A 0xFA  len_lo len_hi  0x02  <len payload bytes>  0x00 0x0B

(start-of-frame pair, little-endian payload length, packet type 2 = data, payload, end of
frame). One packet carries one sample of every channel, so the packet rate *is* the sample
rate; the board does not stamp its samples and the rate comes from configuration.

``OpenViewParser`` is pure and incremental: feed it bytes in any chunking and it returns the
samples of every complete, valid packet. A USB adapter plugged in mid-stream, line noise or a
board reset give garbage, truncated packets and wrong lengths; the parser skips to the next
start-of-frame and counts what it threw away. It never returns a sample from a packet whose
header, length and end-of-frame bytes did not all check out.

The payload layout is data (``PayloadLayout``): field names, integer types (little-endian),
the role a field feeds (ecg, ppg, resp) and how to turn counts into the signal (scale,
polarity, a skip flag). ``HEALTHYPI5`` is the HealthyPi 5 layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device.dsp.gaps import forward_fill
from device.sources.formats.base import BoardFormat

SOF = b"\x0a\xfa"
PKT_TYPE_DATA = 0x02
EOF = b"\x00\x0b"
HEADER_LEN = 5  # SOF(2) + length(2) + type(1)
TRAILER_LEN = 2

#: little-endian integer types a payload field may have
FIELD_TYPES: dict[str, str] = {
    "int8": "<i1",
    "uint8": "<u1",
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
}

#: roles a field may feed (see device/recording.py); "" carries a value without feeding the core.
#: An ECG field may name its lead, ``ecg:II``: a board with several leads has a field for each.
FIELD_ROLES = ("", "ecg", "ppg", "resp", "abp")


@dataclass(frozen=True)
class FieldSpec:
    """One payload field (or one text column).

    The signal value is ``raw * scale``, negated when ``invert`` is set. When ``skip_if`` names
    another field and that field equals ``skip_value`` in a packet, this field's sample is not
    new: the board sampled this channel more slowly and repeats a slot; the last valid value is
    held (a zero-order hold of a slower channel, not an invented waveform) and counted.
    """

    name: str
    type: str = "int32"
    role: str = ""
    scale: float = 1.0
    invert: bool = False
    skip_if: str = ""
    skip_value: int = 0xFF

    def check(self) -> str | None:
        """A description of what is wrong with this field, or None."""
        if not self.name:
            return "a field needs a name"
        if self.type not in FIELD_TYPES:
            return f"field '{self.name}': type '{self.type}' is not one of {', '.join(FIELD_TYPES)}"
        base, _, lead = self.role.partition(":")
        if base not in FIELD_ROLES or (lead and base != "ecg"):
            roles = ", ".join(r for r in FIELD_ROLES if r)
            return (
                f"field '{self.name}': role '{self.role}' is not one of {roles} "
                "(or ecg:LEAD for one of several ECG leads)"
            )
        if not np.isfinite(self.scale) or self.scale == 0:
            return f"field '{self.name}': scale must be a non-zero number"
        return None


FIELD_KEYS = ("name", "type", "role", "scale", "invert", "skip_if", "skip_value")


def field_from_table(table: Mapping[str, Any]) -> FieldSpec:
    """A FieldSpec from a TOML table; raises ValueError naming an unknown key or bad value."""
    unknown = sorted(set(table) - set(FIELD_KEYS))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)} in a field (valid: {', '.join(FIELD_KEYS)})"
        )
    kinds: dict[str, type | tuple[type, ...]] = {
        "name": str,
        "type": str,
        "role": str,
        "scale": (int, float),
        "invert": bool,
        "skip_if": str,
        "skip_value": int,
    }
    for k, v in table.items():
        if not isinstance(v, kinds[k]) or (k != "invert" and isinstance(v, bool)):
            raise ValueError(f"field key '{k}' = {v!r} has the wrong type")
    spec = FieldSpec(
        name=table.get("name", ""),
        type=table.get("type", "int32"),
        role=table.get("role", ""),
        scale=float(table.get("scale", 1.0)),
        invert=table.get("invert", False),
        skip_if=table.get("skip_if", ""),
        skip_value=table.get("skip_value", 0xFF),
    )
    problem = spec.check()
    if problem:
        raise ValueError(problem)
    return spec


@dataclass(frozen=True)
class PayloadLayout:
    """The fields of one payload, in order, packed without padding."""

    fields: tuple[FieldSpec, ...]
    dtype: np.dtype[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if not names:
            raise ValueError("a payload layout needs at least one field")
        if len(set(names)) != len(names):
            raise ValueError(f"field names repeat: {', '.join(names)}")
        for f in self.fields:
            problem = f.check()
            if problem:
                raise ValueError(problem)
            if f.skip_if and f.skip_if not in names:
                raise ValueError(
                    f"field '{f.name}': skip_if names '{f.skip_if}', which is not a field"
                )
        roles = [f.role for f in self.fields if f.role]
        if len(set(roles)) != len(roles):
            raise ValueError(f"two fields feed the same role ({', '.join(roles)})")
        object.__setattr__(
            self, "dtype", np.dtype([(f.name, FIELD_TYPES[f.type]) for f in self.fields])
        )

    @property
    def size(self) -> int:
        return int(self.dtype.itemsize)

    @property
    def roles(self) -> dict[str, str]:
        """role -> field name, for the fields that feed the core."""
        return {f.role: f.name for f in self.fields if f.role}


#: HealthyPi 5 (public firmware, MIT): 22 bytes, little-endian. ECG and respiration come from
#: the MAX30001 (ECG and bio-impedance); respiration is sampled more slowly than ECG and a
#: skip flag of 0xFF marks packets that repeat no new respiration sample. PPG red/IR come from
#: the AFE4400 optical front end as received-light counts: more blood in systole absorbs more
#: light, so the raw count falls as the monitor's pleth rises; the preset inverts PPG.
#: Temperature, SpO2, RR and HR are the board's own numbers (0 when it does not compute them);
#: they are decoded and shown in the status but not fed to the estimators.
HEALTHYPI5 = PayloadLayout(
    (
        FieldSpec("ecg", "int32", "ecg"),
        FieldSpec("resp", "int32", "resp", skip_if="resp_skip", skip_value=0xFF),
        FieldSpec("resp_skip", "uint8"),
        FieldSpec("ppg_red", "int32", "ppg", invert=True),
        FieldSpec("ppg_ir", "int32"),
        FieldSpec("temp", "int16"),
        FieldSpec("spo2", "uint8"),
        FieldSpec("board_rr", "uint8"),
        FieldSpec("board_hr", "uint8"),
    )
)

#: A bedside monitor's front end with two ECG leads, a pulse oximeter and an arterial line,
#: every channel in every packet (the ICU records of PhysioNet carry these at 125-250 Hz):
#: int32 counts, little-endian, 16 bytes.
ICU4 = PayloadLayout(
    (
        FieldSpec("ecg_ii", "int32", "ecg:II"),
        FieldSpec("ecg_v", "int32", "ecg:V"),
        FieldSpec("pleth", "int32", "ppg"),
        FieldSpec("abp", "int32", "abp"),
    )
)

OPENVIEW_PRESETS: dict[str, PayloadLayout] = {"healthypi5": HEALTHYPI5, "icu4": ICU4}

#: A payload longer than this is not a sensor sample; a header claiming more is garbage.
MAX_PAYLOAD = 1024


@dataclass
class ParserCounters:
    """What a parser has seen; reported in the source's status."""

    bytes: int = 0  # bytes fed
    good_frames: int = 0  # valid packets (or lines) decoded into samples
    bad_frames: int = 0  # packets that started but failed a check (type, length, end of frame)
    resyncs: int = 0  # times the parser had to skip bytes to find the next start of a frame
    discarded_bytes: int = 0  # bytes skipped while resynchronising
    held_samples: int = 0  # samples repeated because the board flagged a skipped slot

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Decoded:
    """The samples of the valid packets in one feed: raw field values and role signals."""

    n: int
    raw: dict[str, np.ndarray]
    signals: dict[str, np.ndarray]  # role -> float64 signal (scaled, polarity applied)


def _apply(
    layout: PayloadLayout,
    raw: dict[str, np.ndarray],
    held: dict[str, float],
    counters: ParserCounters,
) -> dict[str, np.ndarray]:
    """Counts -> role signals: scale, polarity and skip-flag hold."""
    out: dict[str, np.ndarray] = {}
    for f in layout.fields:
        if not f.role:
            continue
        x = raw[f.name].astype(np.float64) * (-f.scale if f.invert else f.scale)
        if f.skip_if:
            skip = raw[f.skip_if] == f.skip_value
            if skip.any():
                counters.held_samples += int(skip.sum())
                x = x.copy()
                x[skip] = np.nan
                # hold the last valid value; NaN (a gap) before the first valid sample
                x, _ = forward_fill(x, held.get(f.name, np.nan))
            if len(x) and np.isfinite(x[-1]):
                held[f.name] = float(x[-1])
        out[f.role] = x
    return out


class OpenViewParser:
    """Incremental OpenView packet parser; see the module docstring."""

    def __init__(self, layout: PayloadLayout = HEALTHYPI5) -> None:
        self.layout = layout
        self.counters = ParserCounters()
        self._buf = bytearray()
        self._held: dict[str, float] = {}
        self._in_garbage = False  # inside a run of skipped bytes (one resync per run)

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial packet and the held values (after the port was reopened: a value
        from before the outage must not fill a slot after it); counters are kept."""
        self._buf.clear()
        self._held.clear()
        self._in_garbage = False

    def _skip(self, n: int) -> None:
        self.counters.discarded_bytes += n
        if not self._in_garbage:
            self.counters.resyncs += 1
            self._in_garbage = True

    def feed(self, data: bytes | bytearray | memoryview) -> Decoded:
        """Bytes in (any chunking), samples of every complete valid packet out."""
        self.counters.bytes += len(data)
        buf = self._buf
        buf += data
        size = self.layout.size
        total = size + HEADER_LEN + TRAILER_LEN
        payloads = bytearray()
        n_good = 0
        pos = 0
        end = len(buf)
        while True:
            start = buf.find(SOF, pos)
            if start < 0:
                # keep a trailing 0x0A: it may be the first byte of the next start-of-frame
                keep = 1 if end > pos and buf[end - 1] == SOF[0] else 0
                if end - keep > pos:
                    self._skip(end - keep - pos)
                pos = end - keep
                break
            if start > pos:
                self._skip(start - pos)
                pos = start
            if end - pos < HEADER_LEN:
                break  # wait for the rest of the header
            length = buf[pos + 2] | (buf[pos + 3] << 8)
            if buf[pos + 4] != PKT_TYPE_DATA or length != size:
                # not a data packet of our layout: a wrong length, or a false start-of-frame
                # inside garbage. Skip the start-of-frame and look again.
                self.counters.bad_frames += 1
                self._skip(2)
                pos += 2
                continue
            if end - pos < total:
                break  # wait for the payload and end of frame
            if buf[pos + total - 2] != EOF[0] or buf[pos + total - 1] != EOF[1]:
                # truncated packet (the next one started inside it) or corrupted: no sample
                self.counters.bad_frames += 1
                self._skip(2)
                pos += 2
                continue
            payloads += buf[pos + HEADER_LEN : pos + HEADER_LEN + size]
            n_good += 1
            self._in_garbage = False
            pos += total
        del buf[:pos]
        self.counters.good_frames += n_good
        arr = np.frombuffer(bytes(payloads), dtype=self.layout.dtype)
        raw = {f.name: arr[f.name] for f in self.layout.fields}
        return Decoded(n_good, raw, _apply(self.layout, raw, self._held, self.counters))


def encode_packets(layout: PayloadLayout, raw: Mapping[str, Sequence[int] | np.ndarray]) -> bytes:
    """OpenView packets for per-field integer values (all of one length; missing fields 0)."""
    lengths = {len(v) for v in raw.values()}
    if len(lengths) != 1:
        raise ValueError("all fields need the same number of samples")
    (n,) = lengths
    unknown = set(raw) - set(layout.dtype.names or ())
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    payload = np.zeros(n, dtype=layout.dtype)
    for name, values in raw.items():
        info = np.iinfo(layout.dtype[name])
        v = np.asarray(values, dtype=np.int64)
        if v.size and (v.min() < info.min or v.max() > info.max):
            raise ValueError(f"field '{name}': value out of range for {layout.dtype[name]}")
        payload[name] = v
    size = layout.size
    header = SOF + bytes((size & 0xFF, size >> 8, PKT_TYPE_DATA))
    packet = np.zeros((n, HEADER_LEN + size + TRAILER_LEN), dtype=np.uint8)
    packet[:, :HEADER_LEN] = np.frombuffer(header, dtype=np.uint8)
    packet[:, HEADER_LEN : HEADER_LEN + size] = payload.view(np.uint8).reshape(n, size)
    packet[:, -TRAILER_LEN:] = np.frombuffer(EOF, dtype=np.uint8)
    return packet.tobytes()


def counts_for_signals(
    layout: PayloadLayout, signals: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The inverse of decoding: role signals -> integer counts per field (for replays/tests).

    NaN samples (gaps in a recording) become 0 counts: a board has no way to send a gap.
    """
    out: dict[str, np.ndarray] = {}
    for f in layout.fields:
        if f.role and f.role in signals:
            x = np.asarray(signals[f.role], dtype=np.float64) / (-f.scale if f.invert else f.scale)
            info = np.iinfo(np.dtype(FIELD_TYPES[f.type]))
            out[f.name] = np.clip(np.round(np.nan_to_num(x)), info.min, info.max).astype(np.int64)
    return out


def _encode(
    fields: tuple[FieldSpec, ...], signals: Mapping[str, np.ndarray], **opts: float
) -> bytes:
    """Role signals -> packets; values are multiplied by ``counts_per_unit`` first."""
    layout = PayloadLayout(fields)
    k = float(opts.get("counts_per_unit", 1.0))
    scaled = {r: np.asarray(x, dtype=np.float64) * k for r, x in signals.items()}
    return encode_packets(layout, counts_for_signals(layout, scaled))


def _check(fields: tuple[FieldSpec, ...]) -> None:
    PayloadLayout(fields)  # names, types, skip flags, roles


def _offsets(blob: bytes) -> np.ndarray:
    """Every packet of one layout has the same length: read it from the first header."""
    if len(blob) < HEADER_LEN:
        return np.zeros(1, dtype=np.int64)
    size = HEADER_LEN + (blob[2] | blob[3] << 8) + TRAILER_LEN
    return np.arange(0, len(blob) + 1, size, dtype=np.int64)


FORMAT = BoardFormat(
    key="openview",
    presets={name: layout.fields for name, layout in OPENVIEW_PRESETS.items()},
    default_preset="healthypi5",
    check=_check,
    parser=lambda fields: OpenViewParser(PayloadLayout(fields)),
    encode=_encode,
    sample_offsets=_offsets,
)
