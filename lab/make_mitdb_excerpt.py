"""Rebuild the bundled MIT-BIH excerpt (two runs of ventricular tachycardia) from the full
record (run from the project root):

    python lab/make_mitdb_excerpt.py [--data ../shared/data/mitdb]

Cuts ``START_S`` .. ``START_S + LENGTH_S`` of record ``RECORD`` as a WFDB record of its own in
format 212 (the MIT-BIH Arrhythmia Database's own format), digital values, gains and baselines
unchanged, with the reference annotations inside it shifted to start at 0. See
device/data/ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECORD = "205"
#: 270-340 s of record 205: sinus rhythm, then two runs of ventricular tachycardia (8 and 10
#: ventricular beats, from 298.8 s and 303.0 s) and sinus rhythm again
START_S = 270
LENGTH_S = 70
NAME = "mitdb_205_excerpt"


def write_excerpt(
    src: Path, record: str, start_s: int, length_s: int, name: str, out: Path
) -> None:
    """Write ``start_s`` .. ``start_s + length_s`` of MIT-BIH record ``record`` (in folder
    ``src``) to ``out`` as WFDB record ``name``: format 212, digital values, gains and
    baselines unchanged, the reference annotations inside it shifted to start at 0."""
    import wfdb

    path = str(src / record)
    fs = int(wfdb.rdheader(path).fs)
    a, b = start_s * fs, (start_s + length_s) * fs
    rec = wfdb.rdrecord(path, sampfrom=a, sampto=b, physical=False)
    ann = wfdb.rdann(path, "atr", sampfrom=a, sampto=b - 1, shift_samps=True)
    out.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=rec.units,
        sig_name=rec.sig_name,
        d_signal=rec.d_signal,
        fmt=["212"] * rec.n_sig,
        adc_gain=rec.adc_gain,
        baseline=rec.baseline,
        comments=[
            f"excerpt of MIT-BIH Arrhythmia Database record {record}, "
            f"{start_s}-{start_s + length_s}"
            " s, unchanged values (ODC-By 1.0; see ATTRIBUTION.md)"
        ],
        write_dir=str(out),
    )
    wfdb.wrann(
        name,
        "atr",
        np.asarray(ann.sample, dtype=np.int64),
        symbol=list(ann.symbol),
        aux_note=[n.rstrip("\x00") for n in ann.aux_note],
        fs=fs,
        write_dir=str(out),
    )
    print(f"wrote {out / name}.hea/.dat/.atr ({length_s} s of {record})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mitdb")
    ap.add_argument("--out", type=Path, default=ROOT / "device" / "data")
    args = ap.parse_args(argv)
    write_excerpt(args.data, RECORD, START_S, LENGTH_S, NAME, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
