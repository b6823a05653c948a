"""A Raspberry Pi in a box: the appliance installed and checked on arm64 Debian under systemd.

    python bench/pibox.py [--suite bookworm|trixie] [--keep] [--cache DIR] [--no-native]
                          [--out bench/results/pibox.json]

Builds (or reuses from ``--cache``, default ``~/.cache/bedside/pibox``) an arm64 Debian root
filesystem with what Raspberry Pi OS Lite has, boots it with systemd as PID 1
(``systemd-nspawn --boot`` under qemu-user binfmt emulation, ``lab/pibox.py``), and inside it:

1. runs the real ``systemd/install.sh`` offline, as on a ward network without internet: the
   project's wheel is built here, the aarch64 wheels of its dependencies are fetched here
   (``pip download --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64
   --only-binary=:all:``), and the installer gets them with ``--wheel`` and ``--pip-args
   '--no-index --find-links DIR'``;
2. feeds the service a HealthyPi stream from the board emulator (``bedside replay ... --to
   pty``, lab/emulator.py), the pseudo-terminal bound into the box as ``/dev/ttyUSB0``;
3. checks what a ward would check (the CHECKS list below), each with its result and time.

A nurses' station outside the box: the box has its own network namespace joined to this
machine by a veth pair (``--network-veth``) whose ends this script addresses (10.231.7.1 here,
10.231.7.2 in the box; no networkd runs on either side); the box's Mosquitto listens on it,
and a paho subscriber here (persistent session, QoS 1) receives every vitals message, which
is how "the store loses nothing" is judged: the ``seq`` numbers it received must run without
a gap to the last one the daemon says it issued (its retained status, once the store is empty).

Before it (unless ``--no-native``), a native amd64 Debian trixie box (systemd 257, Python
3.13; no emulation) gets the same install, and shows what qemu cannot: ``DevicePolicy=closed``
with ``DeviceAllow=``, and ``IPAddressDeny=``, enforced for the installed unit itself. It runs
while the arm64 root filesystem is built (when that is not in the cache yet); the arm64 box
runs alone.

Every change made in a box only (EMULATION_FIXES in lab/pibox.py, the box's set-up) is listed
in the results, and so is what could not be emulated. Writes ``bench/results/pibox.json``
(``pibox_trixie.json`` for ``--suite trixie``). Exit status 0 when every check passed, 1 when
one failed, 3 when this machine cannot run a box (the reason on stderr). Needs root.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import importlib.resources
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.errors import UserError  # noqa: E402
from lab import machine  # noqa: E402
from lab.pibox import (  # noqa: E402
    CHECK_PACKAGES,
    PACKAGES,
    Box,
    Fix,
    Network,
    RootFs,
    enable_binfmt,
    ensure_rootfs,
    host_problems,
    message_text,
    qemu_version,
)

BED = "pibox"
SERIAL = "/dev/ttyUSB0"
CHECKOUT = "/root/bedside-edge"
WHEELS = "/root/wheels"
EXCERPT = "bidmc_09_excerpt.csv.gz"
#: seconds of slack on systemd's own deadlines (timers, scheduling of the emulated manager)
SLACK_S = 3.0
#: what the box's bed config says (the daemon reads the pty as a HealthyPi 5 on USB)
BED_TOML = f"""# pibox: the bed of the box (bench/pibox.py)
[bed]
id = "{BED}"

[mqtt]
broker = "mqtt://127.0.0.1:1883"

[serial]
url = "{SERIAL}"
format = "openview"
preset = "healthypi5"
fs_hz = 125.0
"""
#: the box's Mosquitto also listens on the veth address, for the station outside
MOSQUITTO_CONF = (
    "# pibox: the station outside the box subscribes here\nlistener 1883\nallow_anonymous true\n"
)
#: an upgrade that passes --check-config and fails its first start (patched into a copy)
BROKEN_ANCHOR = (
    '    logs.apply_config(cfg.log, getattr(args, "verbose", 0))\n'
    "    return run_daemon(cfg, stop)\n"
)
BROKEN_PATCH = (
    '    logs.apply_config(cfg.log, getattr(args, "verbose", 0))\n'
    '    log.error("pibox: this build fails its start on purpose (an upgrade that cannot start)")\n'
    "    return 1\n"
)

#: what could not be checked under emulation, and why (also in docs/deploy.md)
NOT_EMULATED = [
    {
        "what": "DevicePolicy=/DeviceAllow= enforcement on arm64",
        "why": "qemu-user has no bpf(), which cgroup v2 device control needs, and the box's "
        "cgroup v1 devices controller is read-only: the settings are accepted, not enforced. "
        "Checked on the native amd64 trixie box instead.",
    },
    {
        "what": "IPAddressDeny=/IPAddressAllow= enforcement on arm64",
        "why": "also a cgroup BPF program, which qemu-user cannot load (no bpf()); checked on "
        "the native amd64 trixie box instead",
    },
    {
        "what": "LoadCredential= (the broker password as a systemd credential) on arm64",
        "why": "qemu-user rejects clone(CLONE_NEWNS); the arm64 box's units run without it and "
        "its broker is anonymous. The native box runs the unit with it.",
    },
    {
        "what": "the Pi's UART (/dev/serial0, ttyAMA0/ttyS0), USB CDC (/dev/ttyACM0), udev "
        "names, ALSA capture, GPIO, the Pi's bootloader and config.txt",
        "why": "no such hardware in a box: the serial device is a pseudo-terminal bound in as "
        "/dev/ttyUSB0; audio is not configured",
    },
    {
        "what": "speed and memory of a real Cortex-A72/A76",
        "why": "every instruction is translated by qemu on an x86_64 host: times measured in "
        "the box are those of the emulation, indicative only",
    },
    {
        "what": "Raspberry Pi OS trixie (Debian 13, systemd 257) on arm64",
        "why": "under this machine's qemu-user (7.2, bookworm's) the emulated systemd 257 "
        "starts no unit at all: every start (journald, dbus, mosquitto, bedside) fails with "
        "'Failed to spawn executor: Invalid argument' (Result: resources), and clone3() "
        "returns ENOSYS in the box (spawn_diagnosis in bench/results/pibox_trixie.json). "
        "Trixie's systemd 257 and Python 3.13 were run natively (amd64) instead; the arm64 "
        "runs are bookworm's (systemd 252, Python 3.11).",
    },
    {
        "what": "a power cut",
        "why": "the box is powered off cleanly (systemd stops the service first); a SIGKILL of "
        "the daemon is the closest check of the store here",
    },
]


# -- results ----------------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    ok: bool
    time_s: float
    at_s: float
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "time_s": round(self.time_s, 2),
            "at_s": round(self.at_s, 1),
            **self.detail,
        }


@dataclass
class Run:
    t0: float = field(default_factory=time.monotonic)
    checks: list[Check] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    def check(self, name: str, fn: Callable[[], tuple[bool, dict[str, Any]]]) -> bool:
        """Run one check; a UserError or a crash is a failed check with the reason."""
        say(f"check {name} ...")
        start = time.monotonic()
        try:
            ok, detail = fn()
        except UserError as e:
            ok, detail = False, {"error": e.message}
        except Exception as e:  # noqa: BLE001 - any failure of a check is its result
            ok, detail = False, {"error": f"{type(e).__name__}: {e}"}
        c = Check(name, ok, time.monotonic() - start, start - self.t0, detail)
        self.checks.append(c)
        say(f"check {name}: {'ok' if ok else 'FAILED'} ({c.time_s:.1f} s) {_short(detail)}")
        return ok

    def skipped(self, name: str, why: str) -> None:
        self.checks.append(Check(name, False, 0.0, time.monotonic() - self.t0, {"not_run": why}))
        say(f"check {name}: not run ({why})")


def _short(detail: dict[str, Any]) -> str:
    text = json.dumps(detail, default=str)
    return text if len(text) < 300 else text[:300] + "..."


def say(text: str) -> None:
    print(f"pibox: {text}", flush=True)


# -- the station outside the box --------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    topic: str
    body: dict[str, Any]
    retain: bool
    at: float


class Station:
    """A nurses' station on this machine: paho, persistent session, QoS 1, every message kept."""

    def __init__(self, host: str, port: int = 1883) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Message] = []
        self.connects = 0
        self._cv = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pibox-station-{os.getpid()}",
            clean_session=False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 4)
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            with self._cv:
                self.connects += 1
            client.subscribe(f"bedside/{BED}/#", qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(bytes(msg.payload).decode("utf-8"))
        except ValueError:
            body = {"raw": bytes(msg.payload).decode("utf-8", "replace")}
        with self._cv:
            self.messages.append(Message(msg.topic, body, bool(msg.retain), time.monotonic()))
            self._cv.notify_all()

    def on(self, suffix: str) -> list[Message]:
        with self._cv:
            return [m for m in self.messages if m.topic.endswith("/" + suffix)]

    def wait(self, pred: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 1.0))
            return True

    def seqs(self, kind: str = "vitals") -> set[int]:
        return {int(m.body["seq"]) for m in self.on(kind) if isinstance(m.body.get("seq"), int)}

    def last_status(self, since: float = 0.0) -> dict[str, Any] | None:
        st = [m for m in self.on("status") if m.at >= since and m.body.get("state") != "offline"]
        return st[-1].body if st else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def delivered(station: Station, since: float, timeout_s: float, beyond: int = 0) -> dict[str, Any]:
    """Wait for vitals past seq ``beyond`` (new ones, made after the event) and for a status
    sent after ``since`` that says the store is empty and that covers them; then compare what
    the station received with what the daemon says it issued: no seq may be missing."""

    def settled() -> bool:
        st = station.last_status(since)
        mqtt = (st or {}).get("mqtt") or {}
        issued = int((mqtt.get("seq") or {}).get("vitals", 0) or 0)
        fresh = max(station.seqs(), default=0) > beyond
        return (
            fresh
            and issued > beyond
            and mqtt.get("outbox_pending") == 0
            and (mqtt.get("connected") is True)
        )

    ok = station.wait(settled, timeout_s)
    st = station.last_status(since) or {}
    mqtt = st.get("mqtt") or {}
    issued = mqtt.get("seq") or {}
    out: dict[str, Any] = {"store_empty_and_new_vitals": ok}
    for kind, topic in (("vitals", "vitals"), ("alarms", "alarms")):
        last = int(issued.get(kind, 0) or 0)
        got = station.seqs(topic)
        missing = sorted(set(range(1, last + 1)) - got)
        out[kind] = {
            "issued": last,
            "received": len(got & set(range(1, last + 1))),
            "missing": missing[:20],
            "missing_count": len(missing),
        }
    out["ok"] = ok and all(out[k]["missing_count"] == 0 for k in ("vitals", "alarms"))
    return out


