"""Parser throughput: OpenView packets (and text lines) decoded per second on one core.

A HealthyPi sends 125 packets/s; the target is at least 100 x that (12 500 packets/s), so a
small board computer parses a bed's stream with a sliver of one core. The stream is a real
BIDMC record encoded as HealthyPi 5 packets (as ``bedside replay`` sends it), fed in chunks
the size of one SerialSource read (0.1 s of data) and of 4 KiB, clean and with 1 % of the
packets broken (garbage, truncation).

    .venv/bin/python bench/serial_parser.py [--out bench/results/serial_parser.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.sources.formats.openview import OpenViewParser  # noqa: E402
from device.sources.formats.text import TextLineParser  # noqa: E402
from lab.emulator import encode_stream  # noqa: E402

RECORD = Path(__file__).resolve().parents[2] / "shared/data/bidmc/bidmc_csv/bidmc_02_Signals.csv.gz"
HEALTHYPI_PACKETS_PER_S = 125.0


def signals() -> dict[str, np.ndarray]:
    if RECORD.exists():
        from device.recording import read_recording

        return read_recording(RECORD).role_signals()
    rng = np.random.default_rng(0)  # without the shared data: random values, same sizes
    return {r: rng.random(60000) for r in ("ecg", "ppg", "resp")}


def broken(blob: bytes, offsets: np.ndarray, share: float) -> bytes:
    rng = np.random.default_rng(1)
    out = bytearray()
    for i in range(len(offsets) - 1):
        pkt = blob[offsets[i] : offsets[i + 1]]
        u = rng.random()
        if u < share / 2:
            out += rng.integers(0, 256, 20).astype(np.uint8).tobytes() + pkt
        elif u < share:
            out += pkt[: len(pkt) // 2]
        else:
            out += pkt
    return bytes(out)


def measure(
    make: type[OpenViewParser] | type[TextLineParser], data: bytes, chunk: int, repeat: int = 3
) -> dict[str, float]:
    best = float("inf")
    good = 0
    for _ in range(repeat):
        p = make()
        t0 = time.process_time()
        for a in range(0, len(data), chunk):
            p.feed(data[a : a + chunk])
        best = min(best, time.process_time() - t0)
        good = p.counters.good_frames
    return {
        "chunk_bytes": chunk,
        "packets": good,
        "cpu_s": round(best, 4),
        "packets_per_s": round(good / best),
        "x_healthypi_rate": round(good / best / HEALTHYPI_PACKETS_PER_S, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "serial_parser.json"))
    args = ap.parse_args()
    sig = signals()
    ov, ov_off = encode_stream(sig, "openview")
    tx, tx_off = encode_stream(sig, "text", decimals=3)
    read_chunk = int(29 * HEALTHYPI_PACKETS_PER_S * 0.1)  # one 0.1 s SerialSource read
    results = {
        "what": "packets (or text lines) decoded per CPU second, one thread; best of 3",
        "target_x_healthypi_rate": 100,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "stream": f"{RECORD.name if RECORD.exists() else 'random'}: {len(ov_off) - 1} samples",
        "openview": {
            "clean_read_chunk": measure(OpenViewParser, ov, read_chunk),
            "clean_4k": measure(OpenViewParser, ov, 4096),
            "1pct_broken_read_chunk": measure(OpenViewParser, broken(ov, ov_off, 0.01), read_chunk),
            "bytes_per_packet": 29,
        },
        "text": {
            "clean_read_chunk": measure(
                TextLineParser, tx, int(len(tx) / (len(tx_off) - 1) * 12.5)
            ),
            "clean_4k": measure(TextLineParser, tx, 4096),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
