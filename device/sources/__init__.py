"""The source registry: a type key -> the class that implements it, imported only when used.

``replay`` plays a recording; ``serial`` reads a sensor board (HealthyPi OpenView packets or
text lines); ``audio`` captures a microphone or electronic stethoscope through PortAudio.
Modules are imported lazily so that, for example, ``sounddevice`` (and the PortAudio library
it needs) is loaded only when an audio source is configured.

Each source is built from its own config section (``[replay]``, ``[serial]``, ``[audio]``);
a section is in use when it names its file, port or device. Adding a source is a module with
a class that implements ``base.Source``, a config section, and one entry in ``SOURCES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.config import Config
from device.errors import UserError
from device.sources.base import Frame, FrameQueue, Source

__all__ = [
    "SOURCES",
    "Frame",
    "FrameQueue",
    "Source",
    "SourceType",
    "build_sources",
    "register",
    "source_class",
]


@dataclass(frozen=True)
class SourceType:
    """A registered source: its class (``"module:Class"``, imported when used), and how to
    find its config section in ``Config`` and tell whether that section is in use."""

    target: str
    section: Callable[[Config], Any]
    in_use: Callable[[Any], bool]
    #: a system library the module loads at import (named in the error when it is missing)
    system_library_fix: str = "install the library named"


#: type key -> how to build it; start order is registry order
SOURCES: dict[str, SourceType] = {
    "replay": SourceType(
        "device.sources.replay:ReplaySource", lambda c: c.replay, lambda s: bool(s.path)
    ),
    "serial": SourceType(
        "device.sources.serial:SerialSource", lambda c: c.serial, lambda s: bool(s.url)
    ),
    "audio": SourceType(
        "device.sources.audio:AudioSource",
        lambda c: c.audio,
        lambda s: bool(s.device),
        "apt-get install libportaudio2",
    ),
}


def register(key: str, source: SourceType) -> None:
    """Add a source type (e.g. from a plug-in module)."""
    SOURCES[key] = source


def source_class(key: str) -> Any:
    """Import and return the class registered for ``key``; a clear error if it is not there."""
    try:
        target = SOURCES[key].target
    except KeyError:
        raise UserError(
            f"unknown source type '{key}'", f"use one of {', '.join(SOURCES)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise UserError(
                f"{key} source not available in this build (no module {module_name})",
                "install a complete bedside-edge release, or use another source",
            ) from None
        raise UserError(
            f"{key} source needs the Python package '{e.name}', which is not installed",
            f"pip install {e.name}",
        ) from None
    except OSError as e:
        # sounddevice raises OSError at import when the PortAudio shared library is missing
        raise UserError(
            f"{key} source cannot load a system library ({e})", SOURCES[key].system_library_fix
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UserError(
            f"{key} source not available in this build ({target} is missing)",
            "install a complete bedside-edge release",
        )
    return cls


def build_sources(cfg: Config) -> list[Source]:
    """The sources ``cfg`` asks for, in registry order (replay, serial, audio).

    ``cfg`` is the merged configuration (file and command-line flags). Two sources may not
    deliver the same role: the core needs one stream per role.
    """
    sources: list[Source] = []
    for key, kind in SOURCES.items():
        section = kind.section(cfg)
        if kind.in_use(section):
            sources.append(source_class(key).from_config(section, cfg))
    if not sources:
        raise UserError(
            "no source configured",
            "give --replay PATH, --serial PORT or --audio DEVICE, or a [replay], [serial] or "
            "[audio] section in the config",
        )
    seen: dict[str, str] = {}
    for s in sources:
        for role in s.roles:
            if role in seen:
                raise UserError(
                    f"role '{role}' is delivered by both {seen[role]} and {s.name}",
                    "configure each role on one source only",
                )
            seen[role] = s.name
    return sources