# -- the board --------------------------------------------------------------------------------
class Board:
    """``bedside replay EXCERPT --to pty --loop``: a HealthyPi streaming into a pty."""

    def __init__(self, log: Path) -> None:
        excerpt = importlib.resources.files("device") / "data" / EXCERPT
        self.log = log
        self._err = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device",
                "replay",
                str(excerpt),
                "--to",
                "pty",
                "--format",
                "openview",
                "--loop",
            ],
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("/dev/pts/"):
            self.stop()
            raise UserError(f"the board emulator printed {line!r}, not a pty", f"see {log}")
        self.pty = line

    def give_to(self, gid: int) -> None:
        """Owner root, group dialout (the box's gid), mode 0660: what udev gives a ttyUSB."""
        os.chown(self.pty, 0, gid)
        os.chmod(self.pty, 0o660)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


# -- wheels -----------------------------------------------------------------------------------
def pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, cwd=cwd
    )
    if out.returncode != 0:
        raise UserError(
            f"pip {' '.join(args[:3])}... failed: {out.stderr.strip()[-1500:]}", "see above"
        )
    return out


def build_wheel(source: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    pip("wheel", "--quiet", "--no-deps", "-w", str(out), str(source), cwd=out)
    wheels = sorted(out.glob("bedside_edge-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise UserError(f"pip wheel made no bedside_edge wheel in {out}", "see pip's output")
    return wheels[-1]


def wheelhouse(cache: Path, wheel: Path, python: str, arch: str) -> tuple[Path, float, bool]:
    """The wheels of the project's dependencies for ``python`` on ``arch`` (downloaded once
    per dependency list, then reused: the box itself never reaches an index)."""
    plat = {"arm64": "aarch64", "amd64": "x86_64"}[arch]
    deps = _wheel_requires(wheel)
    key = hashlib.sha256(json.dumps([python, plat, deps]).encode()).hexdigest()[:12]
    d = cache / f"wheels-cp{python.replace('.', '')}-{plat}-{key}"
    if (d / ".complete").is_file():
        return d, 0.0, True
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.monotonic()
    pip(
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--platform",
        f"manylinux_2_27_{plat}",
        "--platform",
        f"manylinux2014_{plat}",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{python.replace('.', '')}",
        "-d",
        str(d),
        str(wheel),
    )
    for w in d.glob("bedside_edge-*.whl"):
        w.unlink()  # the project's own wheel is built afresh for every run
    (d / ".complete").write_text(json.dumps(deps) + "\n")
    return d, time.monotonic() - t0, False


def _wheel_requires(wheel: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    return sorted(
        ln.split(":", 1)[1].strip()
        for ln in text.splitlines()
        if ln.startswith("Requires-Dist:") and "extra ==" not in ln
    )


def source_files(root: Path) -> list[Path]:
    """The checkout's files (what a clone has: tracked and new files, not ignored ones)."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
    )
    if out.returncode != 0:
        raise UserError(f"{root} is not a git checkout", "run it from a clone of bedside-edge")
    return [root / n for n in out.stdout.decode().split("\0") if n and (root / n).is_file()]


def copy_checkout(root: Path, dest: Path) -> None:
    for f in source_files(root):
        target = dest / f.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)


def broken_wheel(root: Path, work: Path) -> Path:
    """A wheel of this checkout whose daemon fails its start (after --check-config passes)."""
    src = work / "broken-src"
    shutil.rmtree(src, ignore_errors=True)
    copy_checkout(root, src)
    run_py = src / "device" / "commands" / "run.py"
    text = run_py.read_text()
    if BROKEN_ANCHOR not in text:
        raise UserError(
            "cannot make the broken upgrade: device/commands/run.py no longer ends run() with "
            "apply_config + run_daemon",
            "update BROKEN_ANCHOR in bench/pibox.py",
        )
    run_py.write_text(text.replace(BROKEN_ANCHOR, BROKEN_PATCH))
    return build_wheel(src, work / "broken-wheel")


# -- helpers inside the box -------------------------------------------------------------------
def span_s(text: str) -> float:
    """A systemd time span ('30s', '1min 30s', '100ms', '10.5s') in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)\s*(us|ms|min|s|h)", text):
        total += float(num) * units[unit]
    return total


def journal_since(box: Box, unit: str, since_mono: float) -> list[dict[str, Any]]:
    recs = box.journal("-u", unit, "--since", "-30min")
    return [r for r in recs if int(str(r.get("__MONOTONIC_TIMESTAMP", "0"))) / 1e6 >= since_mono]


def first(recs: list[dict[str, Any]], needle: str) -> tuple[float, str] | None:
    for r in recs:
        text = message_text(r)
        if needle in text:
            return int(str(r["__MONOTONIC_TIMESTAMP"])) / 1e6, text
    return None


def wait_active(box: Box, timeout_s: float, not_pid: str | None = None) -> dict[str, str]:
    """Wait until bedside is active (with a main PID other than ``not_pid``)."""
    deadline = time.monotonic() + timeout_s
    props: dict[str, str] = {}
    while time.monotonic() < deadline:
        props = box.show(
            "bedside",
            "ActiveState",
            "SubState",
            "MainPID",
            "NRestarts",
            "StatusText",
            "ActiveEnterTimestampMonotonic",
            "ExecMainStartTimestampMonotonic",
            "Result",
        )
        if props.get("ActiveState") == "active" and props.get("MainPID", "0") not in ("0", not_pid):
            return props
        time.sleep(1.0)
    raise UserError(
        f"bedside.service not active again within {timeout_s:.0f} s: {props}",
        "journalctl -u bedside in the box",
    )


def group_id(box: Box, name: str) -> int:
    for ln in box.path("/etc/group").read_text().splitlines():
        parts = ln.split(":")
        if parts[0] == name:
            return int(parts[2])
    raise UserError(f"the box has no group {name}", "rebuild the root filesystem")


#: clone3() with no flags and with CLONE_PIDFD, as the box's python3 sees it (qemu-user
#: implements some system calls only in newer versions): prints one verdict per call
CLONE3_PROBE = r"""
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
for name, flags in (("clone3", 0), ("clone3(CLONE_PIDFD)", 0x1000)):
    pidfd = ctypes.c_int(-1)
    args = struct.pack("11Q", flags, ctypes.addressof(pidfd), 0, 0, 17, 0, 0, 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(args, len(args))
    r = libc.syscall(435, buf, len(args))
    if r == 0:
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
        print(name, "ok")
    else:
        e = ctypes.get_errno()
        print(name, "refused", e, os.strerror(e))
"""


def spawn_diagnosis(box: Box, unit: str = "bedside.service") -> dict[str, Any]:
    """Why units do not start: each failed unit's Result, the manager's own words about
    ``unit`` and about spawning (the console: journald may be one of the failed units), and
    whether clone3() works in the box."""
    console = box.console_log.read_text(errors="replace") if box.console_log.exists() else ""
    plain = [re.sub(r"\x1b\[[0-9;:]*m", "", ln).strip() for ln in console.splitlines()]
    spawn = sorted({ln for ln in plain if "Failed to spawn" in ln})
    return {
        "failed_units": {u: box.show(u, "Result").get("Result", "?") for u in box.failed_units()},
        "unit": box.show(unit, "ActiveState", "Result", "ExecMainStatus"),
        "console_on_unit": [ln for ln in plain if unit in ln][-10:],
        "spawn_failures": spawn[:40],
        "spawn_failures_count": len(spawn),
        "clone3": clone3(box),
    }


def clone3(box: Box) -> list[str]:
    """What CLONE3_PROBE says in the box."""
    probe = box.exec(["/usr/bin/python3", "-c", CLONE3_PROBE], check=False, timeout_s=60)
    return [ln.strip() for ln in (probe.stdout + probe.stderr).splitlines() if ln.strip()]


def box_facts(box: Box) -> dict[str, Any]:
    sh = box.sh(
        "uname -m; cat /etc/debian_version; systemctl --version | head -1; python3 -V; "
        "mosquitto -h 2>&1 | head -1",
        check=False,
    ).stdout.splitlines()
    keys = ("machine", "debian", "systemd", "python", "mosquitto")
    return dict(zip(keys, [s.strip() for s in sh], strict=False))


# -- the install ------------------------------------------------------------------------------
def stage_install(box: Box, root: Path, wheel: Path, deps: Path) -> None:
    """The checkout, the wheels and the bed's config, copied into the box (/root)."""
    copy_checkout(root, box.path(CHECKOUT))
    w = box.path(WHEELS)
    w.mkdir(parents=True, exist_ok=True)
    for f in [*deps.glob("*.whl"), wheel]:
        shutil.copy2(f, w / f.name)
    box.write("/root/bed.toml", BED_TOML)


def install(box: Box, wheel_name: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    cmd = (
        f"cd {CHECKOUT} && bash systemd/install.sh --wheel {WHEELS}/{wheel_name} "
        f"--pip-args '--no-index --find-links {WHEELS}' {extra}"
    )
    return box.sh(cmd, check=False, timeout_s=1800)


# -- the checks -------------------------------------------------------------------------------
def check_ready(box: Box) -> tuple[bool, dict[str, Any]]:
    props = wait_active(box, 60)
    pattern = re.compile(
        rf"^bed {BED}: HR (\d+|--) bpm, RR (\d+|--)/min, alarms: .+, "
        r"broker (connected|disconnected), outbox \d+$"
    )
    deadline = time.monotonic() + 90
    text = props.get("StatusText", "")
    while time.monotonic() < deadline and not re.match(r"^bed \S+: HR \d+ bpm", text):
        time.sleep(2)
        text = box.show("bedside", "StatusText").get("StatusText", "")
    status = box.exec(
        ["systemctl", "status", "--no-pager", "--lines=0", "bedside"], check=False
    ).stdout
    line = next((ln.strip() for ln in status.splitlines() if ln.strip().startswith("Status:")), "")
    active = box.exec(["systemctl", "is-active", "bedside"], check=False).stdout.strip()
    ok = active == "active" and bool(pattern.match(text)) and text in line and "HR --" not in text
    return ok, {
        "is_active": active,
        "status_text": text,
        "systemctl_status_line": line,
        "type": box.show("bedside", "Type")["Type"],
    }


def check_vitals_in_box(box: Box) -> tuple[bool, dict[str, Any]]:
    out = box.exec(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-t",
            f"bedside/{BED}/vitals",
            "-C",
            "10",
            "-W",
            "60",
            "-q",
            "1",
        ],
        check=False,
        timeout_s=90,
    )
    got = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    hr = [v.get("hr_bpm") for v in got]
    ok = len(got) == 10 and all(v.get("bed") == BED and isinstance(v.get("seq"), int) for v in got)
    ok = ok and any(isinstance(h, (int, float)) for h in hr)
    return ok, {
        "received": len(got),
        "hr_bpm": hr,
        "rr_bpm": [v.get("rr_bpm") for v in got],
        "hr_source": [v.get("hr_source") for v in got],
    }


def check_vitals_outside(station: Station, net: Network) -> tuple[bool, dict[str, Any]]:
    ok = station.wait(lambda: sum(1 for m in station.on("vitals") if m.body.get("hr_bpm")) >= 5, 60)
    vit = station.on("vitals")
    return ok, {
        "subscriber": f"paho on this machine ({net.host_ip}) -> "
        f"the box's Mosquitto at {net.box_ip}:1883",
        "vitals_received": len(vit),
        "last": {
            k: vit[-1].body.get(k) for k in ("seq", "hr_bpm", "rr_bpm", "hr_model", "rr_model")
        }
        if vit
        else None,
        "status_messages": len(station.on("status")),
    }


def check_models(box: Box) -> tuple[bool, dict[str, Any]]:
    """The shipped models on fixed inputs: here, in the box as root, and in the box under the
    installed unit's sandbox (user bedside, ProtectProc=invisible: a /proc of its own, where
    the box binds the fake cpuinfo again, as the service's drop-in does). The int8 outputs must
    be the same bytes in all three; the float16 models differ in their last bits between
    x86_64 and the box, which is recorded (the first outputs of each), not required."""
    cmd = ["-m", "lab.model_outputs", "--inputs", "32"]
    host = subprocess.run(
        [sys.executable, *cmd],
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if host.returncode != 0:
        raise UserError(f"lab.model_outputs on this machine: {host.stderr[-800:]}", "see above")
    py = "/opt/bedside/venv/bin/python"
    inside = box.exec([py, *cmd], timeout_s=600)
    unit = box.exec(
        ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", *sandbox_props(box), "--",
         py, *cmd],
        check=False, timeout_s=600,
    )  # fmt: skip
    if unit.returncode != 0 or not unit.stdout.startswith("{"):
        raise UserError(
            f"lab.model_outputs under the unit's sandbox failed ({unit.returncode}): "
            + (unit.stderr or unit.stdout)[-800:],
            "see above",
        )
    runs = {"x86_64": json.loads(host.stdout), "box": json.loads(inside.stdout),
            "box_unit_sandbox": json.loads(unit.stdout)}  # fmt: skip
    a = runs["x86_64"]
    models: dict[str, Any] = {}
    for name in sorted(set().union(*runs.values())):
        entry: dict[str, Any] = {
            "required": name.endswith("_int8"),
            "input": (a.get(name) or {}).get("input"),
        }
        for where in ("box", "box_unit_sandbox"):
            b = runs[where].get(name) or {}
            entry[f"identical_{where}"] = name in a and b.get("sha256") == a[name]["sha256"]
            entry[f"invoke_ms_{where}"] = b.get("invoke_ms_median")
            if not entry[f"identical_{where}"]:
                entry[f"head_{where}"] = b.get("first_output_head")
        entry["invoke_ms_x86_64"] = (a.get(name) or {}).get("invoke_ms_median")
        if not (entry["identical_box"] and entry["identical_box_unit_sandbox"]):
            entry["head_x86_64"] = (a.get(name) or {}).get("first_output_head")
        models[name] = entry
    int8 = [n for n in models if models[n]["required"]]
    ok = bool(int8) and all(
        models[n]["identical_box"] and models[n]["identical_box_unit_sandbox"] for n in int8
    )
    ok = ok and set(runs["box"]) == set(a) == set(runs["box_unit_sandbox"])
    said = [ln for ln in unit.stderr.splitlines() if "cpuinfo" in ln.lower()]
    return ok, {
        "inputs_per_model": 32,
        "int8_models": len(int8),
        "models": models,
        "unit_sandbox_stderr_cpuinfo": said[:3],
        "found_through": "device.inference.shipped_models_dir() (importlib.resources)",
    }


def exposure(text: str) -> float | None:
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", text)
    return float(m.group(1)) if m else None


def check_security(box: Box) -> tuple[bool, dict[str, Any]]:
    inside = box.exec(
        ["systemd-analyze", "security", "--no-pager", "bedside.service"], check=False
    ).stdout
    offline = (
        subprocess.run(
            [
                "systemd-analyze",
                "security",
                "--offline=true",
                "--no-pager",
                str(ROOT / "systemd/bedside.service"),
            ],
            capture_output=True,
            text=True,
        ).stdout
        if shutil.which("systemd-analyze")
        else ""
    )
    score, off = exposure(inside), exposure(offline)
    open_checks = [ln[1:].split()[0] for ln in inside.splitlines() if ln.startswith("✗")]
    verify = box.exec(
        ["systemd-analyze", "verify", "/etc/systemd/system/bedside.service"], check=False
    )
    return (score is not None and score <= 1.5), {
        "exposure_in_box": score,
        "exposure_offline_host": off,
        "target": 1.5,
        "open_in_box": open_checks,
        "verify_in_box": (verify.stderr or verify.stdout).strip() or "clean",
        "note": "the online rating is of the installed unit, with the box-only "
        "LoadCredential= drop-in",
    }


PROBE = (
    "import os,sys\n"
    "for p in sys.argv[1:]:\n"
    "    try:\n"
    "        os.close(os.open(p, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)); print(p, 'opened')\n"
    "    except OSError as e:\n"
    "        print(p, 'refused', e.errno, e.strerror)\n"
)


def unit_device_rules(box: Box) -> list[str]:
    unit = box.path("/etc/systemd/system/bedside.service").read_text()
    return [
        ln.split("=", 1)[1].strip() for ln in unit.splitlines() if ln.startswith("DeviceAllow=")
    ]


#: [Service] settings of the unit that are about starting and supervising it, not about the
#: sandbox: left out when a transient service is given "the unit's sandbox"
NOT_SANDBOX = {
    "Type", "NotifyAccess", "WatchdogSec", "TimeoutStartSec", "ExecStartPre", "ExecStart",
    "KillSignal", "TimeoutStopSec", "Restart", "RestartSec", "StateDirectory",
    "StateDirectoryMode", "ConfigurationDirectory", "ConfigurationDirectoryMode",
    "LoadCredential",
}  # fmt: skip


def sandbox_props(box: Box, leave_out: str = "") -> list[str]:
    """``-p KEY=VALUE`` for every sandbox setting of the installed unit (user, groups,
    protections, device policy, system call filter, address families...), for systemd-run."""
    unit = box.path("/etc/systemd/system/bedside.service").read_text()
    props: list[str] = []
    section = ""
    for ln in unit.splitlines():
        ln = ln.strip()
        if ln.startswith("["):
            section = ln
        elif section == "[Service]" and "=" in ln and not ln.startswith("#"):
            key = ln.split("=", 1)[0]
            if key not in NOT_SANDBOX and not (leave_out and leave_out in ln):
                props += ["-p", ln]
    if box.emulated:
        props += ["-p", box.CPUINFO_BIND]
    return props


#: device nodes made in the box for the probe: (path, char major, minor, on the unit's list)
PROBE_NODES = (
    ("/dev/ttyACM0", 166, 0, True),  # USB CDC (HealthyPi over USB)
    ("/dev/ttyUSB0", 188, 0, True),  # USB serial adapter
    ("/dev/ttyAMA0", 204, 64, True),  # Raspberry Pi PL011 UART
    ("/dev/rfcomm0", 216, 0, False),  # Bluetooth serial: not on the list
)
PROBE_PATHS = ("/dev/pibox/ttyACM0", "/dev/pibox/ttyUSB0", "/dev/pibox/ttyAMA0",
               "/dev/pibox/rfcomm0", "/dev/net/tun")  # fmt: skip


def probe_devices(box: Box) -> dict[str, dict[str, str]]:
    """Open each probe node as root outside any policy (the control) and in a transient
    service with the installed unit's sandbox. A node with no driver here gives ENXIO or
    ENODEV once past the device policy; the policy itself refuses with EPERM."""
    box.sh(
        "mkdir -p /dev/pibox && "
        + " && ".join(
            f"{{ [ -e /dev/pibox/{n} ] || mknod /dev/pibox/{n} c {ma} {mi}; }}"
            for n, ma, mi in ((Path(p).name, ma, mi) for p, ma, mi, _ in PROBE_NODES)
        )
        + " && chgrp dialout /dev/pibox/* && chmod 0660 /dev/pibox/*"
    )
    outside = box.exec(["/usr/bin/python3", "-c", PROBE, *PROBE_PATHS], check=False)
    inside = box.exec(
        ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", *sandbox_props(box), "--",
         "/usr/bin/python3", "-c", PROBE, *PROBE_PATHS],
        check=False, timeout_s=120,
    )  # fmt: skip

    def parse(out: subprocess.CompletedProcess[str]) -> dict[str, str]:
        found = dict(ln.partition(" ")[::2] for ln in out.stdout.splitlines() if ln.strip())
        if not found:
            found["error"] = (out.stderr or out.stdout).strip()[-500:]
        return found

    return {"outside_the_unit": parse(outside), "with_the_units_sandbox": parse(inside)}


def char_majors(proc_devices: str) -> dict[str, set[int]]:
    """``/proc/devices``' character devices: name -> majors."""
    out: dict[str, set[int]] = {}
    for ln in proc_devices.split("Block devices:")[0].splitlines():
        parts = ln.split()
        if len(parts) == 2 and parts[0].isdigit():
            out.setdefault(parts[1], set()).add(int(parts[0]))
    return out


def expected_allowed(rules: list[str], majors: dict[str, set[int]], major: int, minor: int) -> bool:
    """What systemd's rules should let through for char MAJOR:MINOR: a ``char-NAME`` rule
    whose name /proc/devices lists with that major, or a ``/dev/char/MAJOR:MINOR`` rule."""
    for rule in rules:
        spec = rule.split()[0]
        if spec.startswith("char-") and major in majors.get(spec[5:], set()):
            return True
        if spec == f"/dev/char/{major}:{minor}":
            return True
    return False


def policy_verdicts(box: Box, probe: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Per probe node: what the unit's rules say it should be (resolved against this kernel's
    /proc/devices, as systemd resolves them) and whether the policy refused it (EPERM inside
    the sandbox and not outside)."""
    inside, outside = probe["with_the_units_sandbox"], probe["outside_the_unit"]
    majors = char_majors(_proc_devices(box))
    rules = unit_device_rules(box)
    nodes = [(f"/dev/pibox/{Path(p).name}", ma, mi, on) for p, ma, mi, on in PROBE_NODES]
    nodes.append(("/dev/net/tun", 10, 200, False))
    out: dict[str, Any] = {}
    for path, ma, mi, on_list in nodes:
        refused = inside.get(path, "").startswith("refused 1 ")
        out[path] = {
            "device": f"char {ma}:{mi}",
            "on_the_list": on_list,
            "rules_allow_it_here": expected_allowed(rules, majors, ma, mi),
            "refused_by_policy": refused and not outside.get(path, "").startswith("refused 1 "),
        }
    return out


def _proc_devices(box: Box) -> str:
    return box.exec(["cat", "/proc/devices"], check=False).stdout


def check_device_allow_emulated(
    box: Box, station: Station, pty: str
) -> tuple[bool, dict[str, Any]]:
    major = os.major(os.stat(pty).st_rdev)
    flowing = any(m.body.get("hr_bpm") for m in station.on("vitals"))
    probe = probe_devices(box)
    verdicts = policy_verdicts(box, probe)
    enforced = any(v["refused_by_policy"] for v in verdicts.values())
    ran = "error" not in probe["with_the_units_sandbox"] and len(verdicts) == len(PROBE_PATHS)
    return flowing and ran, {
        "enforced": enforced,
        "serial_major": major,
        "daemon_reads_serial": flowing,
        "probe": probe,
        "verdicts": verdicts,
        "finding": (
            "enforced"
            if enforced
            else "not enforced: under the unit's own sandbox (DevicePolicy=closed) a Bluetooth "
            "serial node and /dev/net/tun, neither on the DeviceAllow= list, opened (or reached "
            "their driver) exactly as outside it; qemu-user has no bpf() and the box's devices "
            "controller is read-only. Enforcement is checked on the native box."
        ),
        "rules": unit_device_rules(box),
    }


def unit_copy(box: Box, name: str, config: str) -> str:
    """``bedside-NAME.service``: the installed unit word for word, but reading
    /etc/bedside/NAME.toml and with Restart=no. Returns the unit's name."""
    unit = f"bedside-{name}.service"
    box.write(f"/etc/bedside/{name}.toml", config, 0o644)
    text = box.path("/etc/systemd/system/bedside.service").read_text()
    text = text.replace("/etc/bedside/bedside.toml", f"/etc/bedside/{name}.toml")
    box.write(f"/etc/systemd/system/{unit}", text.replace("Restart=on-failure", "Restart=no"))
    box.service_fixes(unit)
    box.exec(["systemctl", "daemon-reload"])
    return unit


def remove_unit_copy(box: Box, unit: str) -> None:
    box.exec(["systemctl", "stop", unit], check=False)
    box.exec(["systemctl", "reset-failed", unit], check=False)
    box.path(f"/etc/systemd/system/{unit}").unlink()
    shutil.rmtree(box.path(f"/etc/systemd/system/{unit}.d"), ignore_errors=True)
    box.exec(["systemctl", "daemon-reload"])


NET_PROBE = (
    "import socket,sys\n"
    "for a in sys.argv[1:]:\n"
    "    h, p = a.rsplit(':', 1)\n"
    "    s = socket.socket(); s.settimeout(5)\n"
    "    try:\n"
    "        s.connect((h, int(p))); print(a, 'connected')\n"
    "    except TimeoutError:\n"
    "        print(a, 'timeout')\n"
    "    except OSError as e:\n"
    "        print(a, 'refused', e.errno, e.strerror)\n"
    "    finally:\n"
    "        s.close()\n"
)


def check_ip_address_deny(box: Box) -> tuple[bool, dict[str, Any]]:
    """IPAddressDeny=any + IPAddressAllow=localhost: under the unit's sandbox the local broker
    connects, and a connect to this machine's end of the veth pair gets no answer (the policy
    drops its packets), while outside the sandbox it is answered at once (ECONNREFUSED: nothing
    listens on port 9)."""
    targets = ["127.0.0.1:1883", f"{box.network.host_ip}:9"]
    outside = box.exec(["/usr/bin/python3", "-c", NET_PROBE, *targets], check=False).stdout
    inside = box.exec(
        ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", *sandbox_props(box), "--",
         "/usr/bin/python3", "-c", NET_PROBE, *targets],
        check=False, timeout_s=120,
    ).stdout  # fmt: skip

    def parse(text: str) -> dict[str, str]:
        return dict(ln.partition(" ")[::2] for ln in text.splitlines() if ln.strip())

    a, b = parse(outside), parse(inside)
    far = targets[1]
    # the policy drops the packets (cgroup BPF): a timeout or EPERM, where outside the
    # sandbox the same connect is answered at once (ECONNREFUSED)
    answered = a.get(far, "").startswith("refused 111 ")
    enforced = answered and (b.get(far) == "timeout" or b.get(far, "").startswith("refused 1 "))
    local_ok = b.get(targets[0]) == "connected"
    detail = {"outside_the_unit": a, "with_the_units_sandbox": b, "enforced": enforced}
    if box.emulated:
        detail["finding"] = (
            "enforced"
            if enforced
            else "not enforced under qemu-user (IPAddressDeny= is a cgroup BPF program: no bpf())"
        )
        return local_ok and far in b, detail
    return local_ok and enforced, detail


def check_protect_home(box: Box) -> tuple[bool, dict[str, Any]]:
    """Item 5 for real: a replay file under /root, which ProtectHome= hides from the service,
    is refused at start with the cause and the fix, by a copy of the installed unit."""
    excerpt = importlib.resources.files("device") / "data" / EXCERPT
    box.path("/root/recordings").mkdir(parents=True, exist_ok=True)
    shutil.copy(str(excerpt), box.path("/root/recordings/bed.csv.gz"))
    unit = unit_copy(
        box,
        "protecthome",
        f'[bed]\nid = "{BED}-ph"\n\n[replay]\npath = "/root/recordings/bed.csv.gz"\n',
    )
    since = time.monotonic()
    start = box.exec(["systemctl", "start", unit], check=False, timeout_s=300)
    said = [message_text(r) for r in journal_since(box, unit, since - 1)]
    refusal = next((t for t in said if "bed.csv.gz" in t), "")
    remove_unit_copy(box, unit)
    low = refusal.lower()
    ok = start.returncode != 0 and "permission denied" in low and "protecthome" in low
    ok = ok and "truncated" not in low
    return ok, {
        "start_exit": start.returncode,
        "message": refusal,
        "as_root_outside_the_service": "the file is mode 0644 in /root (readable by root)",
    }


def freeze_and_wait(box: Box, station: Station, how: str) -> tuple[bool, dict[str, Any]]:
    """SIGSTOP (the watchdog must kill and restart) or SIGKILL (Restart=on-failure)."""
    props = box.show("bedside", "MainPID", "NRestarts", "WatchdogUSec", "RestartUSec")
    pid, restarts = props["MainPID"], int(props.get("NRestarts", "0"))
    watchdog_s, restart_s = span_s(props["WatchdogUSec"]), span_s(props["RestartUSec"])
    last_seq = max(station.seqs(), default=0)
    before = time.monotonic()
    box.exec(["kill", "-STOP" if how == "watchdog" else "-KILL", pid])
    after = time.monotonic()
    new = wait_active(box, watchdog_s + restart_s + 240, not_pid=pid)
    recs = journal_since(box, "bedside.service", before - 0.5)
    if how == "watchdog":
        kill = first(recs, "Watchdog timeout")
        result = first(recs, "Failed with result 'watchdog'")
        killed_with = first(recs, "with signal SIGABRT")
    else:
        kill = first(recs, "status=9/KILL")
        result = first(recs, "Failed with result 'signal'")
        killed_with = kill
    restart = first(recs, "Scheduled restart job")
    starting = next(
        (
            int(str(r["__MONOTONIC_TIMESTAMP"])) / 1e6
            for r in recs
            if message_text(r).startswith("Starting bedside")
            and kill
            and int(str(r["__MONOTONIC_TIMESTAMP"])) / 1e6 > kill[0]
        ),
        None,
    )
    ready = int(new["ActiveEnterTimestampMonotonic"]) / 1e6
    detail: dict[str, Any] = {
        "signal": "SIGSTOP" if how == "watchdog" else "SIGKILL",
        "watchdog_s": watchdog_s,
        "restart_delay_s": restart_s,
        "old_pid": pid,
        "new_pid": new["MainPID"],
        "restarts": int(new["NRestarts"]) - restarts,
        "journal": [t for t in (kill, killed_with, result, restart) if t and t[1]]
        and sorted({t[1] for t in (kill, killed_with, result, restart) if t}),
        "signal_to_kill_s": round(kill[0] - after, 2) if kill else None,
        "kill_to_restart_s": round(starting - kill[0], 2) if kill and starting else None,
        "signal_to_restart_s": round(starting - after, 2) if starting else None,
        "signal_to_ready_s": round(ready - after, 2),
        "signal_sent_within_s": round(after - before, 2),
    }
    ok = bool(kill and result and restart and starting) and detail["restarts"] >= 1
    if ok and kill and starting:
        bound = (watchdog_s if how == "watchdog" else 0.0) + restart_s + SLACK_S
        detail["bound_s"] = (
            f"WatchdogSec + RestartSec + {SLACK_S:g} s slack = {bound:g}"
            if how == "watchdog"
            else f"RestartSec + {SLACK_S:g} s = {bound:g}"
        )
        ok = ok and starting - before <= bound and starting - kill[0] >= restart_s - 0.5
        if how == "watchdog":
            # the pings come every WatchdogSec/2: the kill is 1/2 to 1 WatchdogSec after the stop
            ok = ok and watchdog_s / 2 - SLACK_S <= kill[0] - after <= watchdog_s + SLACK_S
    store = delivered(station, ready, 180, beyond=last_seq)
    detail["store"] = store
    return ok and bool(store["ok"]), detail


def check_reboot(box: Box, station: Station, run: Run) -> tuple[bool, dict[str, Any]]:
    config = hashlib.sha256(box.path("/etc/bedside/bedside.toml").read_bytes()).hexdigest()
    before_seq = max(station.seqs(), default=0)
    off_s = box.poweroff()
    counters = store_counters_offline(box)
    boot_s = box.boot()
    props = wait_active(box, 300)
    ready = int(props["ActiveEnterTimestampMonotonic"]) / 1e6
    run.times["boot_to_ready_s"] = ready - box.boot_started
    run.times["boot_to_running_s"] = boot_s
    after_config = hashlib.sha256(box.path("/etc/bedside/bedside.toml").read_bytes()).hexdigest()
    store = delivered(station, ready, 180, beyond=before_seq)
    after = sorted(s for s in station.seqs() if s > before_seq)
    ok = config == after_config and bool(store["ok"]) and bool(after) and after[0] == before_seq + 1
    return ok, {
        "poweroff_s": round(off_s, 1),
        "boot_to_running_s": round(boot_s, 1),
        "boot_to_ready_s": round(ready - box.boot_started, 1),
        "config_unchanged": config == after_config,
        "store_counters_at_poweroff": counters,
        "last_seq_before": before_seq,
        "first_seq_after": after[0] if after else None,
        "store": store,
        "system_state": box.system_state,
        "failed_units": box.failed_units(),
    }


def store_counters_offline(box: Box) -> dict[str, float]:
    """The store's counters read from the powered-off box's files (sqlite3 here)."""
    import sqlite3

    out: dict[str, float] = {}
    for p in box.path("/var/lib/bedside").glob("*-store.sqlite3"):
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            out.update(
                {str(k): float(v) for k, v in db.execute("SELECT name, value FROM counters")}
            )
            out["pending"] = float(db.execute("SELECT count(*) FROM messages").fetchone()[0])
        finally:
            db.close()
    return out


def check_upgrade_rollback(box: Box, station: Station, work: Path) -> tuple[bool, dict[str, Any]]:
    wheel = broken_wheel(ROOT, work)
    target = box.path("/root/broken")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, target / wheel.name)
    previous = os.readlink(box.path("/opt/bedside/venv"))
    pid = box.show("bedside", "MainPID")["MainPID"]
    last_seq = max(station.seqs(), default=0)
    t0 = time.monotonic()
    out = box.sh(
        f"cd {CHECKOUT} && bash systemd/install.sh --wheel /root/broken/{wheel.name} "
        f"--pip-args '--no-index --find-links {WHEELS}'",
        check=False,
        timeout_s=1800,
    )
    took = time.monotonic() - t0
    text = out.stdout + out.stderr
    time.sleep(2)
    props = wait_active(box, 180)
    now = os.readlink(box.path("/opt/bedside/venv"))
    recs = journal_since(box, "bedside.service", t0)
    said = first(recs, "fails its start on purpose")
    store = delivered(station, int(props["ActiveEnterTimestampMonotonic"]) / 1e6, 180, last_seq)
    ok = (
        out.returncode == 2
        and "rolled back" in text
        and now == previous
        and said is not None
        and props["MainPID"] != pid
        and bool(store["ok"])
    )
    return ok, {
        "install_exit": out.returncode,
        "install_s": round(took, 1),
        "installer_said": [ln for ln in text.splitlines() if "roll" in ln or "error" in ln][-4:],
        "venv_before": previous,
        "venv_after": now,
        "broken_daemon_logged": said[1] if said else None,
        "active_after": props["ActiveState"],
        "store": store,
    }


