"""An embedded MQTT broker on a free loopback port, for ``bedside demo`` on a machine with none.

Mosquitto when it is installed (on PATH or in /usr/sbin, where Debian puts it): launched as a
child process with its own temporary config, listening on 127.0.0.1 only, and stopped with the
demo. Otherwise amqtt, a pure-Python broker, in a thread of this process (the ``[demo]`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from device.errors import UserError
from lab.processes import stop_process

log = logging.getLogger("bedside.broker")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin"):
        p = Path(d) / "mosquitto"
        if os.access(p, os.X_OK):
            return str(p)
    return None


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout_s: float, alive: Any = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class EmbeddedBroker:
    """``with EmbeddedBroker() as b: ... b.url``; ``prefer`` is "mosquitto", "amqtt" or "auto"."""

    def __init__(self, prefer: str = "auto") -> None:
        self.prefer = prefer
        self.port = 0
        self.kind = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._amqtt: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> str:
        binary = find_mosquitto() if self.prefer in ("auto", "mosquitto") else None
        if binary is not None:
            self._start_mosquitto(binary)
        elif self.prefer == "mosquitto":
            raise UserError(
                "mosquitto is not installed", "apt-get install mosquitto, or use --broker"
            )
        else:
            self._start_amqtt()
        log.info("embedded %s broker listening on %s", self.kind, self.url)
        return self.url

    def _start_mosquitto(self, binary: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bedside-broker-")
        conf = Path(self._tmp.name) / "mosquitto.conf"
        for _ in range(3):  # the free port may be taken between choosing and binding it
            self.port = free_loopback_port()
            conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "log_dest stderr\nlog_type error\nlog_type warning\n"
            )
            logf = open(Path(self._tmp.name) / "mosquitto.log", "ab")  # noqa: SIM115
            self._proc = subprocess.Popen([binary, "-c", str(conf)], stdout=logf, stderr=logf)
            logf.close()
            proc = self._proc
            if _wait_listening(self.port, 10.0, alive=lambda p=proc: p.poll() is None):
                self.kind = "mosquitto"
                return
            self._stop_mosquitto()
        raise UserError(
            "could not start the embedded mosquitto broker", "use --broker mqtt://HOST:PORT"
        )

    def _start_amqtt(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise UserError(
                "no MQTT broker for the demo: mosquitto is not installed and neither is amqtt",
                "apt-get install mosquitto, or pip install amqtt, or give --broker mqtt://HOST:PORT",
            ) from None
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        self.port = free_loopback_port()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._amqtt = Broker(config, loop=loop)
                loop.run_until_complete(self._amqtt.start())
            except BaseException as e:  # reported to the starting thread
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="amqtt-broker", daemon=True)
        self._thread.start()
        ready.wait(15)
        if failure or not _wait_listening(self.port, 10.0):
            raise UserError(
                "could not start the embedded amqtt broker "
                f"({failure[0] if failure else 'timeout'})",
                "use --broker mqtt://HOST:PORT",
            )
        self.kind = "amqtt"

    def stop(self) -> None:
        self._stop_mosquitto()
        if self._loop is not None and self._amqtt is not None:
            loop = self._loop
            fut = asyncio.run_coroutine_threadsafe(self._amqtt.shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(10)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop = self._amqtt = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _stop_mosquitto(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
