"""The source registry: a type key -> the class that implements it, imported only when used.

``replay`` plays a recording; ``serial`` reads a sensor board (HealthyPi OpenView packets or
text lines); ``audio`` captures a microphone or electronic stethoscope through PortAudio.
Modules are imported lazily so that, for example, ``sounddevice`` (and the PortAudio library
it needs) is loaded only when an audio source is configured.

A live source class is built from its config section (``[serial]``, ``[audio]``), which its
module registers with ``device.config.register_section``. A section is in use when it names
its port/device (see ``_section_in_use``).
"""

from __future__ import annotations

import importlib
from typing import Any

from device.config import Config
from device.errors import UserError
from device.sources.base import Frame, FrameQueue, Source

__all__ = ["SOURCES", "Frame", "FrameQueue", "Source", "build_sources", "source_class"]

#: type key -> "module:Class"
SOURCES: dict[str, str] = {
    "replay": "device.sources.replay:ReplaySource",
    "serial": "device.sources.serial:SerialSource",
    "audio": "device.sources.audio:AudioSource",
}

#: the field of a live source's config section that says which port/device to open; a section
#: whose field is empty is not in use
_IN_USE_FIELDS = ("url", "port", "path", "device")


def source_class(key: str) -> Any:
    """Import and return the class registered for ``key``; a clear error if it is not there."""
    try:
        target = SOURCES[key]
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
            f"{key} source cannot load a system library ({e})",
            "apt-get install libportaudio2" if key == "audio" else "install the library named",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UserError(
            f"{key} source not available in this build ({target} is missing)",
            "install a complete bedside-edge release",
        )
    return cls


def _section_in_use(section: Any) -> bool:
    enabled = getattr(section, "enabled", None)
    if isinstance(enabled, bool):
        return enabled
    return any(bool(getattr(section, f, None)) for f in _IN_USE_FIELDS)


def build_sources(cfg: Config) -> list[Source]:
    """The sources ``cfg`` asks for, in start order (replay, serial, audio).

    ``cfg`` is the merged configuration (file and command-line flags). Two sources may not
    deliver the same role: the core needs one stream per role.
    """
    sources: list[Source] = []
    if cfg.replay.path:
        from device.recording import read_recording

        rec = read_recording(
            cfg.replay.path, fs_hz=cfg.recording.fs_hz, role_map=cfg.recording.roles or None
        )
        if cfg.replay.use:
            rec = rec.restricted(cfg.replay.use)
        sources.append(source_class("replay")(rec, speed=cfg.replay.speed, loop=cfg.replay.loop))
    for key in ("serial", "audio"):
        section = cfg.extra.get(key)
        if section is not None and _section_in_use(section):
            sources.append(source_class(key)(section))
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
