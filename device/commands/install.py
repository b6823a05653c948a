"""Install, upgrade or remove the bedside service on this machine (or under --root DIR).

From a checkout, on Raspberry Pi OS Bookworm, a Jetson or Debian 12, as root:
  sudo bash systemd/install.sh [options]     (needs only python3 and python3-venv)
  sudo bedside install [options]             (the same, from an installed bedside)

Steps, in order. Each prints [ok] when there is nothing to do, so a second run changes
nothing and says so; --dry-run prints every step and changes nothing.
  1. the system user 'bedside' in groups dialout (serial ports) and audio (capture);
  2. /etc/bedside (root:bedside 0750); the config /etc/bedside/bedside.toml (0640), written
     only if none is there: --config FILE, else the example with every key commented out;
     /etc/bedside/mqtt-password (root 0600, empty: anonymous), which the unit hands to the
     service as a credential;
  3. a virtual environment /opt/bedside/venvs/<version>-<fingerprint> with the software (pip),
     the models and the docs; skipped when the one in use is that same build;
  4. the new environment must accept the config (bedside run --check-config) before it is
     used; if not, it is deleted and the one in use stays;
  5. the unit /etc/systemd/system/bedside.service; /opt/bedside/venv, the path the unit runs,
     switched atomically to the new environment; daemon-reload; enable;
  6. start, or restart after an upgrade: the unit is Type=notify, so this returns once the
     daemon has said READY=1, or failed. A failed first start puts the previous environment
     (and unit) back and restarts that: rollback. A fresh example config names no sensor yet,
     so after a first install with it the service is enabled but not started;
  7. environments older than the previous one are removed (the previous stays for rollback).
An upgrade never touches the config (/etc/bedside) or the store (/var/lib/bedside).

--uninstall disables and stops the service and removes the unit and /opt/bedside; with
--purge also /etc/bedside, /var/lib/bedside and the user.

--root DIR writes everything under DIR, for CI and for trying the install out: the environment is
built and checked for real, but commands that would change this machine (useradd, usermod,
chown, systemctl) are printed and recorded in DIR/var/log/bedside-install.log instead; users
live in DIR/etc/passwd and DIR/etc/group, enabling is the WantedBy= symlink, and starting is a
trial run of the unit's command with a notify socket, which must say READY=1 within 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from device import __version__
from device.errors import UserError

USER = "bedside"
GROUPS = ("dialout", "audio")
SERVICE = "bedside.service"
PREFIX = "/opt/bedside"
VENVS = f"{PREFIX}/venvs"
CURRENT = f"{PREFIX}/venv"
CONFIG_DIR = "/etc/bedside"
CONFIG = f"{CONFIG_DIR}/bedside.toml"
PASSWORD = f"{CONFIG_DIR}/mqtt-password"
UNIT = f"/etc/systemd/system/{SERVICE}"
WANTS = f"/etc/systemd/system/multi-user.target.wants/{SERVICE}"
STATE = "/var/lib/bedside"
RECORD = "/var/log/bedside-install.log"
#: a build is complete once this file is written (the last step of building it)
MARKER = ".bedside-build.json"
#: a trial start (--root) must say READY=1 within this time
TRIAL_READY_S = 60.0
#: source paths whose content makes a build (the fingerprint in the environment's name)
#: what goes into a build (models/ is the package device.models in the wheel)
SOURCE_PATHS = (
    "pyproject.toml", "README.md", "device", "models", "convert", "lab", "station", "docs",
)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="print every action; change nothing")
    p.add_argument(
        "--root",
        metavar="DIR",
        help="install under DIR; record instead of run useradd/chown/systemctl (for CI)",
    )
    p.add_argument("--uninstall", action="store_true", help="stop, disable and remove the service")
    p.add_argument(
        "--purge",
        action="store_true",
        help="with --uninstall: also remove the config, the store and the user",
    )
    p.add_argument(
        "--source",
        metavar="DIR",
        help="the bedside-edge checkout to install (default: the one this command runs from)",
    )
    p.add_argument(
        "--wheel",
        metavar="FILE",
        help="install this built wheel instead of building the checkout (unit, models and "
        "example config still come from --source)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="initial /etc/bedside/bedside.toml, used only when none exists; "
        "the service is then started at once",
    )
    p.add_argument(
        "--pip-args",
        metavar="ARGS",
        default="",
        help="extra pip install arguments, e.g. '--no-index --find-links /media/usb/wheels'",
    )
    p.add_argument(
        "--venv-site-packages",
        metavar="DIR",
        help="let the environment import packages already installed in DIR (a .pth file) "
        "instead of installing them: offline machines and the tests",
    )


# -- where things are -------------------------------------------------------------------------
class Host:
    """This machine (root "/") or a folder standing in for one (--root); prints every action."""

    def __init__(self, root: Path | None, dry_run: bool) -> None:
        self.root = root
        self.dry_run = dry_run
        self.changes = 0

    def path(self, p: str) -> Path:
        return (self.root or Path("/")) / p.lstrip("/")

    # -- reporting ---------------------------------------------------------------------------
    def ok(self, text: str) -> None:
        print(f"{'[ok]':<8}{text}", flush=True)

    def act(self, text: str) -> bool:
        """Announce a change; True when it is to be carried out (not a dry run)."""
        self.changes += 1
        print(f"{'[would]' if self.dry_run else '[do]':<8}{text}", flush=True)
        return not self.dry_run

    def note(self, text: str) -> None:
        print(f"        {text}", flush=True)

    # -- commands ----------------------------------------------------------------------------
    def system(self, argv: list[str], check: bool = True) -> str | None:
        """A command that changes the running system: run it, or under --root record it.
        Returns None when it succeeded (or was not run), else its error output; ``check``
        makes a failure an error."""
        line = shlex.join(argv)
        if self.dry_run:
            self.note(f"$ {line}")
            return None
        if self.root is not None:
            self.note(f"$ {line}   (--root: recorded, not run)")
            rec = self.path(RECORD)
            rec.parent.mkdir(parents=True, exist_ok=True)
            with rec.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            return None
        self.note(f"$ {line}")
        try:
            out = subprocess.run(argv, capture_output=True, text=True)
        except FileNotFoundError:
            fix = "is this a systemd machine? (--root DIR to try the install)"
            raise UserError(f"{argv[0]} not found", fix) from None
        if out.returncode == 0:
            return None
        error = (out.stderr or out.stdout).strip() or f"exit status {out.returncode}"
        if check:
            raise UserError(f"{line} failed: {error}", "see above")
        return error

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """A command that works inside our own folders (venv, pip, checks): always run."""
        self.note(f"$ {shlex.join(argv)}")
        # from "/": the current directory must not put another copy of ``device`` on sys.path
        return subprocess.run(argv, capture_output=True, text=True, env=_clean_env(), cwd="/")


def _clean_env() -> dict[str, str]:
    # the new environment must import its own copy of the software, not ours
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# -- the user ---------------------------------------------------------------------------------
def _read_db(path: Path) -> list[list[str]]:
    try:
        return [line.split(":") for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def user_state(h: Host) -> tuple[bool, set[str]]:
    """(the user exists, its supplementary groups)."""
    if h.root is None:
        import grp
        import pwd

        try:
            pwd.getpwnam(USER)
        except KeyError:
            return False, set()
        return True, {g.gr_name for g in grp.getgrall() if USER in g.gr_mem}
    exists = any(e[0] == USER for e in _read_db(h.path("/etc/passwd")))
    groups = {
        e[0] for e in _read_db(h.path("/etc/group")) if len(e) > 3 and USER in e[3].split(",")
    }
    return exists, groups


def _simulate_user(h: Host, groups: tuple[str, ...]) -> None:
    """--root: what useradd/usermod would have written, in DIR/etc/passwd and DIR/etc/group."""
    passwd, group = h.path("/etc/passwd"), h.path("/etc/group")
    passwd.parent.mkdir(parents=True, exist_ok=True)
    users = _read_db(passwd)
    entries = _read_db(group)
    if not any(e[0] == USER for e in users):
        system_ids = [int(e[2]) + 1 for e in users if e[2].isdigit() and int(e[2]) < 1000]
        uid = str(max([999, *system_ids]))
        users.append([USER, "x", uid, uid, "bedside-edge monitor", STATE, "/usr/sbin/nologin"])
        entries.append([USER, "x", uid, ""])
    for name in groups:
        e = next((e for e in entries if e[0] == name), None)
        if e is None:
            e = [name, "x", str(20 if name == "dialout" else 29), ""]
            entries.append(e)
        members = [m for m in e[3].split(",") if m] if len(e) > 3 else []
        if USER not in members:
            e[3:] = [",".join([*members, USER])]
    passwd.write_text("".join(":".join(e) + "\n" for e in users))
    group.write_text("".join(":".join(e) + "\n" for e in entries))


def ensure_user(h: Host) -> None:
    exists, groups = user_state(h)
    missing = tuple(g for g in GROUPS if g not in groups)
    if exists and not missing:
        h.ok(f"system user {USER} exists, in groups {', '.join(GROUPS)}")
        return
    if not exists:
        argv = [
            "useradd", "--system", "--user-group", "--no-create-home", "--home-dir", STATE,
            "--shell", "/usr/sbin/nologin", "--groups", ",".join(GROUPS), USER,
        ]  # fmt: skip
        h.act(f"create system user {USER} (groups {', '.join(GROUPS)})")
    else:
        argv = ["usermod", "--append", "--groups", ",".join(missing), USER]
        h.act(f"add user {USER} to groups {', '.join(missing)}")
    h.system(argv)
    if h.root is not None and not h.dry_run:
        _simulate_user(h, GROUPS)


# -- config -----------------------------------------------------------------------------------
def _chown(h: Host, path: Path, owner: str) -> None:
    shown = str(path.relative_to(h.root)) if h.root else str(path)
    if h.root is not None or h.dry_run:
        h.system(["chown", owner, "/" + shown.lstrip("/")])
        return
    import grp
    import pwd

    user, _, group = owner.partition(":")
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid if group else -1)


def ensure_config(h: Host, source: Path, given: Path | None) -> bool:
    """The config directory, the config (only if none) and the credential file. Returns True
    when the config now in place is the fresh example (it names no sensor yet)."""
    cdir, cfg, pw = h.path(CONFIG_DIR), h.path(CONFIG), h.path(PASSWORD)
    if cdir.is_dir():
        h.ok(f"{CONFIG_DIR} exists")
    elif h.act(f"create {CONFIG_DIR} (root:{USER} 0750)"):
        cdir.mkdir(parents=True, mode=0o750)
        cdir.chmod(0o750)
        _chown(h, cdir, f"root:{USER}")
    fresh = False
    if cfg.exists():
        h.ok(f"{CONFIG} kept as it is" + (f" (--config {given} not used)" if given else ""))
    else:
        origin = given or source / "systemd" / "bedside.toml"
        fresh = given is None
        what = "given config" if given else "example config, every key commented out"
        if h.act(f"write {CONFIG} from {origin} ({what}; root:{USER} 0640)"):
            cfg.write_bytes(origin.read_bytes())
            cfg.chmod(0o640)
            _chown(h, cfg, f"root:{USER}")
    if pw.exists():
        h.ok(f"{PASSWORD} exists (the broker password credential)")
    elif h.act(f"create {PASSWORD} empty (root 0600): write the broker password into it"):
        pw.touch(mode=0o600)
        pw.chmod(0o600)
    return fresh


# -- the software -----------------------------------------------------------------------------
def _files(base: Path, rel: str) -> Iterator[Path]:
    p = base / rel
    if p.is_file():
        yield p
    elif p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and ".egg-info" not in str(f):
                yield f


def build_id(source: Path, wheel: Path | None, options: list[str]) -> str:
    """<version>-<12 hex digits of what goes into the build>: the same checkout, wheel and pip
    options give the same name, which is how a second run knows there is nothing to do."""
    digest = hashlib.sha256()
    for rel in SOURCE_PATHS:
        for f in _files(source, rel):
            digest.update(str(f.relative_to(source)).encode() + b"\0" + f.read_bytes() + b"\0")
    if wheel is not None:
        digest.update(b"wheel\0" + wheel.read_bytes())
    digest.update(json.dumps([sys.version_info[:2], options]).encode())
    return f"{_version(source)}-{digest.hexdigest()[:12]}"


def _version(source: Path) -> str:
    for line in (source / "device" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return __version__


def complete(venv: Path) -> bool:
    return (venv / MARKER).is_file() and (venv / "bin" / "bedside").exists()


def build_commands(venv: Path, source: Path, args: argparse.Namespace) -> list[list[str]]:
    """The two commands that make an environment: create it, pip install the software."""
    target = str(Path(args.wheel).resolve()) if args.wheel else str(source)
    py = str(venv / "bin" / "python")
    return [
        [sys.executable, "-m", "venv", str(venv)],
        [py, "-m", "pip", "install", "--quiet", *shlex.split(args.pip_args), target],
    ]


def build_venv(h: Host, venv: Path, source: Path, args: argparse.Namespace) -> None:
    """Create ``venv`` with the software, its models and docs; raise UserError on failure."""
    if venv.exists():
        h.note(f"removing an incomplete {venv.name} first")
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    py = venv / "bin" / "python"

    def step(argv: list[str], what: str) -> str:
        out = h.run(argv)
        if out.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            detail = (out.stderr or out.stdout).strip()[-3000:]
            raise UserError(f"{what} failed:\n{detail}", "see above")
        return out.stdout

    create, pip = build_commands(venv, source, args)
    step(create, "creating the virtual environment")
    if args.venv_site_packages:
        site = step([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], "")
        Path(site.strip(), "bedside-deps.pth").write_text(
            str(Path(args.venv_site_packages).resolve()) + "\n"
        )
    step(pip, "pip install")
    # the package carries its models (models/ -> device/models): check the installed copy has them
    count = step(
        [
            str(py),
            "-c",
            "from device.inference import shipped_models_dir as d; "
            "print(len(list(d().glob('*.tflite'))))",
        ],
        "importing the installed software",
    ).strip()
    h.note(f"the package carries {count} model(s)")
    docs = venv / "share" / "doc" / "bedside-edge"
    docs.mkdir(parents=True, exist_ok=True)
    for md in sorted((source / "docs").glob("*.md")):
        shutil.copy2(md, docs / md.name)
    (venv / MARKER).write_text(json.dumps({"build": venv.name, "source": str(source)}) + "\n")


def check_config(h: Host, venv: Path) -> tuple[bool, str]:
    out = h.run(
        [str(venv / "bin" / "bedside"), "run", "--config", str(h.path(CONFIG)), "--check-config"]
    )
    return out.returncode == 0, (out.stderr or out.stdout).strip()


def current_target(h: Host) -> Path | None:
    link = h.path(CURRENT)
    if not link.is_symlink():
        return None
    return h.path(VENVS) / Path(os.readlink(link)).name


def switch(h: Host, venv: Path) -> None:
    """Point /opt/bedside/venv at ``venv`` in one rename (never a moment without one)."""
    link = h.path(CURRENT)
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path("venvs") / venv.name)
    os.replace(tmp, link)


# -- systemd ----------------------------------------------------------------------------------
class Systemd:
    """systemctl on this machine, or under --root its effect on the folder (the WantedBy=
    symlink) and a trial start of the unit's command."""

    def __init__(self, h: Host) -> None:
        self.h = h

    def _query(self, verb: str) -> bool:
        try:
            out = subprocess.run(["systemctl", verb, "--quiet", SERVICE], capture_output=True)
        except FileNotFoundError:  # no systemd here: nothing is enabled or running
            return False
        return out.returncode == 0

    def enabled(self) -> bool:
        if self.h.root is not None:
            return self.h.path(WANTS).is_symlink()
        return self._query("is-enabled")

    def active(self) -> bool:
        if self.h.root is not None:
            return self._sim_state().get("active", False) is True
        return self._query("is-active")

    def daemon_reload(self) -> None:
        self.h.system(["systemctl", "daemon-reload"])

    def enable(self) -> None:
        self.h.system(["systemctl", "enable", SERVICE])
        if self.h.root is not None and not self.h.dry_run:
            wants = self.h.path(WANTS)
            wants.parent.mkdir(parents=True, exist_ok=True)
            if not wants.is_symlink():
                wants.symlink_to(UNIT)

    def disable_now(self) -> None:
        self.h.system(["systemctl", "disable", "--now", SERVICE])
        if self.h.root is not None and not self.h.dry_run:
            if self.h.path(WANTS).is_symlink():
                self.h.path(WANTS).unlink()
            self._sim_set(active=False)

    def start(self, verb: str) -> tuple[bool, str]:
        """``start`` or ``restart``; (it is running and said READY, message)."""
        error = self.h.system(["systemctl", verb, SERVICE], check=False)
        if self.h.dry_run:
            return True, ""
        if self.h.root is not None:
            ok, msg = self._trial_start()
            self._sim_set(active=ok)
            return ok, msg
        if error is not None:
            return False, f"{error}; see journalctl -u {SERVICE} -n 50"
        if not self._query("is-active"):
            return False, f"the service is not active: see journalctl -u {SERVICE} -n 50"
        return True, ""

    # -- --root ------------------------------------------------------------------------------
    def _sim_path(self) -> Path:
        return self.h.path(RECORD).with_suffix(".state.json")

    def _sim_state(self) -> dict[str, object]:
        try:
            data = json.loads(self._sim_path().read_text())
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def _sim_set(self, **values: object) -> None:
        p = self._sim_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({**self._sim_state(), **values}) + "\n")

    def _trial_start(self) -> tuple[bool, str]:
        """Run the unit's command (paths under the root) with a notify socket, as systemd
        would; it must say READY=1 within TRIAL_READY_S. Then stop it with SIGTERM."""
        h = self.h
        argv = [str(h.path(CURRENT) / "bin" / "bedside"), "run", "--config", str(h.path(CONFIG))]
        with tempfile.TemporaryDirectory(prefix="bedside-trial-") as d:
            addr = os.path.join(d, "notify")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(addr)
            sock.settimeout(0.5)
            state = Path(d, "state")
            state.mkdir()
            env = {**_clean_env(), "NOTIFY_SOCKET": addr, "STATE_DIRECTORY": str(state)}
            log = Path(d, "log")
            with log.open("wb") as f:
                proc = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT)
            ready = False
            deadline = time.monotonic() + TRIAL_READY_S
            try:
                while not ready and proc.poll() is None and time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        ready = b"READY=1" in sock.recv(4096).split(b"\n")
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                sock.close()
            text = log.read_text(errors="replace").strip()
        h.note(f"trial start: {'READY=1' if ready else 'no READY=1'}")
        return ready, "" if ready else f"no READY=1 from {argv[0]}: {text[-1500:]}"


