"""Strict, documented configuration: one TOML file validated into typed dataclasses.

Every field has a unit in its name (``fs_hz``, ``delay_s``) and a description
(``field(metadata={"help": ...})``). Unknown keys are errors that name the key, because a
misspelt alarm limit silently ignored is a patient at risk. ``bedside run --check-config``
validates a file and exits 0, or 1 naming the bad key.

Sections are dataclasses; adding a section is adding a class and a field on ``Config``.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import UserError


def doc(
    help_text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING
) -> Any:
    """A dataclass field with its description."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


class ConfigError(UserError):
    """A bad key or value in the config file (exit 1 from --check-config, 2 elsewhere)."""


#: the roles a channel may have (device.recording.ROLES, without importing numpy here)
KNOWN_ROLES = ("ecg", "ppg", "resp", "audio")


@dataclass
class BedConfig:
    id: str = doc("bed identifier, used in MQTT topics (bedside/<id>/...) and alarm ids", "bed1")


@dataclass
class MqttConfig:
    broker: str = doc("broker URL: mqtt://HOST:PORT (plain TCP)", "mqtt://127.0.0.1:1883")
    prefix: str = doc(
        "topic prefix: topics are <prefix>/<bed>/vitals|alarms|status|cmd/#", "bedside"
    )
    client_id: str = doc("MQTT client id; empty means bedside-<bed>", "")
    keepalive_s: int = doc(
        "MQTT keepalive in seconds; the broker publishes the last will after 1.5x this", 10
    )
    username: str = doc("broker user name (empty: anonymous)", "")
    password_file: str = doc("file holding the broker password (kept out of the config)", "")
    outbox_path: str = doc(
        "file where unacknowledged QoS 1 alarm messages are kept across restarts; empty: "
        "/var/lib/bedside/<bed>-outbox.jsonl when writable, else in memory only",
        "",
    )


@dataclass
class RecordingConfig:
    fs_hz: float | None = doc("sample rate of CSV recordings without a 'Time [s]' column", None)
    roles: dict[str, str] = doc(
        "column name -> role (ecg, ppg, resp, audio); empty: BIDMC names (II, PLETH, RESP)",
        factory=dict,
    )

    def validate(self) -> tuple[str, str] | None:
        if self.fs_hz is not None and not self.fs_hz > 0:
            return "fs_hz", f"{self.fs_hz:g} Hz is not a positive sample rate"
        bad = sorted({r for r in self.roles.values() if r not in KNOWN_ROLES})
        if bad:
            return "roles", f"unknown role(s) {', '.join(bad)}; use {', '.join(KNOWN_ROLES)}"
        return None


@dataclass
class ReplayConfig:
    path: str = doc("recording to replay as if it were live (CSV/CSV.gz/WAV); empty: no replay", "")
    speed: float = doc("replay speed factor: 1.0 is real time", 1.0)
    loop: bool = doc("start again at the end of the recording", False)
    use: list[str] = doc("roles of the recording to use (empty: all it has)", factory=list)

    def validate(self) -> tuple[str, str] | None:
        bad = sorted({r for r in self.use if r not in KNOWN_ROLES})
        if bad:
            return "use", f"unknown role(s) {', '.join(bad)}; use {', '.join(KNOWN_ROLES)}"
        return None


@dataclass
class Config:
    bed: BedConfig = field(default_factory=BedConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    #: sections other modules register (alarms, serial, audio, models) live here too
    extra: dict[str, Any] = field(default_factory=dict)


#: the sections defined here; their values are fields of ``Config``
CORE_SECTIONS: dict[str, type] = {
    "bed": BedConfig,
    "mqtt": MqttConfig,
    "recording": RecordingConfig,
    "replay": ReplayConfig,
}
#: section name -> dataclass, for sections defined in other modules (``register_section``)
_EXTRA_SECTIONS: dict[str, type] = {}


def register_section(name: str, cls: type) -> None:
    """Let a module add a validated ``[name]`` section (e.g. alarms, serial, audio)."""
    _EXTRA_SECTIONS[name] = cls


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and gently coerce ints to floats) a TOML value against a field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is float:
        # nan and inf are TOML floats, but no setting means them: a NaN alarm limit never trips
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return True, float(value)
        return False, value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, value
        out = []
        for item in value:
            ok, v = _type_ok(item, arg)
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if origin is dict:
        _, varg = typing.get_args(tp)
        if not isinstance(value, dict):
            return False, value
        res = {}
        for k, item in value.items():
            ok, v = _type_ok(item, varg)
            if not ok:
                return False, value
            res[k] = v
        return True, res
    return True, value


