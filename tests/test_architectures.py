"""Model builders: an ensemble in one graph answers the mean of its members' logits."""

from __future__ import annotations

import numpy as np
import pytest

from convert.architectures import build, ensemble_of


@pytest.mark.parametrize(("task", "shape"), [("rr", (160, 2)), ("hr", (250, 1))])
def test_ensemble_averages_separately_built_members(task: str, shape: tuple[int, int]) -> None:
    keras = pytest.importorskip("keras", reason="the [convert] extra (TensorFlow) is not installed")
    keras.utils.set_random_seed(3)
    members = [build("cnn", task, shape, 20, member=j) for j in range(2)]
    joined = ensemble_of(members, "cnn", task, shape, 20)
    x = np.random.default_rng(0).normal(size=(4, *shape)).astype(np.float32)
    each = [np.asarray(m(x, training=False)) for m in members]
    assert not np.allclose(each[0], each[1])  # two different members
    np.testing.assert_allclose(
        np.asarray(joined(x, training=False)), (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-5
    )
    # the converter rebuilds the graph and copies the weights in order: same answers
    again = build("cnn", task, shape, 20, batch_size=1, members=2)
    again.set_weights(joined.get_weights())
    np.testing.assert_allclose(
        np.asarray(again(x[:1], training=False)), each[0][:1] / 2 + each[1][:1] / 2, atol=1e-5
    )
