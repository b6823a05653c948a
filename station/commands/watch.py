"""A live terminal table of the beds: HR, RR, quality, alarms by priority, age, online state.

Subscribes to every bed under the prefix (or one, with --bed) at QoS 1, as the web station
does, and redraws once a second. It reconnects by itself when the broker goes away (1 s
doubling to 30 s between attempts) and says so in the title. Alarms are coloured by
IEC 60601-1-8 priority: high red, medium yellow, low cyan; acknowledged ones are marked
'(ack)'; each is followed by its id. Ctrl-C quits.

Acknowledge from the shell with `bedside ack BED ALARM_ID`.

Examples:
  bedside watch
  bedside watch --broker mqtt://broker.ward:1883 --bed icu-3
  bedside watch --broker mqtts://broker.ward:8883 --ca-file ward-ca.crt --username viewer \\
      --password-file ~/.config/bedside/viewer-password
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from device.errors import UserError
from station.commands.broker import add_broker_arguments, client_for
from station.ward import Bed, Ward, is_technical

STALE_S = 5.0  # a current value older than this is shown as '--'
STYLE = {"high": "bold white on red", "medium": "bold black on yellow", "low": "black on cyan"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_broker_arguments(p)
    p.add_argument("--bed", metavar="ID", help="only this bed (default: every bed)")
    p.add_argument(
        "--prefix", default="bedside", metavar="P", help="topic prefix (default 'bedside')"
    )


def _age(now_s: float, then_s: float | None) -> str:
    if then_s is None:
        return "-"
    s = max(0.0, now_s - then_s)
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min"


def _quantity(bed: Bed, q: str, now_s: float) -> str:
    v = bed.vitals
    if v is None or bed.online is False or (now_s - (bed.vitals_at_s or 0.0)) > STALE_S:
        return "--"
    value = v.get(f"{q}_bpm")
    if not isinstance(value, int | float):
        return "--"
    shown = f"{value:.0f}" if q == "hr" else f"{value:.1f}"
    return f"{shown} {v.get(f'{q}_source') or ''}".strip()


def _quality(bed: Bed) -> str:
    v = bed.vitals or {}
    sqi = v.get("sqi") or {}
    out = []
    for q in ("hr", "rr"):
        src = v.get(f"{q}_source")
        if src and isinstance(sqi.get(f"{q}_{src}"), int | float):
            out.append(f"{q.upper()} {sqi[f'{q}_{src}']:.2f}")
    return "  ".join(out) or "-"


def _alarm_text(a: dict[str, Any]) -> str:
    cond = str(a.get("condition", "?"))
    what = cond.upper().replace("_", " ")
    if is_technical(a) and a.get("role"):
        what += f" ({a['role']})"
    elif a.get("value") is not None and a.get("limit") is not None:
        sign = "<" if cond.endswith(("_low", "bradycardia")) else ">"
        what += f" {a['value']:g} {sign} {a['limit']:g}"
    state = a.get("state")
    return f"{what} (ack)" if state == "acknowledged" else what


def render(ward: Ward, link: str, now_s: float) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"bedside watch · {link}", title_justify="left", expand=False)
    table.add_column("bed", style="bold")
    table.add_column("state")
    table.add_column("HR bpm", justify="right")
    table.add_column("RR /min", justify="right")
    table.add_column("quality")
    table.add_column("alarms (by priority)")
    table.add_column("updated", justify="right")
    if not ward.beds:
        table.add_row("-", "no bed has reported yet", "", "", "", "", "")
    for bed_id in sorted(ward.beds):
        bed = ward.beds[bed_id]
        if bed.online is None:
            state = Text("no status", style="dim")
        elif bed.online:
            state = Text("online", style="green")
            if bed.degraded_text:
                state.append(f"\n{bed.degraded_text}", style="yellow")
        else:
            state = Text("OFFLINE", style="bold reverse")
            state.append(f"\n{bed.reason or 'no reason given'}", style="dim")
        alarms = Text()
        for i, a in enumerate(bed.sorted_alarms()):
            if i:
                alarms.append("\n")
            style = STYLE.get(str(a.get("priority")), "")
            if a.get("state") == "acknowledged" or bed.online is False:
                style = style.replace("bold ", "") + " dim"
            alarms.append(f" {str(a.get('priority', '?')).upper()} {_alarm_text(a)} ", style=style)
            alarms.append(f" {a.get('id')}", style="dim")  # for `bedside ack BED ID`
        if bed.online is False and bed.reason != "stopped":
            if alarms:
                alarms.append("\n")
            alarms.append(" NO CONNECTION TO BED ", style=STYLE["medium"])
        table.add_row(
            bed_id,
            state,
            _quantity(bed, "hr", now_s),
            _quantity(bed, "rr", now_s),
            _quality(bed) if bed.online is not False else "-",
            alarms if alarms else Text("none", style="dim"),
            _age(now_s, bed.last_message_at_s),
            style="dim" if bed.online is False else None,
        )
    return table


class Subscriber:
    """paho in its own thread: connects in the background and reconnects by itself, and
    resubscribes on every connect. Messages are folded into the ward under a lock."""

    def __init__(self, ward: Ward, args: argparse.Namespace) -> None:
        from device.sinks.mqtt import uses_tls

        self.ward = ward
        self.lock = threading.Lock()
        self.client, host, port = client_for(args)
        self.where = f"{'mqtts' if uses_tls(args.broker) else 'mqtt'}://{host}:{port}"
        self.link = f"connecting to {self.where}"
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 30)
        self.client.connect_async(host, port, keepalive=20)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self.link = f"broker {self.where} refused: {rc}"
            return
        client.subscribe([(t, 1) for t in self.ward.topics()])
        self.link = f"connected to {self.where}"

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.link = f"NO CONNECTION to {self.where} ({rc}); reconnecting"

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.link = f"NO CONNECTION: cannot reach {self.where}; retrying"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.ward.apply(msg.topic, bytes(msg.payload), time.monotonic())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        raise UserError(
            "bedside watch needs the 'rich' package", "pip install 'bedside-edge[station]'"
        ) from None
    ward = Ward(args.prefix, args.bed)
    sub = Subscriber(ward, args)
    console = Console()
    try:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                with sub.lock:
                    live.update(render(ward, sub.link, time.monotonic()), refresh=True)
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    return 0