LEVELS = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def check_journald(box: Box) -> tuple[bool, dict[str, Any]]:
    recs = box.journal("-u", "bedside.service", "--since", "-60min")
    seen: dict[str, int] = {}
    wrong: list[str] = []
    for r in recs:
        if r.get("_TRANSPORT") != "stdout":
            continue
        text = message_text(r)
        m = re.match(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) bedside\.", text)
        if not m:
            continue
        prio = int(str(r.get("PRIORITY", "-1")))
        seen[m.group(1)] = seen.get(m.group(1), 0) + 1
        if prio != LEVELS[m.group(1)]:
            wrong.append(f"{prio}: {text[:120]}")
    warn = box.exec(
        ["journalctl", "--no-pager", "-u", "bedside.service", "-p", "warning", "-o", "json"],
        check=False,
    )
    warn_prios = {
        json.loads(ln).get("PRIORITY") for ln in warn.stdout.splitlines() if ln.startswith("{")
    }
    ok = not wrong and len(seen) >= 2 and all(int(p) <= 4 for p in warn_prios if p is not None)
    return ok, {
        "lines_by_level": seen,
        "wrong_priority": wrong[:10],
        "priorities_in_-p_warning": sorted(str(p) for p in warn_prios),
    }


# -- the native box ---------------------------------------------------------------------------
def native_box(args: argparse.Namespace, work: Path, wheel: Path, results: dict[str, Any]) -> None:
    """amd64 trixie, no emulation: the install, then the installed unit's device policy."""
    run = Run()
    net = Network("10.231.8.1", "10.231.8.2")
    rootfs = ensure_rootfs(Path(args.cache), "trixie", "amd64", [*PACKAGES, *CHECK_PACKAGES], say)
    deps, dl_s, reused = wheelhouse(Path(args.cache), wheel, rootfs.python, "amd64")
    board = Board(work / "board-native.log")
    box = Box(
        rootfs,
        work / "native",
        machine="pibox-amd64",
        network=net,
        binds=[(board.pty, SERIAL)],
        nspawn_env={"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"},
        nspawn_args=["--system-call-filter=bpf"],
    )
    out: dict[str, Any] = {
        "rootfs": rootfs.as_dict(),
        "wheels": {"download_s": round(dl_s, 1), "reused": reused},
    }
    try:
        box.mount()
        box.apply_emulation_fixes()
        board.give_to(group_id(box, "dialout"))
        box.write("/etc/mosquitto/conf.d/pibox.conf", MOSQUITTO_CONF)
        out["boot_to_running_s"] = round(box.boot(), 1)
        out["box"] = box_facts(box)
        stage_install(box, ROOT, wheel, deps)
        t0 = time.monotonic()
        inst = install(box, wheel.name, "--config /root/bed.toml")
        out["install_s"] = round(time.monotonic() - t0, 1)
        out["install_exit"] = inst.returncode
        if inst.returncode != 0:
            out["install_output"] = (inst.stdout + inst.stderr)[-3000:]

        def credential() -> tuple[bool, dict[str, Any]]:
            props = wait_active(box, 60)
            creds = box.sh(
                "ls -l /run/credentials/bedside.service/ 2>&1; "
                "systemctl show -p LoadCredential bedside",
                check=False,
            ).stdout
            ok = "mqtt-password" in creds and props["ActiveState"] == "active"
            return ok, {"credentials": creds.strip().splitlines()}

        def policy() -> tuple[bool, dict[str, Any]]:
            probe = probe_devices(box)
            verdicts = policy_verdicts(box, probe)
            ok = "error" not in probe["with_the_units_sandbox"] and all(
                v["refused_by_policy"] != v["rules_allow_it_here"] for v in verdicts.values()
            )
            # the USB serial ports must pass whether or not their driver is loaded yet
            ok = ok and not any(
                verdicts[f"/dev/pibox/{n}"]["refused_by_policy"] for n in ("ttyACM0", "ttyUSB0")
            )
            # the same nodes with only the char-<name> rules: ttyACM/ttyUSB have no driver
            # here, so their majors are not in /proc/devices when the service starts
            classes = box.exec(
                ["systemd-run", "--quiet", "--wait", "--pipe", "--collect",
                 *sandbox_props(box, leave_out="/dev/char/"), "--",
                 "/usr/bin/python3", "-c", PROBE, *PROBE_PATHS],
                check=False, timeout_s=120,
            ).stdout  # fmt: skip
            return ok, {
                "verdicts": verdicts,
                "probe": probe,
                "pty_major": os.major(os.stat(board.pty).st_rdev),
                "pty_note": "DevicePolicy=closed always lets a service open pseudo-terminals "
                "(/dev/pts, char-pts: systemd's own rule), so the board's pty opens with or "
                "without an entry; the probe nodes (mknod in the box) test the list itself",
                "with_char_class_rules_only": dict(
                    ln.partition(" ")[::2] for ln in classes.splitlines() if ln.strip()
                ),
                "proc_devices_here": box.sh(
                    "grep -E ' (ttyACM|ttyUSB|ttyAMA|ttyS|ttyTHS|alsa)$' /proc/devices",
                    check=False,
                ).stdout.split("\n"),
            }

        def daemon_refused() -> tuple[bool, dict[str, Any]]:
            unit = unit_copy(
                box,
                "rfcomm",
                f'[bed]\nid = "{BED}-rf"\n\n[serial]\nurl = "/dev/pibox/rfcomm0"\n'
                'format = "openview"\npreset = "healthypi5"\n',
            )
            since = time.monotonic()
            start = box.exec(["systemctl", "start", unit], check=False, timeout_s=120)
            deadline = time.monotonic() + 30
            said: tuple[float, str] | None = None
            while said is None and time.monotonic() < deadline:
                said = first(journal_since(box, unit, since - 1), "cannot open port")
                time.sleep(1)
            remove_unit_copy(box, unit)
            text = said[1] if said else ""
            ok = start.returncode == 0 and "Operation not permitted" in text
            ok = ok and "device policy" in text
            return ok, {"start_exit": start.returncode, "daemon_logged": text}

        if inst.returncode == 0:
            run.check("native_ready", lambda: check_ready(box))
            run.check("native_vitals", lambda: check_vitals_in_box(box))
            run.check("native_credential", credential)
            run.check("native_device_policy", policy)
            run.check("native_device_refused_daemon", daemon_refused)
            run.check("native_ip_address_deny", lambda: check_ip_address_deny(box))
            run.check("native_security", lambda: check_security(box))
        else:
            run.skipped("native_ready", "the install failed")
        out["box_only_changes"] = [
            "the pty given group dialout, mode 0660 (as udev gives a ttyUSB)",
            "device nodes made with mknod under /dev/pibox for the policy probe",
            "a Mosquitto listener on all addresses",
        ]
    except UserError as e:
        out["error"] = e.message
    finally:
        with contextlib.suppress(Exception):
            out["poweroff_s"] = round(box.poweroff(60), 1)
        box.unmount()
        board.stop()
        if not args.keep:
            shutil.rmtree(box.run_dir, ignore_errors=True)
    out["checks"] = [c.as_dict() for c in run.checks]
    results["native"] = out


