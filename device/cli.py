"""``bedside``: one command line for the appliance and its model workshop.

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int``. Modules
import their heavy dependencies inside ``run`` so that ``bedside --help`` and the device
commands never import TensorFlow (only ``train``, ``convert`` and ``eval`` do, and they need
the ``[convert]`` extra).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from device import __version__, logs
from device.errors import UserError

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "lab.commands.demo",
        "run the daemon on a bundled real recording and show what a nurses' station receives",
    ),
    "run": (
        "device.commands.run",
        "the bedside daemon: read sensors, estimate HR/RR, raise alarms, publish over MQTT",
    ),
    "process": (
        "device.commands.process",
        "run the streaming core over a recording as fast as the CPU allows; write JSON lines",
    ),
    "replay": (
        "lab.emulator",
        "play a recording into a serial port (or a pty) like a sensor board, "
        "or into raw PCM for ALSA",
    ),
    "bench-model": (
        "device.commands.bench_model",
        "time a TFLite model here: invoke latency (median, p99) and peak memory",
    ),
    "install": (
        "device.commands.install",
        "install, upgrade or remove the systemd service (venv in /opt/bedside, config, user)",
    ),
    "train": (
        "convert.commands.train",
        "train an HR or RR model on recordings (needs the [convert] extra)",
    ),
    "convert": (
        "convert.commands.convert",
        "quantize a trained model to TFLite with a manifest (needs the [convert] extra)",
    ),
    "eval": (
        "convert.commands.evaluate",
        "score a TFLite model on recordings: MAE, coverage, plots (needs [convert]); "
        "without --model, an HTML report of the appliance's core (and NeuroKit2)",
    ),
    "station": (
        "station.commands.serve",
        "serve the central-station web page (live tiles and alarms over MQTT websockets)",
    ),
    "watch": (
        "station.commands.watch",
        "a live terminal table of every bed: HR, RR, quality, alarms, online/offline",
    ),
    "ack": (
        "station.commands.ack",
        "acknowledge an alarm from the shell (publishes <prefix>/<bed>/cmd/ack)",
    ),
    "export": (
        "station.commands.export",
        "convert 'bedside process' JSON lines to a FHIR R4 Bundle of vital-signs Observations",
    ),
}


#: what to install when a command's package is not there
_PACKAGE_FIX = {
    "lab": "install bedside-edge from its source tree (the lab package is not on this machine)",
    "convert": "pip install 'bedside-edge[convert]' (TensorFlow; not needed on the appliance)",
    "station": "pip install 'bedside-edge[station]'",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; only ``command``'s module is imported (all when None, none
    when ""), so ``bedside run`` loads nothing of the workshop, the lab or the station."""
    parser = argparse.ArgumentParser(
        prog="bedside",
        description="bedside-edge: heart-rate and respiratory-rate monitoring on an edge device, "
        "with alarms published over MQTT. Run 'bedside COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"bedside-edge {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=help_text)
            continue
        mod = _import_command(name, module)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def _import_command(name: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        package = module.split(".")[0]
        if e.name is None or e.name.split(".")[0] != package or package not in _PACKAGE_FIX:
            raise
        raise UserError(f"'bedside {name}' is not installed here", _PACKAGE_FIX[package]) from None


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is one), if any."""
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        # no command named (``bedside --help``): list them all, import none
        parser = build_parser(_command_in(words) or "")
    except UserError as e:
        print(f"bedside: error: {e.message}", file=sys.stderr)
        return e.exit_code
    args = parser.parse_args(words)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logs.setup(level)  # one line per record; journald priorities under systemd
    try:
        return int(args._module.run(args) or 0)
    except UserError as e:
        print(f"bedside {args.command}: error: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # output piped into a reader that stopped early (e.g. `| head`): not an error
        sys.stderr.close()
        return 0
