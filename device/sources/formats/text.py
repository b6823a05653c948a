"""Text streams: one sample per line, numbers separated by commas or tabs.

Many boards (HealthyPi in text mode: ``ecg<TAB>resp<TAB>red\\r\\n`` with three decimals, Arduino
sketches, serial plotters) print one line per sample. ``TextLineParser`` is incremental like
the OpenView parser: bytes in any chunking, the samples of every complete valid line out.
A line with the wrong number of columns, a non-number, or a line that never ends (a board
sending binary, a wrong baud rate) is counted and dropped; nothing is guessed.

Columns are described by the same ``FieldSpec`` as payload fields (name, role, scale,
polarity; the integer type is ignored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from device.sources.formats.base import BoardFormat
from device.sources.formats.openview import Decoded, FieldSpec, ParserCounters

#: HealthyPi text mode: ECG, respiration, PPG red (raw optical counts: inverted pleth).
HEALTHYPI_TEXT: tuple[FieldSpec, ...] = (
    FieldSpec("ecg", role="ecg"),
    FieldSpec("resp", role="resp"),
    FieldSpec("ppg_red", role="ppg", invert=True),
)

TEXT_PRESETS: dict[str, tuple[FieldSpec, ...]] = {"healthypi-text": HEALTHYPI_TEXT}

#: A sample line is a few numbers; a "line" longer than this is binary or a baud mismatch.
MAX_LINE = 256

#: The bytes a line of numbers may hold. float() alone would also take "nan", "inf" and
#: "1_000" (Python's digit grouping): a board never prints those, and a bit error that turns
#: a digit into "_" must not become another number.
NUMBER_BYTES = b"0123456789+-.eE,\t \r\x0b\x0c"


class TextLineParser:
    def __init__(self, columns: Sequence[FieldSpec] = HEALTHYPI_TEXT) -> None:
        if not columns:
            raise ValueError("a text format needs at least one column")
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise ValueError(f"column names repeat: {', '.join(names)}")
        self.columns = tuple(columns)
        self.counters = ParserCounters()
        self._buf = bytearray()
        self._in_garbage = False
        self._overlong = False  # discarding the rest of a line that was too long

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._in_garbage = False
        self._overlong = False

    def _bad(self) -> None:
        self.counters.bad_frames += 1
        if not self._in_garbage:
            self.counters.resyncs += 1
            self._in_garbage = True

    def feed(self, data: bytes | bytearray | memoryview) -> Decoded:
        self.counters.bytes += len(data)
        self._buf += data
        rows: list[list[float]] = []
        width = len(self.columns)
        pos = 0
        buf = self._buf
        while True:
            nl = buf.find(b"\n", pos)
            if self._overlong:
                # still inside a line already counted as bad: drop up to its end
                cut = len(buf) if nl < 0 else nl + 1
                self.counters.discarded_bytes += cut - pos
                pos = cut
                if nl < 0:
                    break
                self._overlong = False
                continue
            if nl < 0:
                if len(buf) - pos > MAX_LINE:
                    self.counters.discarded_bytes += len(buf) - pos
                    self._bad()
                    self._overlong = True
                    pos = len(buf)
                break
            line = bytes(buf[pos:nl]).strip()
            if nl - pos > MAX_LINE:
                self.counters.discarded_bytes += nl + 1 - pos
                self._bad()
            elif line:
                parts = line.replace(b"\t", b",").split(b",")
                try:
                    if len(parts) != width or line.translate(None, NUMBER_BYTES):
                        raise ValueError
                    row = [float(p) for p in parts]
                    if not all(math.isfinite(v) for v in row):
                        raise ValueError
                except ValueError:
                    self.counters.discarded_bytes += nl + 1 - pos
                    self._bad()
                else:
                    rows.append(row)
                    self._in_garbage = False
            pos = nl + 1
        del buf[:pos]
        self.counters.good_frames += len(rows)
        table = np.array(rows, dtype=np.float64).reshape(len(rows), width)
        raw = {c.name: table[:, j] for j, c in enumerate(self.columns)}
        signals = {
            c.role: raw[c.name] * (-c.scale if c.invert else c.scale)
            for c in self.columns
            if c.role
        }
        return Decoded(len(rows), raw, signals)


def encode_lines(
    columns: Sequence[FieldSpec],
    signals: Mapping[str, np.ndarray],
    decimals: int = 3,
    sep: str = "\t",
) -> bytes:
    """Text lines (``\\r\\n``-terminated) for role signals, inverting scale and polarity.

    Columns whose role the signals lack are written as 0. NaN (a gap in a recording) is
    written as 0 too: a board cannot send a gap.
    """
    n = max((len(v) for v in signals.values()), default=0)
    cols = []
    for c in columns:
        if c.role and c.role in signals:
            x = np.asarray(signals[c.role], dtype=np.float64) / (-c.scale if c.invert else c.scale)
            cols.append(np.nan_to_num(x))
        else:
            cols.append(np.zeros(n))
    fmt = sep.join([f"%.{decimals}f"] * len(cols)) + "\r\n"
    table = np.column_stack(cols) if cols else np.zeros((n, 0))
    return "".join(fmt % tuple(row) for row in table).encode("ascii")


def _encode(
    fields: tuple[FieldSpec, ...], signals: Mapping[str, np.ndarray], **opts: float
) -> bytes:
    """Role signals -> lines with ``decimals`` decimals."""
    return encode_lines(fields, signals, decimals=int(opts.get("decimals", 3)))


def _check(fields: tuple[FieldSpec, ...]) -> None:
    TextLineParser(fields)  # at least one column, unique names


def _offsets(blob: bytes) -> np.ndarray:
    """A sample is a line: it starts after the previous newline."""
    ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0x0A) + 1
    return np.concatenate(([0], ends)).astype(np.int64)


FORMAT = BoardFormat(
    key="text",
    presets=TEXT_PRESETS,
    default_preset="healthypi-text",
    check=_check,
    parser=TextLineParser,
    encode=_encode,
    sample_offsets=_offsets,
)
