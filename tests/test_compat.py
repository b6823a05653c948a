"""device.compat behaves like Python 3.11's standard library on every Python the project
supports (CI runs this file on 3.10, 3.11, 3.12 and 3.13: on 3.10 it checks the stand-ins)."""

from __future__ import annotations

import enum
import json
import sys
from datetime import datetime, timedelta

import pytest

from device.compat import UTC, StrEnum, tomllib
from device.roles import Quantity, Role


class Colour(StrEnum):
    RED = "red"
    DARK_BLUE = enum.auto()


def test_strenum_members_are_their_strings() -> None:
    assert Colour.RED == "red" and isinstance(Colour.RED, str)
    assert str(Colour.RED) == "red" and f"{Colour.RED}" == "red" and f"{Colour.RED:>5}" == "  red"
    assert "%s" % Colour.RED == "red" and "{}".format(Colour.RED) == "red"  # noqa: UP031, UP032
    assert Colour.DARK_BLUE == "dark_blue"  # auto(): the name in lower case, as 3.11's
    assert Colour("red") is Colour.RED and hash(Colour.RED) == hash("red")
    assert json.dumps({"c": Colour.RED, Colour.DARK_BLUE: 1}) == '{"c": "red", "dark_blue": 1}'
    assert repr(Colour.RED) == "<Colour.RED: 'red'>"
    assert [c.value for c in Colour] == ["red", "dark_blue"]
    with pytest.raises(ValueError):
        Colour("green")
    with pytest.raises(TypeError):

        class Bad(StrEnum):
            ONE = 1


def test_the_project_enums_serialise_as_their_values() -> None:
    assert f"{Quantity.RR}_{Role.PPG}" == "rr_ppg"
    assert sorted([Role.RESP, Role.ECG]) == ["ecg", "resp"]


def test_utc_and_tomllib() -> None:
    t = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert t.utcoffset() == timedelta(0)
    assert t.isoformat() == "2026-12-07T12:00:00+00:00"
    assert datetime.fromisoformat("2026-12-07T12:00:00.000+00:00") == t
    assert tomllib.loads('[a]\nb = 1.5\nc = "x"\n') == {"a": {"b": 1.5, "c": "x"}}
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads("a = ")
    if sys.version_info >= (3, 11):  # the standard library's own, not a stand-in
        import tomllib as std_tomllib

        assert tomllib is std_tomllib and StrEnum is enum.StrEnum
