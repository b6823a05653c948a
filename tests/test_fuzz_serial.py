"""The serial parsers under bulk bad input: a short run of bench/fuzz_serial.py's own loop.

The bench runs 10^6 cases and atheris (``python bench/fuzz_serial.py``); here a few thousand
cases of every kind (random, mutated real streams, garbage bursts between marked packets) and
every layout, with the same checks: no exception escapes, nothing is invented, chunking does
not matter, and the parser is back in step within one packet after garbage. The oracle is
also tried against parsers broken on purpose, so that a check which cannot fail is caught.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench import fuzz_serial as fz
from device.sources.formats import openview
from device.sources.formats import text as text_format
from device.sources.formats.text import HEALTHYPI_TEXT, TextLineParser

#: cases in CI: every (kind, layout) pair gets CASES / 24 of them
CASES = 7200


def test_fuzz_short_run_finds_no_failure() -> None:
    res = fz.fuzz(CASES, seed=20240611)
    problems = [f"{f['case']} {f['kind']} {f['target']}: {f['problem']}" for f in res["failures"]]
    assert not problems, "\n".join(problems[:10])
    assert all(v["cases"] == CASES // len(fz.KINDS) for v in res["by_kind"].values())
    assert all(v["cases"] > 0 and v["samples"] > 0 for v in res["by_target"].values())
    # garbage bursts really happened and were followed by packets, most of which decoded
    r = res["resync"]
    assert r["bursts"] > 1000
    assert r["decoded_after_bursts"] >= r["packets_after_bursts"] - r["bursts"]


def _fails_on(kinds: tuple[str, ...], cases: int = 600, seed: int = 7) -> list[str]:
    out = []
    for index in range(cases):
        kind, t, _, problem, _ = fz.one_case(seed, index)
        if kind in kinds and problem:
            out.append(f"{t.name}: {problem}")
    return out


def test_oracle_catches_a_parser_that_accepts_python_float_syntax(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the fix the text parser took "1_000" (and would take "nan" were it finite):
    the fuzzer found bit-flipped lines decoded as other numbers."""
    monkeypatch.setattr(text_format, "NUMBER_BYTES", bytes(range(256)))
    fails = _fails_on(("mutated", "resync"), cases=1200)
    assert any("invented" in f for f in fails), fails[:3]


class _AnyByte:
    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


class _LaxEof(bytes):
    """The end-of-frame bytes as the parser sees them: any byte matches (encoding, which
    reads the buffer, still writes 00 0B)."""

    def __getitem__(self, i: Any) -> Any:
        return _AnyByte() if isinstance(i, int) else super().__getitem__(i)


def test_oracle_catches_a_parser_that_checks_no_end_of_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(openview, "EOF", _LaxEof(b"\x00\x0b"))
    fails = _fails_on(("resync", "mutated"))
    assert any("invented" in f for f in fails), fails[:3]


class _ForgetfulParser(TextLineParser):
    """Drops a partial line at the end of every read: right when fed whole, wrong in chunks."""

    def feed(self, data: Any) -> Any:
        d = super().feed(data)
        self._buf.clear()
        return d


def test_oracle_catches_a_parser_that_depends_on_chunking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fz, "TextLineParser", _ForgetfulParser)
    fails = _fails_on(("mutated",))
    assert any("chunking changed" in f for f in fails), fails[:3]


@pytest.mark.parametrize("word", [b"1_000", b"nan", b"inf", b"-Infinity", b"0x10", b"1e999"])
def test_text_parser_refuses_what_a_board_never_prints(word: bytes) -> None:
    p = TextLineParser(HEALTHYPI_TEXT)
    d = p.feed(b"1,2,3\n" + word + b",2,3\n4\t5\t6\r\n")
    np.testing.assert_array_equal(d.raw["ecg"], [1, 4])
    assert p.counters.bad_frames == 1


def test_strict_numbers_still_take_what_boards_print() -> None:
    p = TextLineParser(HEALTHYPI_TEXT)
    d = p.feed(b"-1.5, +2., .25\r\n1e-3\t2E+2\t-0\n")
    np.testing.assert_array_equal(d.raw["ecg"], [-1.5, 0.001])
    np.testing.assert_array_equal(d.raw["resp"], [2.0, 200.0])
    np.testing.assert_array_equal(d.raw["ppg_red"], [0.25, 0.0])


def test_resync_check_fails_when_two_packets_after_garbage_are_lost() -> None:
    rng = np.random.default_rng(3)
    t = fz.TARGETS[0]
    case = fz.gen_resync(t, rng)
    while max(k for _, k in case.bursts) < 2:
        case = fz.gen_resync(t, rng)
    got, problem = fz.check(t, case.data, [0, len(case.data)])
    assert got is not None and problem is None
    assert fz.check_resync(t, case, got)[0] is None
    # drop the first two packets after the first burst of K >= 2 from what was decoded
    first, _ = next((f, k) for f, k in case.bursts if k >= 2)
    ids = got.raw[fz.marker_field(t)]
    keep = ~np.isin(ids, [first, first + 1])
    lossy = fz.Outcome({k: v[keep] for k, v in got.raw.items()}, {}, got.counters)
    problem = fz.check_resync(t, case, lossy)[0]
    assert problem is not None and "valid packets decoded" in problem


def test_reopened_port_holds_no_value_from_before_the_outage() -> None:
    """A skip-flagged slot repeats the last valid value; after ``reset()`` (the port was
    reopened) there is none yet: the slot is a gap, not a value from before the outage."""
    layout = openview.PayloadLayout(
        (
            openview.FieldSpec("ecg", "int16", "ecg"),
            openview.FieldSpec("resp", "int16", "resp", skip_if="flag"),
            openview.FieldSpec("flag", "uint8"),
        )
    )
    p = openview.OpenViewParser(layout)
    d = p.feed(openview.encode_packets(layout, {"ecg": [1, 2], "resp": [7, 0], "flag": [0, 255]}))
    np.testing.assert_array_equal(d.signals["resp"], [7, 7])  # held within a connection
    p.reset()
    d = p.feed(openview.encode_packets(layout, {"ecg": [3, 4], "resp": [0, 9], "flag": [255, 0]}))
    np.testing.assert_array_equal(d.signals["resp"], [np.nan, 9])
