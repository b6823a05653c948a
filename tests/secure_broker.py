"""A real Mosquitto with TLS, a password file and an ACL, for the security tests.

``make_pki`` makes a throwaway CA with ``openssl`` and signs a server certificate for
127.0.0.1/localhost (subjectAltName IP:127.0.0.1, DNS:localhost) and a client certificate.
``TlsBroker`` runs Mosquitto with two TLS listeners (one where a client certificate is
optional, one where it is required), a password file made with ``mosquitto_passwd`` and this
ACL (the one docs/security.md explains):

- a bed (user name = bed id) may publish only its own vitals, alarms and status, and read
  only its own ``cmd/``;
- ``station-1`` (the station role) may read every bed and publish acknowledgements;
- ``viewer`` may read everything and publish nothing.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ACL = """\
# beds: the user name is the bed id (%u)
pattern write bedside/%u/vitals
pattern write bedside/%u/alarms
pattern write bedside/%u/status
pattern read bedside/%u/cmd/#

# the station role: reads every bed, acknowledges alarms
user station-1
topic read bedside/+/vitals
topic read bedside/+/alarms
topic read bedside/+/status
topic write bedside/+/cmd/ack

# a display: reads, never writes
user viewer
topic read bedside/#
"""


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path, bed: str) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate for ``bed``
    (EC P-256 keys, valid for a day)."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=bedside test CA",
        cwd=d,
    )  # fmt: skip
    for name, cn, ext in (
        ("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", bed, "extendedKeyUsage=clientAuth"),
    ):
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d,
        )  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext",
            cwd=d,
        )  # fmt: skip
    for key in ("server.key", "client.key", "ca.key"):
        (d / key).chmod(0o600)
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


def tools_missing() -> str | None:
    """Why the TLS broker cannot run here (None: it can)."""
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None and not Path(f"/usr/bin/{tool}").exists():
            return f"{tool} is not installed"
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        return "mosquitto is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TlsBroker:
    """Mosquitto with TLS on ``port`` (client certificate optional) and ``cert_port`` (client
    certificate required), users ``passwords`` and the ACL above."""

    def __init__(self, d: Path, pki: Pki, passwords: dict[str, str]) -> None:
        self.d = d
        self.pki = pki
        self.port = _free_port()
        self.cert_port = _free_port()
        passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        pwfile = d / "passwd"
        for i, (user, password) in enumerate(passwords.items()):
            flags = ["-c"] if i == 0 else []
            subprocess.run(
                [passwd, *flags, "-b", str(pwfile), user, password], check=True, timeout=30
            )
        acl = d / "acl"
        acl.write_text(ACL)
        tls = (
            f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            "tls_version tlsv1.2\n"
        )
        self.conf = d / "mosquitto-tls.conf"
        self.conf.write_text(
            # started as root, Mosquitto would switch to user "mosquitto", who may not read the
            # test's files: stay the user who runs the test
            f"user {getpass.getuser()}\n"
            "per_listener_settings false\nallow_anonymous false\n"
            f"password_file {pwfile}\nacl_file {acl}\npersistence false\n"
            f"listener {self.port} 127.0.0.1\n{tls}require_certificate false\n"
            f"listener {self.cert_port} 127.0.0.1\n{tls}require_certificate true\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
        )
        self.log = d / "mosquitto-tls.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    @property
    def cert_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.cert_port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=logf, stderr=logf)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.cert_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("TLS mosquitto did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
