#!/bin/sh
# Install, upgrade (run it again from a newer checkout) or remove (--uninstall [--purge]) the
# bedside service from this checkout. Needs only Python 3.10+ with venv; every option of
# `bedside install` works here, e.g. --dry-run, --config FILE. See docs/deploy.md.
#   sudo bash systemd/install.sh --config my-bed.toml
#   sudo PYTHON=python3.12 bash systemd/install.sh      (another interpreter than python3)
set -eu
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
  echo "install.sh: $py is missing: apt-get install -y python3 python3-venv" >&2
  exit 1
fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "install.sh: $py is $("$py" -V 2>&1 | cut -d' ' -f2); 3.10 or newer is needed (PYTHON=...)" >&2
  exit 1
fi
if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "install.sh: $py has no venv: apt-get install -y python3-venv (or python3.X-venv for PYTHON=python3.X)" >&2
  exit 1
fi
exec "$py" -m device.commands.install --source "$PWD" "$@"
