"""Conjugate gradient, the finite-difference Hessian-vector product training uses, the TRPO line search."""
import numpy as np
import pytest
import tensorflow as tf

from maml_tf.rl import trpo
from maml_tf.rl.maml_trpo import Batch, MetaObjective
from maml_tf.rl.policies import GaussianMLPPolicy


def _spd(n, seed=0, cond=10.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q @ np.diag(np.linspace(1.0, cond, n)) @ q.T


def test_cg_matches_direct_solve():
    a = _spd(12)
    b = np.random.default_rng(1).normal(size=12)
    x = trpo.conjugate_gradient(lambda v: a @ v, b, cg_iters=12)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-8, atol=1e-10)


def test_cg_reference_ten_iterations_is_close_on_well_conditioned_system():
    a = _spd(50, cond=3.0)
    b = np.random.default_rng(2).normal(size=50)
    x = trpo.conjugate_gradient(lambda v: a @ v, b)  # reference: 10 iterations
    assert np.linalg.norm(a @ x - b) < 1e-3 * np.linalg.norm(b)


def test_cg_zero_rhs_returns_zero():
    assert np.all(trpo.conjugate_gradient(lambda v: v, np.zeros(4)) == 0)


def _objective_with_quadratic_kl(probes: list):
    """A MetaObjective whose KL gradient is A x (a quadratic KL): its FD product must be exactly A v.

    The probes it is evaluated at are appended to `probes` (numbers when run eagerly).
    """
    pol = GaussianMLPPolicy(3, 2, hidden_sizes=(4,), seed=0, dtype="float64")
    obj = MetaObjective(pol, 0.1, 1)
    a = _spd(pol.num_params, seed=3)

    def kl_grad(theta, b0, b1):
        probes.append(theta)
        return tf.linalg.matvec(tf.constant(a), theta)

    obj._kl_grad = kl_grad  # before the first trace: the compiled kl_hvp_fd calls this too
    zeros = lambda *shape: tf.zeros(shape, tf.float64)
    batch = Batch(zeros(1, 2, 3), zeros(1, 2, pol.action_dim_stored), zeros(1, 2), zeros(1, 2), zeros(1, 2, pol.info_dim))
    return obj, a, batch


def test_kl_hvp_fd_is_exact_on_a_quadratic_and_probes_at_the_reference_eps():
    """MetaObjective.kl_hvp_fd (what meta_trpo_step and the distributed step call with hvp='fd')."""
    probes = []
    obj, a, batch = _objective_with_quadratic_kl(probes)
    rng = np.random.default_rng(4)
    theta, v = rng.normal(size=a.shape[0]), rng.normal(size=a.shape[0])
    base = tf.constant(trpo.REFERENCE_FD_BASE_EPS, tf.float64)
    # eagerly, the probes are numbers: theta +- eps v with the raw v and eps = 1 / (||theta|| + 1e-8),
    # the reference's FiniteDifferenceHvp with its effective base_eps of 1
    hv = obj._kl_hvp_fd(tf.constant(theta), tf.constant(v), batch, batch, base).numpy()
    np.testing.assert_allclose(hv, a @ v, rtol=1e-9)
    eps = 1.0 / (np.linalg.norm(theta) + 1e-8)
    assert len(probes) == 2
    np.testing.assert_allclose(probes[0].numpy() - theta, eps * v, rtol=1e-9)
    np.testing.assert_allclose(probes[1].numpy() - theta, -eps * v, rtol=1e-9)
    # the compiled function training calls gives the same product, for any base eps
    for b in (1.0, 1e-3):
        out = obj.kl_hvp_fd(tf.constant(theta), tf.constant(v), batch, batch, tf.constant(b, tf.float64))
        np.testing.assert_allclose(out.numpy(), a @ v, rtol=1e-9)


def _quadratic_problem(n=5, seed=0):
    h = _spd(n, seed)
    theta = np.random.default_rng(seed + 10).normal(size=n)
    g = np.random.default_rng(seed + 11).normal(size=n)
    # loss(x) = g.(x - theta) (linear surrogate), kl(x) = 1/2 (x-theta)' H (x-theta)
    loss_kl = lambda x: (float(g @ (x - theta)), float(0.5 * (x - theta) @ h @ (x - theta)))
    return h, theta, g, loss_kl


def test_trpo_step_lands_on_the_kl_boundary_and_decreases_loss():
    h, theta, g, loss_kl = _quadratic_problem()
    res = trpo.trpo_step(theta, 0.0, g, lambda v: h @ v, loss_kl, max_kl=0.01, cg_iters=20)
    assert res.accepted and res.n_backtracks == 0
    assert res.loss_after < 0
    # full step has sHs = 2 delta up to the 1e-5 damping: KL just below the bound
    assert 0.0099 < res.kl_after <= 0.01
    np.testing.assert_allclose(res.theta - theta, -np.sqrt(2 * 0.01 / (g @ np.linalg.solve(h, g))) *
                               np.linalg.solve(h, g), rtol=1e-3)


def test_line_search_rejects_steps_that_increase_the_loss():
    h, theta, g, _ = _quadratic_problem(seed=1)
    # the "loss" increases along every candidate step: nothing may be accepted
    loss_kl = lambda x: (float(np.sum((x - theta) ** 2)) + 1.0, 0.0)
    res = trpo.trpo_step(theta, 0.0, g, lambda v: h @ v, loss_kl, max_kl=0.01)
    assert not res.accepted
    assert res.n_backtracks == trpo.REFERENCE_MAX_BACKTRACKS - 1
    np.testing.assert_array_equal(res.theta, theta)


def test_line_search_backtracks_past_kl_violations():
    h, theta, g, loss_kl = _quadratic_problem(seed=2)
    # report 3x the true KL: the full step violates, 0.8^k shrinks KL by 0.64 per try
    inflated = lambda x: (loss_kl(x)[0], 3 * loss_kl(x)[1])
    res = trpo.trpo_step(theta, 0.0, g, lambda v: h @ v, inflated, max_kl=0.01, cg_iters=20)
    assert res.accepted and res.n_backtracks == 3  # 3 * 0.64^k <= 1 first at k = 3
    assert res.kl_after <= 0.01


def test_nan_loss_restores_parameters():
    h, theta, g, _ = _quadratic_problem(seed=3)
    res = trpo.trpo_step(theta, 0.0, g, lambda v: h @ v, lambda x: (np.nan, 0.0), max_kl=0.01)
    assert not res.accepted
    np.testing.assert_array_equal(res.theta, theta)


def test_bad_max_kl_is_rejected():
    with pytest.raises(ValueError, match="max_kl"):
        trpo.trpo_step(np.zeros(2), 0.0, np.ones(2), lambda v: v, lambda x: (0.0, 0.0), max_kl=0.0)
