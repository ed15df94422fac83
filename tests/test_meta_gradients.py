"""The math of the meta-gradient: finite differences, first vs second order, batched vs per task."""
import numpy as np
import pytest
import tensorflow as tf

from maml_tf.meta.adapt import InnerLoop, adapt_and_evaluate, totals
from maml_tf.models.nets import NetSpec, build_model


def _batch(rng, tasks=3, k=5, dim=1):
    xa = rng.uniform(-2, 2, (tasks, k, dim))
    xb = rng.uniform(-2, 2, (tasks, k, dim))
    f = lambda x: np.sin(x.sum(-1, keepdims=True)) * 2
    return xa, f(xa), xb, f(xb)


def _meta_loss(model, params, batch, loop):
    res = adapt_and_evaluate(model, params, *[tf.constant(b) for b in batch], loop=loop)
    return totals(res, len(batch[0]))["total_losses2"][loop.num_updates - 1]


def _grads(model, batch, loop):
    params = [tf.constant(v.numpy()) for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = _meta_loss(model, params, batch, loop)
    return loss, tape.gradient(loss, params), params


@pytest.mark.parametrize("norm", ["None", "batch_norm", "layer_norm"])
def test_second_order_meta_gradient_matches_finite_differences(norm):
    rng = np.random.default_rng(0)
    model = build_model(NetSpec("fc", 1, 1, norm=norm, hidden=(6, 5), dtype="float64"), seed=3)
    for v in model.trainable_variables:  # weights large enough that the inner step matters
        v.assign(rng.normal(0, 0.7, v.shape) + (1.0 if "gamma" in v.path else 0.0))
    batch = _batch(rng)
    loop = InnerLoop(update_lr=0.1, num_updates=2, num_steps=3)
    _, grads, params = _grads(model, batch, loop)
    eps = 1e-6
    for i, p in enumerate(params):
        flat = p.numpy().ravel()
        for j in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            def at(delta):
                q = flat.copy()
                q[j] += delta
                ps = list(params)
                ps[i] = tf.constant(q.reshape(p.shape))
                return float(_meta_loss(model, ps, batch, loop))
            fd = (at(eps) - at(-eps)) / (2 * eps)
            assert grads[i].numpy().ravel()[j] == pytest.approx(fd, rel=1e-5, abs=1e-7), (model.reference_names[i], j)


def test_first_order_equals_second_order_when_inner_step_is_zero():
    rng = np.random.default_rng(1)
    model = build_model(NetSpec("fc", 1, 1, norm="batch_norm", hidden=(8,), dtype="float64"), seed=1)
    batch = _batch(rng)
    so = _grads(model, batch, InnerLoop(0.0, 1, 1))[1]
    fo = _grads(model, batch, InnerLoop(0.0, 1, 1, stop_grad=True))[1]
    for a, b in zip(so, fo):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)


def test_linear_model_meta_gradient_has_the_closed_form():
    """For y = xW + b and MSE, fast = w - a*g(w) with Hessian H constant: SO = (I - a H) g_q, FO = g_q."""
    rng = np.random.default_rng(2)
    model = build_model(NetSpec("fc", 2, 1, hidden=(), dtype="float64"), seed=0)
    model.trainable_variables[0].assign(rng.normal(size=(2, 1)))
    xa, xb = rng.normal(size=(1, 6, 2)), rng.normal(size=(1, 4, 2))
    ya, yb = rng.normal(size=(1, 6, 1)), rng.normal(size=(1, 4, 1))
    a = 0.05
    _, so, params = _grads(model, (xa, ya, xb, yb), InnerLoop(a, 1, 1))
    _, fo, _ = _grads(model, (xa, ya, xb, yb), InnerLoop(a, 1, 1, stop_grad=True))
    # Parameters theta = (w1, w2, b); features phi = (x1, x2, 1).
    pa = np.concatenate([xa[0], np.ones((6, 1))], 1)
    pb = np.concatenate([xb[0], np.ones((4, 1))], 1)
    theta = np.concatenate([params[0].numpy().ravel(), params[1].numpy()])
    H = 2 * pa.T @ pa / 6
    g_a = 2 * pa.T @ (pa @ theta - ya[0, :, 0]) / 6
    fast = theta - a * g_a
    g_q = 2 * pb.T @ (pb @ fast - yb[0, :, 0]) / 4
    np.testing.assert_allclose(np.concatenate([fo[0].numpy().ravel(), fo[1].numpy()]), g_q, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate([so[0].numpy().ravel(), so[1].numpy()]),
                               (np.eye(3) - a * H) @ g_q, rtol=1e-10)


