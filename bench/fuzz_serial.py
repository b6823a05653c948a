"""Fuzz the serial parsers (OpenView packets, text lines) with random and mutated streams.

Parsers come from ``SerialConfig`` (presets and custom layouts, as the daemon builds them);
see ``TARGETS``. Kinds of case:

- ``random``:  random bytes, from alphabets that favour each format's special bytes
  (start/end of frame, the layout's length bytes, digits, separators, newlines).
- ``mutated``: a real stream (the bundled BIDMC record 09 excerpt, encoded as the board sends
  it with ``encode_packets`` / ``encode_lines``) with 1-12 byte-level mutations: bit flips,
  random bytes, insertions, deletions, duplicated and swapped ranges, inserted frame
  markers, truncation.
- ``resync``:  packets (lines) with unique values, then bursts of garbage of ten styles
  (random, frame-marker soup, truncated packets, headers with wrong length or end of frame,
  bit-flipped copies, overlong lines, words that are almost numbers...), each followed by
  K = 1-6 packets with unique values.
- ``atheris``: coverage-guided (libFuzzer through atheris, when installed), seeded with
  real streams; the same checks.

Every case is fed in random chunk sizes (1 byte to whole), and once whole. Checked on every
case:

1. no exception escapes the parser;
2. nothing is invented: the decoded samples are, in order, the payloads of non-overlapping
   valid packets that are in the input (header, length, type and end of frame all right), or
   of complete lines of the input that a strict number grammar accepts;
3. chunking does not matter: random chunks decode exactly what one feed decodes (values,
   signals and counters);
4. resynchronisation (``resync``): every packet before the first burst decodes, and after
   each burst followed by K valid packets at least K - 1 of them decode.

    .venv/bin/python bench/fuzz_serial.py                      # 10^6 cases + atheris
    .venv/bin/python bench/fuzz_serial.py --cases 20000 --atheris-runs 0
    .venv/bin/python bench/fuzz_serial.py --replay-case 1234   # one case again, verbosely

Counts go to ``bench/results/fuzz_serial.json``. Each case has its own seed
(``--seed``, case index), so a failure printed with its index can be replayed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.config import SerialConfig  # noqa: E402
from device.sources.formats import layout  # noqa: E402
from device.sources.formats.openview import (  # noqa: E402
    EOF,
    SOF,
    OpenViewParser,
    PayloadLayout,
    encode_packets,
)
from device.sources.formats.text import MAX_LINE, TextLineParser, encode_lines  # noqa: E402

EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
KINDS = ("random", "mutated", "resync")
Parser = OpenViewParser | TextLineParser  # noqa: UP040


# -- what is fuzzed ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One parser configuration: a format and a preset or custom layout."""

    name: str
    cfg: SerialConfig

    @property
    def binary(self) -> bool:
        return self.cfg.format == "openview"

    def parser(self) -> Parser:
        """A fresh parser of this layout (the layout built once by ``SerialConfig``)."""
        if self.binary:
            return OpenViewParser(self.layout)
        return TextLineParser(self.columns)

    @cached_property
    def layout(self) -> PayloadLayout:
        return PayloadLayout(self.columns)

    @cached_property
    def columns(self) -> tuple[Any, ...]:
        return layout(self.cfg.format, self.cfg.preset, self.cfg.fields)

    @cached_property
    def size(self) -> int:
        """Payload bytes (openview) or columns (text)."""
        return int(self.layout.size) if self.binary else len(self.columns)


def _ov(name: str, fields: list[dict[str, Any]] | None = None) -> Target:
    return Target(name, SerialConfig(url="x", format="openview", fields=fields or []))


def _tx(name: str, fields: list[dict[str, Any]] | None = None) -> Target:
    return Target(name, SerialConfig(url="x", format="text", fields=fields or []))


