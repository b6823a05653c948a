"""Serve the central-station web page: one tile per bed, alarms by priority, acknowledge.

The page is static (station/web/: HTML, CSS, JavaScript and the vendored MQTT.js bundle);
the browser connects by itself to the broker's MQTT-over-WebSocket listener and subscribes
to every bed under the prefix, so one page shows any number of appliances and this server
keeps no state. It serves the files and /config.json (the broker address and prefix given
here). A page URL may override both: ?broker=ws://HOST:PORT&prefix=P. A broker that refuses
anonymous clients (docs/security.md) makes the page ask for a user and password.

Mosquitto needs a websocket listener besides its MQTT one, e.g. in mosquitto.conf:
  listener 1883
  listener 9001
  protocol websockets
See docs/station.md.

Examples:
  bedside station              # http://127.0.0.1:8080/, broker ws://<page host>:9001
  bedside station --host 0.0.0.0 --port 8080 --broker-ws ws://broker.ward:9001
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from device.errors import UserError

log = logging.getLogger("bedside.station")

WEB_DIR = Path(__file__).resolve().parents[1] / "web"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8080, metavar="P", help="HTTP port (default 8080)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 serves the whole ward network)",
    )
    p.add_argument(
        "--broker-ws",
        metavar="URL",
        help="the broker's MQTT-over-WebSocket URL, ws://HOST:PORT or wss://HOST:PORT "
        "(default: port 9001 of the host the page was loaded from)",
    )
    p.add_argument(
        "--prefix", default="bedside", metavar="P", help="topic prefix (default 'bedside')"
    )
    p.add_argument(
        "--username",
        default="",
        metavar="NAME",
        help="the user the page offers when the broker asks for one (e.g. station); the "
        "password is typed in the page and kept in its memory only",
    )


def check_broker_ws(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UserError(
            f"--broker-ws {url!r} is not a websocket URL", "give ws://HOST:PORT or wss://HOST:PORT"
        )
    return url


class StationHandler(SimpleHTTPRequestHandler):
    """Static files from station/web plus /config.json; no directory listings."""

    config_json: bytes = b"{}"

    def __init__(self, *args: Any, config_json: bytes, **kwargs: Any) -> None:
        self.config_json = config_json
        super().__init__(*args, directory=str(WEB_DIR), **kwargs)

    def end_headers(self) -> None:
        # the page loads only its own files and talks only to a websocket broker; MQTT.js runs
        # its keepalive timer in a worker made from a blob (timers in a background tab's page
        # are throttled to once a minute, which would drop the connection)
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
            "worker-src blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/config.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.config_json)))
            self.end_headers()
            self.wfile.write(self.config_json)
            return
        if path.endswith("/") and path != "/":
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_server(
    host: str, port: int, broker_ws: str | None, prefix: str, username: str = ""
) -> ThreadingHTTPServer:
    config = {"broker_ws": broker_ws, "prefix": prefix, "username": username}
    handler = functools.partial(StationHandler, config_json=json.dumps(config).encode("utf-8"))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise UserError(
            f"cannot listen on {host}:{port} ({e.strerror})", "choose another --port"
        ) from None


def run(args: argparse.Namespace) -> int:
    if not (WEB_DIR / "index.html").is_file():
        raise UserError(f"{WEB_DIR}: the station page is missing", "reinstall bedside-edge")
    broker_ws = check_broker_ws(args.broker_ws) if args.broker_ws else None
    prefix = args.prefix.strip("/")
    if not prefix or any(c in prefix for c in "+#"):
        raise UserError(f"--prefix {args.prefix!r} is not a topic prefix", "e.g. --prefix bedside")
    server = make_server(args.host, args.port, broker_ws, prefix, args.username)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    print(
        f"bedside station: http://{shown}:{port}/ (broker "
        f"{broker_ws or 'ws://<page host>:9001'}, prefix '{prefix}'); Ctrl-C stops",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
