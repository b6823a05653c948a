"""Does the daemon still work inside the unit's sandbox? A rehearsal without systemd.

The real daemon replays the bundled recording (with the shipped LiteRT models) into a real
Mosquitto

- inside a new mount and PID namespace whose /proc is mounted the way the unit's
  ``ProtectProc=invisible`` mounts it (``hidepid=invisible``: other users' processes are
  invisible). The unit does not set ``ProcSubset=pid`` (``subset=pid``: no /proc/cpuinfo):
  LiteRT's XNNPACK needs /proc/cpuinfo, and without it the models run on other kernels and
  give other int8 outputs, which a test below keeps on record;
- under a seccomp filter built like the unit's: the system calls of ``~@privileged @resources``
  (expanded by ``systemd-analyze syscall-filter``) fail with EPERM (``SystemCallErrorNumber=``),
  and so do the requests ``MemoryDenyWriteExecute=yes`` refuses: ``mmap`` of writable and
  executable memory, ``mprotect``/``pkey_mprotect`` adding ``PROT_EXEC``;
- under ``strace -f``.

Then: it ran (exit 0, vitals received, the RR model answered, so LiteRT loaded and invoked);
every system call it made is in ``@system-service``; it never asked for writable-executable
memory; and the only calls the filter refused are known to be harmless (``KNOWN_REFUSED``).
A first test proves the filter bites: calls it should refuse really fail under it.

Needs root (namespaces), strace, systemd-analyze and Debian's python3-seccomp, all of which CI
installs; skips otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd/bedside.service"
EXCERPT = ROOT / "device/data/bidmc_09_excerpt.csv.gz"
BED = "sandbox1"

STRACE = shutil.which("strace")
UNSHARE = shutil.which("unshare")
ANALYZE = shutil.which("systemd-analyze")
SYSTEM_PYTHON = "/usr/bin/python3"

#: calls of ~@privileged @resources the daemon makes, refused (EPERM) without harm
KNOWN_REFUSED = {
    # OpenBLAS (numpy) asks for a NUMA memory policy on its 32 MB buffers when numpy is
    # imported, and carries on when that is refused
    "mbind",
    # SQLite (the MQTT sink's store), only when it runs as root as this test does: it gives the
    # write-ahead log and shared-memory files it creates the database file's owner, and
    # ignores a failure; the unit runs as user bedside, where SQLite never calls it
    "fchown",
}

#: loads a unit-like seccomp filter, then execs the rest of the command line (Debian's
#: python3-seccomp is a module of the system python3, not of the project's environment)
SECCOMP_EXEC = """
import errno, json, mmap, os, sys
import seccomp
denied, argv = json.loads(sys.argv[1]), sys.argv[2:]
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
refuse = seccomp.ERRNO(errno.EPERM)
for name in denied:
    try:
        f.add_rule(refuse, name)
    except Exception:
        pass  # not a system call on this architecture
wx, x = mmap.PROT_WRITE | mmap.PROT_EXEC, mmap.PROT_EXEC
f.add_rule(refuse, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
f.add_rule(refuse, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, x, x))
f.add_rule(refuse, "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, x, x))
f.load()
os.execv(argv[0], argv)
"""

#: a system call name at the start of an strace -f line (also "<... name resumed>")
SYSCALL = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)")


def syscall_groups() -> dict[str, list[str]]:
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith("@"):
            name = line.strip()
            groups[name] = []
        elif line.strip() and not line.strip().startswith("#") and name:
            groups[name].append(line.strip())
    return groups


def expand(group: str, groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for item in groups[group]:
        out |= expand(item, groups) if item.startswith("@") else {item}
    return out


def unit_filter() -> tuple[set[str], set[str]]:
    """(allowed, denied) system calls from the unit's SystemCallFilter= lines."""
    groups = syscall_groups()
    allowed: set[str] = set()
    denied: set[str] = set()
    for line in UNIT.read_text().splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1]
        target = denied if value.startswith("~") else allowed
        for item in value.lstrip("~").split():
            target |= expand(item, groups) if item.startswith("@") else {item}
    return allowed, denied


def has_seccomp() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True)
    return probe.returncode == 0


def can_unshare() -> bool:
    if UNSHARE is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        [UNSHARE, "-m", "-p", "-f", "--mount-proc", "sh", "-c",
         "mount -t proc -o subset=pid,hidepid=invisible proc /proc && test ! -e /proc/cpuinfo"],
        capture_output=True,
    )  # fmt: skip
    return probe.returncode == 0


def filtered(denied: set[str], argv: list[str]) -> list[str]:
    return [SYSTEM_PYTHON, "-c", SECCOMP_EXEC, json.dumps(sorted(denied)), *argv]


needs_tools = [
    pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed; CI has it"),
    pytest.mark.skipif(
        not has_seccomp(),
        reason="needs Debian's python3-seccomp (apt-get install python3-seccomp); CI has it",
    ),
]


