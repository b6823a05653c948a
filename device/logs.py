"""Log lines that journald keeps whole: one line per record, ``LEVEL stage: message``.

- **One line.** A message or a traceback with newlines would become several journal entries,
  the later ones without level or stage; newlines are folded into `` | ``.
- **Level and stage.** The stage is the logger's name (``bedside.mqtt``, ``bedside.daemon``,
  ``bedside.serial``, ``bedside.notify``...), so ``journalctl -u bedside | grep bedside.mqtt``
  follows one stage.
- **Priorities under systemd.** When stderr is the journal (``$JOURNAL_STREAM`` names the
  device and inode of our stderr, as systemd sets it), each line starts with the syslog priority
  in angle brackets (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug), which journald
  strips and stores as the entry's priority, so ``journalctl -u bedside -p warning`` shows
  warnings and worse. journald adds the time; a terminal gets a timestamp instead.
- **Level from config.** ``[log] level`` (default ``info``); ``bedside -v``/``-vv`` on the
  command line wins over it.
- **No patient identifiers.** The appliance knows no patient: the only identity in its logs is
  the bed id (``[bed] id``), which a ward may choose to make non-identifying. Log messages give
  values and states (an alarm's condition, priority, its value), never names or record numbers.

Native libraries write to stderr directly (LiteRT prints ``INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.`` once); journald stores such lines at the service's default priority.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO

from device.config import LogConfig

#: Python level -> syslog priority (sd-daemon(3): SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG)
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def priority(levelno: int) -> int:
    """The syslog priority of a Python log level (levels in between round to the more severe)."""
    for level in sorted(PRIORITIES, reverse=True):
        if levelno >= level:
            return PRIORITIES[level]
    return 7


class OneLineFormatter(logging.Formatter):
    """``[<P>]LEVEL stage: message`` on one line; ``journal`` adds the priority prefix and
    leaves the timestamp to journald."""

    def __init__(self, journal: bool) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt if journal else "%(asctime)s " + fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        one = " | ".join(part for part in text.splitlines() if part.strip())
        return f"<{priority(record.levelno)}>{one}" if self.journal else one


def stderr_is_journal(
    environ: Mapping[str, str] | None = None, stream: IO[str] | None = None
) -> bool:
    """True when ``$JOURNAL_STREAM`` (``DEVICE:INODE``) is the stream we write to (stderr):
    systemd sets it for a service whose output goes to the journal; a child with its stderr
    redirected elsewhere inherits the variable but not the stream, and must not use prefixes."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (stderr) as one line; called once by ``bedside``."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(OneLineFormatter(journal=stderr_is_journal(stream=out)))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)


def apply_config(cfg: LogConfig | None, verbose: int = 0) -> None:
    """The level from ``[log] level``, unless ``-v`` was given on the command line."""
    if cfg is None or verbose:
        return
    logging.getLogger().setLevel(LEVELS[cfg.level.lower()])
