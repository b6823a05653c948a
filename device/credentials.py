"""Secrets handed over by systemd: ``LoadCredential=NAME:/path`` in the unit makes the file
readable by the service as ``$CREDENTIALS_DIRECTORY/NAME`` (and by nobody else), so the broker
password need not be readable by the service user on disk, nor sit in the config.

The daemon reads ``mqtt-password`` this way when ``[mqtt] password_file`` is empty; an empty or
missing credential means no password (an anonymous broker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: the credential the unit loads for the broker login (systemd/bedside.service)
MQTT_PASSWORD = "mqtt-password"


def credential(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The credential ``name`` (stripped of surrounding whitespace), or None when systemd gave
    none, or an empty one."""
    env = os.environ if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    try:
        value = (Path(directory) / name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return value or None


def state_directory(default: Path, environ: Mapping[str, str] | None = None) -> Path:
    """systemd's ``StateDirectory=`` (``$STATE_DIRECTORY``, the first if several), else
    ``default``."""
    env = os.environ if environ is None else environ
    first = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(first) if first else default
