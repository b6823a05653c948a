"""Writing recordings (test fixtures, excerpts, spliced scenarios): the device only reads."""

from __future__ import annotations

import gzip
import io
import math
import wave
from pathlib import Path

import numpy as np

from device.recording import TIME_COLUMN, Recording


def write_wav_int16(path: str | Path, x: np.ndarray, fs_hz: int) -> None:
    """Write mono 16-bit PCM (used by replays and test fixtures)."""
    y = np.clip(np.round(np.asarray(x) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(fs_hz))
        w.writeframes(y.tobytes())


def write_csv(
    path: str | Path, rec: Recording, names: list[str] | None = None, with_time: bool = True
) -> None:
    """Write a recording in BIDMC CSV layout (gzip when the name ends in .gz)."""
    cols = names or list(rec.channels)
    buf = io.StringIO()
    header = ([TIME_COLUMN] if with_time else []) + cols
    buf.write(", ".join(header) + "\n")
    data = np.column_stack([rec.channels[c] for c in cols])
    for i, row in enumerate(data):
        vals = [f"{v:.6g}" if math.isfinite(v) else "nan" for v in row]
        if with_time:
            vals.insert(0, f"{i / rec.fs_hz:.6g}")
        buf.write(",".join(vals) + "\n")
    p = Path(path)
    if p.suffix == ".gz":
        with gzip.open(p, "wt", encoding="utf-8") as f:
            f.write(buf.getvalue())
    else:
        p.write_text(buf.getvalue(), encoding="utf-8")
