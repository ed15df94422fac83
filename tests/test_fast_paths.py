"""The fast paths compute the same numbers as the plain ones.

* The train step builds only the first num_updates inner steps (the evaluated extra steps do not
  feed the meta-loss or the training summaries): its update and totals equal those of the full
  loop's meta-gradients.
* The grouped per-task convolution (one conv, tasks as channel groups) equals the per-task loop
  in the forward pass (its filter gradient does not run on CPU, see models/layers.py).
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from maml_tf.config import Config
from maml_tf.experiment import build
from maml_tf.meta.adam import TF1Adam
from maml_tf.models import layers


def test_train_step_builds_only_the_differentiated_steps_and_matches_the_full_loop():
    cfg = Config(datasource="sinusoid", norm="batch_norm", meta_batch_size=3, update_batch_size=4,
                 update_lr=0.05, num_updates=2)
    assert cfg.num_steps == 5  # 5 steps evaluated, 2 differentiated
    learner = build(cfg, dtype="float64")
    assert learner.config.loop.num_steps == 5 and learner.train_loop.num_steps == 2
    from maml_tf.data.sinusoid import SinusoidTasks
    batch = SinusoidTasks(cfg.samples_per_class, seed=3).split_batch(3, 4, dtype=np.float64)
    grads, full = learner.meta_gradients(batch)  # the full 5-step loop
    # Expected: one TF1 Adam step on the full loop's meta-gradient, applied to a copy of the weights.
    copies = [tf.Variable(v.numpy()) for v in learner.variables]
    TF1Adam(copies, cfg.meta_lr).apply(grads)
    summary = learner.meta_train_step(batch)
    assert summary["total_losses2"].shape == (2,)
    np.testing.assert_allclose(summary["total_losses2"], full["total_losses2"][:2], rtol=1e-12)
    np.testing.assert_allclose(summary["total_loss1"], full["total_loss1"], rtol=1e-12)
    for v, c in zip(learner.variables, copies):
        np.testing.assert_allclose(v.numpy(), c.numpy(), rtol=1e-12, atol=1e-15)
    assert any(not np.allclose(v.numpy(), g) for v, g in zip(learner.variables, grads))


@pytest.fixture
def conv_impl():
    before = layers.CONV_IMPL["per_task"]
    yield layers.CONV_IMPL
    layers.CONV_IMPL["per_task"] = before


def test_grouped_conv_forward_equals_per_task_loop(conv_impl):
    cfg = Config(datasource="omniglot", num_classes=3, meta_batch_size=2, update_batch_size=1, update_lr=0.4,
                 num_updates=1, num_filters=4)
    rng = np.random.default_rng(0)
    eye = np.eye(3, dtype=np.float32)[None].repeat(2, 0)
    batch = (rng.uniform(0, 1, (2, 3, 784)).astype(np.float32), eye,
             rng.uniform(0, 1, (2, 3, 784)).astype(np.float32), eye)
    results = {}
    for impl in ("loop", "grouped"):
        conv_impl["per_task"] = impl
        learner = build(cfg, test_num_updates=1)  # one evaluated step keeps the graph small
        results[impl] = learner.evaluate(batch)
    for k in ("outputas", "outputbs", "lossesb"):
        np.testing.assert_allclose(results["grouped"][k], results["loop"][k], rtol=1e-4, atol=1e-5)