TARGETS: tuple[Target, ...] = (
    # the HealthyPi 5 preset: 22-byte payload, a skip flag on respiration, inverted PPG
    _ov("openview:healthypi5"),
    # the smallest useful packet: one int16 (9 bytes a packet)
    _ov("openview:int16x1", [{"name": "ecg", "type": "int16", "role": "ecg"}]),
    # uint8 PPG, int16 respiration held on a flag: 4-byte payload
    _ov(
        "openview:uint8-skip",
        [
            {"name": "ppg", "type": "uint8", "role": "ppg", "invert": True, "scale": 0.5},
            {"name": "resp", "type": "int16", "role": "resp", "skip_if": "flag"},
            {"name": "flag", "type": "uint8"},
        ],
    ),
    # a 10-byte payload: the length byte is 0x0A, the first start-of-frame byte
    _ov(
        "openview:len0x0a",
        [{"name": f"f{i}", "type": "int16", "role": r} for i, r in enumerate(["ecg", "ppg", ""])]
        + [{"name": "g", "type": "uint32"}],
    ),
    # a 250-byte payload: the length byte is 0xFA, the second start-of-frame byte
    _ov(
        "openview:len0xfa",
        [{"name": "ecg", "type": "int32", "role": "ecg"}]
        + [{"name": f"f{i}", "type": "uint32"} for i in range(61)]
        + [{"name": "tail", "type": "uint16"}],
    ),
    # HealthyPi text mode: ecg, resp, inverted ppg red
    _tx("text:healthypi-text"),
    _tx("text:one-column", [{"name": "ppg", "role": "ppg"}]),
    _tx(
        "text:five-columns",
        [
            {"name": "ecg", "role": "ecg", "scale": 1.0},
            {"name": "x", "role": ""},
            {"name": "resp", "role": "resp", "scale": 0.001},
            {"name": "y", "role": ""},
            {"name": "ppg", "role": "ppg", "invert": True, "scale": 2.0},
        ],
    ),
)


# -- real streams ------------------------------------------------------------------------------
_REAL: dict[str, bytes] = {}


@cache
def real_signals() -> dict[str, np.ndarray]:
    from device.recording import read_recording

    return read_recording(EXCERPT).role_signals()


def real_stream(t: Target) -> bytes:
    """The bundled excerpt as ``t``'s board would send it (cached)."""
    if t.name not in _REAL:
        sig = real_signals()
        if t.binary:
            from device.sources.formats.openview import counts_for_signals
            from lab.emulator import COUNTS_PER_UNIT

            layout = _layout(t)
            scaled = {r: x * COUNTS_PER_UNIT for r, x in sig.items()}
            _REAL[t.name] = encode_packets(layout, counts_for_signals(layout, scaled))
        else:
            _REAL[t.name] = encode_lines(t.columns, sig, decimals=3)
    return _REAL[t.name]


def _layout(t: Target) -> Any:
    return t.layout


# -- running one case --------------------------------------------------------------------------
@dataclass
class Outcome:
    raw: dict[str, np.ndarray]
    signals: dict[str, np.ndarray]
    counters: dict[str, int]


def run_parser(t: Target, data: bytes, cuts: list[int]) -> Outcome:
    """Feed ``data`` cut at ``cuts`` (sorted, 0 .. len) into a fresh parser."""
    p = t.parser()
    raws: dict[str, list[np.ndarray]] = {}
    sigs: dict[str, list[np.ndarray]] = {}
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        d = p.feed(data[a:b])
        if not d.n:
            if any(len(v) for v in d.raw.values()) or any(len(v) for v in d.signals.values()):
                raise AssertionError("Decoded.n = 0 with samples in its arrays")
            continue
        if any(len(v) != d.n for v in (*d.raw.values(), *d.signals.values())):
            raise AssertionError(f"Decoded.n = {d.n} differs from an array's length")
        for k, v in d.raw.items():
            raws.setdefault(k, []).append(v)
        for k, v in d.signals.items():
            sigs.setdefault(k, []).append(v)
    if not raws:  # nothing decoded: the empty arrays of one more (empty) feed
        d = p.feed(b"")
        raws = {k: [v] for k, v in d.raw.items()}
        sigs = {k: [v] for k, v in d.signals.items()}
    return Outcome(
        {k: np.concatenate(v) for k, v in raws.items()},
        {k: np.concatenate(v) for k, v in sigs.items()},
        p.counters.as_dict(),
    )