def test_tasks_computed_together_equal_tasks_computed_alone():
    rng = np.random.default_rng(3)
    model = build_model(NetSpec("conv", 36, 3, norm="batch_norm", num_filters=4, dtype="float64"), seed=2)
    xa, xb = rng.uniform(size=(3, 6, 36)), rng.uniform(size=(3, 6, 36))
    ya = np.eye(3)[rng.integers(0, 3, (3, 6))]
    yb = np.eye(3)[rng.integers(0, 3, (3, 6))]
    loop = InnerLoop(0.3, 2, 2, classification=True, update_batch_size=2)
    params = [v.value for v in model.trainable_variables]
    together = adapt_and_evaluate(model, params, xa, ya, xb, yb, loop)
    for t in range(3):
        alone = adapt_and_evaluate(model, params, xa[t:t + 1], ya[t:t + 1], xb[t:t + 1], yb[t:t + 1], loop)
        np.testing.assert_allclose(together["outputbs"][:, t], alone["outputbs"][:, 0], rtol=1e-10)


def test_batch_norm_moments_keep_the_second_derivative_that_tf_nn_moments_drops():
    rng = np.random.default_rng(4)
    spec = dict(kind="fc", dim_input=1, dim_output=1, norm="batch_norm", hidden=(5,), dtype="float64")
    batch = _batch(rng, tasks=2)
    loop = InnerLoop(0.2, 1, 1)
    exact = build_model(NetSpec(**spec), seed=5)
    tf2 = build_model(NetSpec(**spec, norm_variant="tf2"), seed=5)
    for a, b in zip(exact.trainable_variables, tf2.trainable_variables):
        b.assign(a)
    g_exact = _grads(exact, batch, loop)[1]
    g_tf2 = _grads(tf2, batch, loop)[1]
    g_fo_exact = _grads(exact, batch, InnerLoop(0.2, 1, 1, stop_grad=True))[1]
    g_fo_tf2 = _grads(tf2, batch, InnerLoop(0.2, 1, 1, stop_grad=True))[1]
    # First order: the same function. Second order: differ (quirk 5 of the golden README).
    for a, b in zip(g_fo_exact, g_fo_tf2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
    assert max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(g_exact, g_tf2)) > 1e-6
    # The bias feeding batch norm: the exact meta-gradient is zero, tf.nn.moments' is not.
    bias = exact.reference_names.index("model/Variable_1")
    assert np.abs(g_exact[bias].numpy()).max() < 1e-12


def test_lean_training_step_skips_intermediate_queries_but_not_the_meta_gradient():
    """A training step without summaries computes only the last query pass; same meta-update."""
    from maml_tf.meta.step import MetaConfig, MetaLearner

    rng = np.random.default_rng(5)
    batch = tuple(np.asarray(b) for b in _batch(rng, tasks=2))
    learners = []
    for _ in range(2):
        model = build_model(NetSpec("fc", 1, 1, norm="layer_norm", hidden=(6,), dtype="float64"), seed=7)
        learners.append(MetaLearner(model, MetaConfig(InnerLoop(0.1, 3, 5), meta_batch_size=2)))
    full = learners[0].meta_train_step(batch, summaries=True)
    lean = learners[1].meta_train_step(batch, summaries=False)
    assert full["total_losses2"].shape == (3,) and lean["total_losses2"].shape == (1,)
    np.testing.assert_allclose(lean["total_losses2"][0], full["total_losses2"][2], rtol=1e-12)
    for a, b in zip(learners[0].variables, learners[1].variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-15)