# -- install / uninstall ------------------------------------------------------------------------
def find_source(given: str | None) -> Path:
    src = Path(given) if given else Path(__file__).resolve().parents[2]
    if not all((src / p).is_file() for p in ("pyproject.toml", "systemd/bedside.service")):
        raise UserError(
            f"{src} is not a bedside-edge checkout (no pyproject.toml and systemd/bedside.service)",
            "give --source CHECKOUT",
        )
    return src.resolve()


def install(h: Host, args: argparse.Namespace) -> int:
    source = find_source(args.source)
    given = Path(args.config).resolve() if args.config else None
    if given is not None and not given.is_file():
        raise UserError(f"--config {given}: no such file", "give an existing TOML file")
    print(f"bedside install: {source} -> {h.root or '/'}{' (dry run)' if h.dry_run else ''}")
    ensure_user(h)
    fresh = ensure_config(h, source, given)

    options = [args.pip_args, args.venv_site_packages or ""]
    build = build_id(source, Path(args.wheel) if args.wheel else None, options)
    venv = h.path(VENVS) / build
    previous = current_target(h)
    switch_to: Path | None = None
    if previous == venv and complete(venv):
        h.ok(f"environment {CURRENT} -> venvs/{build} is this build")
    else:
        if complete(venv):
            h.ok(f"environment venvs/{build} already built")
        elif h.act(f"build environment {VENVS}/{build} (pip install, models, docs)"):
            build_venv(h, venv, source, args)
        else:
            for argv in build_commands(venv, source, args):
                h.note(f"$ {shlex.join(argv)}")
        check = [str(venv / "bin" / "bedside"), "run", "--config", str(h.path(CONFIG))]
        if not h.act("check the config with the new environment (bedside run --check-config)"):
            h.note(f"$ {shlex.join([*check, '--check-config'])}")
        else:
            good, message = check_config(h, venv)
            if not good:
                shutil.rmtree(venv, ignore_errors=True)
                keep = f"venvs/{previous.name} stays in use" if previous else "nothing installed"
                raise UserError(
                    f"the new environment rejects {CONFIG}: {message}; removed it, {keep}",
                    "fix the config (or the software), then run the install again",
                )
            h.note(message.splitlines()[-1] if message else "config accepted")
        switch_to = venv

    unit_text = (source / "systemd" / "bedside.service").read_text()
    unit = h.path(UNIT)
    old_unit = unit.read_text() if unit.exists() else None
    unit_changed = old_unit != unit_text
    if not unit_changed:
        h.ok(f"{UNIT} is up to date")
    elif h.act(f"{'update' if old_unit else 'write'} {UNIT}"):
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(unit_text)
        unit.chmod(0o644)
    if switch_to is not None and h.act(
        f"switch {CURRENT} -> venvs/{switch_to.name}"
        + (f" (was venvs/{previous.name})" if previous else "")
    ):
        switch(h, switch_to)
    sd = Systemd(h)
    if unit_changed:
        h.act("reload systemd's units")
        sd.daemon_reload()
    if sd.enabled():
        h.ok(f"{SERVICE} is enabled")
    else:
        h.act(f"enable {SERVICE} (start at boot)")
        sd.enable()

    changed_software = switch_to is not None or unit_changed
    if fresh or unconfigured(h, source):
        h.ok(f"not starting: {CONFIG} is the example and names no sensor yet")
        h.note(f"edit it (bed id, broker, [serial] url...), then: systemctl start {SERVICE}")
    elif changed_software or not sd.active():
        verb = "restart" if changed_software and sd.active() else "start"
        h.act(f"{verb} {SERVICE} (returns once it said READY=1)")
        good, message = sd.start(verb)
        if not good:
            rollback(h, sd, previous, old_unit, unit_changed, switch_to)
            raise UserError(
                f"{SERVICE} did not start with venvs/{build}: {message}",
                "rolled back to the previous environment"
                if previous and switch_to
                else f"see journalctl -u {SERVICE}",
            )
    else:
        h.ok(f"{SERVICE} is running")
    prune(h, keep={p.name for p in (switch_to, previous, current_target(h)) if p is not None})
    if h.changes == 0:
        print("bedside install: nothing to change: already installed and up to date")
    else:
        print(f"bedside install: {h.changes} change(s){' would be made' if h.dry_run else ''}")
    return 0