def build_section(cls: type, data: dict[str, Any], where: str, source: str) -> Any:
    """Validate ``data`` into dataclass ``cls``; errors name ``source``, the key and the fix."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(
                f"{source}: unknown key '{where}.{key}'", f"valid keys in [{where}] are: {known}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{source}: '{where}.{key}' must be a table", f"write it as [{where}.{key}]"
                )
            kwargs[key] = build_section(tp, value, f"{where}.{key}", source)
            continue
        ok, v = _type_ok(value, tp)
        if not ok:
            tname = getattr(tp, "__name__", str(tp)).replace("NoneType", "none")
            raise ConfigError(
                f"{source}: '{where}.{key}' = {value!r} is not a valid {tname}",
                fields[key].metadata.get("help", "see docs/configuration.md"),
            )
        kwargs[key] = v
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: [{where}]: {e}", "see docs/configuration.md") from None
    check = getattr(obj, "validate", None)
    if check is not None:
        problem = check()
        if problem:
            key, msg = problem
            raise ConfigError(f"{source}: '{where}.{key}': {msg}", "see docs/configuration.md")
    return obj


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    cfg = Config()
    for name, value in data.items():
        cls = CORE_SECTIONS.get(name) or _EXTRA_SECTIONS.get(name)
        if cls is None:
            known = ", ".join(sorted([*CORE_SECTIONS, *_EXTRA_SECTIONS]))
            raise ConfigError(f"{source}: unknown section [{name}]", f"valid sections are: {known}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{name}' must be a table", f"write it as [{name}]")
        section = build_section(cls, value, name, source)
        if name in CORE_SECTIONS:
            setattr(cfg, name, section)
        else:
            cfg.extra[name] = section
    for name, cls in _EXTRA_SECTIONS.items():
        cfg.extra.setdefault(name, cls())
    return cfg


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML config; ``None`` gives the defaults."""
    _register_builtin_sections()
    if path is None:
        return parse_config({})
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file", "check the path given to --config") from None
    except OSError as e:
        raise ConfigError(
            f"{p}: cannot read config ({e.strerror})", "check the file's permissions"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{p}: not valid TOML ({e})", "fix the syntax at the position shown"
        ) from None
    return parse_config(data, str(p))


def _register_builtin_sections() -> None:
    """Import the modules that own optional sections so that they register themselves."""
    import importlib

    for module in (
        "device.alarms",
        "device.sources.serial",
        "device.sources.audio",
        "device.inference",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _toml_value(v: Any) -> str:
    if v is None:
        return "(unset)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if dataclasses.is_dataclass(v):
        return "(table)"
    return repr(v)


def _section_rows(name: str, cls: type) -> list[str]:
    rows = [f"### [{name}]", ""]
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        rows += [" ".join(cls.__doc__.split()), ""]
    rows += ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "").replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{_toml_value(_default_of(f))}` | {help_text} |")
    return rows + [""]


def reference_markdown() -> str:
    """docs/configuration.md: every section and key with its default and meaning.

    Regenerate with ``python -c "import device.config as c; print(c.reference_markdown(), end='')"
    > docs/configuration.md``; ``tests/test_docs.py`` fails when the file is out of date.
    """
    _register_builtin_sections()
    lines = [
        "# Configuration reference",
        "",
        "One TOML file, given to `bedside run --config FILE` (and `bedside process --config "
        "FILE`). Every section and key is optional; unknown sections and keys are errors that "
        "name the key. `bedside run --check-config --config FILE` validates a file and exits 0, "
        "or 1 naming the bad key. Units are in the key names. Generated from the code by "
        "`device.config.reference_markdown()`.",
        "",
    ]
    for name, cls in [*CORE_SECTIONS.items(), *sorted(_EXTRA_SECTIONS.items())]:
        lines += _section_rows(name, cls)
    return "\n".join(lines)
