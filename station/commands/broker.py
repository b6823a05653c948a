"""The broker options the station's shell commands share (``bedside watch``, ``bedside ack``).

They mirror the daemon's ``[mqtt]`` keys, so a station connects as the daemon does: TLS with
``mqtts://`` (the broker's certificate and host name verified against ``--ca-file``, else the
system's CAs), an optional client certificate, and a user name whose password is read from a
file, never from the command line. On a ward set up as docs/security.md describes, only the
``station`` user may acknowledge alarms.
"""

from __future__ import annotations

import argparse
from typing import Any

from device.config import MqttConfig


def add_broker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker",
        default="mqtt://127.0.0.1:1883",
        metavar="URL",
        help="mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS (default mqtt://127.0.0.1:1883)",
    )
    p.add_argument(
        "--ca-file",
        default="",
        metavar="PEM",
        help="mqtts: the CA that signed the broker's certificate (default: the system's CAs)",
    )
    p.add_argument(
        "--cert-file", default="", metavar="PEM", help="mqtts: a client certificate, if required"
    )
    p.add_argument(
        "--key-file", default="", metavar="PEM", help="mqtts: its private key (if not in it)"
    )
    p.add_argument("--username", default="", metavar="NAME", help="broker user (e.g. station)")
    p.add_argument(
        "--password-file",
        default="",
        metavar="FILE",
        help="file holding that user's password (never give a password on the command line)",
    )


def mqtt_config(args: argparse.Namespace) -> MqttConfig:
    """The options as the daemon's ``[mqtt]`` section, checked the same way."""
    return MqttConfig(
        broker=args.broker,
        username=args.username,
        password_file=args.password_file,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
    )


def client_for(args: argparse.Namespace) -> tuple[Any, str, int]:
    """A paho client with the credentials and TLS of the options, and where to connect."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from device.sinks.mqtt import authenticate, parse_broker_url

    cfg = mqtt_config(args)
    host, port = parse_broker_url(cfg.broker, key="--broker")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    authenticate(client, cfg)
    return client, host, port
