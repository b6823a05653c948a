"""``bedside`` subcommands of the nurses' side (see ``device.cli.COMMANDS``)."""
