"""How long CI takes: ``.ci/run`` on a fresh clone, timed phase by phase.

    python bench/ci_times.py [--ref HEAD] [--cold-gpubox] [--out bench/results/ci_times.json]

Clones this checkout's committed ``--ref`` into a temporary folder, beside a ``shared`` link
to the data sets this checkout uses (``../shared/data`` or ``BEDSIDE_SHARED_DATA``), so the
tests that need them run as they do in CI; then runs ``nice -n 10 bash .ci/run`` there:
the apt check, a new ``.venv`` with every extra, the core tests on Python 3.10, 3.12 and
3.13 (``.ci/pythons``, new ``.venv-pyX.Y`` each), then the whole suite on 3.11. Caches
outside the clone stay as they are and are reported: pip's download cache, and the GPU box's
trixie root (``lab/gpubox.py``; ``--cold-gpubox`` points it at an empty folder so the run
builds it).

Writes the total, each phase (from ``.ci/pythons``' summary lines and pytest's own), the
slowest tests of the 3.11 suite, and the machine with its load average at start and end (a
shared machine: other jobs' load lengthens every phase). CI's limit is 30 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import gpubox  # noqa: E402
from lab.machine import describe  # noqa: E402

LIMIT_S = 30 * 60
PER_PYTHON = re.compile(
    r"^pythons: Python (\S+): set-up (\d+) s, core tests (\d+) s, exit (\d+)$", re.M
)
PYTHONS_TOTAL = re.compile(r"^pythons: [\d. ]+ in (\d+) s$", re.M)
PYTEST_SUMMARY = re.compile(
    r"^=*\s*(\d+ (?:passed|failed|errors?|skipped|deselected)\b.*?) in ([\d.]+)s", re.M
)
SLOWEST = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)$", re.M)


def shared_data() -> Path | None:
    env = os.environ.get("BEDSIDE_SHARED_DATA")
    for cand in (Path(env) if env else None, ROOT.parent / "shared" / "data"):
        if cand is not None and cand.is_dir():
            return cand.resolve()
    return None


def parse(log: str) -> dict[str, Any]:
    """The phases out of ``.ci/run``'s output."""
    pythons = {
        m[1]: {"setup_s": int(m[2]), "core_tests_s": int(m[3]), "exit": int(m[4])}
        for m in PER_PYTHON.finditer(log)
    }
    total = PYTHONS_TOTAL.search(log)
    summaries = PYTEST_SUMMARY.findall(log)
    suite = summaries[-1] if len(summaries) > len(pythons) else None
    # the last "slowest" block is the 3.11 suite's
    tail = log.rsplit("slowest ", 1)[-1] if "slowest " in log else ""
    slowest = [{"s": float(m[1]), "phase": m[2], "test": m[3]} for m in SLOWEST.finditer(tail)]
    return {
        "pythons": pythons,
        "pythons_total_s": int(total[1]) if total else None,
        "suite_311": {"summary": suite[0], "s": float(suite[1])} if suite else None,
        "suite_311_slowest": slowest if suite else [],
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ref", default="HEAD", help="what to clone (committed; default HEAD)")
    ap.add_argument("--cold-gpubox", action="store_true", help="build the GPU box's root anew")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ci_times.json")
    ap.add_argument("--keep", action="store_true", help="keep the clone (path printed)")
    a = ap.parse_args()

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", a.ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="bedside-ci-"))
    clone = work / "bedside-edge"
    subprocess.run(
        ["git", "clone", "-q", str(ROOT), str(clone)], check=True
    )  # fmt: skip
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    data = shared_data()
    if data is not None:
        (work / "shared").mkdir()
        (work / "shared" / "data").symlink_to(data)
    env = {**os.environ, "PYTEST_ADDOPTS": "--durations=15"}
    env.pop("BEDSIDE_SHARED_DATA", None)  # the clone finds ../shared/data as CI does
    box_cache = gpubox.default_cache()
    if a.cold_gpubox:
        box_cache = work / "gpubox-cache"
        env["BEDSIDE_GPUBOX_CACHE"] = str(box_cache)
    caches = {
        "pip_cache_present": (Path.home() / ".cache" / "pip").is_dir(),
        "gpubox_root_present": gpubox.root_dir(box_cache).joinpath("opt/venv/.complete").is_file(),
        "gpubox_cache": str(box_cache),
    }
    load0 = [round(x, 2) for x in os.getloadavg()]
    print(f"ci_times: nice -n 10 bash .ci/run in {clone} ({commit[:10]})", flush=True)
    t0 = time.monotonic()
    log_path = work / "ci.log"
    with log_path.open("w") as log:
        done = subprocess.run(
            ["nice", "-n", "10", "bash", ".ci/run"], cwd=clone, env=env, stdout=log,
            stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    total_s = time.monotonic() - t0
    text = log_path.read_text(errors="replace")
    phases = parse(text)
    known = (phases["pythons_total_s"] or 0) + (
        phases["suite_311"]["s"] if phases["suite_311"] else 0
    )
    result = {
        "machine": {**describe(), "loadavg_at_start": load0},
        "command": "python bench/ci_times.py" + (" --cold-gpubox" if a.cold_gpubox else ""),
        "commit": commit,
        "shared_data": str(data) if data else None,
        "caches_at_start": caches,
        "exit": done.returncode,
        "total_s": round(total_s, 1),
        "limit_s": LIMIT_S,
        "setup_and_other_s": round(total_s - known, 1),
        **phases,
    }
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if done.returncode != 0:
        result["log_tail"] = text[-4000:]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"ci_times: exit {done.returncode}, {total_s / 60:.1f} min in all "
        f"(pythons {phases['pythons_total_s']} s, 3.11 suite "
        f"{phases['suite_311']['s'] if phases['suite_311'] else '?'} s); {a.out}",
        flush=True,
    )
    if a.keep:
        print(f"ci_times: kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
