"""Strict, documented configuration: one TOML file validated into one typed ``Config``.

Every section is a dataclass defined here, and a field of ``Config``; every key has a unit in
its name (``fs_hz``, ``delay_s``) and a description (``field(metadata={"help": ...})``).
Unknown sections and keys are errors that name the key, because a misspelt alarm limit
silently ignored is a patient at risk. Sections check their own values (``validate``);
checks that need the world (files, devices, models) are in ``device.preflight``, which both
``bedside run --check-config`` and the daemon's start run.

Why dataclasses and not msgspec or pydantic: the appliance then needs no extra package, a
section costs nothing to import, and the validator below (about a hundred lines) gives the
error messages we want (the key, the bad value, the key's own description as the fix).

Adding a section is a class here and a field on ``Config``; ``docs/configuration.md`` is
generated from these classes (``reference_markdown``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import UserError

log = logging.getLogger("bedside.config")


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
KNOWN_ROLES = ("ecg", "ppg", "resp", "audio", "abp")


@dataclass
class BedConfig:
    id: str = doc("bed identifier, used in MQTT topics (bedside/<id>/...) and alarm ids", "bed1")


@dataclass
class MqttConfig:
    """The broker this bed publishes to (topics and payloads: docs/mqtt.md; TLS, passwords
    and access control: docs/security.md)."""

    enabled: bool = doc("publish over MQTT (false: only the other sinks, e.g. [jsonl])", True)
    broker: str = doc(
        "broker URL: mqtt://HOST:PORT (plain TCP, port 1883 by default) or mqtts://HOST:PORT "
        "(TLS, 8883 by default; the broker's certificate and host name are verified)",
        "mqtt://127.0.0.1:1883",
    )
    prefix: str = doc(
        "topic prefix: topics are <prefix>/<bed>/vitals|alarms|status|cmd/#", "bedside"
    )
    client_id: str = doc("MQTT client id; empty means bedside-<bed>", "")
    keepalive_s: int = doc(
        "MQTT keepalive in seconds; the broker publishes the last will after 1.5x this", 10
    )
    username: str = doc("broker user name (empty: anonymous)", "")
    password_file: str = doc(
        "file holding the broker password (kept out of the config); empty: the systemd "
        "credential mqtt-password ($CREDENTIALS_DIRECTORY, LoadCredential= in the unit) if any",
        "",
    )
    ca_file: str = doc(
        "mqtts: PEM file of the CA that signed the broker's certificate; empty: the system's CAs",
        "",
    )
    cert_file: str = doc(
        "mqtts: PEM client certificate, for a broker that requires one (empty: none)", ""
    )
    key_file: str = doc(
        "mqtts: PEM private key of cert_file (unencrypted; readable by the service only); "
        "empty: the key is in cert_file",
        "",
    )
    outbox_path: str = doc(
        "deprecated (the JSON-lines alarm outbox of earlier versions): when set and [state] dir "
        "is not, its folder is the state folder, and the alarms it holds are moved to the store",
        "",
    )


@dataclass
class StateConfig:
    """What must survive a restart: the store of messages the broker has not yet acknowledged
    (``<dir>/<bed>-store.sqlite3``, SQLite), with the per-bed ``seq`` counters."""

    dir: str = doc(
        "state folder (bedside run --state-dir); empty: $STATE_DIRECTORY under systemd "
        "(StateDirectory=bedside: /var/lib/bedside), else ~/.local/state/bedside",
        "",
    )
    vitals_keep_h: float = doc(
        "hours of vitals (one message per second of signal) kept for a broker that is away; "
        "past this the oldest are dropped and counted. Alarms are never dropped",
        24.0,
    )

    def validate(self) -> tuple[str, str] | None:
        if not self.vitals_keep_h > 0:
            return "vitals_keep_h", "must be > 0 (24 keeps a day)"
        return None


@dataclass
class RecordingConfig:
    fs_hz: float | None = doc("sample rate of CSV recordings without a 'Time [s]' column", None)
    roles: dict[str, str] = doc(
        "column (CSV) or signal (WFDB) name -> role (ecg, ppg, abp, resp, audio; an ECG lead as "
        'ecg:LEAD, e.g. V = "ecg:V"); empty: BIDMC names (II, PLETH, RESP), WFDB names '
        "(every ECG lead, PLETH, ABP/ART, RESP)",
        factory=dict,
    )

    def validate(self) -> tuple[str, str] | None:
        if self.fs_hz is not None and not self.fs_hz > 0:
            return "fs_hz", f"{self.fs_hz:g} Hz is not a positive sample rate"
        bad = sorted({r for r in self.roles.values() if r.partition(":")[0] not in KNOWN_ROLES})
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
        bad = sorted({r for r in self.use if r.partition(":")[0] not in KNOWN_ROLES})
        if bad:
            return "use", f"unknown role(s) {', '.join(bad)}; use {', '.join(KNOWN_ROLES)}"
        return None


@dataclass
class SerialConfig:
    """A sensor board on a serial port (HealthyPi or any board that streams packets or text
    lines); see docs/hardware.md."""

    url: str = doc(
        "serial port: a device path (/dev/ttyACM0, /dev/serial0, a udev symlink such as "
        "/dev/healthypi) or a pyserial URL (socket://HOST:PORT, loop://); empty: no serial source",
        "",
    )
    baud: int = doc("baud rate (HealthyPi: 115200); USB CDC boards and ptys ignore it", 115200)
    format: str = doc(
        "board format: 'openview' (HealthyPi binary packets) or 'text' (one line of comma/tab "
        "separated numbers per sample)",
        "openview",
    )
    fs_hz: float = doc(
        "the board's sample rate, 125-500 Hz; boards do not stamp samples, so this is the clock",
        125.0,
    )
    preset: str = doc(
        "payload/column layout: 'healthypi5' or 'icu4' (openview: two ECG leads, pleth, "
        "arterial pressure) or 'healthypi-text' (text: ecg, resp, ppg red); empty: the "
        "format's default; ignored when 'fields' is given",
        "",
    )
    fields: list[dict[str, Any]] = doc(
        "custom layout, in order: [[serial.fields]] tables with name, type (int8/uint8/int16/"
        "uint16/int32/uint32, little-endian; openview only), role (ecg, ppg, resp; omit for a "
        "field that feeds nothing), scale (signal = counts x scale), invert (true for raw "
        "optical PPG), skip_if (name of a flag field) and skip_value (hold the last value "
        "when the flag has this value)",
        factory=list,
    )
    reconnect_min_s: float = doc(
        "first wait before reopening a lost port, doubled per failed try", 0.25
    )
    reconnect_max_s: float = doc("longest wait between tries to reopen a lost port", 5.0)
    stall_s: float = doc(
        "no valid sample for this long while the port is open counts as lost signal", 1.0
    )

    def validate(self) -> tuple[str, str] | None:
        from device.sources.formats import FORMATS, layout

        if self.format not in FORMATS:
            return "format", f"'{self.format}' is not one of {', '.join(FORMATS)}"
        if not (SERIAL_MIN_FS_HZ <= self.fs_hz <= SERIAL_MAX_FS_HZ):
            return (
                "fs_hz",
                f"{self.fs_hz:g} Hz is outside {SERIAL_MIN_FS_HZ:g}-{SERIAL_MAX_FS_HZ:g} Hz",
            )
        if self.baud <= 0:
            return "baud", "must be a positive number of bits/s, e.g. 115200"
        if not (0 < self.reconnect_min_s <= self.reconnect_max_s):
            return "reconnect_min_s", "must be > 0 and <= reconnect_max_s"
        if self.stall_s <= 0:
            return "stall_s", "must be > 0"
        try:
            layout(self.format, self.preset, self.fields)
        except ValueError as e:
            return ("fields" if self.fields else "preset"), str(e)
        return None


#: Sensor boards stream ECG/PPG at 125-500 samples/s (HealthyPi: 125).
SERIAL_MIN_FS_HZ, SERIAL_MAX_FS_HZ = 125.0, 500.0
#: Audio sample formats and their full scale.
AUDIO_DTYPES = {"int16": 32768.0, "int32": 2147483648.0, "float32": 1.0}
#: Breath sounds carry energy up to ~1-2 kHz; 2 kHz is the slowest useful capture rate, 48 kHz
#: the fastest a sound card commonly offers.
AUDIO_MIN_FS_HZ, AUDIO_MAX_FS_HZ = 2000.0, 48000.0


@dataclass
class AudioConfig:
    """A microphone or electronic stethoscope captured through PortAudio."""

    device: str = doc(
        "PortAudio input device: a name or part of one (as 'python -m sounddevice' lists "
        "them), or an index; 'default' for the system default; empty: no audio source",
        "",
    )
    fs_hz: float = doc(
        "capture sample rate in Hz, 2000-48000 (stethoscopes: 4000-8000); the device must "
        "support it",
        8000.0,
    )
    channels: int = doc("channels to open on the device", 1)
    channel: int = doc("which channel (0-based) carries the breathing sounds", 0)
    block_frames: int = doc("frames per read: 1024 at 8000 Hz is 128 ms", 1024)
    dtype: str = doc(
        "sample format: 'int16' (what 'bedside replay --to alsa-raw' writes), 'int32' or 'float32'",
        "int16",
    )
    listens: str = doc(
        "what the sound carries: 'breath' (respiratory rate from breath sounds), 'heart' "
        "(heart rate from heart sounds) or 'auto' (both, each published only when its "
        "quality measure passes; see device/estimators/audio_vitals.py)",
        "auto",
    )
    pace_x: float = doc(
        "0: the sound card paces capture (normal use). N > 0: read no faster than N x real "
        "time, for ALSA file devices (tests, demos), which are pulled, not paced",
        0.0,
    )

    def validate(self) -> tuple[str, str] | None:
        if not (AUDIO_MIN_FS_HZ <= self.fs_hz <= AUDIO_MAX_FS_HZ):
            return (
                "fs_hz",
                f"{self.fs_hz:g} Hz is outside {AUDIO_MIN_FS_HZ:g}-{AUDIO_MAX_FS_HZ:g} Hz",
            )
        if self.channels < 1:
            return "channels", "must be at least 1"
        if not (0 <= self.channel < self.channels):
            return "channel", f"must be 0..{self.channels - 1} (channels = {self.channels})"
        if self.block_frames < 16:
            return "block_frames", "must be at least 16"
        if self.dtype not in AUDIO_DTYPES:
            return "dtype", f"'{self.dtype}' is not one of {', '.join(AUDIO_DTYPES)}"
        if self.listens not in ("breath", "heart", "auto"):
            return "listens", f"'{self.listens}' is not one of breath, heart, auto"
        if self.pace_x < 0:
            return "pace_x", "must be 0 (device-paced) or a positive speed factor"
        return None


@dataclass
class AlarmsConfig:
    """Per-bed alarm limits and timing. Defaults are adult limits."""

    hr_high_bpm: float = doc("heart rate above this is tachycardia (hr_high)", 120.0)
    hr_low_bpm: float = doc("heart rate below this is bradycardia (hr_low)", 50.0)
    hr_high_severe_bpm: float = doc(
        "heart rate above this makes hr_high a high-priority alarm", 150.0
    )
    hr_low_severe_bpm: float = doc("heart rate below this makes hr_low a high-priority alarm", 40.0)
    rr_high_bpm: float = doc(
        "respiratory rate above this (breaths/min) is tachypnoea (rr_high)", 30.0
    )
    rr_low_bpm: float = doc("respiratory rate below this (breaths/min) is bradypnoea (rr_low)", 8.0)
    apnea_delay_s: float = doc(
        "no breath detected for this long raises apnea (high priority)", 20.0
    )
    condition_delay_s: float = doc(
        "a limit must be violated this long before its alarm sounds (IEC 60601-1-8 alarm-condition "
        "delay; 0 to 15 s)",
        5.0,
    )
    hr_hysteresis_bpm: float = doc(
        "an HR alarm clears once HR is back inside the limit by this much", 5.0
    )
    rr_hysteresis_bpm: float = doc(
        "an RR alarm clears once RR is back inside the limit by this much", 2.0
    )
    signal_lost_s: float = doc("no samples for this long on a role in use raises signal_lost", 2.0)
    sensor_off_s: float = doc(
        "an ECG/PPG signal flat or saturated for this long raises sensor_off (impedance: at least "
        "12 s, because normal breathing pauses for seconds at end-expiration)",
        3.0,
    )
    poor_signal_s: float = doc(
        "signal quality too low to measure for this long raises poor_signal", 10.0
    )
    asystole_s: float = doc(
        "asystole: no QRS for this long on every ECG lead that carries signal, and no pulse on "
        "any pulse channel (pleth, arterial line) that carries one",
        4.0,
    )
    extreme_bradycardia_bpm: float = doc(
        "extreme_bradycardia: heart rate below this over extreme_bradycardia_beats beats", 40.0
    )
    extreme_bradycardia_beats: int = doc(
        "consecutive beats the extreme bradycardia rate is measured over", 5
    )
    extreme_tachycardia_bpm: float = doc(
        "extreme_tachycardia: heart rate above this over extreme_tachycardia_beats beats", 140.0
    )
    extreme_tachycardia_beats: int = doc(
        "consecutive beats the extreme tachycardia rate is measured over", 17
    )
    ventricular_tachycardia_bpm: float = doc(
        "ventricular_tachycardia: a run of ventricular beats faster than this", 100.0
    )
    ventricular_tachycardia_beats: int = doc(
        "ventricular_tachycardia: at least this many consecutive ventricular beats", 5
    )
    ventricular_fibrillation_s: float = doc(
        "ventricular_fibrillation: a fibrillatory, flutter or oscillatory ECG for this long (the "
        "window each lead's waveform is judged on)",
        4.0,
    )
    ventricular_fibrillation_score: float = doc(
        "a lead's VF score (0-1) at or above this counts as a fibrillatory waveform", 0.5
    )
    ventricular_rhythm_score: float = doc(
        "ventricular_tachycardia from the waveform: a lead's VT + VF score (0-1) at or above "
        "this, at a rate above ventricular_tachycardia_bpm, counts as a ventricular rhythm",
        0.5,
    )
    latch_high: bool = doc("high-priority alarms stay active until acknowledged", True)
    rate_error_percent: float = doc(
        "a live source whose measured sample rate is off its nominal rate by more than this "
        "raises rate_off",
        1.0,
    )
    enabled: list[str] = doc(
        "conditions to evaluate (default all): asystole, extreme_bradycardia, "
        "extreme_tachycardia, ventricular_tachycardia, ventricular_fibrillation, hr_high, "
        "hr_low, rr_high, rr_low, apnea, signal_lost, sensor_off, poor_signal, "
        "inference_error, rate_off, store_failed",
        factory=lambda: [
            "asystole",
            "extreme_bradycardia",
            "extreme_tachycardia",
            "ventricular_tachycardia",
            "ventricular_fibrillation",
            "hr_high",
            "hr_low",
            "rr_high",
            "rr_low",
            "apnea",
            "signal_lost",
            "sensor_off",
            "poor_signal",
            "inference_error",
            "rate_off",
            "store_failed",
        ],
    )

    def validate(self) -> tuple[str, str] | None:
        from device.alarms.conditions import CONDITIONS

        if not 0.0 <= self.condition_delay_s <= 15.0:
            return "condition_delay_s", f"{self.condition_delay_s} is outside 0 to 15 s"
        if self.hr_low_bpm >= self.hr_high_bpm:
            return "hr_low_bpm", "must be below hr_high_bpm"
        if self.rr_low_bpm >= self.rr_high_bpm:
            return "rr_low_bpm", "must be below rr_high_bpm"
        if self.hr_high_severe_bpm < self.hr_high_bpm:
            return "hr_high_severe_bpm", "must be at or above hr_high_bpm"
        if self.hr_low_severe_bpm > self.hr_low_bpm:
            return "hr_low_severe_bpm", "must be at or below hr_low_bpm"
        if self.apnea_delay_s < 5.0 or self.apnea_delay_s > 60.0:
            return "apnea_delay_s", f"{self.apnea_delay_s} is outside 5 to 60 s"
        if not 2.0 <= self.asystole_s <= 15.0:
            return "asystole_s", f"{self.asystole_s} is outside 2 to 15 s"
        if not 2.0 <= self.ventricular_fibrillation_s <= 15.0:
            return (
                "ventricular_fibrillation_s",
                f"{self.ventricular_fibrillation_s} is outside 2 to 15 s",
            )
        for key in (
            "extreme_bradycardia_beats",
            "extreme_tachycardia_beats",
            "ventricular_tachycardia_beats",
        ):
            if not 2 <= getattr(self, key) <= 30:
                return key, f"{getattr(self, key)} is outside 2 to 30 beats"
        for key in ("ventricular_fibrillation_score", "ventricular_rhythm_score"):
            if not 0.0 < getattr(self, key) <= 1.0:
                return key, "must be above 0 and at most 1"
        if self.ventricular_fibrillation_s != 4.0:
            return (
                "ventricular_fibrillation_s",
                "only 4 s is supported: the rhythm model judges 4 s windows",
            )
        unknown = [c for c in self.enabled if c not in CONDITIONS]
        if unknown:
            return "enabled", f"unknown condition(s) {', '.join(unknown)}"
        return None


@dataclass
class ModelsConfig:
    """Learned models (LiteRT): which ones run, and where."""

    enabled: bool = doc(
        "use shipped models where one fits the inputs and beat DSP in its cross-validation", True
    )
    dir: str = doc(
        "folder of <task>_<inputs>_<arch>_<quant>.tflite models with .json manifests; "
        "empty: the models shipped with the software (models/; device/models in the wheel)",
        "",
    )
    delegate: str = doc(
        "where models run: cpu, gpu (LiteRT's GPU accelerator over Vulkan, or delegate_path) or "
        "edgetpu (needs libedgetpu.so.1)",
        "cpu",
    )
    delegate_path: str = doc(
        "gpu: path of a TFLite GPU delegate library the user built "
        "(libtensorflowlite_gpu_delegate.so); empty: LiteRT's own GPU accelerator (WebGPU "
        "over Vulkan, in the ai-edge-litert wheel)",
        "",
    )
    fallback: str = doc(
        "when the delegate cannot load: 'fail' refuses to start (exit 2, naming the library "
        "and the fix); 'cpu' warns, runs the models on the CPU and puts \"degraded\" in the "
        "retained status. Replaces fallback_to_cpu (true = 'cpu'), still accepted",
        "fail",
    )
    threads: int = doc("interpreter threads per model", 1)
    disable: list[str] = doc(
        'model names (file stems) never to use, e.g. ["rr_ppg_cnn_int8"]', factory=list
    )
    force: list[str] = doc(
        "model names (file stems) to use for their quantity and role even where signal "
        'processing is preferred, e.g. ["rr_resp_cnn_int8"]',
        factory=list,
    )

    @staticmethod
    def legacy_keys(data: dict[str, Any], where: str, source: str) -> dict[str, Any]:
        """Keys of earlier versions, still accepted so that deployed configs load:
        ``fallback_to_cpu = true|false`` is ``fallback = "cpu"|"fail"``."""
        if "fallback_to_cpu" not in data:
            return data
        data = dict(data)
        old = data.pop("fallback_to_cpu")
        if not isinstance(old, bool):
            raise ConfigError(
                f"{source}: '{where}.fallback_to_cpu' = {old!r} is not a valid bool",
                'write fallback = "cpu" or "fail" instead',
            )
        new = "cpu" if old else "fail"
        if data.setdefault("fallback", new) != new:
            raise ConfigError(
                f"{source}: '{where}.fallback_to_cpu' = {str(old).lower()} contradicts "
                f"'{where}.fallback' = {data['fallback']!r}",
                "remove fallback_to_cpu (replaced by fallback)",
            )
        log.warning(
            "%s: '%s.fallback_to_cpu' is deprecated; write fallback = %r", source, where, new
        )
        return data

    def validate(self) -> tuple[str, str] | None:
        from device.delegates import DELEGATES, FALLBACKS

        if self.enabled and self.dir and not Path(self.dir).is_dir():
            return "dir", f"{self.dir!r} is not a folder (give the folder of .tflite models)"
        if self.delegate not in DELEGATES:
            return (
                "delegate",
                f"unknown delegate {self.delegate!r}; choose from {', '.join(DELEGATES)}",
            )
        if self.fallback not in FALLBACKS:
            return "fallback", f"{self.fallback!r} is not one of {', '.join(FALLBACKS)}"
        if self.threads < 1:
            return "threads", "must be at least 1"
        both = sorted(set(self.force) & set(self.disable))
        if both:
            return "force", f"{', '.join(both)} also in [models] disable"
        return None


@dataclass
class JsonlConfig:
    """A local JSON-lines record of every vitals and alarm message (the ``jsonl`` sink)."""

    path: str = doc("file to write; empty: no JSON-lines record ('-' is stdout)", "")
    append: bool = doc("add to the file across restarts (false: start it afresh)", True)


@dataclass
class LogConfig:
    """What the daemon logs (one line per record; journald priorities under systemd)."""

    level: str = doc(
        "least severe messages logged: debug, info, warning or error (bedside -v/-vv override it)",
        "info",
    )

    def validate(self) -> tuple[str, str] | None:
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            return "level", f"{self.level!r} is not one of debug, info, warning, error"
        return None


@dataclass
class Config:
    """The whole configuration: one typed section per TOML table."""

    bed: BedConfig = field(default_factory=BedConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    state: StateConfig = field(default_factory=StateConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    serial: SerialConfig = field(default_factory=SerialConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    jsonl: JsonlConfig = field(default_factory=JsonlConfig)
    log: LogConfig = field(default_factory=LogConfig)


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
    legacy = getattr(cls, "legacy_keys", None)
    if legacy is not None:  # keys renamed since: translated, with a warning
        data = legacy(data, where, source)
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
    sections = {f.name: f for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in sections:
            known = ", ".join(sorted(sections))
            raise ConfigError(f"{source}: unknown section [{name}]", f"valid sections are: {known}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{name}' must be a table", f"write it as [{name}]")
        kwargs[name] = build_section(hints[name], value, name, source)
    return Config(**kwargs)


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML config; ``None`` gives the defaults."""
    if path is None:
        return parse_config({})
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file", "check the path given to --config") from None
    except OSError as e:
        from device.access import read_error

        err = read_error(p, e, "config")
        raise ConfigError(err.what, err.fix) from None
    from device.compat import tomllib  # only with a config file (not the command line's defaults)

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{p}: not valid TOML ({e})", "fix the syntax at the position shown"
        ) from None
    return parse_config(data, str(p))


def sections() -> list[tuple[str, type]]:
    """(name, dataclass) of every section, in the order of ``Config``."""
    hints = typing.get_type_hints(Config)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(Config)]


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
    for name, cls in sections():
        lines += _section_rows(name, cls)
    return "\n".join(lines)
