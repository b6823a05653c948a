"""A Raspberry Pi in a box: a Debian root filesystem booted with systemd as PID 1.

``bench/pibox.py`` uses this to run the appliance on its own platform without the hardware:
an arm64 Debian root filesystem (``mmdebstrap``), executed through qemu-user and the kernel's
binfmt_misc (``qemu-user-static``, ``binfmt-support``), booted by ``systemd-nspawn --boot``
(``systemd-container``). The same code boots a native root filesystem (amd64 on this machine,
no emulation), which is where systemd's device policy can be seen enforced.

What this module does, and nothing more:

- checks the host (root, the tools, binfmt_misc mounted and qemu-aarch64 enabled) and says
  what to install or run when something is missing (``UserError``);
- builds a root filesystem once per (suite, architecture, package list) into a cache folder
  and reuses it; every run gets a fresh overlay on top of it (``mount -t overlay``), so the
  cached tree is never changed and a run can be kept (``keep``) for a look afterwards;
- applies the box-only fixes for the traps of emulation (``EMULATION_FIXES``: a fake ARM
  ``/proc/cpuinfo``, ``QEMU_CPU``, no ``LoadCredential=`` for the units that have it); each is
  returned as a record so that results can say what was changed, not hide it;
- boots the box with a veth pair (``--network-veth``) whose two ends it addresses itself
  (there is no systemd-networkd on the host), binds host paths in (a pseudo-terminal as the
  box's serial device), runs commands inside with ``nsenter`` (``machinectl`` needs a systemd
  on the host, which this machine does not have), and powers the box off from inside
  (SIGTERM to nspawn sends an emulated systemd into rescue mode).

Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from device.errors import UserError

#: what Raspberry Pi OS Lite has that the appliance uses (systemd, python3 with venv,
#: Mosquitto, PortAudio, the CA bundle), plus what the checks need inside the box
#: (mosquitto_sub, ip, ps/pgrep)
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "mosquitto",
    "libportaudio2",
    "ca-certificates",
)
CHECK_PACKAGES = ("mosquitto-clients", "iproute2", "procps")
#: bump when the way a root filesystem is built changes (the cache key includes it)
RECIPE = 1
#: Debian architecture -> the machine uname reports inside, and the qemu binfmt entry
ARCHES = {"arm64": ("aarch64", "qemu-aarch64"), "amd64": ("x86_64", None)}
#: the CPU qemu emulates for every process in the box (see EMULATION_FIXES)
QEMU_CPU = "cortex-a72"

#: a Raspberry Pi 4's four Cortex-A72 cores (implementer 0x41 = Arm, part 0xd08 = A72), as
#: its /proc/cpuinfo lists them
FAKE_CPUINFO = (
    "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
        "CPU revision\t: 3\n\n"
        for i in range(4)
    )
    + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.5 (emulated: pibox)\n"
)


@dataclass(frozen=True)
class Fix:
    """A change made in the box only, to get round a limit of emulation, not of the product."""

    what: str
    why: str
    where: str

    def as_dict(self) -> dict[str, str]:
        return {"what": self.what, "why": self.why, "where": self.where}


#: the traps of qemu-user emulation and what the box does about each (../shared/docs/RECIPES.md)
EMULATION_FIXES = (
    Fix(
        "a fake ARM /proc/cpuinfo (four Cortex-A72 cores) bound over the host's",
        "qemu-user passes the host's x86 /proc/cpuinfo through; LiteRT's XNNPACK (cpuinfo) "
        "then segfaults",
        "--bind-ro=/etc/pibox/cpuinfo:/proc/cpuinfo (nspawn resolves a bind onto /proc inside "
        "the box, so the file lives in the box's tree); and for bedside.service (and the "
        "transient services of the checks) BindReadOnlyPaths= in a drop-in, because "
        "ProtectProc= gives a service its own /proc, without nspawn's bind",
    ),
    Fix(
        f"QEMU_CPU={QEMU_CPU} for every process in the box",
        "qemu's default 'max' CPU gave wrong int8 outputs from LiteRT",
        "[Manager] DefaultEnvironment= in /etc/systemd/system.conf.d/pibox-qemu.conf, "
        "--setenv for nspawn and the environment of every command run inside",
    ),
    Fix(
        "LoadCredential= emptied by a drop-in, for Debian's own units that use it and for "
        "bedside.service",
        "qemu-user rejects clone(CLONE_NEWNS), so a unit with LoadCredential= dies with "
        "243/CREDENTIALS; the box's broker is anonymous, so the daemon needs no password "
        "(the credential path is not exercised in the arm64 box)",
        "/etc/systemd/system/<unit>.d/pibox-no-credentials.conf",
    ),
    Fix(
        "the box is stopped from inside (systemctl start poweroff.target)",
        "SIGTERM to nspawn sends the emulated systemd into rescue mode (real-time signals are "
        "remapped by qemu-user)",
        "Box.poweroff",
    ),
)


# -- the host ---------------------------------------------------------------------------------
def run(
    argv: Sequence[str], timeout_s: float = 600.0, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        list(argv), capture_output=True, text=True, timeout=timeout_s, **kw
    )


def host_problems(arch: str) -> list[UserError]:
    """What stops a box of ``arch`` from booting here, each with its fix (empty: nothing)."""
    problems: list[UserError] = []
    if os.geteuid() != 0:
        problems.append(
            UserError("the box needs root (mmdebstrap, mount, systemd-nspawn)", "run it as root")
        )
    tools = {
        "mmdebstrap": "mmdebstrap",
        "systemd-nspawn": "systemd-container",
        "nsenter": "util-linux",
        "ip": "iproute2",
    }
    if ARCHES[arch][1]:
        tools.update(
            {"qemu-aarch64-static": "qemu-user-static", "update-binfmts": "binfmt-support"}
        )
        tools["arch-test"] = "arch-test"
    for tool, package in tools.items():
        if shutil.which(tool) is None:
            problems.append(
                UserError(
                    f"{tool} not found",
                    f"apt-get install -y {package} (or bash .ci/bootstrap test)",
                )
            )
    return problems


def enable_binfmt(arch: str) -> str:
    """Make the kernel run ``arch`` binaries through qemu (a no-op for the host's own); returns
    what ``arch-test`` says. PID 1 of this machine is not systemd, so nothing mounts
    binfmt_misc for us."""
    entry = ARCHES[arch][1]
    if entry is None:
        return f"{arch}: native"
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    mounts = Path("/proc/mounts").read_text()
    if " /proc/sys/fs/binfmt_misc " not in mounts:
        out = run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
        if out.returncode != 0:
            raise UserError(
                f"cannot mount binfmt_misc ({out.stderr.strip()}): this kernel or container "
                "cannot run foreign binaries",
                "run on a machine whose kernel has binfmt_misc (CONFIG_BINFMT_MISC) and where "
                "root may mount it (a privileged container or a VM)",
            )
    if not (binfmt / entry).exists() or "enabled" not in (binfmt / entry).read_text():
        out = run(["update-binfmts", "--enable", entry])
        if out.returncode != 0:
            raise UserError(
                f"update-binfmts --enable {entry} failed: {(out.stderr or out.stdout).strip()}",
                "apt-get install -y qemu-user-static binfmt-support",
            )
    out = run(["arch-test", arch])
    said = (out.stdout + out.stderr).strip()
    if out.returncode != 0 or f"{arch}: ok" not in said:
        raise UserError(
            f"arch-test {arch} says: {said or out.returncode}",
            "check /proc/sys/fs/binfmt_misc/qemu-aarch64 (flags F: the interpreter is opened "
            "once, so it need not be inside the box)",
        )
    return said


def qemu_version() -> str:
    out = run(["qemu-aarch64-static", "--version"]) if shutil.which("qemu-aarch64-static") else None
    return out.stdout.splitlines()[0] if out and out.stdout else ""


# -- the root filesystem ----------------------------------------------------------------------
@dataclass(frozen=True)
class RootFs:
    """A cached root filesystem: ``path`` is the tree, never changed after it was built."""

    path: Path
    suite: str
    arch: str
    packages: tuple[str, ...]
    build_s: float
    built: str
    reused: bool

    @property
    def python(self) -> str:
        """The box's python3 version, major.minor (from its /usr/bin/python3.X)."""
        names = sorted(p.name for p in (self.path / "usr/bin").glob("python3.*"))
        found = [n[len("python") :] for n in names if n[len("python3.") :].isdigit()]
        if not found:
            raise UserError(f"{self.path}: no python3.X in usr/bin", "rebuild the root filesystem")
        return max(found, key=lambda v: int(v.split(".")[1]))

    def as_dict(self) -> dict[str, object]:
        return {
            "suite": self.suite,
            "arch": self.arch,
            "packages": list(self.packages),
            "build_s": round(self.build_s, 1),
            "built": self.built,
            "reused_from_cache": self.reused,
            "size_mb": round(_tree_size(self.path) / 1e6),
        }


def _tree_size(path: Path) -> int:
    out = run(["du", "-sb", str(path)])
    return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout else 0


def ensure_rootfs(
    cache: Path,
    suite: str,
    arch: str,
    packages: Sequence[str],
    say: Callable[[str], None] = print,
) -> RootFs:
    """The root filesystem for (suite, arch, packages): from ``cache`` when it is there,
    otherwise built with mmdebstrap (Debian's default mirror, with updates and security) into a
    temporary folder and moved into place once complete."""
    pkgs = tuple(sorted(set(packages)))
    key = hashlib.sha256(json.dumps([RECIPE, suite, arch, pkgs]).encode()).hexdigest()[:12]
    home = cache / f"{suite}-{arch}-{key}"
    meta = home / "meta.json"
    if meta.is_file() and (home / "rootfs" / "usr/lib/systemd/systemd").exists():
        m = json.loads(meta.read_text())
        return RootFs(
            home / "rootfs", suite, arch, pkgs, float(m["build_s"]), str(m["built"]), True
        )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".build-{suite}-{arch}-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    argv = [
        "mmdebstrap",
        f"--arch={arch}",
        "--variant=minbase",
        "--include=" + ",".join(pkgs),
        suite,
        str(tmp / "rootfs"),
    ]
    say(f"building the {suite} {arch} root filesystem (once; cached in {home})")
    say("$ " + shlex.join(argv))
    t0 = time.monotonic()
    out = run(argv, timeout_s=3600)
    build_s = time.monotonic() - t0
    if out.returncode != 0:
        (cache / f"build-{suite}-{arch}.log").write_text(out.stdout + out.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(
            f"mmdebstrap {suite} {arch} failed: {(out.stderr or out.stdout).strip()[-800:]}",
            f"see {cache}/build-{suite}-{arch}.log; check the network reaches deb.debian.org",
        )
    built = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    (tmp / "meta.json").write_text(
        json.dumps(
            {"suite": suite, "arch": arch, "packages": pkgs, "build_s": build_s, "built": built}
        )
        + "\n"
    )
    shutil.rmtree(home, ignore_errors=True)
    tmp.rename(home)
    return RootFs(home / "rootfs", suite, arch, pkgs, build_s, built, False)


# -- the box ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Network:
    """The veth pair: ``ve-<machine>`` on the host, ``host0`` in the box, a /30 between them."""

    host_ip: str
    box_ip: str
    prefix: int = 30


@dataclass
class Box:
    """One booted (or bootable) box on an overlay of a cached root filesystem."""

    rootfs: RootFs
    run_dir: Path
    machine: str = "pibox"
    network: Network = field(default_factory=lambda: Network("10.231.7.1", "10.231.7.2"))
    #: (host path, path in the box) bound read-write at every boot
    binds: list[tuple[str, str]] = field(default_factory=list)
    #: extra environment for nspawn itself (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1...)
    nspawn_env: dict[str, str] = field(default_factory=dict)
    #: extra nspawn arguments (--system-call-filter=bpf...)
    nspawn_args: list[str] = field(default_factory=list)
    #: fixes applied in this box (see EMULATION_FIXES), for the results
    fixes: list[Fix] = field(default_factory=list)
    #: host monotonic time of the last boot's start, and what is-system-running said then
    boot_started: float = 0.0
    system_state: str = ""
    _nspawn: subprocess.Popen[bytes] | None = None
    _leader: int | None = None
    _boots: int = 0

    @property
    def emulated(self) -> bool:
        return ARCHES[self.rootfs.arch][1] is not None

    @property
    def root(self) -> Path:
        return self.run_dir / "merged"

    @property
    def console_log(self) -> Path:
        return self.run_dir / f"console-{self._boots}.log"

    @property
    def host_iface(self) -> str:
        return ("ve-" + self.machine)[:15]

    def path(self, p: str) -> Path:
        """A path of the box, seen from the host (through the overlay)."""
        return self.root / p.lstrip("/")

    def write(self, p: str, text: str, mode: int = 0o644) -> None:
        f = self.path(p)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        f.chmod(mode)

    # -- file system -------------------------------------------------------------------------
    def mount(self) -> None:
        """A fresh overlay: reads come from the cached tree, writes go to ``run_dir/upper``."""
        for d in ("upper", "work", "merged"):
            (self.run_dir / d).mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.root):
            return
        opts = (
            f"lowerdir={self.rootfs.path},upperdir={self.run_dir}/upper,workdir={self.run_dir}/work"
        )
        out = run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)])
        if out.returncode != 0:
            raise UserError(
                f"cannot mount an overlay over {self.rootfs.path}: {out.stderr.strip()}",
                "the cache folder must be on a local file system with overlayfs support "
                "(ext4, xfs, btrfs); give --cache DIR on one",
            )

    def unmount(self) -> None:
        if os.path.ismount(self.root):
            out = run(["umount", str(self.root)])
            if out.returncode != 0:
                run(["umount", "--lazy", str(self.root)])

    def apply_emulation_fixes(self) -> None:
        """The box-only fixes of EMULATION_FIXES (only under emulation), recorded in ``fixes``."""
        self.write("/etc/hostname", self.machine + "\n")
        if not self.emulated:
            return
        self.write("/etc/pibox/cpuinfo", FAKE_CPUINFO)
        self.write(
            "/etc/systemd/system.conf.d/pibox-qemu.conf",
            "# pibox: emulation only (lab/pibox.py)\n"
            f"[Manager]\nDefaultEnvironment=QEMU_CPU={QEMU_CPU}\n",
        )
        for unit in sorted(self.path("/usr/lib/systemd/system").glob("*.service")):
            if any(ln.startswith("LoadCredential=") for ln in unit.read_text().splitlines()):
                self.drop_no_credentials(unit.name)
        self.fixes.extend(EMULATION_FIXES)

    #: a service's drop-in (and systemd-run properties) for the fake cpuinfo
    CPUINFO_BIND = "BindReadOnlyPaths=/etc/pibox/cpuinfo:/proc/cpuinfo"

    def service_fixes(self, unit: str) -> None:
        """The emulation fixes a service of ours needs in the box: no LoadCredential=, and the
        fake cpuinfo in its own /proc (ProtectProc= mounts a fresh one). None natively."""
        if not self.emulated:
            return
        self.drop_no_credentials(unit)
        self.write(
            f"/etc/systemd/system/{unit}.d/pibox-cpuinfo.conf",
            "# pibox: qemu-user shows the host's x86 /proc/cpuinfo, on which LiteRT's cpuinfo "
            f"crashes (lab/pibox.py)\n[Service]\n{self.CPUINFO_BIND}\n",
        )

    def drop_no_credentials(self, unit: str) -> None:
        self.write(
            f"/etc/systemd/system/{unit}.d/pibox-no-credentials.conf",
            "# pibox: qemu-user cannot make the mount namespace credentials need (lab/pibox.py)\n"
            "[Service]\nLoadCredential=\n",
        )

    # -- boot and stop -----------------------------------------------------------------------
    def boot(self, timeout_s: float = 300.0) -> float:
        """Start systemd as PID 1 in the box; returns seconds until ``is-system-running`` says
        running (or degraded: the failed units are in ``failed_units``)."""
        self._boots += 1
        argv = [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            "-D",
            str(self.root),
            "--boot",
            f"--machine={self.machine}",
            "--console=read-only",
            "--network-veth",
        ]
        env = {**os.environ, **self.nspawn_env}
        if self.emulated:
            argv += [f"--setenv=QEMU_CPU={QEMU_CPU}", "--bind-ro=/etc/pibox/cpuinfo:/proc/cpuinfo"]
            env["QEMU_CPU"] = QEMU_CPU
        argv += [f"--bind={h}:{b}" for h, b in self.binds]
        argv += self.nspawn_args
        t0 = time.monotonic()
        with self.console_log.open("wb") as log:
            self._nspawn = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.boot_started = t0
        deadline = t0 + timeout_s
        while self._leader is None:
            if self._nspawn.poll() is not None:
                raise UserError(
                    f"systemd-nspawn exited ({self._nspawn.returncode}) before the box booted: "
                    + self.console_tail(),
                    "see the console log above",
                )
            with contextlib.suppress(OSError, ValueError):
                kids = Path(
                    f"/proc/{self._nspawn.pid}/task/{self._nspawn.pid}/children"
                ).read_text()
                if kids.split():
                    self._leader = int(kids.split()[0])
            if time.monotonic() > deadline:
                raise UserError("the box did not start", self.console_tail())
            time.sleep(0.1)
        state = ""
        while time.monotonic() < deadline:
            out = self.sh("systemctl is-system-running", check=False, timeout_s=60)
            state = out.stdout.strip()
            if state in ("running", "degraded"):
                break
            if self._nspawn.poll() is not None:
                raise UserError(
                    f"the box stopped while booting: {self.console_tail()}", "see above"
                )
            time.sleep(0.5)
        else:
            raise UserError(
                f"the box did not finish booting in {timeout_s:.0f} s (is-system-running: "
                f"{state or '?'})",
                self.console_tail(),
            )
        booted = time.monotonic() - t0
        self.system_state = state
        self._address()
        return booted

    def failed_units(self) -> list[str]:
        out = self.sh("systemctl list-units --failed --plain --no-legend", check=False)
        return [ln.split()[0] for ln in out.stdout.splitlines() if ln.strip()]

    def _address(self) -> None:
        """Address both ends of the veth pair (no networkd on either side to do it)."""
        n = self.network
        for argv in (
            ["ip", "addr", "replace", f"{n.host_ip}/{n.prefix}", "dev", self.host_iface],
            ["ip", "link", "set", self.host_iface, "up"],
        ):
            out = run(argv)
            if out.returncode != 0:
                raise UserError(f"{shlex.join(argv)}: {out.stderr.strip()}", "is veth supported?")
        assert self._leader is not None
        for argv in (
            ["ip", "addr", "replace", f"{n.box_ip}/{n.prefix}", "dev", "host0"],
            ["ip", "link", "set", "host0", "up"],
            ["ip", "link", "set", "lo", "up"],
        ):
            out = run(["nsenter", f"--target={self._leader}", "--net", *argv])
            if out.returncode != 0:
                raise UserError(
                    f"in the box: {shlex.join(argv)}: {out.stderr.strip()}", "see above"
                )

    def console_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.console_log.read_text(errors="replace")
            return " | ".join(ln.strip() for ln in text.splitlines()[-lines:] if ln.strip())
        return "(no console output)"

    @property
    def running(self) -> bool:
        return self._nspawn is not None and self._nspawn.poll() is None

    def poweroff(self, timeout_s: float = 120.0) -> float:
        """Power the box off from inside and wait for nspawn to end; returns the seconds taken.
        A box that does not stop in time is killed (SIGKILL to nspawn, which takes the box's
        processes with it)."""
        if self._nspawn is None:
            return 0.0
        t0 = time.monotonic()
        if self._nspawn.poll() is None:
            self.sh(
                "systemctl start poweroff.target --job-mode=replace-irreversibly --no-block",
                check=False,
            )
            try:
                self._nspawn.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._nspawn.send_signal(signal.SIGKILL)
                self._nspawn.wait(30)
        self._nspawn = None
        self._leader = None
        return time.monotonic() - t0

    # -- commands inside ---------------------------------------------------------------------
    def environment(self) -> list[str]:
        env = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            "SYSTEMD_PAGER=",
            "SYSTEMD_COLORS=0",
            "HOME=/root",
            "TERM=dumb",
        ]
        if self.emulated:
            env.append(f"QEMU_CPU={QEMU_CPU}")
        return env

    def exec(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout_s: float = 600.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the box (all its namespaces, its root), as root."""
        if self._leader is None:
            raise UserError("the box is not running", "boot it first")
        full = ["nsenter", f"--target={self._leader}", "--all", "--", "/usr/bin/env", "-i",
                *self.environment(), *argv]  # fmt: skip
        try:
            out = subprocess.run(
                full, capture_output=True, text=True, timeout=timeout_s, input=input
            )
        except subprocess.TimeoutExpired as e:
            raise UserError(
                f"in the box: {shlex.join(argv)} did not finish in {timeout_s:.0f} s",
                str(e.stderr or "")[-500:],
            ) from None
        if check and out.returncode != 0:
            raise UserError(
                f"in the box: {shlex.join(argv)} failed ({out.returncode}): "
                + (out.stderr or out.stdout).strip()[-1500:],
                "see above",
            )
        return out

    def sh(
        self, script: str, check: bool = True, timeout_s: float = 600.0
    ) -> subprocess.CompletedProcess[str]:
        return self.exec(["/bin/sh", "-c", script], check=check, timeout_s=timeout_s)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p ...`` as a dict."""
        out = self.exec(
            ["systemctl", "show", unit, *(f"--property={p}" for p in props)], check=False
        )
        return dict(ln.split("=", 1) for ln in out.stdout.splitlines() if "=" in ln)

    def journal(self, *args: str) -> list[dict[str, object]]:
        """``journalctl -o json ARGS`` as records."""
        out = self.exec(["journalctl", "--no-pager", "-o", "json", *args], check=False)
        records: list[dict[str, object]] = []
        for ln in out.stdout.splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(ln)
                if isinstance(rec, dict):
                    records.append(rec)
        return records


@contextlib.contextmanager
def mounted(box: Box, keep: bool) -> Iterator[Box]:
    """The box's overlay for the duration; powered off, unmounted and (unless ``keep``)
    deleted afterwards."""
    box.mount()
    try:
        yield box
    finally:
        with contextlib.suppress(Exception):
            box.poweroff(60)
        box.unmount()
        if not keep:
            shutil.rmtree(box.run_dir, ignore_errors=True)


def message_text(rec: dict[str, object]) -> str:
    """A journal record's MESSAGE (journald stores non-UTF-8 text as a list of bytes)."""
    m = rec.get("MESSAGE", "")
    if isinstance(m, list):
        return bytes(int(b) for b in m).decode("utf-8", "replace")
    return str(m)
