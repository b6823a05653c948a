"""``bedside install`` under a root folder (no real systemd, useradd or chown is touched):
a dry run, an install run twice (the second changes nothing), upgrades that are rejected by
the config check or fail their first start (both roll back), a good upgrade, and uninstall.

The environments are built for real (``python -m venv`` + ``pip install`` of a wheel of this
checkout); their dependencies come from the environment running the tests
(``--venv-site-packages``), so nothing is downloaded for them. Starting the service under
``--root`` is a trial run of the unit's command that must say READY=1 on a notify socket; here
it replays the bundled recording into the session's Mosquitto.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from device.compat import tomllib
from device.config import parse_config, sections
from device.config_example import example_toml

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device/data/bidmc_09_excerpt.csv.gz"
COPIED = (
    "pyproject.toml", "README.md", "device", "models", "convert", "lab", "station", "docs",
    "systemd",
)  # fmt: skip


# -- the example config --------------------------------------------------------------------
def test_example_config_is_generated_and_up_to_date() -> None:
    assert (ROOT / "systemd/bedside.toml").read_text() == example_toml(), (
        "systemd/bedside.toml is out of date: python -m device.config_example "
        "> systemd/bedside.toml"
    )


def test_example_config_has_every_key_commented_and_uncomments_to_the_defaults() -> None:
    text = example_toml()
    assert tomllib.loads(text) == {}  # everything commented out
    setting = re.compile(r"^#(\[[\w.]+\]|[A-Za-z_]\w* = .*)$")
    uncommented = "\n".join(ln[1:] if setting.match(ln) else ln for ln in text.splitlines())
    cfg = parse_config(tomllib.loads(uncommented))
    defaults = parse_config({})
    assert cfg == defaults
    # every key of every section is there
    import dataclasses

    for name, section in sections():
        for f in dataclasses.fields(section):
            assert re.search(rf"^#{f.name} = |^# \({f.name}: ", text, re.M), f"{name}.{f.name}"


# -- helpers ---------------------------------------------------------------------------------
def copy_source(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for rel in COPIED:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / rel)
    return dest


def build_wheel(source: Path, out: Path) -> Path:
    """A wheel of ``source``; without build isolation when this environment can build it,
    else the normal way (pip fetches the build backend)."""
    base = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)]
    done = subprocess.run([*base, "--no-build-isolation"], capture_output=True, text=True)
    if done.returncode != 0:
        done = subprocess.run(base, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def install(root: Path, source: Path, *extra: str, wheel: Path | None = None) -> tuple[int, str]:
    argv = [sys.executable, "-m", "device.commands.install", "--root", str(root)]
    argv += ["--source", str(source), *extra]
    if wheel is not None:
        argv += ["--wheel", str(wheel), "--pip-args", "--no-deps --no-index"]
        argv += ["--venv-site-packages", sysconfig.get_path("purelib")]
    env = {**os.environ, "PYTHONPATH": str(source)}
    out = subprocess.run(argv, cwd=source, env=env, capture_output=True, text=True, timeout=600)
    return out.returncode, out.stdout + out.stderr


def current(root: Path) -> str:
    return os.readlink(root / "opt/bedside/venv")


def venvs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "opt/bedside/venvs").iterdir())


def actions(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith(("[do]", "[would]"))]


# -- dry run ---------------------------------------------------------------------------------
def test_dry_run_prints_every_action_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    code, out = install(root, ROOT, "--dry-run")
    assert code == 0, out
    assert not root.exists(), "a dry run must not write anything"
    for expected in (
        "useradd --system",
        "--groups dialout,audio bedside",
        "write /etc/bedside/bedside.toml",
        "/etc/bedside/mqtt-password",
        "-m venv",
        "-m pip install",
        "--check-config",
        "write /etc/systemd/system/bedside.service",
        "switch /opt/bedside/venv -> venvs/",
        "systemctl daemon-reload",
        "systemctl enable bedside.service",
    ):
        assert expected in out, f"{expected!r} missing from the dry run:\n{out}"
    assert all(a.startswith("[would]") for a in actions(out)), out
    assert "would be made" in out


# -- install, idempotence, upgrades, rollback, uninstall ----------------------------------------
@pytest.mark.e2e
def test_install_upgrade_rollback_uninstall(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    src1 = copy_source(tmp_path / "src1")
    wheel1 = build_wheel(src1, tmp_path / "w1")
    bed_cfg = tmp_path / "bed.toml"
    bed_cfg.write_text(
        f'[bed]\nid = "inst-1"\n[mqtt]\nbroker = "{mosquitto.url}"\n'
        f'[replay]\npath = "{EXCERPT}"\nloop = true\nspeed = 5.0\n'
    )

    # 1. first install, with a config that names a source: it is started (trial: READY=1)
    code, out = install(root, src1, "--config", str(bed_cfg), wheel=wheel1)
    assert code == 0, out
    assert "[do]    start bedside.service" in out and "trial start: READY=1" in out, out
    passwd = (root / "etc/passwd").read_text()
    assert passwd.startswith("bedside:x:") and "/usr/sbin/nologin" in passwd
    groups = (root / "etc/group").read_text()
    assert "dialout:x:20:bedside" in groups and "audio:x:29:bedside" in groups
    assert (root / "etc/bedside/bedside.toml").read_text() == bed_cfg.read_text()
    pw = root / "etc/bedside/mqtt-password"
    assert pw.read_text() == "" and pw.stat().st_mode & 0o777 == 0o600
    assert (root / "etc/bedside/bedside.toml").stat().st_mode & 0o777 == 0o640
    unit = root / "etc/systemd/system/bedside.service"
    assert unit.read_text() == (src1 / "systemd/bedside.service").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/bedside.service"
    assert os.readlink(wants) == "/etc/systemd/system/bedside.service"
    first = current(root)
    assert (root / "opt/bedside/venv/bin/bedside").exists()
    assert list(
        (root / "opt/bedside/venv").glob("lib/python3*/site-packages/device/models/*.tflite")
    )
    assert (root / "opt/bedside/venv/share/doc/bedside-edge/deploy.md").is_file()
    recorded = (root / "var/log/bedside-install.log").read_text()
    assert "useradd --system" in recorded and "systemctl enable bedside.service" in recorded

    # the unit as installed passes systemd-analyze verify in this root (the real executable)
    analyze = shutil.which("systemd-analyze")
    if analyze and Path("/usr/lib/systemd/system").is_dir():
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        v = subprocess.run(
            [analyze, "verify", f"--root={root}", "bedside.service"], capture_output=True, text=True
        )
        assert v.returncode == 0 and not (v.stdout + v.stderr).strip(), v.stdout + v.stderr

    # 2. the same again: nothing changes, and it says so
    before = (recorded, venvs(root), unit.stat().st_mtime_ns)
    code, out = install(root, src1, "--config", str(bed_cfg), wheel=wheel1)
    assert code == 0, out
    assert actions(out) == [], out
    assert "nothing to change" in out
    after = (
        (root / "var/log/bedside-install.log").read_text(),
        venvs(root),
        unit.stat().st_mtime_ns,
    )
    assert after == before

    # 3. an upgrade whose config check fails (a renamed key): rejected, the old one stays
    src2 = copy_source(tmp_path / "src2")
    config_py = src2 / "device/config.py"
    text = config_py.read_text()
    assert "    speed: float = doc(" in text
    config_py.write_text(text.replace("    speed: float = doc(", "    speed_x: float = doc("))
    code, out = install(root, src2, wheel=build_wheel(src2, tmp_path / "w2"))
    assert code != 0, out
    assert "rejects /etc/bedside/bedside.toml" in out and "replay.speed" in out, out
    assert current(root) == first and venvs(root) == before[1]
    assert (root / "etc/bedside/bedside.toml").read_text() == bed_cfg.read_text()

    # 4. an upgrade that passes the check but cannot start: rolled back, old one restarted
    src3 = copy_source(tmp_path / "src3")
    daemon_py = src3 / "device/daemon.py"
    text = daemon_py.read_text()
    marker = '        """Run until the stop event is set or every (finite) source has finished; '
    assert marker in text
    daemon_py.write_text(
        text.replace(marker, '        raise RuntimeError("broken build")\n' + marker, 1)
    )
    code, out = install(root, src3, wheel=build_wheel(src3, tmp_path / "w3"))
    assert code != 0, out
    assert "did not start" in out and "roll back" in out and "broken build" in out, out
    assert "previous version running again" in out, out
    assert current(root) == first

    # 5. a good upgrade: switched, restarted, the previous environment kept for a rollback
    src4 = copy_source(tmp_path / "src4")
    init = src4 / "device/__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', '__version__ = "9.9.9"', init.read_text()))
    code, out = install(root, src4, wheel=build_wheel(src4, tmp_path / "w4"))
    assert code == 0, out
    assert current(root).startswith("venvs/9.9.9-") and "restart bedside.service" in out, out
    assert "trial start: READY=1" in out
    assert set(venvs(root)) == {first.split("/")[-1], current(root).split("/")[-1]}
    assert (root / "etc/bedside/bedside.toml").read_text() == bed_cfg.read_text()

    # 6. uninstall: service, unit and software gone; config kept; a second time changes nothing
    code, out = install(root, src4, "--uninstall")
    assert code == 0, out
    assert not unit.exists() and not wants.is_symlink() and not (root / "opt/bedside").exists()
    assert (root / "etc/bedside/bedside.toml").exists()
    code, out = install(root, src4, "--uninstall")
    assert code == 0 and actions(out) == [] and "nothing to change" in out, out
    code, out = install(root, src4, "--uninstall", "--purge")
    assert code == 0 and not (root / "etc/bedside").exists(), out
    assert "bedside" not in (root / "etc/group").read_text()


def test_example_config_install_is_enabled_but_not_started(tmp_path: Path) -> None:
    """With the example config (no sensor), the first install enables the service and says
    what to edit instead of starting a daemon that has nothing to read. No environment is
    built: --dry-run shows the decision."""
    code, out = install(tmp_path / "root", ROOT, "--dry-run")
    assert code == 0
    assert "not starting: /etc/bedside/bedside.toml is the example" in out
    assert "start bedside.service" not in " ".join(actions(out))
