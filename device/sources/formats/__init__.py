"""Board formats: how a sensor board's byte stream becomes samples.

``openview`` (HealthyPi binary packets) and ``text`` (one line of numbers per sample) are
registered here; a format is a module with a ``FORMAT`` (``base.BoardFormat``) and one entry in
``FORMATS``. The serial source, ``bedside run --check-config`` and the board emulator
(``bedside replay``) all go through this registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from device.sources.formats.base import BoardFormat, Parser
from device.sources.formats.openview import FieldSpec, field_from_table

#: format key -> module that defines ``FORMAT`` (imported when used)
FORMATS: dict[str, str] = {
    "openview": "device.sources.formats.openview",
    "text": "device.sources.formats.text",
}
_LOADED: dict[str, BoardFormat] = {}


def register(fmt: BoardFormat) -> None:
    """Add a board format (e.g. from a plug-in module)."""
    FORMATS[fmt.key] = ""
    _LOADED[fmt.key] = fmt


def board_format(key: str) -> BoardFormat:
    """The format registered as ``key``; ValueError naming the known ones otherwise."""
    if key in _LOADED:
        return _LOADED[key]
    if key not in FORMATS:
        raise ValueError(f"'{key}' is not one of {', '.join(FORMATS)}")
    fmt: BoardFormat = importlib.import_module(FORMATS[key]).FORMAT
    _LOADED[key] = fmt
    return fmt


def layout(
    key: str, preset: str = "", fields: Sequence[Mapping[str, Any]] = ()
) -> tuple[FieldSpec, ...]:
    """The field layout in use: custom ``fields`` tables, else the named (or default) preset.
    Raises ValueError saying what is wrong."""
    fmt = board_format(key)
    if fields:
        specs = tuple(field_from_table(t) for t in fields)
    else:
        name = preset or fmt.default_preset
        if name not in fmt.presets:
            raise ValueError(f"'{name}' is not a {key} preset (have: {', '.join(fmt.presets)})")
        specs = tuple(fmt.presets[name])
    fmt.check(specs)
    if not any(s.role for s in specs):
        raise ValueError("no field has a role (ecg, ppg or resp): nothing would reach the core")
    return specs


def make_parser(key: str, specs: tuple[FieldSpec, ...]) -> Parser:
    return board_format(key).parser(specs)


__all__ = ["FORMATS", "BoardFormat", "FieldSpec", "Parser", "board_format", "layout", "register"]
