"""--recompute_inner: inner steps recomputed in the backward pass give the same meta-gradients, in less memory."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from maml_tf import parity
from maml_tf.config import Config
from maml_tf.learner import inner_loop
from maml_tf.meta import adapt
from maml_tf.meta.adapt import InnerLoop
from maml_tf.meta.step import MetaConfig, MetaLearner
from maml_tf.models.nets import NetSpec, build_model
from maml_tf.reference import compute as reference_compute
from maml_tf.reference import golden

TASKS, SHOTS, QUERY, WAYS = 2, 2, 3, 3


def _conv_batch_norm(rng):
    """A tiny conv net with batch norm (shared, non-adapted beta) on 3-way classification."""
    model = build_model(NetSpec("conv", 8 * 8, WAYS, norm="batch_norm", num_filters=4, dtype="float64"), seed=2)
    onehot = np.eye(WAYS)
    xa, xb = rng.uniform(0, 1, (TASKS, WAYS * SHOTS, 64)), rng.uniform(0, 1, (TASKS, WAYS * QUERY, 64))
    ya = onehot[np.tile(np.arange(WAYS), SHOTS)][None].repeat(TASKS, 0)
    yb = onehot[np.tile(np.arange(WAYS), QUERY)][None].repeat(TASKS, 0)
    return model, (xa, ya, xb, yb), dict(classification=True, update_batch_size=SHOTS, update_lr=0.3)


def _fc_layer_norm(rng):
    """The FC net with layer norm (shared beta and gamma) on a regression."""
    model = build_model(NetSpec("fc", 4, 2, norm="layer_norm", hidden=(8, 7), dtype="float64"), seed=3)
    for v in model.trainable_variables:  # weights large enough that the inner steps matter
        v.assign(rng.normal(0, 0.7, v.shape) + (1.0 if "gamma" in v.path else 0.0))
    xa, xb = rng.normal(size=(TASKS, 5, 4)), rng.normal(size=(TASKS, 6, 4))
    f = lambda x: np.stack([np.sin(x.sum(-1)), np.cos(x[..., 0])], -1)
    return model, (xa, f(xa), xb, f(xb)), dict(update_lr=0.1)


NETS = {"conv_batch_norm": _conv_batch_norm, "fc_layer_norm": _fc_layer_norm}


def _learners(net: str, stop_grad: bool, num_updates: int = 3):
    model, batch, kw = NETS[net](np.random.default_rng(0))
    loop = InnerLoop(num_updates=num_updates, num_steps=num_updates + 1, stop_grad=stop_grad, **kw)
    plain = MetaLearner(model, MetaConfig(loop=loop, meta_batch_size=TASKS))
    recomputing = MetaLearner(model, MetaConfig(loop=dataclasses.replace(loop, recompute=True), meta_batch_size=TASKS))
    return plain, recomputing, tuple(tf.constant(b) for b in batch)


def _assert_same(ours, theirs, what):
    """float64 agreement to rounding. Absolute part on the largest gradient's scale: the conv
    biases that feed batch norm have a true gradient of zero, their entries are rounding noise."""
    scale = max(float(np.max(np.abs(g))) for g in theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-11 * scale,
                                   err_msg=f"{what}: gradient {i}")


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("stop_grad", [False, True], ids=["second_order", "first_order"])
def test_recomputed_gradients_equal_the_stored_ones(net, stop_grad):
    """Meta and pretrain (step-0 loss) gradients, run eagerly: the recomputation's own code path."""
    plain, recomputing, batch = _learners(net, stop_grad)
    for which in ("meta", "pretrain"):
        expected, res_expected = plain._gradients(batch, which)
        got, res_got = recomputing._gradients(batch, which)
        _assert_same(got, expected, which)
        for k in ("outputas", "lossesa", "outputbs", "lossesb", "total_loss1", "total_losses2"):
            np.testing.assert_allclose(res_got[k], res_expected[k], rtol=1e-13, atol=1e-14, err_msg=k)


def test_second_order_term_is_kept_under_recompute():
    """The comparisons above mean something: here the second-order term is large, and kept."""
    _, so, batch = _learners("conv_batch_norm", False)
    _, fo, _ = _learners("conv_batch_norm", True)
    a, b = so._gradients(batch)[0], fo._gradients(batch)[0]
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) > 1e-3


