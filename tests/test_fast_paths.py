"""The fast paths compute the same numbers as the plain ones.

* The train step builds only the first num_updates inner steps (the evaluated extra steps do not
  feed the meta-loss or the training summaries): its update and totals equal those of the full
  loop's meta-gradients.
* The conv nets' task layouts (per-task tensors between convolutions, or one stacked tensor) give
  the same outputs and meta-gradients in float64; `auto` picks by the thread pools.
* --fused_moments_grad (one hand-written gradient for the norm moments' sums) gives the same outputs
  and meta-gradients in float64, second order included.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.learner import build
from maml_tf.meta.adam import TF1Adam


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



def _image_batch(cfg: Config, seed: int) -> tuple:
    rng = np.random.RandomState(seed)
    t, n, k = cfg.meta_batch_size, cfg.num_classes, cfg.update_batch_size
    x = lambda: rng.rand(t, n * k, cfg.dim_input)  # noqa: E731
    y = lambda: np.eye(n)[rng.randint(n, size=(t, n * k))]  # noqa: E731
    return x(), y(), x(), y()


@pytest.mark.parametrize("extra,stop_grad", [
    (dict(norm="batch_norm"), False),
    pytest.param(dict(norm="layer_norm", max_pool=True), False, marks=pytest.mark.slow),
    pytest.param(dict(norm="batch_norm"), True, marks=pytest.mark.slow),
    pytest.param(dict(norm="layer_norm", max_pool=True), True, marks=pytest.mark.slow),
])
def test_task_layouts_compute_the_same_meta_gradients(extra, stop_grad):
    """--task_layout list (per-task tensors between convolutions), stacked and chunked (2 groups of the 3
    tasks): same numbers in float64, second order with batch norm and strided convs (Omniglot); the slow
    set adds layer norm with max-pool and first order."""
    base = Config(datasource="omniglot", num_classes=3, update_batch_size=1, meta_batch_size=3,
                  num_filters=4, num_updates=2, update_lr=0.4, stop_grad=stop_grad, **extra)
    batch = _image_batch(base, 5)
    results = {}
    for layout in ("list", "stacked", "chunked"):
        chunks = dict(task_chunks=2) if layout == "chunked" else {}  # 2 groups of the 3 tasks
        learner = build(base.replace(task_layout=layout, **chunks), dtype="float64")
        assert {layer.layout for layer in learner.model.stack if hasattr(layer, "layout")} == {layout}
        grads, out = learner.meta_gradients(batch)
        results[layout] = ([g.numpy() for g in grads], out["outputbs"].numpy())
    g_list, o_list = results["list"]
    for other in ("stacked", "chunked"):
        g_other, o_other = results[other]
        np.testing.assert_allclose(o_list, o_other, rtol=1e-12, atol=1e-12)
        for a, b in zip(g_list, g_other):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert any(np.abs(g).max() > 1e-6 for g in g_list)


@pytest.mark.parametrize("cfg", [
    Config(datasource="omniglot", num_classes=3, update_batch_size=1, meta_batch_size=2, num_filters=4,
           num_updates=2, update_lr=0.4, norm="batch_norm"),
    pytest.param(Config(datasource="omniglot", num_classes=3, update_batch_size=2, meta_batch_size=2, num_filters=4,
                        num_updates=2, update_lr=0.4, norm="layer_norm", max_pool=True, task_layout="stacked"),
                 marks=pytest.mark.slow),
    pytest.param(Config(datasource="omniglot", num_classes=3, update_batch_size=1, meta_batch_size=2, num_filters=4,
                        num_updates=2, update_lr=0.4, norm="batch_norm", stop_grad=True), marks=pytest.mark.slow),
], ids=["bn-list-so", "ln-maxpool-stacked-so", "bn-list-fo"])
def test_fused_moments_grad_computes_the_same_meta_gradients(cfg):
    """--fused_moments_grad: same outputs and meta-gradients as autodiff of the two sums, in float64.

    Through two inner steps the meta-gradient differentiates the hand-written backward once more, so
    second order is covered; the default set checks batch norm on the list layout."""
    batch = _image_batch(cfg, 7)
    results = {}
    for fused in (False, True):
        learner = build(cfg.replace(fused_moments_grad=fused), dtype="float64")
        norms = [layer for layer in learner.model.stack if hasattr(layer, "fused_grad")]
        assert norms and all(layer.fused_grad == fused for layer in norms)
        grads, out = learner.meta_gradients(batch)
        results[fused] = ([g.numpy() for g in grads], out["outputbs"].numpy())
    (g_auto, o_auto), (g_fused, o_fused) = results[False], results[True]
    np.testing.assert_allclose(o_fused, o_auto, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_fused, g_auto):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert any(np.abs(g).max() > 1e-6 for g in g_auto)


def test_fused_sums_gradient_is_exact_to_second_order():
    """The pair's hand-written backward against autodiff: gradient and a Hessian-vector product."""
    from maml_tf.models.layers import _sums_fused_grad

    rng = np.random.RandomState(0)
    x0 = tf.constant(rng.randn(3, 4, 5), tf.float64)
    v = tf.constant(rng.randn(3, 4, 5), tf.float64)
    w1, w2 = tf.constant(rng.randn(1, 1, 5)), tf.constant(rng.randn(1, 1, 5))

    def f(x, fused):
        s1, s2 = _sums_fused_grad(x, [0, 1]) if fused else (
            tf.reduce_sum(x, [0, 1], keepdims=True), tf.reduce_sum(tf.square(x), [0, 1], keepdims=True))
        return tf.reduce_sum(tf.sin(s1) * w1 + s2 * s1 * w2)

    out = {}
    for fused in (False, True):
        with tf.GradientTape() as outer:
            outer.watch(x0)
            with tf.GradientTape() as inner:
                inner.watch(x0)
                y = f(x0, fused)
            g = inner.gradient(y, x0)
            gv = tf.reduce_sum(g * v)
        out[fused] = (y.numpy(), g.numpy(), outer.gradient(gv, x0).numpy())
    for a, b in zip(out[True], out[False]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_task_layout_flag_is_checked():
    with pytest.raises(MamlError, match="--task_layout='columns': expected one of auto, list, stacked, chunked"):
        Config(datasource="omniglot").replace(task_layout="columns")


def test_task_layout_auto_follows_the_thread_pools():
    """auto: the list layout where ops run side by side on a CPU, stacked where they run one at a time."""
    from maml_tf.learner import task_layout

    if tf.config.list_physical_devices("GPU"):
        assert task_layout(Config(datasource="omniglot")) == "stacked"
        return
    assert task_layout(Config(datasource="omniglot")) == "list"  # auto pools: 1 / cores
    assert task_layout(Config(datasource="miniimagenet", max_pool=True, num_filters=32)) == "stacked"  # 0 / 1
    assert task_layout(Config(datasource="omniglot", inter_op_threads=1)) == "stacked"
    assert task_layout(Config(datasource="miniimagenet", max_pool=True, thread_pools="tf")) == "list"
    assert task_layout(Config(datasource="miniimagenet", task_layout="list")) == "list"


def test_task_chunks_follow_the_ops_run_at_once():
    """The chunked layout has 4 groups of tasks per op the pools run at once, unless --task_chunks says."""
    from maml_tf.learner import build, task_chunks
    from maml_tf.run import cpu_count

    assert task_chunks(Config(datasource="omniglot", intra_op_threads=1, inter_op_threads=3)) == 12
    assert task_chunks(Config(datasource="omniglot", thread_pools="tf")) == 4 * cpu_count()
    assert task_chunks(Config(datasource="miniimagenet", max_pool=True, intra_op_threads=2,
                              inter_op_threads=1)) == 4
    assert task_chunks(Config(datasource="omniglot", task_chunks=3)) == 3
    with pytest.raises(MamlError, match="--task_chunks=-1: must be >= 0"):
        Config(datasource="omniglot").replace(task_chunks=-1)
    learner = build(Config(datasource="omniglot", num_classes=3, num_filters=4, meta_batch_size=5,
                           task_layout="chunked", task_chunks=3))
    convs = [layer for layer in learner.model.stack if hasattr(layer, "chunks")]
    assert {(c.layout, c.chunks) for c in convs} == {("chunked", 3)}
