"""A real Mosquitto with TLS, a password file and an ACL, for the security tests.

Everything is made in a temporary folder by the tools a ward would use: a throwaway CA and a
server certificate (``openssl``, subjectAltName IP:127.0.0.1 and DNS:localhost), a password
file (``mosquitto_passwd -c -b``, mode 600) and the ACL of docs/security.md:

- a bed (``bed1``, ``bed2``) publishes only its own ``vitals``, ``alarms`` and ``status`` and
  reads only its own ``cmd/#``;
- ``station`` reads every bed and is the only role that may write ``<bed>/cmd/#``
  (acknowledge an alarm);
- ``viewer`` reads every bed and writes nothing;
- anonymous clients are refused.

Listeners (all on 127.0.0.1, free ports): ``port`` MQTT over TLS; optionally ``mtls_port``
MQTT over TLS that requires a client certificate signed by the CA (``client_cert`` /
``client_key`` are one, for bed1), and ``ws_port`` plain MQTT over websockets (same
passwords and ACL; for a browser station behind a TLS-terminating proxy or on loopback).

A second, unrelated CA (``other_ca``) lets a test check that a client verifying against the
wrong CA fails. Used through the ``tls_broker`` / ``tls_broker_factory`` fixtures in
conftest.py.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.processes import stop_process

#: user -> password (test only; real passwords live in files with mode 600)
USERS: dict[str, str] = {
    "bed1": "bed1-secret",
    "bed2": "bed2-secret",
    "station": "station-secret",
    "viewer": "viewer-secret",
}
PREFIX = "bedside"
BEDS = ("bed1", "bed2")


def acl_text(beds: tuple[str, ...] = BEDS, prefix: str = PREFIX) -> str:
    """The ACL of docs/security.md for ``beds``."""
    lines = [
        "# No topic lines before the first 'user': anonymous clients get nothing (and",
        "# allow_anonymous false refuses them anyway).",
        "",
    ]
    for bed in beds:
        lines += [
            f"# bed {bed}: publishes only its own topics, reads only its own commands",
            f"user {bed}",
            f"topic write {prefix}/{bed}/vitals",
            f"topic write {prefix}/{bed}/alarms",
            f"topic write {prefix}/{bed}/status",
            f"topic read {prefix}/{bed}/cmd/#",
            "",
        ]
    lines += [
        "# nurses' station: reads every bed; the only role that may send commands (ack)",
        "user station",
        f"topic read {prefix}/#",
        f"topic write {prefix}/+/cmd/#",
        "",
        "# wall display: reads every bed, sends nothing",
        "user viewer",
        f"topic read {prefix}/#",
        "",
    ]
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(command: str, cwd: Path, **paths: Path | str) -> None:
    """Run ``command`` (``{name}`` fields filled with ``paths``, quoted) in ``cwd``."""
    args = shlex.split(command.format(**{k: shlex.quote(str(v)) for k, v in paths.items()}))
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


EC_KEY = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}"


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (EC P-256, 2 days): (certificate, key)."""
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    _run(EC_KEY, d, key=key)
    _run(
        "openssl req -x509 -new -key {key} -sha256 -days 2 -subj {subject}"
        " -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign -out {crt}",
        d,
        key=key,
        crt=crt,
        subject=f"/CN=bedside test {name}",
    )
    os.chmod(key, 0o600)
    return crt, key


def make_cert(
    d: Path, name: str, ca: tuple[Path, Path], cn: str, extensions: list[str]
) -> tuple[Path, Path]:
    """A certificate signed by ``ca``: (certificate, key)."""
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    ext = d / f"{name}.ext"
    ext.write_text("\n".join(["basicConstraints=CA:FALSE", *extensions]) + "\n")
    _run(EC_KEY, d, key=key)
    _run(
        "openssl req -new -key {key} -subj {subject} -out {csr}",
        d,
        key=key,
        csr=csr,
        subject=f"/CN={cn}",
    )
    _run(
        "openssl x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 2 -sha256"
        " -extfile {ext} -out {crt}",
        d,
        csr=csr,
        ca=ca[0],
        ca_key=ca[1],
        ext=ext,
        crt=crt,
    )
    os.chmod(key, 0o600)
    return crt, key


