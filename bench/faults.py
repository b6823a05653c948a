"""Fault scenarios at full length against a real Mosquitto and the real daemon; prints the
counts of each and writes ``bench/results/faults.json`` (see ``lab/faults.py``):

- broker stopped for 60 s while a record that raises alarms replays at 10x;
- daemon killed with SIGKILL while the broker is down, then restarted;
- state folder read-only (bind mount) and full (64 KiB tmpfs): needs root;
- serial board (a pty) unplugged and plugged back 100 times.

    .venv/bin/python bench/faults.py [--short] [--out bench/results/faults.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import faults  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--short", action="store_true", help="the CI lengths (20 s outage)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/faults.json"))
    args = ap.parse_args()
    results = faults.run_all(short=args.short)
    doc = {
        "machine": f"{platform.machine()} {platform.python_version()}, {os.cpu_count()} cores "
        "(shared)",
        "command": "bench/faults.py " + " ".join(sys.argv[1:]),
        **results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    failed = [k for k, v in results.items() if not v.get("ok", "skipped" in v)]
    print(
        f"faults: {len(results) - len(failed)} of {len(results)} scenarios met their "
        f"requirements" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
