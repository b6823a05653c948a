"""Acknowledge an alarm from the shell: publish {"id": ALARM_ID} on <prefix>/<bed>/cmd/ack.

Then wait (--timeout) for the bed to confirm: the alarm event 'acknowledged' (or 'cleared',
for a latched alarm whose condition is gone) that the bed publishes when it applies the
command. Exit 0 when confirmed, or when the bed's status already lists the alarm as
acknowledged; exit 1 when the bed did not confirm (offline, or an unknown or cleared id: the
bed ignores those and counts them as rejected). `bedside watch` shows each alarm's id; so do
the alarm messages and the bed's retained status.

Examples:
  bedside ack icu-3 icu-3-sensor_off-ppg-23
  bedside ack icu-3 icu-3-hr_high-120 --broker mqtt://broker.ward:1883
  bedside ack icu-3 icu-3-hr_high-120 --broker mqtts://broker.ward:8883 \\
      --ca-file ward-ca.crt --username station --password-file ~/.config/bedside/station-password
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

from device.errors import UserError
from station.commands.broker import add_broker_arguments, client_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bed", help="bed id")
    p.add_argument("alarm_id", metavar="ALARM_ID", help="the alarm's id (from its messages)")
    add_broker_arguments(p)
    p.add_argument(
        "--prefix", default="bedside", metavar="P", help="topic prefix (default 'bedside')"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="how long to wait for the bed to confirm (default 10)",
    )


class _Confirm:
    """Collects what the bed says about one alarm id."""

    def __init__(self, alarm_id: str) -> None:
        self.alarm_id = alarm_id
        self.cv = threading.Condition()
        self.subscribed = False
        self.status: dict[str, Any] | None = None
        self.outcome: str | None = None  # 'acknowledged' / 'cleared' from an alarm event

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        with self.cv:
            if topic.endswith("/status"):
                self.status = body
            elif body.get("id") == self.alarm_id and body.get("state") in (
                "acknowledged",
                "cleared",
            ):
                self.outcome = str(body["state"])
            self.cv.notify_all()

    def listed_state(self) -> str | None:
        for a in (self.status or {}).get("alarms") or []:
            if isinstance(a, dict) and a.get("id") == self.alarm_id:
                return str(a.get("state"))
        return None


def run(args: argparse.Namespace) -> int:
    client, host, port = client_for(args)
    base = f"{args.prefix.strip('/')}/{args.bed}"
    confirm = _Confirm(args.alarm_id)

    def on_subscribe(c: Any, u: Any, mid: Any, rcs: Any, props: Any) -> None:
        with confirm.cv:
            confirm.subscribed = True
            confirm.cv.notify_all()

    client.on_connect = lambda c, u, f, rc, p: (
        None if rc.is_failure else c.subscribe([(f"{base}/alarms", 1), (f"{base}/status", 1)])
    )
    client.on_subscribe = on_subscribe
    client.on_message = lambda c, u, m: confirm.on_message(m.topic, bytes(m.payload))
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise UserError(f"cannot reach broker {host}:{port} ({e})", "check --broker") from None
    client.loop_start()
    try:
        deadline = time.monotonic() + args.timeout
        with confirm.cv:
            # subscribed first, so the confirmation cannot slip past; the retained status
            # arrives with the subscription
            if not confirm.cv.wait_for(lambda: confirm.subscribed, args.timeout):
                raise UserError(f"broker {host}:{port} did not accept the subscription")
            confirm.cv.wait_for(lambda: confirm.status is not None, 1.0)
            if confirm.listed_state() == "acknowledged":
                print(f"{args.alarm_id}: already acknowledged")
                return 0
        info = client.publish(f"{base}/cmd/ack", json.dumps({"id": args.alarm_id}), qos=1)
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        with confirm.cv:
            confirm.cv.wait_for(
                lambda: confirm.outcome is not None, max(0.0, deadline - time.monotonic())
            )
            if confirm.outcome is not None:
                print(f"{args.alarm_id}: {confirm.outcome} by bed {args.bed}")
                return 0
            status = confirm.status or {}
        if not status:
            why = f"bed {args.bed} has no status on this broker (wrong bed id or prefix?)"
        elif status.get("state") != "online":
            why = f"bed {args.bed} is offline ({status.get('reason', 'no reason given')})"
        elif confirm.listed_state() is None:
            why = f"bed {args.bed} has no current alarm with that id (unknown or cleared)"
        else:
            why = f"bed {args.bed} did not confirm within {args.timeout:g} s"
        print(f"bedside ack: not confirmed: {why}")
        return 1
    finally:
        client.disconnect()
        client.loop_stop()
