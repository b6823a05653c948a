"""Keras model builders: small 1-D CNNs and a CNN-LSTM, each ending in rate-bin logits.

Every model outputs logits over a grid of rates (HR every 2 bpm, RR every 1 breath/min);
the device turns them into a rate (the probability-weighted mean around the most likely bin)
and a spread (the distribution's standard deviation), its quality gate
(``device.estimators.model.decode_rates``). A grid rather than one regressed number keeps
int8 resolution: one int8 output spans its range in 256 steps (0.55 bpm over 40-180 bpm),
while a weighted mean of many int8 logits interpolates between bins.

The LSTM variant must be built with a fixed batch of 1 to convert (TensorFlow 2.21 cannot
convert a dynamic-batch LSTM) and its full-int8 conversion crashes the converter: the CNNs
are the int8 / Edge TPU models, the CNN-LSTM ships as float16 or dynamic range.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

ARCHS = ("cnn", "crnn")


def build(
    arch: str,
    task: str,
    shape: tuple[int, int],
    n_bins: int,
    batch_size: int | None = None,
    members: int = 1,
    member: int | None = None,
) -> Any:
    """The model for ``arch`` and ``task``: window in, rate-bin logits out.

    ``members`` > 1: an ensemble in one graph, that many copies of the network side by side
    on the same window with their logits averaged (``ensemble_of`` fills it with separately
    trained members). ``member`` j: one member on its own, its layers named as in the
    ensemble (``m<j>_...``) so its weights can be copied in by name.
    """
    import keras
    from keras import layers

    inp = keras.Input(shape, batch_size=batch_size, name="window")
    # The trunk is built before its output layer (initialisers draw their seeds in the order
    # layers are created, so this order is what makes a seed give the same model).
    if members == 1:
        prefix = "" if member is None else f"m{member}_"
        x = _trunk(inp, arch, task, shape, prefix)
        out = layers.Dense(n_bins, name=f"{prefix}rate_logits")(x)
        name = f"{task}_{arch}" if member is None else f"{task}_{arch}_m{member}"
        return keras.Model(inp, out, name=name)
    outs = []
    for j in range(members):
        x = _trunk(inp, arch, task, shape, f"m{j}_")
        outs.append(layers.Dense(n_bins, name=f"m{j}_rate_logits")(x))
    out = layers.Average(name="rate_logits")(outs)
    return keras.Model(inp, out, name=f"{task}_{arch}_x{members}")


def ensemble_of(
    trained: list[Any], arch: str, task: str, shape: tuple[int, int], n_bins: int
) -> Any:
    """One model averaging the logits of separately trained members (built with ``member``)."""
    model = build(arch, task, shape, n_bins, members=len(trained))
    by_name = {layer.name: layer for m in trained for layer in m.layers}
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    return model


def _trunk(x: Any, arch: str, task: str, shape: tuple[int, int], prefix: str) -> Any:
    """Everything before the logits; layers named ``prefix`` + a counter when a prefix is
    given (ensemble members), else by Keras."""
    from keras import layers

    count = itertools.count()

    def nm(kind: str) -> str | None:
        return f"{prefix}{kind}{next(count)}" if prefix else None

    if task.startswith("hr"):
        # 8 s at 31.25 Hz (PPG) or 62.5 Hz (ECG): strided convolutions halve the rate until
        # about 16 steps of 0.5 s remain, so the last layers see several beats at once.
        n_halvings = max(1, int(round(np.log2(shape[0] / 16.0))))
        plan = [(8, 7), (16, 5), (24, 5), (32, 3), (32, 3)][-n_halvings:]
        for filters, k in plan:
            x = layers.Conv1D(
                filters, k, strides=2, padding="same", use_bias=False, name=nm("conv")
            )(x)
            x = layers.BatchNormalization(name=nm("bn"))(x)
            x = layers.ReLU(name=nm("relu"))(x)
        x = layers.Flatten(name=nm("flat"))(x)
        return layers.Dense(32, activation="relu", name=nm("dense"))(x)
    if arch == "cnn":
        # 32 s at 5 Hz: 160 -> 10 steps of 3.2 s (a breath at 18/min) after four poolings.
        for filters, k in ((16, 7), (16, 5), (24, 5), (32, 3)):
            x = layers.Conv1D(filters, k, padding="same", use_bias=False, name=nm("conv"))(x)
            x = layers.BatchNormalization(name=nm("bn"))(x)
            x = layers.ReLU(name=nm("relu"))(x)
            x = layers.MaxPooling1D(2, name=nm("pool"))(x)
        x = layers.Flatten(name=nm("flat"))(x)
        return layers.Dense(32, activation="relu", name=nm("dense"))(x)
    if arch == "crnn":
        for filters, k in ((16, 7), (24, 5)):
            x = layers.Conv1D(
                filters, k, strides=2, padding="same", use_bias=False, name=nm("conv")
            )(x)
            x = layers.BatchNormalization(name=nm("bn"))(x)
            x = layers.ReLU(name=nm("relu"))(x)
        return layers.LSTM(24, name=nm("lstm"))(x)
    raise ValueError(f"unknown architecture {arch!r} (choose from {', '.join(ARCHS)})")


def soft_labels(rates: np.ndarray, lo: float, step: float, n_bins: int) -> np.ndarray:
    """Targets on the rate grid: a Gaussian one bin wide around each reference rate."""
    centers = lo + step * np.arange(n_bins)
    z = (centers[None, :] - np.asarray(rates, dtype=np.float64)[:, None]) / step
    p = np.exp(-0.5 * z * z)
    out: np.ndarray = (p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return out
