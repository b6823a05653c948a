"""Why a file or device cannot be opened, in words that lead to the fix.

A ``PermissionError`` on a recording is not a damaged file: under the systemd unit the daemon
runs as user ``bedside`` with ``ProtectHome=yes`` (``/home``, ``/root`` and ``/run/user`` are
empty and inaccessible to it), ``PrivateTmp=yes`` (its ``/tmp`` and ``/var/tmp`` are its own,
empty) and ``ProtectSystem=strict`` (everything is read-only but its state directory). Each
of these shows up as an ordinary ``OSError`` whose text says nothing of the cause; the
functions here turn it into a ``UserError`` that names the user, the cause and the fix. They
are used wherever the daemon opens a file it was told about (recordings, the config, the
broker password, TLS files, the models folder, the JSON-lines record) and for serial ports.
"""

from __future__ import annotations

import errno
import os
from pathlib import PurePosixPath

from device.errors import UserError

#: what ProtectHome= hides, PrivateTmp= replaces, and where the service may keep files
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")
PRIVATE_TMP = ("/tmp", "/var/tmp")
STATE_DIR = "/var/lib/bedside"
SERVICE_USER = "bedside"


def under_systemd() -> bool:
    """This process is a systemd service (systemd sets ``$INVOCATION_ID`` for each run)."""
    return bool(os.environ.get("INVOCATION_ID"))


def user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.geteuid()}"


def _under(path: str, prefixes: tuple[str, ...]) -> str | None:
    p = PurePosixPath(os.path.abspath(path))
    for prefix in prefixes:
        if p == PurePosixPath(prefix) or PurePosixPath(prefix) in p.parents:
            return prefix
    return None


def read_error(path: str | os.PathLike[str], e: OSError, what: str = "") -> UserError:
    """A ``UserError`` for ``e``, raised opening ``path`` to read it. ``what`` names the
    setting or role (``"mqtt.password_file"``) and goes in front of the path."""
    shown = f"{what} = {str(path)!r}" if what else str(path)
    name = str(path)
    user = user_name()
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM):
        home = _under(name, HIDDEN_BY_PROTECT_HOME)
        if home is not None:
            service = "this service runs" if under_systemd() else "the bedside service runs"
            return UserError(
                f"{shown}: permission denied: user {user} cannot read it ({service} with "
                f"ProtectHome=yes, which hides {', '.join(HIDDEN_BY_PROTECT_HOME)} from it)",
                f"put the file outside {home}, e.g. under {STATE_DIR} or /srv/bedside, readable "
                f"by user {SERVICE_USER} (chgrp {SERVICE_USER} FILE && chmod g+r FILE)",
            )
        return UserError(
            f"{shown}: permission denied: user {user} cannot read it",
            f"let user {user} read it (e.g. chgrp {SERVICE_USER} FILE && chmod g+r FILE, and "
            "g+x on every folder above it), or put it under a folder it can read",
        )
    if isinstance(e, FileNotFoundError):
        tmp = _under(name, PRIVATE_TMP)
        if tmp is not None and under_systemd():
            return UserError(
                f"{shown}: no such file here: this service has its own empty {tmp} "
                "(PrivateTmp=yes), so files put there by others are not visible to it",
                f"put the file under {STATE_DIR} or /srv/bedside instead",
            )
        return UserError(f"{shown}: no such file", "check the path")
    if isinstance(e, IsADirectoryError):
        return UserError(f"{shown}: is a folder, not a file", "give the path of a file")
    return UserError(
        f"{shown}: cannot read ({e.strerror or e})", "check the path and the file's permissions"
    )


def write_error(path: str | os.PathLike[str], e: OSError, what: str = "") -> UserError:
    """A ``UserError`` for ``e``, raised opening ``path`` to write it."""
    shown = f"{what} = {str(path)!r}" if what else str(path)
    if e.errno == errno.EROFS and under_systemd():
        return UserError(
            f"{shown}: cannot write: read-only here (the service runs with ProtectSystem=strict: "
            f"it may write only under {STATE_DIR})",
            f"write it under {STATE_DIR}, e.g. {STATE_DIR}/{os.path.basename(str(path))}",
        )
    if isinstance(e, PermissionError):
        return UserError(
            f"{shown}: cannot write: permission denied for user {user_name()}",
            "choose a folder that user may write to",
        )
    return UserError(f"{shown}: cannot write ({e.strerror or e})", "choose a writable path")


def device_hint(e: BaseException) -> str:
    """Why a serial port (or another device node) did not open, and the fix, or ''."""
    code = getattr(e, "errno", None)
    if code is None and e.args and isinstance(e.args[0], int):
        code = e.args[0]
    if code == errno.EACCES:
        return (
            f"user {user_name()} may not open it: the device must belong to group dialout "
            '(a udev rule for a symlink such as /dev/healthypi can set GROUP="dialout") and the '
            "user must be in that group"
        )
    if code == errno.EPERM:
        return (
            "the device is refused by the device policy (DevicePolicy=closed lists serial ports "
            "as char-ttyACM/ttyUSB/ttyAMA/ttyS/ttyTHS): for another kind of device add "
            "DeviceAllow=<node or char-class> rw in a drop-in (systemctl edit bedside)"
        )
    return ""