def random_cuts(rng: np.random.Generator, n: int) -> list[int]:
    """Chunk boundaries the way serial reads split a stream, in at most ~80 reads (the
    parser's cost per read bounds how many cases a minute can run): reads of random sizes,
    a run of 1-byte reads around a random spot, reads of one fixed size, or one read."""
    if n <= 1:
        return [0, n]
    reads = min(n, int(rng.integers(1, 81)))
    style = int(rng.integers(0, 4))
    if style == 0:  # random sizes
        inner = rng.choice(np.arange(1, n), size=min(reads, n - 1) - 1, replace=False)
    elif style == 1:  # 1-byte reads around one spot, a few big reads elsewhere
        at = int(rng.integers(1, n))
        inner = np.concatenate(
            (np.arange(at, min(n, at + reads)), rng.integers(1, n, int(rng.integers(0, 4))))
        )
    elif style == 2:  # fixed-size reads (a multiple of nothing in particular)
        step = max(1, -(-n // reads))
        inner = np.arange(step, n, step)
    else:
        inner = np.zeros(0, dtype=np.int64)
    cuts = np.unique(np.concatenate(([0, n], inner)))
    return [int(c) for c in cuts]


# -- the oracle: what may come out ---------------------------------------------------------
def _ov_payloads(t: Target, raw: dict[str, np.ndarray]) -> list[bytes]:
    layout = _layout(t)
    n = len(next(iter(raw.values()))) if raw else 0
    arr = np.zeros(n, dtype=layout.dtype)
    for name in layout.dtype.names or ():
        arr[name] = raw[name]
    b = arr.tobytes()
    return [b[i * layout.size : (i + 1) * layout.size] for i in range(n)]


def ov_frames(data: bytes, size: int) -> list[tuple[int, bytes]]:
    """(offset, payload) of every valid packet of a ``size``-byte payload anywhere in ``data``."""
    header = SOF + bytes((size & 0xFF, size >> 8, 0x02))
    total = size + 7
    out = []
    i = data.find(header)
    while i >= 0:
        if data[i + total - 2 : i + total] == EOF:
            out.append((i, data[i + 5 : i + 5 + size]))
        i = data.find(header, i + 1)
    return out


#: a number as a board prints it: optional sign, digits with an optional point, an optional
#: exponent; nothing else (no "nan", "inf", "1_000", hex). Spaces around it are allowed.
_NUMBER = re.compile(rb"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


def text_line_values(segment: bytes, width: int) -> tuple[float, ...] | None:
    """The values of one complete line (without its newline), by a strict reading, or None."""
    if len(segment) > MAX_LINE:
        return None
    line = segment.strip()
    if not line:
        return None
    parts = line.replace(b"\t", b",").split(b",")
    if len(parts) != width or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    vals = tuple(float(p) for p in parts)
    return vals if all(math.isfinite(v) for v in vals) else None


def text_lines(data: bytes, width: int) -> list[tuple[int, tuple[float, ...]]]:
    """(offset, values) of every complete valid line in ``data``."""
    out: list[tuple[int, tuple[float, ...]]] = []
    start = 0
    while True:
        nl = data.find(b"\n", start)
        if nl < 0:
            return out
        vals = text_line_values(data[start:nl], width)
        if vals is not None:
            out.append((start, vals))
        start = nl + 1


def invented(t: Target, data: bytes, out: Outcome) -> str | None:
    """Why the decoded samples are not, in order, valid frames of ``data``; None when they are."""
    decoded: list[Any]
    if t.binary:
        size = t.size
        frames: list[tuple[int, Any]] = list(ov_frames(data, size))
        decoded = _ov_payloads(t, out.raw)
        span = size + 7
    else:
        frames = list(text_lines(data, t.size))
        cols = [out.raw[c.name] for c in t.columns]
        decoded = [tuple(float(c[i]) for c in cols) for i in range(len(cols[0]))]
        span = 1
    j = 0
    cursor = 0
    for k, item in enumerate(decoded):
        while j < len(frames) and (frames[j][0] < cursor or frames[j][1] != item):
            j += 1
        if j == len(frames):
            shown = item.hex() if isinstance(item, bytes) else item
            return (
                f"decoded sample {k} of {len(decoded)} ({shown}) is not a valid "
                f"{'packet' if t.binary else 'line'} of the input at or after byte {cursor}"
            )
        cursor = frames[j][0] + span
        j += 1
    return None


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a
    )


def check(t: Target, data: bytes, cuts: list[int]) -> tuple[Outcome | None, str | None]:
    """Properties 1-3 on one input; (the chunked outcome, None) or (.., what failed)."""
    try:
        chunked = run_parser(t, data, cuts)
        whole = run_parser(t, data, [0, len(data)])
    except Exception as e:  # the property: nothing escapes
        tb = traceback.format_exc(limit=-3).strip().splitlines()
        return None, f"exception {e.__class__.__name__}: {e} ({' | '.join(tb[-4:])})"
    if chunked.counters["bytes"] != len(data):
        return chunked, f"counted {chunked.counters['bytes']} bytes of {len(data)}"
    why = invented(t, data, chunked)
    if why:
        return chunked, "invented: " + why
    if not _same(chunked.raw, whole.raw) or not _same(chunked.signals, whole.signals):
        return chunked, "chunking changed the decoded samples"
    if chunked.counters != whole.counters:
        return chunked, f"chunking changed the counters: {chunked.counters} vs {whole.counters}"
    return chunked, None


# -- generators --------------------------------------------------------------------------------
_TEXT_ALPHABET = np.frombuffer(b"0123456789012345678.,,\t\t-+eE \r\n\n", dtype=np.uint8)
_WORDS = (
    b"nan",
    b"NaN",
    b"inf",
    b"-inf",
    b"Infinity",
    b"1_000",
    b"0x1f",
    b"1e",
    b"--1",
    b"1..2",
    b"\xef\xbc\x91",  # a full-width digit one
    b"\xd9\xa1",  # an Arabic-Indic digit one
    b"1e999",
    b"\x00",
    b"\x1c1",
    b"+-2",
    b".",
    b"e5",
    b" ",
)


def _special(t: Target) -> bytes:
    if t.binary:
        s = t.size
        return SOF + EOF + bytes((0x02, s & 0xFF, s >> 8, 0xFF))
    return b"\n\r\t,.-+e0123456789"


def gen_random(t: Target, rng: np.random.Generator, mixture: bool = True) -> bytes:
    n = int(np.exp(rng.uniform(0, np.log(2000))))
    style = int(rng.integers(0, 4 if mixture else 3))
    if style == 0:
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    if style == 1:
        alpha = np.frombuffer(_special(t), dtype=np.uint8)
        return alpha[rng.integers(0, len(alpha), n)].tobytes()
    if style == 2:
        return _TEXT_ALPHABET[rng.integers(0, len(_TEXT_ALPHABET), n)].tobytes()
    # mixture: runs of each
    out = bytearray()
    while len(out) < n:
        out += gen_random(t, rng, mixture=False)[: int(rng.integers(1, 64))]
    return bytes(out[:n])


def real_piece(t: Target, rng: np.random.Generator, max_samples: int = 80) -> bytes:
    """A run of whole packets (lines) from the real stream, at a random place."""
    blob = real_stream(t)
    # about 2 KB at most: 70 HealthyPi packets, 8 of the 257-byte layout
    max_samples = max(1, min(max_samples, 2000 // (t.size + 7 if t.binary else 25)))
    k = int(rng.integers(1, max_samples + 1))
    if t.binary:
        total = t.size + 7
        n = len(blob) // total
        a = int(rng.integers(0, max(1, n - k)))
        return blob[a * total : (a + k) * total]
    a = blob.find(b"\n", int(rng.integers(0, len(blob) - 1000))) + 1
    b = a
    for _ in range(k):
        b = blob.find(b"\n", b) + 1
    return blob[a:b]


def mutate(t: Target, data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    special = _special(t)
    for _ in range(int(rng.integers(1, 13))):
        n = len(b)
        op = int(rng.integers(0, 10))
        i = int(rng.integers(0, n + 1)) if n else 0
        if op == 0 and n:  # flip a bit
            i = min(i, n - 1)
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:  # a random byte
            b[min(i, n - 1)] = int(rng.integers(0, 256))
        elif op == 2:  # insert random bytes
            b[i:i] = rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
        elif op == 3 and n:  # delete a range
            b[i : i + int(rng.integers(1, 40))] = b""
        elif op == 4 and n:  # duplicate a range elsewhere
            j = int(rng.integers(0, n))
            b[i:i] = b[j : j + int(rng.integers(1, 80))]
        elif op == 5:  # insert a special byte or frame marker
            k = int(rng.integers(0, len(special)))
            b[i:i] = special[k : k + int(rng.integers(1, 3))]
        elif op == 6 and n:  # swap two ranges
            j = int(rng.integers(0, n))
            a, c = sorted((i, j))
            w = int(rng.integers(1, 30))
            if c - a >= w:
                b[a : a + w], b[c : c + w] = b[c : c + w], b[a : a + w]
        elif op == 7 and n:  # truncate the end or the start
            b = b[:i] if rng.random() < 0.5 else b[i:]
        elif op == 8:  # insert a word that is almost a number (text) or a header (binary)
            if t.binary:
                s = t.size + int(rng.integers(-1, 2))
                b[i:i] = SOF + bytes((s & 0xFF, (s >> 8) & 0xFF, int(rng.integers(1, 4))))
            else:
                b[i:i] = _WORDS[int(rng.integers(0, len(_WORDS)))]
        elif op == 9 and n:  # set a byte to a special one
            b[min(i, n - 1)] = special[int(rng.integers(0, len(special)))]
    return bytes(b)


def gen_mutated(t: Target, rng: np.random.Generator) -> bytes:
    return mutate(t, real_piece(t, rng), rng)


def marker_field(t: Target) -> str:
    """The field (column) that carries a marked packet's id: the first one with a role that
    holds at least 16 bits."""
    if t.binary:
        layout = _layout(t)
        return str(
            next(f.name for f in layout.fields if f.role and layout.dtype[f.name].itemsize >= 2)
        )
    return str(next(c.name for c in t.columns if c.role))


def marker_stream(t: Target, ids: range, rng: np.random.Generator) -> bytes:
    """Valid packets (lines) whose marker field carries the unique ids in ``ids``; the other
    fields random values."""
    n = len(ids)
    mark = marker_field(t)
    if t.binary:
        layout = _layout(t)
        raw: dict[str, np.ndarray] = {}
        names = list(layout.dtype.names or ())
        # random values in the role fields and a few others (the rest 0: cheaper for the
        # 63-field layout, and zeros are common in real payloads)
        keep = {f.name for f in layout.fields if f.role} | set(names[:4])
        for name in keep:
            info = np.iinfo(layout.dtype[name])
            raw[name] = rng.integers(info.min, int(info.max) + 1, n, dtype=np.int64)
        for name in {f.skip_if for f in layout.fields if f.skip_if}:
            raw[name] = np.where(rng.random(n) < 0.3, 0xFF, 0)  # sometimes "repeat the last"
        raw[mark] = np.asarray(ids, dtype=np.int64)
        return encode_packets(layout, raw)
    cols = t.columns
    signals = {c.role: rng.normal(0, 1000, n) for c in cols if c.role}
    c = next(c for c in cols if c.name == mark)
    signals[c.role] = np.asarray(ids, dtype=np.float64) * (-c.scale if c.invert else c.scale)
    sep = ("\t", ",", ", ")[int(rng.integers(0, 3))]
    return encode_lines(cols, signals, decimals=int(rng.integers(0, 4)), sep=sep)


def frame_values(t: Target, data: bytes) -> set[float]:
    """The marker-field values of every valid packet (line) inside ``data``."""
    if t.binary:
        layout = _layout(t)
        payloads = b"".join(p for _, p in ov_frames(data, layout.size))
        return {float(v) for v in np.frombuffer(payloads, dtype=layout.dtype)[marker_field(t)]}
    j = [c.name for c in t.columns].index(marker_field(t))
    return {vals[j] for _, vals in text_lines(data, t.size)}


#: marker ids start here (within every target's marker field: int16 or wider, or a number)
MARKER_BASE = 20000


def gen_garbage(t: Target, rng: np.random.Generator) -> bytes:
    """A burst of garbage in one of ten styles."""
    style = int(rng.integers(0, 10))
    special = _special(t)
    if style == 0:  # line noise
        return rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
    if style == 1:  # the format's special bytes only
        alpha = np.frombuffer(special, dtype=np.uint8)
        return alpha[rng.integers(0, len(alpha), int(rng.integers(1, 120)))].tobytes()
    if style == 2:  # truncated real packets (a board reset mid-packet), several in a row
        out = bytearray()
        for _ in range(int(rng.integers(1, 4))):
            piece = real_piece(t, rng, 2)
            out += piece[: int(rng.integers(1, max(2, len(piece))))]
        return bytes(out)
    if style == 3:  # headers claiming a wrong length, type, or with a wrong end of frame
        if not t.binary:
            return b"1,2\n" * int(rng.integers(1, 4))  # wrong column count (for width != 2)
        s = t.size
        out = bytearray()
        for _ in range(int(rng.integers(1, 4))):
            which = int(rng.integers(0, 3))
            ln = s + (0 if which else int(rng.choice([-1, 1, 256, 0xFFFF - s])))
            ptype = 0x02 if which != 1 else int(rng.integers(3, 256))
            body = rng.integers(0, 256, s, dtype=np.uint8).tobytes()
            tail = EOF if which != 2 else bytes((0x00, 0x0C))
            out += SOF + bytes((ln & 0xFF, (ln >> 8) & 0xFF, ptype)) + body + tail
        return bytes(out)
    if style == 4:  # bit-flipped copies of real packets
        return mutate(t, real_piece(t, rng, 4), rng)
    if style == 5:  # a run of start-of-frame bytes (or of newlines)
        return (SOF if t.binary else b"\r\n") * int(rng.integers(1, 30))
    if style == 6:  # an overlong line, or a long run of printable text
        fill = _TEXT_ALPHABET[_TEXT_ALPHABET != 0x0A]
        n = int(rng.integers(MAX_LINE - 5, 3 * MAX_LINE))
        return bytes(fill[rng.integers(0, len(fill), n)].tobytes())
    if style == 7:  # words that are almost numbers, in lines
        k = int(rng.integers(1, 6))
        words = [_WORDS[int(rng.integers(0, len(_WORDS)))] for _ in range(k * t.size)]
        return b"\n".join(b",".join(words[i : i + t.size]) for i in range(0, len(words), t.size))
    if style == 8:  # the other format's stream
        other = next(x for x in TARGETS if x.binary != t.binary)
        return real_piece(other, rng, 5)
    # a real packet, cut: its start only, a prefix of the header or of a line
    piece = real_piece(t, rng, 1)
    return piece[: int(rng.integers(1, 7))]


@dataclass
class ResyncCase:
    data: bytes
    ids: range  # the marker ids, in stream order
    leading: int  # the first ``leading`` ids come first, before any garbage
    bursts: list[tuple[int, int]]  # (first id, K) of the packets after each burst


def gen_resync(t: Target, rng: np.random.Generator) -> ResyncCase:
    leading = int(rng.integers(0, 6))
    garbage = [
        b"".join(gen_garbage(t, rng) for _ in range(int(rng.integers(1, 4))))
        for _ in range(int(rng.integers(1, 5)))
    ]
    ks = [int(rng.integers(1, 7)) for _ in garbage]
    # garbage may hold valid packets of its own (bit-flipped copies of real ones): the ids
    # avoid their values, so that a decoded id is a marked packet
    taken = set().union(*(frame_values(t, g) for g in garbage))
    n = leading + sum(ks)
    base = MARKER_BASE
    while any(float(v) in taken for v in range(base, base + n)):
        base += n
    out = bytearray(marker_stream(t, range(base, base + leading), rng))
    nid = base + leading
    bursts = []
    for g, k in zip(garbage, ks, strict=True):
        out += g
        out += marker_stream(t, range(nid, nid + k), rng)
        bursts.append((nid, k))
        nid += k
    return ResyncCase(bytes(out), range(base, base + n), leading, bursts)


def check_resync(t: Target, case: ResyncCase, got: Outcome) -> tuple[str | None, int, int]:
    """Property 4; (what failed or None, packets after bursts, of them decoded)."""
    ids = got.raw[marker_field(t)]
    ids = ids[np.isin(ids, np.asarray(case.ids))]
    if len(ids) > 1 and np.any(np.diff(ids) <= 0):
        return "marked packets decoded out of order or twice", 0, 0
    have = {int(v) for v in ids}
    missing_lead = [i for i in case.ids[: case.leading] if i not in have]
    if missing_lead:
        return f"a packet before any garbage was not decoded ({missing_lead})", 0, 0
    after = decoded = 0
    for first, k in case.bursts:
        n = sum(1 for i in range(first, first + k) if i in have)
        after += k
        decoded += n
        if n < k - 1:
            return f"after a burst, only {n} of {k} valid packets decoded (ids {first}..)", 0, 0
    return None, after, decoded


# -- the loop ---------------------------------------------------------------------------------
@dataclass
class Tally:
    cases: int = 0
    failures: int = 0
    bytes: int = 0
    samples: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def one_case(seed: int, index: int) -> tuple[str, Target, bytes, str | None, dict[str, int]]:
    """Case ``index``: (kind, target, input, failure or None, extra counts)."""
    rng = np.random.default_rng([seed, index])
    kind = KINDS[index % len(KINDS)]
    t = TARGETS[(index // len(KINDS)) % len(TARGETS)]
    extra: dict[str, int] = {}
    resync: ResyncCase | None = None
    if kind == "random":
        data = gen_random(t, rng)
    elif kind == "mutated":
        data = gen_mutated(t, rng)
    else:
        resync = gen_resync(t, rng)
        data = resync.data
    got, problem = check(t, data, random_cuts(rng, len(data)))
    if got is not None:
        extra["samples"] = got.counters["good_frames"]
    if problem is None and resync is not None and got is not None:
        problem, after, decoded = check_resync(t, resync, got)
        extra.update(bursts=len(resync.bursts), after_bursts=after, decoded_after=decoded)
    return kind, t, data, problem, extra


def fuzz(
    cases: int, seed: int, progress: Callable[[int], None] | None = None, start: int = 0
) -> dict[str, Any]:
    by_kind = {k: Tally() for k in KINDS}
    by_target = {t.name: Tally() for t in TARGETS}
    resync = {"bursts": 0, "packets_after_bursts": 0, "decoded_after_bursts": 0}
    failures: list[dict[str, Any]] = []
    for index in range(start, start + cases):
        kind, t, data, problem, extra = one_case(seed, index)
        for tally in (by_kind[kind], by_target[t.name]):
            tally.cases += 1
            tally.bytes += len(data)
            tally.samples += extra.get("samples", 0)
            tally.failures += problem is not None
        resync["bursts"] += extra.get("bursts", 0)
        resync["packets_after_bursts"] += extra.get("after_bursts", 0)
        resync["decoded_after_bursts"] += extra.get("decoded_after", 0)
        if problem is not None:
            if len(failures) < 50:
                failures.append(
                    {
                        "case": index,
                        "kind": kind,
                        "target": t.name,
                        "problem": problem,
                        "input_hex": data[:4096].hex(),
                    }
                )
            print(f"FAIL case {index} ({kind}, {t.name}): {problem}", file=sys.stderr)
        if progress is not None and (index + 1 - start) % 10000 == 0:
            progress(index + 1 - start)
    return {
        "by_kind": {k: v.as_dict() for k, v in by_kind.items()},
        "by_target": {k: v.as_dict() for k, v in by_target.items()},
        "resync": resync,
        "failures": failures,
    }


# -- atheris: coverage-guided ---------------------------------------------------------------
def atheris_input(data: bytes) -> tuple[Target, bytes, list[int]]:
    """libFuzzer bytes -> (target, stream, cuts): byte 0 picks the target, byte 1 the chunking."""
    if len(data) < 2:
        return TARGETS[0], data, [0, len(data)]
    t = TARGETS[data[0] % len(TARGETS)]
    step = max(data[1] % 64 + 1, len(data) // 200)
    body = data[2:]
    cuts = [*range(0, len(body), step), len(body)]
    return t, body, cuts


def atheris_child(runs: int, family: str, corpus: str) -> int:
    import atheris  # type: ignore[import-not-found,unused-ignore]

    from device.sources.formats import openview
    from device.sources.formats import text as text_format

    # coverage of the parsers (not of numpy or of this oracle) guides the search
    for f in (
        openview.OpenViewParser.feed,
        openview.OpenViewParser._skip,
        openview._apply,
        text_format.TextLineParser.feed,
        text_format.TextLineParser._bad,
    ):
        atheris.instrument_func(f)
    targets = [i for i, t in enumerate(TARGETS) if (family == "openview") == t.binary]

    def one_input(data: bytes) -> None:
        if not data:
            return
        t, body, cuts = atheris_input(bytes([targets[data[0] % len(targets)]]) + data[1:])
        _, problem = check(t, body, cuts)
        if problem is not None:
            raise AssertionError(f"{t.name}: {problem}")

    atheris.Setup(
        [sys.argv[0], corpus, f"-runs={runs}", "-max_len=2048", "-print_final_stats=1"],
        one_input,
    )
    atheris.Fuzz()
    return 0


def seed_corpus(directory: Path, family: str, seed: int) -> None:
    rng = np.random.default_rng([seed, 999])
    for i, t in enumerate(x for x in TARGETS if (x.cfg.format == family)):
        for j in range(8):
            piece = real_piece(t, rng, 20)
            if j % 2:
                piece = mutate(t, piece, rng)
            # byte 0 picks the target within the family, byte 1 the chunk size
            (directory / f"seed-{i}-{j}").write_bytes(bytes((i, j * 5)) + piece)


def run_atheris(runs: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for family in ("openview", "text"):
        with tempfile.TemporaryDirectory(prefix="fuzz-corpus-") as d:
            seed_corpus(Path(d), family, seed)
            t0 = time.monotonic()
            proc = subprocess.run(
                [sys.executable, __file__, "--atheris-child", family, "--atheris-runs", str(runs)]
                + [d],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            corpus_files = len(list(Path(d).iterdir()))
        err = proc.stderr
        done = re.findall(r"Done (\d+) runs", err)
        cov = re.findall(r"cov: (\d+) ft: (\d+)", err)
        crashed = proc.returncode != 0
        out[family] = {
            "cases": int(done[-1]) if done else None,
            "failures": int(crashed),
            "coverage_edges": int(cov[-1][0]) if cov else None,
            "features": int(cov[-1][1]) if cov else None,
            "corpus_files_at_end": corpus_files,
            "seconds": round(time.monotonic() - t0, 1),
            "exit_code": proc.returncode,
        }
        if crashed:
            out[family]["log_tail"] = err[-3000:]
            print(f"atheris {family}: FAILED\n{err[-3000:]}", file=sys.stderr)
        print(f"atheris {family}: {out[family]}", flush=True)
    return out


# -- main ---------------------------------------------------------------------------------------
def replay_case(seed: int, index: int) -> int:
    kind, t, data, problem, extra = one_case(seed, index)
    print(f"case {index}: {kind}, {t.name}, {len(data)} bytes, {extra}")
    print(f"input: {data[:600]!r}{'...' if len(data) > 600 else ''}")
    print(f"result: {problem or 'ok'}")
    return 1 if problem else 0


def _chunks(total: int, parts: int) -> Iterator[tuple[int, int]]:
    step = -(-total // parts)
    for a in range(0, total, step):
        yield a, min(step, total - a)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=1_000_000, help="own-loop cases (all kinds)")
    ap.add_argument(
        "--atheris-runs", type=int, default=100_000, help="atheris runs per format (0: none)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for the own loop")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz_serial.json"))
    ap.add_argument("--replay-case", type=int, metavar="INDEX")
    ap.add_argument("--atheris-child", choices=("openview", "text"), help=argparse.SUPPRESS)
    ap.add_argument("corpus", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.atheris_child:
        return atheris_child(args.atheris_runs, args.atheris_child, args.corpus)
    if args.replay_case is not None:
        return replay_case(args.seed, args.replay_case)

    t0 = time.monotonic()
    cpu0 = time.process_time()
    parts = []
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as ex:
            futs = [
                ex.submit(fuzz, n, args.seed, None, a)
                for a, n in _chunks(args.cases, args.jobs * 8)
            ]
            parts = [f.result() for f in futs]
    else:

        def progress(done: int) -> None:
            if done % 100_000 == 0:
                print(f"{done} cases, {time.monotonic() - t0:.0f} s", flush=True)

        parts = [fuzz(args.cases, args.seed, progress)]
    res = merge(parts)
    own_s = time.monotonic() - t0
    ath: dict[str, Any] = {}
    if args.atheris_runs > 0:
        try:
            import atheris  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
        except ImportError:
            ath = {"skipped": "atheris is not installed (pip install atheris)"}
        else:
            ath = run_atheris(args.atheris_runs, args.seed)
    own_cases = sum(v["cases"] for v in res["by_kind"].values())
    own_fail = sum(v["failures"] for v in res["by_kind"].values())
    ath_cases = sum(v.get("cases") or 0 for v in ath.values() if isinstance(v, dict))
    ath_fail = sum(v.get("failures") or 0 for v in ath.values() if isinstance(v, dict))
    result = {
        "what": "serial parser fuzzing: random, mutated and resync cases (own loop, seeded) "
        "plus coverage-guided atheris; checks: no exception, nothing invented, chunking "
        "invariant, resync within one packet",
        "command": "python bench/fuzz_serial.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "seed": args.seed,
        "targets": [t.name for t in TARGETS],
        "cases_total": own_cases + ath_cases,
        "failures_total": own_fail + ath_fail,
        "own_loop_seconds": round(own_s, 1),
        "own_loop_cpu_seconds_main": round(time.process_time() - cpu0, 1),
        **res,
        "atheris": ath,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    short = {k: v for k, v in result.items() if k != "failures"}
    print(json.dumps(short, indent=1))
    return 1 if result["failures_total"] else 0


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"by_kind": {}, "by_target": {}, "resync": {}, "failures": []}
    for p in parts:
        for group in ("by_kind", "by_target"):
            for k, tally in p[group].items():
                acc = out[group].setdefault(k, dict.fromkeys(tally, 0))
                for f, v in tally.items():
                    acc[f] += v
        for f, v in p["resync"].items():
            out["resync"][f] = out["resync"].get(f, 0) + v
        out["failures"] += p["failures"]
    out["failures"] = out["failures"][:50]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