# -- main -------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=("bookworm", "trixie"), default="bookworm")
    p.add_argument(
        "--keep", action="store_true", help="keep the box's files (the overlay) afterwards"
    )
    p.add_argument(
        "--cache",
        default=str(Path.home() / ".cache/bedside/pibox"),
        help="root filesystems and wheels, reused when present",
    )
    p.add_argument("--no-native", action="store_true", help="skip the native amd64 trixie box")
    p.add_argument(
        "--native-only", action="store_true", help="only the native amd64 trixie box (debugging)"
    )
    p.add_argument("--out", help="results file (default bench/results/pibox[_trixie].json)")
    a = p.parse_args()
    out = Path(
        a.out or ROOT / f"bench/results/pibox{'' if a.suite == 'bookworm' else '_' + a.suite}.json"
    )
    problems = host_problems("arm64")
    if problems:
        for e in problems:
            print(f"pibox: cannot run a box here: {e.message}", file=sys.stderr)
        return 3
    try:
        binfmt = enable_binfmt("arm64")
    except UserError as e:
        print(f"pibox: cannot run a box here: {e.message}", file=sys.stderr)
        return 3

    run = Run()
    work = Path(
        tempfile.mkdtemp(
            prefix="pibox-", dir=Path(a.cache).parent if Path(a.cache).parent.is_dir() else None
        )
    )
    results: dict[str, Any] = {
        "command": "python bench/pibox.py " + shlex.join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine.describe(),
        "host": {
            "kernel": platform.release(),
            "qemu": qemu_version(),
            "binfmt": binfmt,
            "systemd_nspawn": subprocess.run(
                ["systemd-nspawn", "--version"], capture_output=True, text=True
            ).stdout.splitlines()[0],
        },
        "network": "veth pair (systemd-nspawn --network-veth): ve-pibox 10.231.7.1/30 on this "
        "machine, host0 10.231.7.2/30 in the box, both set by bench/pibox.py with ip(8); the "
        "box's Mosquitto listens on 1883 there, the station (paho) subscribes from here",
    }
    station: Station | None = None
    board: Board | None = None
    box: Box | None = None
    # the arm64 root filesystem builds (when it is not in the cache: mostly dpkg under qemu)
    # while the native box runs; the arm64 box itself runs alone, after both
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    t = time.monotonic()
    arm64_rootfs = (
        None
        if a.native_only
        else pool.submit(
            ensure_rootfs, Path(a.cache), a.suite, "arm64", [*PACKAGES, *CHECK_PACKAGES], say
        )
    )
    try:
        wheel = build_wheel(ROOT, work / "wheel")
        run.times["project_wheel_s"] = time.monotonic() - t
        if not a.no_native:
            native_box(a, work, wheel, results)
        if arm64_rootfs is None:
            raise UserError("--native-only: the arm64 box was not run", None)
        rootfs: RootFs = arm64_rootfs.result()
        run.times["rootfs_s"] = time.monotonic() - t
        say(
            f"root filesystem {rootfs.path} ({'reused' if rootfs.reused else 'built'}; "
            f"build {rootfs.build_s:.0f} s)"
        )
        results["rootfs"] = rootfs.as_dict()
        deps, dl_s, reused = wheelhouse(Path(a.cache), wheel, rootfs.python, "arm64")
        results["wheels"] = {
            "project": wheel.name,
            "dependencies": sorted(w.name for w in deps.glob("*.whl")),
            "download_s": round(dl_s, 1),
            "reused": reused,
            "python": rootfs.python,
        }
        board = Board(work / "board.log")
        box = Box(rootfs, work / "box", binds=[(board.pty, SERIAL)])
        box.mount()
        box.apply_emulation_fixes()
        board.give_to(group_id(box, "dialout"))
        box.write("/etc/mosquitto/conf.d/pibox.conf", MOSQUITTO_CONF)
        box.service_fixes("bedside.service")
        results["emulation_fixes"] = [f.as_dict() for f in box.fixes]
        results["box_setup"] = [
            Fix(
                "the board's pty bound in as /dev/ttyUSB0, group dialout, mode 0660",
                "stands in for a USB serial adapter, which udev gives group dialout",
                f"--bind={board.pty}:{SERIAL}",
            ).as_dict(),
            Fix(
                "a Mosquitto listener on all addresses (conf.d/pibox.conf)",
                "the station outside the box subscribes over the veth pair; on a ward the "
                "local Mosquitto bridges to the ward's broker instead (docs/deploy.md section 5)",
                "/etc/mosquitto/conf.d/pibox.conf",
            ).as_dict(),
            Fix(
                "the bed's config: [serial] /dev/ttyUSB0, HealthyPi 5 preset, broker 127.0.0.1",
                "what a ward writes into /etc/bedside/bedside.toml",
                "--config /root/bed.toml",
            ).as_dict(),
        ]
        try:
            run.times["boot_to_running_first_s"] = box.boot(timeout_s=240)
        except UserError as e:
            results["boot_failure"] = {"error": e.message, "console": box.console_tail(40)}
            run.skipped("boot", e.message)
            raise
        results["box"] = {
            **box_facts(box),
            "system_state": box.system_state,
            "failed_units": box.failed_units(),
            "clone3": clone3(box),
        }
        say(f"booted: {results['box']}")
        station = Station(box.network.box_ip)
        stage_install(box, ROOT, wheel, deps)
        t = time.monotonic()
        inst = install(box, wheel.name, "--config /root/bed.toml")
        run.times["install_s"] = time.monotonic() - t
        results["install_output"] = (inst.stdout + inst.stderr).splitlines()[-40:]

        def installed() -> tuple[bool, dict[str, Any]]:
            text = inst.stdout + inst.stderr
            return inst.returncode == 0 and "start bedside.service" in text, {
                "exit": inst.returncode,
                "install_s": round(run.times["install_s"], 1),
                "command": f"bash systemd/install.sh --wheel {WHEELS}/{wheel.name} --pip-args "
                f"'--no-index --find-links {WHEELS}' --config /root/bed.toml",
                "venv": os.readlink(box.path("/opt/bedside/venv"))
                if box.path("/opt/bedside/venv").is_symlink()
                else None,
                "network": "the box has no route to the internet: only the veth pair to "
                "this machine",
            }

        b = box
        s = station
        board_pty = board.pty
        if not run.check("install", installed):
            results["spawn_diagnosis"] = spawn_diagnosis(b)
            raise UserError(
                "the install failed", "see install_output and spawn_diagnosis in the results"
            )
        run.check("ready", lambda: check_ready(b))
        run.check("vitals_in_box", lambda: check_vitals_in_box(b))
        run.check("vitals_outside", lambda: check_vitals_outside(s, b.network))
        run.check("models_identical", lambda: check_models(b))
        run.check("security", lambda: check_security(b))
        run.check("device_allow", lambda: check_device_allow_emulated(b, s, board_pty))
        run.check("ip_address_deny", lambda: check_ip_address_deny(b))
        run.check("protect_home_refusal", lambda: check_protect_home(b))
        run.check("watchdog", lambda: freeze_and_wait(b, s, "watchdog"))
        run.check("sigkill", lambda: freeze_and_wait(b, s, "sigkill"))
        run.check("reboot", lambda: check_reboot(b, s, run))
        run.check("upgrade_rollback", lambda: check_upgrade_rollback(b, s, work))
        run.check("journald_priorities", lambda: check_journald(b))
        run.check("nothing_lost", lambda: (lambda d: (bool(d["ok"]), d))(delivered(s, 0.0, 60)))
    except UserError as e:
        results["error"] = e.message
        say(f"error: {e.message}")
    finally:
        if station is not None:
            station.close()
        if box is not None:
            with contextlib.suppress(Exception):
                run.times["poweroff_s"] = box.poweroff(90)
            box.unmount()
            if a.keep:
                say(
                    f"kept the box's files in {box.run_dir} "
                    f"(upper: the changes; lower: {box.rootfs.path})"
                )
        if board is not None:
            board.stop()
        pool.shutdown(wait=True)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    run.times["total_s"] = time.monotonic() - run.t0
    results["times_s"] = {k: round(v, 1) for k, v in run.times.items()}
    results["checks"] = [c.as_dict() for c in run.checks]
    results["not_emulated"] = NOT_EMULATED
    failed = [c.name for c in run.checks if not c.ok]
    failed += [
        f"native:{c['name']}" for c in results.get("native", {}).get("checks", []) if not c["ok"]
    ]
    results["failed"] = failed
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    say(f"wrote {out}; {len(run.checks)} checks, failed: {', '.join(failed) or 'none'}")
    return 1 if failed or "error" in results else 0


if __name__ == "__main__":
    raise SystemExit(main())