def test_compiled_meta_gradient_equals_the_stored_one():
    """Inside tf.function (where the recomputation waits on a data dependency), conv + batch norm."""
    plain, recomputing, batch = _learners("conv_batch_norm", False, num_updates=2)
    expected, _ = plain._grads(batch, "meta", plain.lean_train_loop)
    got, _ = recomputing._grads(batch, "meta", recomputing.lean_train_loop)
    _assert_same(got, expected, "compiled meta-gradient")


@pytest.mark.parametrize("which,recomputations", [("meta", 3), ("pretrain", 1)])
def test_backward_pass_recomputes_the_steps_it_needs(monkeypatch, which, recomputations):
    """Each unrolled step runs once forward; the backward re-runs those the objective depends on."""
    calls = []
    real = adapt.recomputed_step

    def counting(step, *args, **kwargs):
        def counted(*a):
            calls.append(1)
            return step(*a)
        return real(counted, *args, **kwargs)

    monkeypatch.setattr(adapt, "recomputed_step", counting)
    _, recomputing, batch = _learners("fc_layer_norm", False, num_updates=3)
    recomputing._gradients(batch, which)  # eagerly: every call is an execution
    assert len(calls) == 3 + recomputations


@pytest.mark.slow
def test_memory_does_not_grow_with_the_inner_steps():
    """The point of the option: stored activations grow with the steps, recomputed ones do not.

    Compiled meta-gradients of an FC net whose activations (800 KB, over the 256 KiB from which the
    CPU allocator's statistics count a tensor) dwarf its weights (what recomputation still keeps per
    step); the allocator's peak for 1 and 4 inner steps. Everything is placed on the CPU, whose
    allocator is the one measured, also on a host with a GPU.
    """
    rng = np.random.default_rng(0)
    peaks, grads = {}, {}
    with tf.device("/CPU:0"):
        model = build_model(NetSpec("fc", 8, 2, norm="layer_norm", hidden=(64, 64), dtype="float64"), seed=1)
        xa, ya = rng.normal(size=(2, 800, 8)), rng.normal(size=(2, 800, 2))
        batch = tuple(tf.constant(b) for b in (xa, ya, xa[:, :5], ya[:, :5]))
        for recompute in (False, True):
            for steps in (1, 4):
                loop = InnerLoop(0.01, steps, steps, query_every_step=False, recompute=recompute)
                learner = MetaLearner(model, MetaConfig(loop=loop, meta_batch_size=2))
                learner.meta_gradients(batch)  # trace and optimise first
                tf.config.experimental.reset_memory_stats("CPU:0")
                grads[recompute, steps] = [g.numpy() for g in learner.meta_gradients(batch)[0]]
                peaks[recompute, steps] = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    _assert_same(grads[True, 4], grads[False, 4], "compiled, 4 steps")
    stored = peaks[False, 4] - peaks[False, 1]
    recomputed = peaks[True, 4] - peaks[True, 1]
    assert stored > 4 * 2 ** 20, peaks  # each step keeps several 800 KB activations
    assert recomputed < 0.2 * stored, peaks
    assert peaks[True, 4] < peaks[False, 4], peaks


def test_flag_reaches_the_inner_loop_and_not_the_folder_name():
    on = Config(recompute_inner=True)
    assert inner_loop(on).recompute and not inner_loop(Config()).recompute
    assert on.exp_string == Config().exp_string


@pytest.mark.parametrize("case", ["A", pytest.param("B", marks=pytest.mark.slow)])
def test_golden_parity_with_recompute(golden_dir, monkeypatch, case):
    """Golden parity (1 inner step in case A, 3 in case B) holds with --recompute_inner."""
    config = golden.Fixture.config
    monkeypatch.setattr(golden.Fixture, "config", lambda self, **kw: config(self, **kw, recompute_inner=True))
    build, loops = reference_compute.build, []

    def spying_build(*args, **kwargs):
        learner = build(*args, **kwargs)
        loops.append(learner.config.loop)
        return learner

    monkeypatch.setattr(reference_compute, "build", spying_build)
    chk = parity.check(str(golden_dir / f"case_{case}.json"), ["primary", "firstorder", "float64"])
    assert loops and all(loop.recompute for loop in loops)
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
    assert {"metagrad__model__Variable_2", "secondorder__metagrad__model__Variable_2"} <= {r.key for r in chk.rows}
