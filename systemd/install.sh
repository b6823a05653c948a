#!/bin/sh
# Install, upgrade (run it again from a newer checkout) or remove (--uninstall [--purge]) the
# bedside service from this checkout. Needs only python3 (3.11+) and python3-venv; every option
# of `bedside install` works here, e.g. --dry-run, --config FILE. See docs/deploy.md.
set -eu
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null 2>&1; then
  echo "install.sh: python3 is missing: apt-get install -y python3 python3-venv" >&2
  exit 1
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "install.sh: python3 is $(python3 -V 2>&1 | cut -d' ' -f2); 3.11 or newer is needed" >&2
  exit 1
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "install.sh: python3-venv is missing: apt-get install -y python3-venv" >&2
  exit 1
fi
exec python3 -m device.commands.install --source "$PWD" "$@"
