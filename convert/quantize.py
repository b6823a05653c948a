"""One TFLite conversion, run as a child process (``python -m convert.quantize REQUEST.json``).

TensorFlow's converter can die by signal (full-int8 LSTM conversion segfaults in 2.21), so
``bedside convert`` never converts in its own process: it writes a request, runs this module,
and turns a crash into a clear message.

The Keras model is rebuilt with a fixed batch of 1 and its weights copied: static shapes are
what Edge TPU needs and what an LSTM needs to convert at all.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np


def convert(req: dict[str, Any]) -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from convert.architectures import build

    tf.config.threading.set_intra_op_parallelism_threads(int(req.get("threads", 2)))
    trained = keras.models.load_model(req["model"], compile=False)
    model = build(
        req["arch"],
        req["task"],
        tuple(req["shape"]),
        int(req["n_bins"]),
        batch_size=1,
        members=int(req.get("members", 1)),
    )
    model.set_weights(trained.get_weights())
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    quant = req["quant"]
    if quant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "int8":
        calib = np.load(req["calib"]).astype(np.float32)

        def representative() -> Any:
            for w in calib:
                yield [w[None, ...]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif quant != "float32":
        raise ValueError(f"unknown quantization {quant!r}")
    return bytes(conv.convert())


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text())
    data = convert(req)
    Path(req["out"]).write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
