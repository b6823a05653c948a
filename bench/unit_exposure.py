"""The service unit's exposure rating, as systemd rates it, offline (no running systemd needed).

Runs ``systemd-analyze security --offline=true systemd/bedside.service`` and records the overall
exposure level (0 = most locked down, 10 = fully exposed; issue 12 asks for at most 1.5), the
checks still open with their weights, and the systemd version that rated it. The same check
runs in CI (tests/test_systemd_unit.py).

    python bench/unit_exposure.py [--out bench/results/unit_exposure.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd/bedside.service"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unit", default=str(UNIT))
    p.add_argument("--out", default=str(ROOT / "bench/results/unit_exposure.json"))
    a = p.parse_args()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze not found: apt-get install systemd", file=sys.stderr)
        return 1
    out = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", a.unit],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    if not m:
        print(out, file=sys.stderr)
        return 1
    open_checks: list[dict[str, Any]] = []
    for line in out.splitlines():
        if line.startswith("✗"):
            parts = line[1:].split()
            weight = float(parts[-1]) if re.fullmatch(r"\d+(\.\d+)?", parts[-1]) else None
            open_checks.append({"setting": parts[0], "exposure": weight})
    version = subprocess.run([analyze, "--version"], capture_output=True, text=True).stdout
    result = {
        "unit": str(Path(a.unit).resolve().relative_to(ROOT)),
        "exposure": float(m.group(1)),
        "target": 1.5,
        "open_checks": open_checks,
        "systemd": version.splitlines()[0] if version else "",
        "machine": f"{platform.machine()} {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "command": "systemd-analyze security --offline=true systemd/bedside.service",
    }
    Path(a.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(
        f"exposure {result['exposure']} (target <= 1.5); open: "
        + ", ".join(str(c["setting"]) for c in open_checks)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
