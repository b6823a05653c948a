"""The shipped models' raw outputs for fixed inputs, to compare two machines bit for bit.

    python -m lab.model_outputs [--inputs 32] [--seed 0]

For every ``.tflite`` the package ships (found through ``device.inference.shipped_models_dir``,
so it works from a checkout and from an installed wheel alike), feeds ``--inputs`` input
tensors drawn from a seeded numpy generator (PCG64, whose integer and normal draws are the
same on every platform): half uniform over the input type's whole range, half normal around
the quantisation zero point (where real windows lie), invokes LiteRT with one thread, and
prints one JSON object: per model, the input and output types, the sha256 of all output
bytes in order, the first output, and the median invoke time. ``bench/pibox.py`` runs it on
this machine and inside the arm64 box and compares the digests: an int8 model must give
identical bytes; float16 models (float32 arithmetic) are reported, not required to match.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from typing import Any

import numpy as np


def model_outputs(n_inputs: int, seed: int) -> dict[str, Any]:
    from device.inference import interpreter_module, litert_info_filtered, shipped_models_dir

    litert = interpreter_module()
    out: dict[str, Any] = {}
    for path in sorted(shipped_models_dir().glob("*.tflite")):
        with litert_info_filtered():
            it = litert.Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        (inp,) = it.get_input_details()
        outs = it.get_output_details()
        rng = np.random.default_rng(seed)
        dtype = np.dtype(inp["dtype"])
        shape = tuple(int(n) for n in inp["shape"])
        digest = hashlib.sha256()
        first: list[float] = []
        times: list[float] = []
        for k in range(n_inputs):
            if dtype.kind == "i":
                info = np.iinfo(dtype)
                if k % 2 == 0:
                    x = rng.integers(info.min, info.max, size=shape, endpoint=True)
                else:
                    zero = int(inp["quantization"][1])
                    x = np.clip(np.round(rng.normal(zero, 20.0, size=shape)), info.min, info.max)
                data = x.astype(dtype)
            else:
                data = rng.normal(0.0, 1.0, size=shape).astype(dtype)
            it.set_tensor(inp["index"], data)
            t0 = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - t0)
            for o in outs:
                y = np.ascontiguousarray(it.get_tensor(o["index"]))
                digest.update(y.tobytes())
                if k == 0 and o is outs[0]:
                    first = [float(v) for v in y.ravel()[:8]]
        out[path.stem] = {
            "input": f"{dtype.name}{list(shape)}",
            "output": [f"{np.dtype(o['dtype']).name}{[int(n) for n in o['shape']]}" for o in outs],
            "inputs": n_inputs,
            "sha256": digest.hexdigest(),
            "first_output_head": first,
            "invoke_ms_median": round(statistics.median(times) * 1e3, 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(json.dumps(model_outputs(a.inputs, a.seed), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
