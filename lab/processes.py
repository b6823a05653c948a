"""Stopping the child processes the lab starts (brokers, daemons, boards)."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout_s: float = 10.0
) -> int:
    """Send ``sig`` (a clean stop: a daemon says goodbye, Mosquitto writes its persistence);
    kill the process if it has not ended within ``timeout_s``. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
