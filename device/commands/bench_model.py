"""Time one TFLite model on this machine: invoke latency and peak memory, as TFLite's
``benchmark_model`` reports them.

The model is loaded with LiteRT on the chosen delegate (``--delegate``, with ``--fallback``
as for ``bedside run``), its input tensor filled once with random values of its type, then
invoked ``--warmup`` times untimed and ``--runs`` times timed, one invoke at a time. Any
``.tflite`` works (no manifest needed), so a model compiled for an Edge TPU can be timed too.

Printed: the time to build the interpreter (init) and of the first invoke; the median, p99,
mean, min and max of the timed invokes; memory as the growth of the resident set (RSS)
from just before the interpreter was built to after init and after the runs (what the
model adds to a process), and the process's peak RSS (``ru_maxrss``, everything included:
Python, NumPy and the runtime).

Examples:
  bedside bench-model models/rr_ppg_cnn_int8.tflite
  bedside bench-model model_edgetpu.tflite --delegate edgetpu --runs 1000
  bedside bench-model model.tflite --threads 2 --json result.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from device.delegates import DELEGATES, FALLBACKS

    p.add_argument("model", metavar="FILE.tflite", help="the model to time")
    p.add_argument("--delegate", choices=sorted(DELEGATES), default="cpu", help="default cpu")
    p.add_argument(
        "--delegate-path", metavar="LIB", default="", help="gpu: the GPU delegate library"
    )
    p.add_argument(
        "--fallback",
        choices=FALLBACKS,
        default="fail",
        help="a delegate that cannot load: fail (exit 2, default) or cpu (time it on the CPU)",
    )
    p.add_argument("--threads", type=int, default=1, metavar="N", help="interpreter threads")
    p.add_argument("--runs", type=int, default=1000, metavar="N", help="timed invokes (1000)")
    p.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed invokes (10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input")
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON ('-': stdout)")


def rss_kb() -> int:
    """Resident set size now, in KiB (Linux /proc; elsewhere the peak, the best there is)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return peak_rss_kb()


def peak_rss_kb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak // 1024) if sys.platform == "darwin" else int(peak)  # macOS: bytes


def random_input(detail: dict[str, Any], rng: Any) -> Any:
    import numpy as np

    shape = tuple(int(v) for v in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def run(args: argparse.Namespace) -> int:
    from device.config import ModelsConfig
    from device.delegates import DELEGATES, resolve_delegate
    from device.errors import UserError
    from device.inference import interpreter_module

    path = Path(args.model)
    if not path.is_file():
        raise UserError(f"{path}: no such model file", "give the path of a .tflite file")
    if args.runs < 1 or args.threads < 1 or args.warmup < 0:
        raise UserError("--runs and --threads must be at least 1, --warmup at least 0")
    cfg = ModelsConfig(
        delegate=args.delegate,
        delegate_path=args.delegate_path,
        fallback=args.fallback,
        threads=args.threads,
    )
    interpreter_module()  # the runtime's own import is not the model's memory
    choice = resolve_delegate(cfg)
    import numpy as np

    # numpy.random and the timing array before the first reading: not the model's memory
    rng = np.random.default_rng(args.seed)
    times_ns = np.zeros(args.runs, dtype=np.int64)
    rss0 = rss_kb()
    t0 = time.perf_counter()
    try:
        runner = DELEGATES[choice.key].open(path, cfg)
    except (ValueError, RuntimeError) as e:
        raise UserError(
            f"{path}: LiteRT cannot load the model ({' '.join(str(e).split())})",
            "check that it is a TFLite flatbuffer made for this delegate",
        ) from None
    init_ms = (time.perf_counter() - t0) * 1e3
    rss_init = rss_kb()
    inp = runner.input
    x = random_input({"shape": inp.shape, "dtype": inp.dtype}, rng)
    t0 = time.perf_counter()
    runner.invoke(x)
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(args.warmup):
        runner.invoke(x)
    clock = time.perf_counter_ns
    invoke = runner.invoke
    for i in range(args.runs):
        a = clock()
        invoke(x)  # input in, output read back (the classic Interpreter: set, invoke, get)
        times_ns[i] = clock() - a
    rss_end = rss_kb()
    us = times_ns / 1e3
    result = {
        "model": str(path),
        "size_kb": round(path.stat().st_size / 1024, 1),
        "input": {"shape": list(inp.shape), "dtype": inp.dtype.name},
        "delegate": choice.key,
        "runs_on": runner.where,
        "delegate_requested": choice.requested,
        "degraded": choice.degraded.to_payload() if choice.degraded is not None else None,
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "init_ms": round(init_ms, 3),
        "first_invoke_ms": round(first_ms, 3),
        "invoke_us": {
            "median": round(float(np.median(us)), 2),
            "p99": round(float(np.percentile(us, 99)), 2),
            "mean": round(float(us.mean()), 2),
            "std": round(float(us.std()), 2),
            "min": round(float(us.min()), 2),
            "max": round(float(us.max()), 2),
        },
        "memory_mb": {
            "rss_before_init": round(rss0 / 1024, 2),
            "rss_delta_init": round((rss_init - rss0) / 1024, 2),
            "rss_delta_overall": round((rss_end - rss0) / 1024, 2),
            "peak_rss": round(peak_rss_kb() / 1024, 2),
        },
    }
    inv, mem = result["invoke_us"], result["memory_mb"]
    on = choice.key + (f" (fallback from {choice.requested})" if choice.degraded else "")
    print(
        f"{path.name}: {result['size_kb']} KB, input {result['input']['shape']} "
        f"{result['input']['dtype']}; delegate {on}, {args.threads} thread(s)\n"
        f"  init {init_ms:.2f} ms, first invoke {first_ms:.3f} ms\n"
        f"  invoke over {args.runs} runs: median {inv['median']:.1f} us, p99 {inv['p99']:.1f} us "
        f"(mean {inv['mean']:.1f}, min {inv['min']:.1f}, max {inv['max']:.1f})\n"
        f"  memory: RSS +{mem['rss_delta_init']:.2f} MB at init, +{mem['rss_delta_overall']:.2f} "
        f"MB overall (from {mem['rss_before_init']:.1f} MB); peak RSS {mem['peak_rss']:.1f} MB"
    )
    if args.json:
        text = json.dumps(result, indent=1) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text, encoding="utf-8")
    return 0
