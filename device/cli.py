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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full command line; with ``only``, the other commands' modules are not imported
    (their sub-parsers are bare names), so ``bedside process`` does not pay for importing the
    station's web server or the workshop's trainers."""
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
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is not an option)."""
    for arg in argv:
        if arg in ("-h", "--help", "--version"):
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command(argv))
    args = parser.parse_args(argv)
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