def unconfigured(h: Host, source: Path) -> bool:
    """The config in place is still the untouched example (no sensor, no broker set)."""
    try:
        return h.path(CONFIG).read_bytes() == (source / "systemd" / "bedside.toml").read_bytes()
    except FileNotFoundError:
        return False


def rollback(
    h: Host,
    sd: Systemd,
    previous: Path | None,
    old_unit: str | None,
    unit_changed: bool,
    switched: Path | None,
) -> None:
    """Put the previous environment and unit back and start them again."""
    if switched is None or previous is None:
        return
    h.act(f"roll back: {CURRENT} -> venvs/{previous.name}")
    switch(h, previous)
    if unit_changed and old_unit is not None:
        h.path(UNIT).write_text(old_unit)
        sd.daemon_reload()
    good, message = sd.start("restart")
    h.note("previous version running again" if good else f"previous version failed too: {message}")


def prune(h: Host, keep: set[str]) -> None:
    venvs = h.path(VENVS)
    if not venvs.is_dir():
        return
    for old in sorted(venvs.iterdir()):
        if old.name not in keep and h.act(f"remove old environment venvs/{old.name}"):
            shutil.rmtree(old)


def uninstall(h: Host, purge: bool) -> int:
    print(f"bedside install --uninstall: {h.root or '/'}{' (dry run)' if h.dry_run else ''}")
    sd = Systemd(h)
    unit = h.path(UNIT)
    if sd.enabled() or sd.active():
        h.act(f"stop and disable {SERVICE}")
        sd.disable_now()
    else:
        h.ok(f"{SERVICE} is neither enabled nor running")
    if unit.exists():
        if h.act(f"remove {UNIT}"):
            unit.unlink()
        sd.daemon_reload()
    else:
        h.ok(f"{UNIT} is not there")
    targets = [(PREFIX, "the software")]
    if purge:
        targets += [(CONFIG_DIR, "the config"), (STATE, "the store (alarm outbox)")]
    for path, what in targets:
        p = h.path(path)
        if p.exists() or p.is_symlink():
            if h.act(f"remove {path} ({what})"):
                shutil.rmtree(p)
        else:
            h.ok(f"{path} is not there")
    if not purge:
        h.ok(f"kept {CONFIG_DIR} and {STATE} (--purge removes them)")
    elif user_state(h)[0]:
        h.act(f"remove user {USER}")
        h.system(["userdel", USER])
        if h.root is not None and not h.dry_run:
            for db in ("/etc/passwd", "/etc/group"):
                entries = _read_db(h.path(db))
                kept = [e for e in entries if e[0] != USER]
                for e in kept:
                    if len(e) > 3:
                        e[3] = ",".join(m for m in e[3].split(",") if m and m != USER)
                h.path(db).write_text("".join(":".join(e) + "\n" for e in kept))
    print("bedside install --uninstall: nothing to change" if h.changes == 0 else "done")
    return 0


def run(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve() if args.root else None
    if root is None and not args.dry_run and os.geteuid() != 0:
        raise UserError("installing the service needs root", "run it with sudo, or use --root DIR")
    if args.purge and not args.uninstall:
        raise UserError("--purge goes with --uninstall", "bedside install --uninstall --purge")
    h = Host(root, args.dry_run)
    if root is not None and not args.dry_run:
        root.mkdir(parents=True, exist_ok=True)
    return uninstall(h, args.purge) if args.uninstall else install(h, args)


def main(argv: list[str] | None = None) -> int:
    """``python -m device.commands.install``: runs with only the standard library (the
    checkout's systemd/install.sh uses it before any dependency is installed)."""
    p = argparse.ArgumentParser(
        prog="bedside install",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except UserError as e:
        print(f"bedside install: error: {e.message}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