@dataclass
class TlsBroker:
    """Mosquitto with TLS, passwords and the ACL; see the module docstring."""

    binary: str
    workdir: Path
    websockets: bool = False
    mtls: bool = False
    wss: bool = False
    port: int = 0
    ws_port: int = 0
    mtls_port: int = 0
    wss_port: int = 0
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = make_ca(d, "ca")
        self.other_ca, _ = make_ca(d, "other-ca")
        self.server_cert, self.server_key = make_cert(
            d,
            "server",
            (self.ca, self.ca_key),
            "localhost",
            [
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "extendedKeyUsage=serverAuth",
                "keyUsage=critical,digitalSignature,keyEncipherment",
            ],
        )
        self.client_cert, self.client_key = make_cert(
            d,
            "client-bed1",
            (self.ca, self.ca_key),
            "bed1",
            ["extendedKeyUsage=clientAuth", "keyUsage=critical,digitalSignature"],
        )
        self.passwd = d / "passwd"
        first = True
        for user, password in self.users.items():
            _run(
                "{tool} " + ("-c -b" if first else "-b") + " {file} {user} {password}",
                d,
                tool=_mosquitto_passwd(),
                file=self.passwd,
                user=user,
                password=password,
            )
            first = False
        os.chmod(self.passwd, 0o600)
        self.acl = d / "acl"
        self.acl.write_text(acl_text())
        os.chmod(self.acl, 0o600)
        self.port = self.port or _free_port()
        if self.websockets:
            self.ws_port = self.ws_port or _free_port()
        if self.mtls:
            self.mtls_port = self.mtls_port or _free_port()
        if self.wss:
            self.wss_port = self.wss_port or _free_port()
        self.conf = d / "mosquitto.conf"
        self.log = d / "mosquitto.log"
        self.conf.write_text(self.config_text())

    def config_text(self) -> str:
        """The broker's configuration (the one docs/security.md shows, with test paths)."""
        tls = (
            f"cafile {self.ca}\ncertfile {self.server_cert}\nkeyfile {self.server_key}\n"
            "tls_version tlsv1.2\n"
        )
        lines = [
            # the same password file and ACL apply on every listener
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.passwd}",
            f"acl_file {self.acl}",
            "persistence false",
            "log_dest stderr",
            "log_type error\nlog_type warning\nlog_type notice",
            "",
            "# MQTT over TLS; the server proves who it is, clients log in with passwords",
            f"listener {self.port} 127.0.0.1",
            tls,
        ]
        if self.mtls:
            lines += [
                "# MQTT over TLS with client certificates signed by the same CA",
                f"listener {self.mtls_port} 127.0.0.1",
                tls + "require_certificate true",
                "",
            ]
        if self.websockets:
            lines += [
                "# MQTT over websockets, no TLS (loopback or behind a TLS proxy)",
                f"listener {self.ws_port} 127.0.0.1",
                "protocol websockets",
                "",
            ]
        if self.wss:
            lines += [
                "# MQTT over websockets over TLS, for a station page served over https",
                f"listener {self.wss_port} 127.0.0.1",
                "protocol websockets",
                tls,
            ]
        if os.geteuid() == 0:
            # run as root, mosquitto would switch to user 'mosquitto', which cannot read the
            # mode-600 files of this (root-owned) test folder
            lines.insert(0, "user root")
        return "\n".join(lines) + "\n"

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        logf = open(self.log, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=logf, stderr=logf)
        logf.close()
        ports = [p for p in (self.port, self.ws_port, self.mtls_port, self.wss_port) if p]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                for p in ports:
                    with socket.create_connection(("127.0.0.1", p), timeout=0.5):
                        pass
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {ports}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


def _mosquitto_passwd() -> str:
    return shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def tools_missing() -> str | None:
    """Why a TLS broker cannot be made here, or None."""
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None and not os.access(f"/usr/bin/{tool}", os.X_OK):
            return f"{tool} is not installed (apt-get install openssl mosquitto)"
    return None
