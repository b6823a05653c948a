"""Log lines for journald: one line per record with level and stage, syslog priority prefixes
only when stderr really is the journal stream, level from ``[log] level``."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import free_port

from device.logs import OneLineFormatter, priority, stderr_is_journal

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device/data/bidmc_09_excerpt.csv.gz"
JOURNAL_LINE = re.compile(r"^<([0-7])>(DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): \S")
TERMINAL_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): \S"
)
#: printed by LiteRT's C++ runtime straight to stderr, not through Python logging
NATIVE_LINES = {"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."}


def record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("bedside.mqtt", level, __file__, 1, msg, None, exc_info)


def test_priorities_follow_syslog() -> None:
    assert [priority(lv) for lv in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]
    assert priority(35) == 4 and priority(5) == 7


def test_one_line_even_with_newlines_and_tracebacks() -> None:
    f = OneLineFormatter(journal=True)
    text = f.format(record(logging.ERROR, "first\nsecond", exc=True))
    assert "\n" not in text
    assert text.startswith("<3>ERROR bedside.mqtt: first | second | Traceback")
    assert "ValueError: bad | value" in text
    plain = OneLineFormatter(journal=False).format(record(logging.INFO, "hello"))
    assert TERMINAL_LINE.match(plain) and not plain.startswith("<")


def test_journal_stream_must_be_our_stderr(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        with os.fdopen(os.dup(w), "w") as stream:
            st = os.fstat(w)
            assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
            assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, stream)
            assert not stderr_is_journal({"JOURNAL_STREAM": "junk"}, stream)
            assert not stderr_is_journal({}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, io.StringIO())
    finally:
        os.close(r)
        os.close(w)


def run_daemon(config: Path, journal: bool) -> list[str]:
    """The real daemon on the bundled excerpt (it ends by itself), stderr on a pipe; with
    ``journal`` the pipe is announced as the journal stream, as systemd does."""
    r, w = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("JOURNAL_STREAM", None)
    if journal:
        st = os.fstat(w)
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    cmd = [sys.executable, "-m", "device", "run", "--config", str(config)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=w)
    os.close(w)
    with os.fdopen(r, "r", errors="replace") as f:
        out = f.read()
    assert proc.wait(120) == 0, out
    return out.splitlines()


def write_config(tmp_path: Path, level: str) -> Path:
    cfg = tmp_path / f"bedside-{level}.toml"
    # nobody listens on the port: the MQTT stage warns that it cannot reach the broker
    cfg.write_text(
        f'[bed]\nid = "log-1"\n[log]\nlevel = "{level}"\n'
        f'[mqtt]\nbroker = "mqtt://127.0.0.1:{free_port()}"\n[state]\ndir = "{tmp_path}/state"\n'
        f'[replay]\npath = "{EXCERPT}"\nspeed = 100.0\n'
    )
    return cfg


def test_daemon_under_journald_prefixes_priorities_and_obeys_config_level(tmp_path: Path) -> None:
    lines = run_daemon(write_config(tmp_path, "warning"), journal=True)
    python_lines = [ln for ln in lines if ln not in NATIVE_LINES]
    assert python_lines, lines
    bad = [ln for ln in python_lines if not JOURNAL_LINE.match(ln)]
    assert not bad, bad
    parsed = [JOURNAL_LINE.match(ln).groups() for ln in python_lines]  # type: ignore[union-attr]
    # the broker is away: a warning from the MQTT stage, at syslog priority 4
    assert ("4", "WARNING", "bedside.mqtt") in parsed
    # [log] level = "warning": nothing less severe
    assert all(int(p) <= 4 for p, _, _ in parsed), parsed


def test_daemon_in_a_terminal_gets_timestamps_and_no_prefixes(tmp_path: Path) -> None:
    lines = run_daemon(write_config(tmp_path, "info"), journal=False)
    python_lines = [ln for ln in lines if ln not in NATIVE_LINES]
    assert all(TERMINAL_LINE.match(ln) for ln in python_lines), python_lines
    stages = {TERMINAL_LINE.match(ln).group(2) for ln in python_lines}  # type: ignore[union-attr]
    assert {"bedside.run", "bedside.daemon", "bedside.mqtt"} <= stages
    # only the bed id identifies anything: the bed appears, and every line is one record
    assert any("log-1" in ln for ln in python_lines)


def test_bad_level_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[log]\nlevel = "loud"\n')
    out = subprocess.run(
        [sys.executable, "-m", "device", "run", "--config", str(cfg), "--check-config"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "log.level" in out.stderr
