"""Rebuild the bundled MIT-BIH excerpt with isolated ventricular ectopic beats (the beat
classifier's test record) from the full record (run from the project root):

    python lab/make_beat_excerpt.py [--data ../shared/data/mitdb]

Cuts the first ``LENGTH_S`` seconds of record ``RECORD`` (ventricular bigeminy and trigeminy
between sinus beats: 46 N and 19 V beats) as a WFDB record of its own in format 212, digital
values, gains and baselines unchanged, with the reference annotations inside it. See
device/data/ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python lab/make_beat_excerpt.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.make_mitdb_excerpt import write_excerpt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECORD = "119"
START_S = 0
LENGTH_S = 60
NAME = "mitdb_119_excerpt"


def _default_data() -> Path:
    env = os.environ.get("BEDSIDE_SHARED_DATA")
    for cand in (
        Path(env) if env else None,
        ROOT.parent / "shared/data",
        ROOT.parents[1] / "shared/data",
    ):
        if cand is not None and (cand / "mitdb").is_dir():
            return cand / "mitdb"
    return ROOT.parent / "shared" / "data" / "mitdb"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "device" / "data")
    args = ap.parse_args(argv)
    write_excerpt(args.data or _default_data(), RECORD, START_S, LENGTH_S, NAME, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
