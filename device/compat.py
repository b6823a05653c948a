"""What Python 3.11 added that the project uses, for Python 3.10 (a Jetson's JetPack 6 ships
Ubuntu 22.04 with 3.10; Raspberry Pi OS Bookworm ships 3.11, Trixie 3.13).

- ``StrEnum``: members are ``str`` and ``str()``/``format()`` give the value (3.11's
  ``enum.StrEnum``; on 3.10 a class that behaves the same, checked by tests/test_compat.py);
- ``UTC``: ``datetime.UTC`` (3.11) is ``datetime.timezone.utc`` by another name;
- ``tomllib``: the standard library's TOML reader from 3.11 on, ``tomli`` (the same code,
  published on PyPI; a dependency only where ``python_version < '3.11'``) before.

Import these from here, never from ``enum``, ``datetime`` or ``tomllib`` directly.
"""

from __future__ import annotations

import sys
from datetime import timezone
from enum import Enum
from typing import Any

UTC = timezone.utc

if sys.version_info >= (3, 11):
    from enum import StrEnum

    import tomllib
else:  # pragma: no cover - run by the 3.10 tests
    import tomli as tomllib

    class StrEnum(str, Enum):
        """An enum whose members are strings: ``Role.PPG == "ppg"``, ``str(Role.PPG) ==
        "ppg"``, ``f"{Role.PPG}" == "ppg"``; ``auto()`` gives the member's name in lower
        case. (3.10's ``class X(str, Enum)`` alone prints ``X.PPG``.)"""

        def __new__(cls, value: str) -> StrEnum:
            if not isinstance(value, str):
                raise TypeError(f"{value!r} is not a string")
            member = str.__new__(cls, value)
            member._value_ = value
            return member

        def __str__(self) -> str:
            return str.__str__(self)

        def __format__(self, format_spec: str) -> str:
            return str.__format__(str(self), format_spec)

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last_values: list[Any]) -> str:
            return name.lower()


__all__ = ["UTC", "StrEnum", "tomllib"]
