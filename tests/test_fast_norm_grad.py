"""--fast_norm_grad: batch norm with a compact hand-written gradient, exact to first and second order.

The op's derivatives (first, and second through an enclosing tape) equal autodiff of the plain
formula in float64 and finite differences; with the option on, the golden fixtures still pass (the
float64 rebuild at 1e-9, float32 under the README tolerances). The default path does not use it.
"""
import numpy as np
import pytest
import tensorflow as tf

from maml_tf import parity
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.models import layers as L
from maml_tf.models.nets import NetSpec, build_model

SHAPES = [((3, 4, 3, 3, 2), [1, 2, 3]), ((2, 5, 3), [1])]  # conv [T, N, H, W, C] and fc [T, N, C]


def _plain(x, beta, axes):
    mean, var = L._moments(x, axes, "exact")
    return L._normalize(x, mean, var, beta, None, 1e-3)


def _fast(x, beta, axes):
    return L.batch_norm_fast_grad(x, beta, axes, 1e-3)


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=shape) * 2 + 0.5)
    beta = tf.constant(rng.normal(size=shape[-1:]))
    w, c = (tf.constant(rng.normal(size=shape)) for _ in range(2))
    return x, beta, w, c


def _meta(fn, axes, x, beta, w, c):
    """MAML's shape of computation: an inner gradient (wrt x and beta), then a function of it."""
    with tf.GradientTape() as inner:
        inner.watch([x, beta])
        y = fn(x, beta, axes)
        loss = tf.reduce_sum(tf.sin(y) * w)
    gx, gb = inner.gradient(loss, [x, beta])
    return y, gx, gb, tf.reduce_sum(gx * c) + tf.reduce_sum(tf.cos(gb)) + tf.reduce_sum(y ** 2)


def _derivatives(fn, axes, x, beta, w, c):
    with tf.GradientTape() as outer:
        outer.watch([x, beta])
        y, gx, gb, meta = _meta(fn, axes, x, beta, w, c)
    return [y, gx, gb, *outer.gradient(meta, [x, beta])]


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("shape,axes", SHAPES, ids=["conv", "fc"])
def test_first_and_second_derivatives_equal_autodiff_of_the_formula(shape, axes, compiled):
    args = _inputs(shape)
    wrap = tf.function if compiled else (lambda f: f)
    plain = wrap(lambda *a: _derivatives(_plain, axes, *a))(*args)
    fast = wrap(lambda *a: _derivatives(_fast, axes, *a))(*args)
    names = ["output", "first derivative x", "first derivative beta", "second order x", "second order beta"]
    for name, p, f in zip(names, plain, fast):
        assert f is not None, name
        np.testing.assert_allclose(f.numpy(), p.numpy(), rtol=1e-12, atol=1e-12 * np.abs(p.numpy()).max(), err_msg=name)
    np.testing.assert_array_equal(fast[0].numpy(), plain[0].numpy())  # the same forward ops


@pytest.mark.parametrize("shape,axes", SHAPES, ids=["conv", "fc"])
def test_second_order_matches_finite_differences(shape, axes):
    """d(meta)/dx along a direction, by the outer tape through the custom gradient and by central differences."""
    x, beta, w, c = _inputs(shape, seed=1)
    d = tf.constant(np.random.default_rng(2).normal(size=shape))
    with tf.GradientTape() as outer:
        outer.watch(x)
        meta = _meta(_fast, axes, x, beta, w, c)[3]
    analytic = float(tf.reduce_sum(outer.gradient(meta, x) * d))
    h = 1e-5
    fd = (float(_meta(_fast, axes, x + h * d, beta, w, c)[3]) - float(_meta(_fast, axes, x - h * d, beta, w, c)[3])) / (2 * h)
    assert abs(analytic - fd) <= 1e-6 * max(1.0, abs(analytic)), (analytic, fd)


def test_option_reaches_the_layers_and_defaults_off():
    assert Config().fast_norm_grad is False
    spec = dict(kind="conv", dim_input=64, dim_output=3, norm="batch_norm", num_filters=4)
    default, fast = build_model(NetSpec(**spec), seed=1), build_model(NetSpec(**spec, fast_norm_grad=True), seed=1)
    norms = lambda m: [layer for layer in m.stack if isinstance(layer, L.BatchNormExact)]
    assert norms(default) and not any(n.fast_grad for n in norms(default))
    assert all(n.fast_grad for n in norms(fast))
    x = tf.constant(np.random.default_rng(0).uniform(size=(2, 3, 64)), tf.float32)
    np.testing.assert_array_equal(fast(x).numpy(), default(x).numpy())  # forward bit-identical
    with pytest.raises(MamlError, match="fast_norm_grad"):
        Config(fast_norm_grad=True, norm_variant="tf2").validate()


@pytest.mark.parametrize("files", [["primary", "firstorder"], ["float64"]], ids=["float32", "float64"])
def test_golden_parity_case_C_with_fast_norm_grad(golden_dir, files):
    """Case C (Omniglot conv net, batch norm): float32 outputs, losses, accuracies, meta-gradients first and
    second order (and the Adam steps after them) under the README tolerances; the float64 rebuild at 1e-9."""
    chk = parity.check(str(golden_dir / "case_C.json"), files, fast_norm_grad=True)
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
    keys = {r.key for r in chk.rows}
    assert keys & ({"outputbs", "metagrad__model__conv1"} if "primary" in files
                   else {"secondorder__metagrad__model__conv1", "secondorder__outputbs"})


@pytest.mark.integration
def test_golden_parity_case_E_with_fast_norm_grad(shared_golden_dir):
    """MiniImagenet case E (max-pool conv net, batch norm, 5 inner steps) with the option."""
    chk = parity.check(str(shared_golden_dir / "case_E.json"), ["primary", "firstorder", "float64"],
                       fast_norm_grad=True)
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
