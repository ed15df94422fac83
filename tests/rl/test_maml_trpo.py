"""The MAML objective: inner step, first/second-order meta-gradients, HVPs, one TRPO step."""
import functools

import numpy as np
import pytest
import tensorflow as tf

from maml_tf.rl.maml_trpo import Batch, MetaObjective, meta_trpo_step
from maml_tf.rl.policies import GaussianMLPPolicy

ALPHA = 0.3


@functools.lru_cache(maxsize=None)  # tracing second-order graphs dominates the cost: share them
def _setup(first_order=False, seed=0, t=2, n=9):
    """Tiny float64 problem: 2 tasks, old dist info of batch 1 = the post-update policy (KL 0 at theta)."""
    pol = GaussianMLPPolicy(3, 2, hidden_sizes=(4,), hidden_nonlinearity="tanh", seed=seed, dtype="float64")
    obj = MetaObjective(pol, ALPHA, 1, first_order)
    rng = np.random.default_rng(seed)
    theta = pol.get_flat() + 0.05 * rng.normal(size=pol.num_params)
    th = tf.constant(theta)

    def batch(theta_b):
        obs = tf.constant(rng.normal(size=(t, n, 3)))
        info = obj.dist_info(tf.constant(theta_b), obs).numpy()
        act = pol.sample_numpy(info, rng)
        adv = rng.normal(size=(t, n))
        mask = np.ones((t, n))
        mask[1, -2:] = 0  # ragged second task
        return Batch(obs, tf.constant(act), tf.constant(adv), tf.constant(mask), tf.constant(info))

    b0 = batch(np.tile(theta[None], (t, 1)))
    b1 = batch(obj.adapted_params(th, b0).numpy())
    return pol, obj, th, b0, b1


def test_inner_step_is_sgd_on_each_tasks_own_vpg_loss():
    pol, obj, th, b0, _ = _setup()
    post = obj.adapted_params(th, b0).numpy()
    for i in range(2):
        bi = Batch(*(x[i:i + 1] for x in b0))
        with tf.GradientTape() as tape:
            tape.watch(th)
            loss = obj.inner_losses(th[None], bi)[0]
        np.testing.assert_allclose(post[i], th.numpy() - ALPHA * tape.gradient(loss, th).numpy(), rtol=1e-10)


def test_kl_is_zero_before_the_meta_step():
    _, obj, th, b0, b1 = _setup()
    _, kl = obj.loss_and_kl(th, b0, b1)
    assert abs(float(kl)) < 1e-12


def _fd_grad(f, theta, h=1e-6):
    g = np.zeros_like(theta)
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        g[j] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


def test_second_order_meta_gradient_matches_finite_differences():
    _, obj, th, b0, b1 = _setup()
    _, g = obj.loss_and_grad(th, b0, b1)
    fd = _fd_grad(lambda x: float(obj.loss_and_kl(tf.constant(x), b0, b1)[0]), th.numpy())
    np.testing.assert_allclose(g.numpy(), fd, rtol=1e-5, atol=1e-8)


def test_first_order_gradient_is_the_sum_of_post_update_gradients():
    """First order drops d theta'/d theta = I - alpha H_i, leaving sum_i dS/d theta'_i."""
    _, obj_fo, th, b0, b1 = _setup(first_order=True)
    _, obj_so, *_ = _setup(first_order=False)
    _, g_fo = obj_fo.loss_and_grad(th, b0, b1)
    _, g_so = obj_so.loss_and_grad(th, b0, b1)
    post = obj_fo.adapted_params(th, b0)
    with tf.GradientTape() as tape:
        tape.watch(post)
        pol = obj_fo.policy
        new = pol.forward(post, b1.obs)
        ratio = tf.exp(pol.log_prob(new, b1.actions) - pol.log_prob(b1.dist_info, b1.actions))
        per_task = -tf.reduce_sum(ratio * b1.advantages * b1.mask, 1) / tf.reduce_sum(b1.mask, 1)
        loss = tf.reduce_mean(per_task)
    expected = tf.reduce_sum(tape.gradient(loss, post), 0).numpy()
    np.testing.assert_allclose(g_fo.numpy(), expected, rtol=1e-10)
    assert np.linalg.norm(g_fo.numpy() - g_so.numpy()) > 1e-6 * np.linalg.norm(g_so.numpy())
    # and the sampled post-update policy is identical in both variants
    np.testing.assert_allclose(post.numpy(), obj_so.adapted_params(th, b0).numpy())


def test_hvps_agree_with_dense_hessian():
    _, obj, th, b0, b1 = _setup()
    # dense Hessian of the mean KL by central differences of its (autodiff) gradient, float64
    theta = th.numpy()
    cols = []
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = 1e-6
        cols.append((obj.kl_grad(tf.constant(theta + e), b0, b1).numpy()
                     - obj.kl_grad(tf.constant(theta - e), b0, b1).numpy()) / 2e-6)
    dense = np.stack(cols, 1)
    v = np.random.default_rng(7).normal(size=th.shape[0])
    exact = obj.kl_hvp_exact(th, tf.constant(v), b0, b1).numpy()
    np.testing.assert_allclose(exact, dense @ v, rtol=1e-6, atol=1e-9)
    fd_small = obj.kl_hvp_fd(th, tf.constant(v), b0, b1, tf.constant(1e-4, tf.float64)).numpy()
    np.testing.assert_allclose(fd_small, exact, rtol=1e-4, atol=1e-7)
    # the reference's eps = 1/||theta|| is a coarse probe but still a Fisher-like product for small v
    v_small = v * 1e-3
    fd_ref = obj.kl_hvp_fd(th, tf.constant(v_small), b0, b1, tf.constant(1.0, tf.float64)).numpy()
    np.testing.assert_allclose(fd_ref, dense @ v_small, rtol=1e-2, atol=1e-9)
    # symmetric positive semi-definite at the KL minimum
    np.testing.assert_allclose(dense, dense.T, atol=1e-7)
    assert np.linalg.eigvalsh((dense + dense.T) / 2).min() > -1e-7


@pytest.mark.parametrize("hvp", ["fd", "exact"])
def test_meta_trpo_step_respects_the_trust_region(hvp):
    _, obj, th, b0, b1 = _setup()
    res, times = meta_trpo_step(obj, th.numpy(), b0, b1, max_kl=0.01, hvp=hvp)
    assert times["n_hvp"] == 11  # 10 CG iterations + the step-size product
    assert res.accepted
    assert res.loss_after < res.loss_before
    loss, kl = obj.loss_and_kl(tf.constant(res.theta), b0, b1)
    assert 0 < float(kl) <= 0.01
    assert abs(float(loss) - res.loss_after) < 1e-12


def test_bad_arguments():
    pol = GaussianMLPPolicy(2, 2, hidden_sizes=(3,))
    with pytest.raises(ValueError, match="num_grad_updates"):
        MetaObjective(pol, 0.1, 2)
    _, obj, th, b0, b1 = _setup()
    with pytest.raises(ValueError, match="hvp"):
        meta_trpo_step(obj, th.numpy(), b0, b1, 0.01, hvp="perlmutter")