@needs_tools[0]
@needs_tools[1]
def test_the_filter_refuses_what_the_unit_refuses() -> None:
    _, denied = unit_filter()
    probe = (
        "import mmap, os\n"
        "try:\n    os.sched_setaffinity(0, {0}); print('affinity allowed')\n"
        "except PermissionError: print('affinity refused')\n"
        "try:\n    mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "    print('wx allowed')\n"
        "except PermissionError: print('wx refused')\n"
    )
    out = subprocess.run(
        filtered(denied, [sys.executable, "-c", probe]), capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["affinity", "refused", "wx", "refused"], out.stderr
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert free.stdout.split() == ["affinity", "allowed", "wx", "allowed"]


@pytest.mark.e2e
@pytest.mark.skipif(
    STRACE is None, reason="strace not installed (apt-get install strace); CI has it"
)
@needs_tools[0]
@needs_tools[1]
def test_daemon_runs_inside_the_units_sandbox(mosquitto, mqtt_listener, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if not can_unshare():
        pytest.skip("needs root and mount/PID namespaces (unshare) to mount /proc")
    assert STRACE is not None and UNSHARE is not None
    allowed, denied = unit_filter()
    station = mqtt_listener(mosquitto, f"bedside/{BED}/vitals")
    trace = tmp_path / "strace.log"
    daemon = [
        sys.executable, "-m", "device", "run", "--replay", str(EXCERPT), "--speed", "30",
        "--broker", mosquitto.url, "--bed", BED, "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    inner = f"mount -t proc -o {UNIT_PROC} proc /proc && exec " + shlex.join(
        [STRACE, "-f", "-qq", "-o", str(trace), *filtered(denied, daemon)]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [UNSHARE, "-m", "-p", "-f", "--mount-proc", "sh", "-c", inner],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]

    # it worked: vitals arrived, and the RR model (LiteRT) produced some of them
    assert station.wait_for(lambda ms: len(ms) >= 20, 30), out.stderr[-2000:]
    payloads: list[dict[str, Any]] = [m.json() for m in station.messages]
    assert any(p.get("rr_model") for p in payloads), "no vitals from a model: LiteRT did not run"

    lines = trace.read_text(errors="replace").splitlines()
    # what the daemon did: from its own execve on (before it, the wrapper loaded the filter)
    execs = [i for i, ln in enumerate(lines) if re.match(r"^\d+\s+execve\(.* = 0$", ln)]
    assert len(execs) >= 2, lines[:5]
    lines = lines[execs[1] :]
    used = {m.group(1) for ln in lines if (m := SYSCALL.match(ln))}
    assert {"execve", "mmap", "connect", "sendto"} <= used  # the trace is real
    assert not used - allowed, f"system calls outside @system-service: {sorted(used - allowed)}"
    refused = used & denied
    assert refused <= KNOWN_REFUSED, (
        f"newly refused system calls: {sorted(refused - KNOWN_REFUSED)}"
    )

    # MemoryDenyWriteExecute=yes: never asked for
    wx = [
        ln
        for ln in lines
        if re.search(r"\bmmap\(.*(PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE)", ln)
        or re.search(r"\b(pkey_)?mprotect\([^,]*, [^,]*, [^)]*PROT_EXEC", ln)
    ]
    assert not wx, "writable-executable memory requested:\n" + "\n".join(wx[:10])


#: how the unit's ProtectProc=invisible mounts /proc for the service
UNIT_PROC = "hidepid=invisible"


def model_outputs_under(proc_options: str | None) -> dict[str, Any]:
    """``python -m lab.model_outputs`` with /proc mounted with ``proc_options`` in a new mount
    and PID namespace (None: this process's /proc)."""
    argv = [sys.executable, "-m", "lab.model_outputs", "--inputs", "8"]
    if proc_options is not None:
        assert UNSHARE is not None
        inner = f"mount -t proc -o {proc_options} proc /proc && exec " + shlex.join(argv)
        argv = [UNSHARE, "-m", "-p", "-f", "--mount-proc", "sh", "-c", inner]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_models_give_the_same_outputs_under_the_units_proc() -> None:
    """The unit's /proc (ProtectProc=invisible) leaves LiteRT's outputs as validated; the
    /proc of ProcSubset=pid does not, which is why the unit does not set it."""
    if not can_unshare():
        pytest.skip("needs root and mount/PID namespaces (unshare) to mount /proc")
    plain = model_outputs_under(None)
    unit = model_outputs_under(UNIT_PROC)
    assert {k: v["sha256"] for k, v in unit.items()} == {k: v["sha256"] for k, v in plain.items()}
    subset = model_outputs_under("subset=pid," + UNIT_PROC)
    int8 = [k for k in plain if k.endswith("_int8")]
    assert int8 and any(subset[k]["sha256"] != plain[k]["sha256"] for k in int8), (
        "LiteRT now gives the validated outputs without /proc/cpuinfo: ProcSubset=pid could "
        "return to the unit (check bench/pibox.py's models_identical on arm64 first)"
    )
