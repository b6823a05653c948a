"""Malformed recordings, configs and model manifests, in bulk: one clear line, exit code 2.

Every variant is run through the real command line (``device.cli.main(argv)`` in this
process, stderr captured; ``--subprocess N`` also runs N of them as ``python -m device`` to
check the real exit code and stderr):

- ``recording_csv``: BIDMC-style CSV and CSV.gz, ``bedside process FILE``: truncated and
  garbled gzip, empty files, binary junk, missing / duplicate / non-numeric columns,
  NaN-only channels, a wrong ``Time [s]`` column, ragged rows, text that is not UTF-8, and
  random byte mutations of a real excerpt.
- ``recording_wav``: ``bedside process FILE.wav``: bad RIFF/WAVE/fmt headers, 0 frames,
  truncated data, 24-bit, stereo, 8-bit, float, rate 0, random mutations of a real WAV.
- ``config_check``: ``bedside run --check-config --config FILE`` (exit 1 by design for a bad
  config): TOML syntax errors, wrong types, unknown sections and keys, bad values, random
  mutations of a full config.
- ``config_run``: the same files through ``bedside run --config FILE`` (exit 2); only files
  that ``--check-config`` refused, so that a valid one does not start the daemon.
- ``config_process``: the same files through ``bedside process --config FILE`` (exit 2).
- ``manifest``: ``bedside process --config`` with ``[models] dir`` pointing at a folder with a
  real model whose manifest is broken: bad JSON, missing keys, wrong types, sha256
  mismatch, a window definition the device does not compute, a truncated model file.
- ``manifest_check``: the same folders through ``bedside run --check-config`` (exit 1), which
  reads every manifest as start-up does.

Required for a variant that is malformed: no traceback, the expected exit code, and stderr
is exactly one line ``bedside CMD: error: WHAT; fix: FIX`` (``config error`` for
``--check-config``). Variants a mutation left valid (exit 0) are counted as accepted; for
the variants built to be wrong, acceptance is a failure.

    .venv/bin/python bench/malformed_inputs.py [--mutations 300] [--subprocess 40]

Counts go to ``bench/results/malformed_inputs.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import logging
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device import cli  # noqa: E402
from device.config import load_config  # noqa: E402
from device.errors import UserError  # noqa: E402

EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
MODELS = ROOT / "models"
#: the model the manifest variants break: chosen by default for PPG (prefer_over_dsp, cpu)
MODEL = "rr_ppg_cnn_int8"

ERROR = "error"  # the variant is wrong: it must be refused
EITHER = "either"  # a mutation may leave it valid: refused cleanly or accepted


@dataclass
class Variant:
    kind: str
    name: str
    argv: list[str]
    expect: str = ERROR
    exit_code: int = 2


@dataclass
class Outcome:
    code: int | None
    stderr: str
    exception: str = ""
    seconds: float = 0.0


def invoke(argv: list[str]) -> Outcome:
    """``bedside ARGV`` in this process: exit code and stderr; an exception is a traceback."""
    err = io.StringIO()
    root = logging.getLogger()
    for h in list(root.handlers):  # main() sets up logging on the stderr of each call
        root.removeHandler(h)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(argv)
    except SystemExit as e:  # argparse
        return Outcome(int(e.code) if isinstance(e.code, int) else 1, err.getvalue())
    except BaseException as e:  # noqa: BLE001 (what the bench is looking for)
        tb = traceback.format_exc()
        return Outcome(None, err.getvalue() + tb, f"{e.__class__.__name__}: {e}")
    return Outcome(code, err.getvalue())


def judge(v: Variant, out: Outcome) -> str | None:
    """What is wrong with how ``v`` was handled, or None."""
    if out.exception:
        return f"traceback: {out.exception}"
    if "Traceback" in out.stderr:
        return "a traceback on stderr"
    if out.code == 0:
        return "accepted a malformed input" if v.expect == ERROR else None
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    if out.code != v.exit_code:
        return f"exit code {out.code}, not {v.exit_code} ({lines[-1:] or 'no output'})"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr, not one: {lines[:4]}"
    line = lines[0]
    prefix = f"bedside {v.argv[0]}: " + ("config error: " if v.exit_code == 1 else "error: ")
    if not line.startswith(prefix):
        return f"the line does not start with {prefix!r}: {line[:200]}"
    what, sep, fix = line[len(prefix) :].partition("; fix: ")
    if not sep or len(fix.strip()) < 4 or len(what.strip()) < 8:
        return f"no 'WHAT; fix: FIX' in the line: {line[:200]}"
    return None


# -- files --------------------------------------------------------------------------------------
def excerpt_text(seconds: float = 16.0) -> str:
    """The first seconds of the bundled excerpt as BIDMC CSV text."""
    with gzip.open(EXCERPT, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    return "\n".join(lines[: 1 + int(seconds * 125)]) + "\n"


def wav_bytes(
    x: np.ndarray, fs: int = 8000, width: int = 2, channels: int = 1, fmt_tag: int = 1
) -> bytes:
    """A WAV file: RIFF header, fmt chunk, data chunk (written by hand to allow bad values)."""
    if width == 1:
        data = np.clip(x * 127 + 128, 0, 255).astype(np.uint8).tobytes()
    elif width == 3:
        v = np.clip(x * (2**23 - 1), -(2**23), 2**23 - 1).astype("<i4").tobytes()
        data = b"".join(v[i : i + 3] for i in range(0, len(v), 4))
    elif fmt_tag == 3:
        data = x.astype("<f4").tobytes()
    else:
        data = np.clip(x * 32767, -32768, 32767).astype("<i2").tobytes()
    block = width * channels
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, fs, fs * block, block, 8 * width)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def breathing(fs: int = 8000, seconds: float = 12.0) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    rng = np.random.default_rng(0)
    return 0.3 * rng.standard_normal(len(t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t) ** 2)


def mutate_bytes(b: bytes, rng: np.random.Generator, n_ops: int | None = None) -> bytes:
    out = bytearray(b)
    for _ in range(n_ops or int(rng.integers(1, 6))):
        n = len(out)
        i = int(rng.integers(0, n + 1)) if n else 0
        op = int(rng.integers(0, 6))
        if op == 0 and n:
            out[min(i, n - 1)] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:
            out[min(i, n - 1)] = int(rng.integers(0, 256))
        elif op == 2:
            out[i:i] = rng.integers(0, 256, int(rng.integers(1, 12)), dtype=np.uint8).tobytes()
        elif op == 3 and n:
            del out[i : i + int(rng.integers(1, 20))]
        elif op == 4 and n:
            j = int(rng.integers(0, n))
            out[i:i] = out[j : j + int(rng.integers(1, 30))]
        elif op == 5:
            tok = [b"=", b"[", b"]", b'"', b"\n", b",", b"{", b"}", b"nan", b"-", b"\x00", b"#"]
            out[i:i] = tok[int(rng.integers(0, len(tok)))]
    return bytes(out)


# -- variants --------------------------------------------------------------------------------
class Builder:
    """Writes each variant's files into a work folder and yields the variants."""

    def __init__(self, work: Path, mutations: int, seed: int) -> None:
        self.work = work
        self.mutations = mutations
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.csv = excerpt_text()
        self.jsonl = str(work / "out.jsonl")
        self.csv_path = ""  # the excerpt written as a file, once needed
        self.checks: list[Variant] = []  # --check-config variants of the manifests

    def file(self, suffix: str, content: bytes | str) -> str:
        self.n += 1
        p = self.work / f"v{self.n:05d}{suffix}"
        p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return str(p)

    def process(self, kind: str, name: str, path: str, expect: str = ERROR) -> Variant:
        return Variant(kind, name, ["process", path, "--jsonl", self.jsonl], expect)

    # recordings ---------------------------------------------------------------------------
    def recordings_csv(self) -> Iterator[Variant]:
        k = "recording_csv"
        text = self.csv
        lines = text.splitlines()
        header, body = lines[0], lines[1:]
        names = [n.strip() for n in header.split(",")]
        gz = gzip.compress(text.encode())
        # truncated and garbled gzip
        for cut in (0, 1, 5, 10, 11, 20, len(gz) // 3, len(gz) // 2, len(gz) - 9, len(gz) - 1):
            yield self.process(k, f"gzip truncated at {cut}", self.file(".csv.gz", gz[:cut]))
        for i in range(12):
            g = bytearray(gz)
            for _ in range(1 + i % 4):
                g[int(self.rng.integers(10, len(g)))] ^= 0xFF
            yield self.process(k, "gzip garbled", self.file(".csv.gz", bytes(g)))
        yield self.process(
            k, "gzip of binary junk", self.file(".csv.gz", gzip.compress(os.urandom(4000)))
        )
        yield self.process(k, "gzip of nothing", self.file(".csv.gz", gzip.compress(b"")))
        yield self.process(k, "plain CSV named .gz", self.file(".csv.gz", text))
        yield self.process(k, "gzip named .csv", self.file(".csv", gz))
        # empty, blank, junk
        yield self.process(k, "empty file", self.file(".csv", b""))
        yield self.process(k, "blank lines", self.file(".csv", "\n\n  \n"))
        yield self.process(k, "header only", self.file(".csv", header + "\n"))
        yield self.process(k, "one sample", self.file(".csv", "\n".join(lines[:2]) + "\n"))
        yield self.process(k, "two samples", self.file(".csv", "\n".join(lines[:3]) + "\n"), EITHER)
        yield self.process(k, "binary junk", self.file(".csv", os.urandom(5000)))
        yield self.process(k, "NUL bytes", self.file(".csv", b"\x00" * 3000))
        yield self.process(k, "not UTF-8", self.file(".csv", text.encode("utf-16")))
        yield self.process(
            k, "latin-1 header", self.file(".csv", ("Tëmps," + text).encode("latin-1"))
        )
        yield self.process(k, "unknown extension", self.file(".dat", text))
        yield self.process(k, "a folder", str(self.work), ERROR)
        yield self.process(k, "no such file", str(self.work / "absent.csv"))

        def table(cols: list[str], rows: list[list[str]]) -> str:
            return ", ".join(cols) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"

        rows = [ln.split(",") for ln in body]
        # missing columns: no role column at all; only Time; only unknown names
        keep_t = [names.index("Time [s]")]
        yield self.process(
            k,
            "only the Time column",
            self.file(".csv", table(["Time [s]"], [[r[j] for j in keep_t] for r in rows])),
        )
        renamed = [n if n == "Time [s]" else n.lower() + "_x" for n in names]
        yield self.process(k, "no column maps to a role", self.file(".csv", table(renamed, rows)))
        no_time = [j for j, n in enumerate(names) if n != "Time [s]"]
        yield self.process(
            k,
            "no Time column, no rate",
            self.file(
                ".csv", table([names[j] for j in no_time], [[r[j] for j in no_time] for r in rows])
            ),
        )
        # duplicate columns
        for dup in ("II", "PLETH", "Time [s]"):
            j = names.index(dup)
            yield self.process(
                k,
                f"duplicate column {dup}",
                self.file(".csv", table(names + [dup], [r + [r[j]] for r in rows])),
            )
        # non-numeric values, in various places
        for word in ("abc", "1,5", "0x10", "--", "1.2.3", "true", "'1'", "1e999999"):
            bad = [list(r) for r in rows]
            bad[len(bad) // 2][1] = word
            expect = EITHER if word in ("1e999999",) else ERROR
            yield self.process(
                k, f"non-numeric value {word!r}", self.file(".csv", table(names, bad)), expect
            )
        # NaN-only channels
        for col in ("II", "PLETH", "RESP"):
            j = names.index(col)
            bad = [[("nan" if i == j else v) for i, v in enumerate(r)] for r in rows]
            yield self.process(k, f"NaN-only {col}", self.file(".csv", table(names, bad)))
            bad = [[("" if i == j else v) for i, v in enumerate(r)] for r in rows]
            yield self.process(k, f"empty column {col}", self.file(".csv", table(names, bad)))
        allnan = [[v if i == keep_t[0] else "nan" for i, v in enumerate(r)] for r in rows]
        yield self.process(k, "NaN-only everything", self.file(".csv", table(names, allnan)))
        # wrong Time column
        t = np.arange(len(rows)) / 125.0
        tj = keep_t[0]
        for label, tv in (
            ("decreasing", t[::-1]),
            ("constant", np.zeros(len(t))),
            ("all NaN", np.full(len(t), np.nan)),
            ("one value then NaN", np.where(np.arange(len(t)) == 0, 0.0, np.nan)),
            ("a step back", np.where(np.arange(len(t)) == 50, 0.0, t)),
            ("10 Hz", np.arange(len(t)) / 10.0),
            ("100 kHz", np.arange(len(t)) / 1e5),
            ("negative rate", -t),
            ("infinite at the end", np.where(np.arange(len(t)) == len(t) - 1, np.inf, t)),
        ):
            bad = [
                [(f"{tv[i]:.6g}" if c == tj else v) for c, v in enumerate(r)]
                for i, r in enumerate(rows)
            ]
            expect = EITHER if label.startswith("infinite") else ERROR  # ignored like NaN
            yield self.process(
                k, f"Time column {label}", self.file(".csv", table(names, bad)), expect
            )
        # ragged rows
        for where in (1, len(rows) // 2, len(rows) - 1):
            bad = [list(r) for r in rows]
            bad[where] = bad[where][:-1]
            yield self.process(k, f"short row {where}", self.file(".csv", table(names, bad)))
            bad = [list(r) for r in rows]
            bad[where] = bad[where] + ["1"]
            yield self.process(k, f"long row {where}", self.file(".csv", table(names, bad)))
        mid_row = text[: len(text) // 2 + 7]  # a file cut mid-row
        yield self.process(k, "cut mid-row", self.file(".csv", mid_row), EITHER)
        # random byte mutations of the real excerpt (plain and gzip)
        for i in range(self.mutations):
            m = mutate_bytes(text.encode(), self.rng)
            if i % 2:
                yield self.process(k, "mutated CSV", self.file(".csv", m), EITHER)
            else:
                yield self.process(
                    k,
                    "mutated CSV.gz",
                    self.file(".csv.gz", mutate_bytes(gzip.compress(m), self.rng, 1)),
                    EITHER,
                )

    def recordings_wav(self) -> Iterator[Variant]:
        k = "recording_wav"
        x = breathing()
        good = wav_bytes(x)
        yield self.process(k, "empty file", self.file(".wav", b""))
        yield self.process(k, "text named .wav", self.file(".wav", self.csv))
        yield self.process(k, "binary junk", self.file(".wav", os.urandom(3000)))
        for magic, at in ((b"RIFX", 0), (b"WAVX", 8), (b"fmX ", 12), (b"dat\x00", 36)):
            b = bytearray(good)
            b[at : at + 4] = magic
            yield self.process(k, f"bad header {magic!r}", self.file(".wav", bytes(b)))
        for cut in (4, 12, 20, 30, 40, 44, 45, 1001):
            yield self.process(k, f"truncated at {cut}", self.file(".wav", good[:cut]))
        # a chunk whose size runs past the end of the file (wave cannot skip it)
        huge = good[:36] + b"LIST" + struct.pack("<I", 0xFFFFFFF0) + good[36:]
        yield self.process(k, "chunk size past the end", self.file(".wav", huge))
        yield self.process(k, "0 frames", self.file(".wav", wav_bytes(x[:0])))
        yield self.process(k, "1 frame", self.file(".wav", wav_bytes(x[:1])), EITHER)
        yield self.process(
            k, "data shorter than its header says", self.file(".wav", good[:-5000]), EITHER
        )
        yield self.process(k, "24-bit", self.file(".wav", wav_bytes(x, width=3)), EITHER)
        yield self.process(k, "8-bit", self.file(".wav", wav_bytes(x, width=1)), EITHER)
        stereo = np.repeat(x, 2)
        yield self.process(k, "stereo", self.file(".wav", wav_bytes(stereo, channels=2)), EITHER)
        yield self.process(
            k, "float32", self.file(".wav", wav_bytes(x, width=4, fmt_tag=3)), EITHER
        )
        yield self.process(k, "rate 0", self.file(".wav", wav_bytes(x, fs=0)))
        yield self.process(k, "rate 1 Hz", self.file(".wav", wav_bytes(x, fs=1)))
        yield self.process(k, "rate 2 GHz", self.file(".wav", wav_bytes(x, fs=2**31 - 1, width=1)))
        yield self.process(k, "0 channels", self.file(".wav", wav_bytes(x, channels=0)))
        yield self.process(
            k, "format tag 0x55 (MP3)", self.file(".wav", wav_bytes(x, fmt_tag=0x55))
        )
        yield self.process(
            k,
            "12-bit samples",
            self.file(".wav", wav_bytes(x)[:34] + struct.pack("<H", 12) + wav_bytes(x)[36:]),
            EITHER,
        )
        yield self.process(k, "silence", self.file(".wav", wav_bytes(np.zeros(8000 * 12))), EITHER)
        for _ in range(self.mutations // 3):
            yield self.process(
                k,
                "mutated WAV",
                self.file(".wav", mutate_bytes(good[:2000], self.rng) + good[2000:]),
                EITHER,
            )

    # configs -------------------------------------------------------------------------------
    def config_texts(self) -> Iterator[tuple[str, str, str]]:
        """(name, TOML text, expectation) of malformed configs."""
        yield "empty section name", "[]\n", ERROR
        yield "unclosed table", "[alarms\nhr_high_bpm = 130\n", ERROR
        yield "missing value", "[alarms]\nhr_high_bpm =\n", ERROR
        yield "unquoted string", "[bed]\nid = icu 3\n", ERROR
        yield "duplicate key", "[bed]\nid = 'a'\nid = 'b'\n", ERROR
        yield "duplicate table", "[bed]\nid = 'a'\n[bed]\nid = 'b'\n", ERROR
        yield (
            "not UTF-8",
            "[bed]\nid = 'b\xe9d'\n".encode("latin-1").decode("latin-1") + "\udcff",
            ERROR,
        )
        yield "binary junk", os.urandom(200).decode("latin-1"), ERROR
        yield "JSON instead of TOML", '{"bed": {"id": "x"}}', ERROR
        yield "INI-style comment", "; comment\n[bed]\n", ERROR
        yield "unknown section", "[alarm]\nhr_high_bpm = 130\n", ERROR
        yield "unknown key", "[alarms]\nhr_high = 130\n", ERROR
        yield "unknown key in serial", "[serial]\nport = '/dev/ttyACM0'\n", ERROR
        yield "section is a value", "alarms = 3\n", ERROR
        yield "top-level key", "bed_id = 'x'\n", ERROR
        yield "nested unknown table", "[alarms.limits]\nhr = 3\n", ERROR
        wrong_types = [
            ("alarms", "hr_high_bpm", "'fast'"),
            ("alarms", "hr_high_bpm", "true"),
            ("alarms", "hr_high_bpm", "[130]"),
            ("alarms", "latch_high", "1"),
            ("alarms", "enabled", "'hr_high'"),
            ("alarms", "enabled", "[1, 2]"),
            ("bed", "id", "3"),
            ("mqtt", "broker", "1883"),
            ("mqtt", "keepalive_s", "10.5"),
            ("mqtt", "keepalive_s", "'10'"),
            ("replay", "speed", "'fast'"),
            ("replay", "loop", "'yes'"),
            ("recording", "fs_hz", "'125'"),
            ("recording", "roles", "['II']"),
            ("recording", "roles", "{II = 1}"),
            ("serial", "fs_hz", "'125'"),
            ("serial", "baud", "115200.5"),
            ("serial", "fields", "'ecg'"),
            ("serial", "fields", "[1, 2]"),
            ("serial", "fields", "[{name = 1}]"),
            ("serial", "fields", "[{name = 'ecg', role = 'ecg', scale = 'x'}]"),
            ("serial", "fields", "[{name = 'ecg', role = 'ecg', invert = 1}]"),
            ("serial", "fields", "[{name = 'ecg', role = 'ecg', skip_value = true}]"),
            ("audio", "fs_hz", "[8000]"),
            ("audio", "channels", "1.0"),
            ("models", "enabled", "'no'"),
            ("models", "threads", "'2'"),
            ("models", "disable", "'rr_ppg_cnn_int8'"),
            ("models", "dir", "7"),
        ]
        for sec, key, val in wrong_types:
            yield f"wrong type {sec}.{key} = {val}", f"[{sec}]\n{key} = {val}\n", ERROR
        bad_values = [
            ("alarms", "hr_low_bpm = 130"),
            ("alarms", "rr_low_bpm = 40"),
            ("alarms", "condition_delay_s = -1"),
            ("alarms", "condition_delay_s = 100"),
            ("alarms", "apnea_delay_s = 0"),
            ("alarms", "hr_high_bpm = nan"),
            ("alarms", "hr_high_bpm = inf"),
            ("alarms", "hr_high_severe_bpm = 10"),
            ("alarms", "enabled = ['hr_high', 'tachy']"),
            ("bed", "id = ''"),
            ("bed", "id = 'icu/3'"),
            ("bed", "id = 'icu#3'"),
            ("mqtt", "broker = 'http://x:1883'"),
            ("mqtt", "broker = 'mqtt://:1883'"),
            ("mqtt", "broker = 'mqtt://host:99999'"),
            ("mqtt", "broker = 'mqtt://host:port'"),
            ("mqtt", "broker = ''"),
            ("mqtt", "prefix = ''"),
            ("mqtt", "prefix = 'a/+'"),
            ("mqtt", "keepalive_s = 0"),
            ("replay", "speed = 0"),
            ("replay", "speed = -2"),
            ("replay", "speed = nan"),
            ("replay", "use = ['ekg']"),
            ("recording", "fs_hz = -125"),
            ("recording", "roles = {II = 'ekg'}"),
            ("serial", "fs_hz = 1000"),
            ("serial", "fs_hz = nan"),
            ("serial", "format = 'csv'"),
            ("serial", "baud = 0"),
            ("serial", "preset = 'healthypi9'"),
            ("serial", "reconnect_min_s = 0"),
            ("serial", "stall_s = -1"),
            ("serial", "fields = [{name = 'ecg', type = 'int24', role = 'ecg'}]"),
            ("serial", "fields = [{name = 'ecg', role = 'ekg'}]"),
            ("serial", "fields = [{name = 'ecg', role = 'ecg', scale = 0}]"),
            ("serial", "fields = [{name = 'ecg', role = 'ecg', scale = nan}]"),
            ("serial", "fields = [{name = 'ecg', role = 'ecg'}, {name = 'ecg'}]"),
            ("serial", "fields = [{name = 'a', role = 'ecg'}, {name = 'b', role = 'ecg'}]"),
            ("serial", "fields = [{name = 'a'}]"),
            ("serial", "fields = [{name = 'a', role = 'ecg', skip_if = 'b'}]"),
            ("serial", "fields = [{name = '', role = 'ecg'}]"),
            ("serial", "fields = [{role = 'ecg'}]"),
            ("audio", "fs_hz = 100"),
            ("audio", "channels = 0"),
            ("audio", "channel = 2"),
            ("audio", "dtype = 'int8'"),
            ("audio", "block_frames = 1"),
            ("audio", "pace_x = -1"),
            ("models", "delegate = 'tpu'"),
            ("models", "threads = 0"),
            ("models", "dir = '/nonexistent/models'"),
        ]
        for sec, line in bad_values:
            yield f"bad value {sec}: {line}", f"[{sec}]\n{line}\n", ERROR
        full = FULL_CONFIG
        for _ in range(self.mutations):
            yield (
                "mutated config",
                mutate_bytes(full.encode(), self.rng).decode("utf-8", "replace"),
                EITHER,
            )

    def configs(self) -> Iterator[Variant]:
        for name, text, expect in self.config_texts():
            path = self.file(".toml", text.encode("utf-8", "surrogateescape"))
            yield Variant(
                "config_check", name, ["run", "--check-config", "--config", path], expect, 1
            )

    def manifests(self) -> Iterator[Variant]:
        k = "manifest"
        src_json = json.loads((MODELS / f"{MODEL}.json").read_text())
        tflite = (MODELS / f"{MODEL}.tflite").read_bytes()
        rec = self.file(".csv", self.csv)

        def variant(
            name: str,
            manifest: bytes | str | dict[str, Any] | None,
            model: bytes = tflite,
            expect: str = ERROR,
        ) -> Variant:
            self.n += 1
            d = self.work / f"models{self.n:05d}"
            d.mkdir()
            (d / f"{MODEL}.tflite").write_bytes(model)
            if manifest is not None:
                if isinstance(manifest, dict):
                    manifest = json.dumps(manifest)
                (d / f"{MODEL}.json").write_bytes(
                    manifest.encode() if isinstance(manifest, str) else manifest
                )
            cfg = self.file(".toml", f"[models]\ndir = '{d}'\n")
            # --check-config reads every manifest as start-up does; the checks against the
            # model file (sha256, window definition, LiteRT) happen when a model is loaded
            deep = name.startswith(
                ("features.", "model file", 'wrong sha256 = "0', 'wrong sha256 = ""')
            )
            self.checks.append(
                Variant(
                    "manifest_check",
                    name,
                    ["run", "--check-config", "--config", cfg],
                    EITHER if deep else expect,
                    1,
                )
            )
            return Variant(
                k, name, ["process", rec, "--config", cfg, "--jsonl", self.jsonl], expect
            )

        text = json.dumps(src_json, indent=1)
        yield variant("no manifest", None)
        yield variant("empty manifest", "")
        yield variant("manifest not UTF-8", text.encode("utf-16"))
        yield variant("manifest is a list", "[1, 2]")
        yield variant("manifest is a string", '"rr_ppg_cnn_int8"')
        yield variant("manifest is null", "null")
        for cut in (1, 10, len(text) // 2, len(text) - 2):
            yield variant(f"manifest truncated at {cut}", text[:cut])
        for key in src_json:
            m = dict(src_json)
            del m[key]
            yield variant(f"missing key {key}", m, expect=EITHER)
        wrong: list[tuple[str, Any]] = [
            ("name", 5),
            ("name", None),
            ("task", 5),
            ("task", "spo2"),
            ("task", ["rr"]),
            ("inputs", "ppg"),
            ("inputs", {"ppg": 1}),
            ("inputs", 5),
            ("inputs", [5]),
            ("inputs", [["ppg"]]),
            ("quant", ["int8"]),
            ("quant", {"a": 1}),
            ("quant", 8),
            ("target", ["cpu"]),
            ("target", {"cpu": 1}),
            ("prefer_over_dsp", "yes"),
            ("cv", []),
            ("cv", "good"),
            ("cv", {"summary": []}),
            ("cv", {"summary": {"mean_mae": "low"}}),
            ("cv", {"summary": {"mean_mae": None}}),
            ("cv", {"summary": {"mean_mae": [1]}}),
            ("features", []),
            ("features", "rr_ppg"),
            ("features", None),
            ("features", {"name": ["rr_ppg"]}),
            ("features", {"name": {"a": 1}}),
            ("output", []),
            ("output", "bins"),
            ("output", {}),
            ("output", {"lo": "x", "step": 1, "n_bins": 10}),
            ("output", {"lo": 0, "step": 1, "n_bins": -3}),
            ("output", {"lo": 0, "step": 1, "n_bins": "many"}),
            ("output", {"lo": 0, "step": 1, "n_bins": 1e12}),
            ("quantization", []),
            ("sha256", 5),
            ("sha256", None),
            ("sha256", ["ab"]),
            ("sha256", "0" * 64),
            ("sha256", ""),
        ]
        for key, val in wrong:
            m = dict(src_json)
            m[key] = val
            yield variant(
                f"wrong {key} = {json.dumps(val)[:40]}",
                m,
                expect=EITHER if key in ("name", "quantization") else ERROR,
            )
        out = dict(src_json["output"])
        for sub, val in (
            ("lo", "x"),
            ("step", None),
            ("n_bins", "many"),
            ("max_spread", "wide"),
            ("n_bins", 0),
            ("step", 0),
        ):
            m = dict(src_json)
            m["output"] = {**out, sub: val}
            yield variant(f"output.{sub} = {json.dumps(val)}", m)
        feats = dict(src_json["features"])
        for sub, val in (
            ("window_s", 30.0),
            ("input_fs_hz", 250.0),
            ("channels", []),
            ("version", 99),
            ("name", "hr_ppg"),
            ("model_input_shape", [1, 1]),
        ):
            m = dict(src_json)
            m["features"] = {**feats, sub: val}
            yield variant(f"features.{sub} = {json.dumps(val)}", m)
        yield variant("model file truncated", src_json, tflite[: len(tflite) // 2])
        half = tflite[: len(tflite) // 2]
        import hashlib

        fixed = dict(src_json, sha256=hashlib.sha256(half).hexdigest())
        yield variant("model file truncated, sha256 updated", fixed, half)
        junk = os.urandom(len(tflite))
        yield variant(
            "model file junk, sha256 updated",
            dict(src_json, sha256=hashlib.sha256(junk).hexdigest()),
            junk,
        )
        yield variant(
            "model file empty, sha256 updated",
            dict(src_json, sha256=hashlib.sha256(b"").hexdigest()),
            b"",
        )
        for _ in range(self.mutations // 2):
            yield variant(
                "mutated manifest",
                mutate_bytes(text.encode(), self.rng).decode("utf-8", "replace"),
                expect=EITHER,
            )


#: every section set, so that mutations hit every kind of key
FULL_CONFIG = """\
# a bed with every section set
[bed]
id = "icu-3"

[mqtt]
broker = "mqtt://127.0.0.1:1883"
prefix = "bedside"
keepalive_s = 10

[recording]
fs_hz = 125.0

[replay]
speed = 2.0
loop = false
use = ["ppg", "ecg"]

[alarms]
hr_high_bpm = 120.0
hr_low_bpm = 50
rr_high_bpm = 30.0
rr_low_bpm = 8.0
condition_delay_s = 5
enabled = ["hr_high", "hr_low", "rr_high", "rr_low", "apnea", "signal_lost"]

[serial]
format = "openview"
fs_hz = 125.0
baud = 115200

[[serial.fields]]
name = "ecg"
type = "int32"
role = "ecg"

[[serial.fields]]
name = "pleth"
type = "uint16"
role = "ppg"
invert = true
scale = 0.5

[audio]
fs_hz = 8000.0
channels = 1

[models]
enabled = true
delegate = "cpu"
threads = 1
"""


# -- running ---------------------------------------------------------------------------------
@dataclass
class Tally:
    cases: int = 0
    refused_cleanly: int = 0
    accepted: int = 0
    failures: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)


def all_variants(b: Builder) -> Iterator[Variant]:
    yield from b.recordings_csv()
    yield from b.recordings_wav()
    yield from b.manifests()
    yield from b.checks
    for v in b.configs():
        yield v
        # the same file through `bedside run` (no check) and `bedside process --config`
        path = v.argv[-1]
        # process reads the whole file like run, but checks only what it uses (not [mqtt],
        # [bed], ...): it must refuse what load_config refuses
        try:
            load_config(path)
        except UserError:
            expect = ERROR
        else:
            expect = EITHER
        yield Variant(
            "config_process",
            v.name,
            ["process", b.csv_path, "--config", path, "--jsonl", b.jsonl],
            expect,
        )
        yield Variant("config_run", v.name, ["run", "--config", path], v.expect)


def run_all(
    work: Path,
    mutations: int,
    seed: int,
    report: Callable[[Variant, Outcome, str | None], None] | None = None,
    only: tuple[str, ...] = (),
) -> dict[str, Tally]:
    b = Builder(work, mutations, seed)
    b.csv_path = b.file(".csv", b.csv)
    tallies: dict[str, Tally] = {}
    refused_by_check: set[str] = set()
    for v in all_variants(b):
        if only and v.kind not in only:
            continue
        if v.kind == "config_run" and v.argv[-1] not in refused_by_check:
            continue  # a config --check-config accepts would start the daemon
        t_start = time.monotonic()
        out = invoke(v.argv)
        out.seconds = time.monotonic() - t_start
        problem = judge(v, out)
        if v.kind == "config_check" and out.code == 1 and problem is None:
            refused_by_check.add(v.argv[-1])
        t = tallies.setdefault(v.kind, Tally())
        t.cases += 1
        if problem:
            t.failures += 1
            if len(t.examples) < 15:
                t.examples.append(
                    {"variant": v.name, "argv": " ".join(v.argv), "problem": problem[:600]}
                )
        elif out.code == 0:
            t.accepted += 1
        else:
            t.refused_cleanly += 1
        if report is not None:
            report(v, out, problem)
    return tallies


def subprocess_check(work: Path, n: int, seed: int) -> dict[str, int]:
    """Run ``n`` refused variants as real ``python -m device`` processes: same exit code, one
    stderr line, no traceback."""
    b = Builder(work, 5, seed)
    b.csv_path = b.file(".csv", b.csv)
    picked = [v for v in all_variants(b) if v.expect == ERROR and v.kind != "config_run"]
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(picked), size=min(n, len(picked)), replace=False)
    ok = bad = 0
    for i in sorted(idx):
        v = picked[int(i)]
        r = subprocess.run(
            [sys.executable, "-m", "device", *v.argv],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
        )
        problem = judge(v, Outcome(r.returncode, r.stderr))
        if problem:
            bad += 1
            print(f"subprocess FAIL {v.kind} {v.name}: {problem}", file=sys.stderr)
        else:
            ok += 1
    return {"cases": ok + bad, "failures": bad}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mutations", type=int, default=300, help="random mutations per file kind")
    ap.add_argument("--subprocess", type=int, default=40, help="variants also run as processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="", help="comma list of kinds")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every variant")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "malformed_inputs.json"))
    args = ap.parse_args()
    t0 = time.monotonic()

    def report(v: Variant, out: Outcome, problem: str | None) -> None:
        if problem:
            print(f"FAIL {v.kind} [{v.name}] {out.seconds:.2f} s: {problem[:400]}", file=sys.stderr)
        elif args.verbose:
            print(
                f"ok   {v.kind} [{v.name}] exit {out.code} {out.seconds:.2f} s: "
                f"{out.stderr.strip()[:160]}"
            )

    with tempfile.TemporaryDirectory(prefix="bedside-malformed-") as d:
        only = tuple(k for k in args.only.split(",") if k)
        tallies = run_all(Path(d), args.mutations, args.seed, report, only)
    with tempfile.TemporaryDirectory(prefix="bedside-malformed-sp-") as d:
        sp = subprocess_check(Path(d), args.subprocess, args.seed) if args.subprocess else {}
    result = {
        "what": "malformed recordings, configs and model manifests through the bedside command "
        "line; required: no traceback, exit 2 (1 for --check-config), one stderr line "
        "'WHAT; fix: FIX'. accepted = a mutation left the input valid (exit 0)",
        "command": "python bench/malformed_inputs.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "seed": args.seed,
        "cases_total": sum(t.cases for t in tallies.values()),
        "failures_total": sum(t.failures for t in tallies.values()) + sp.get("failures", 0),
        "by_kind": {
            k: {f: getattr(t, f) for f in ("cases", "refused_cleanly", "accepted", "failures")}
            for k, t in tallies.items()
        },
        "subprocess": sp,
        "seconds": round(time.monotonic() - t0, 1),
        "failure_examples": {k: t.examples for k, t in tallies.items() if t.examples},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "failure_examples"}, indent=1))
    return 1 if result["failures_total"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
