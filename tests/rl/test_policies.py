"""Policies: reference parameter counts, log-likelihood formula, log-std floor, numpy twin."""
import math

import numpy as np
import pytest
import tensorflow as tf

from maml_tf.rl.policies import MIN_LOG_STD, CategoricalMLPPolicy, GaussianMLPPolicy, make_policy


@pytest.mark.parametrize("obs_dim,act_dim,count", [(2, 2, 10604), (20, 6, 12812), (125, 8, 23516)])
def test_reference_parameter_counts(obs_dim, act_dim, count):
    assert GaussianMLPPolicy(obs_dim, act_dim).num_params == count


def test_init_glorot_zero_bias_unit_std():
    p = GaussianMLPPolicy(20, 6, seed=3)
    w0 = p.params[0].numpy()
    limit = math.sqrt(6 / (20 + 100))
    assert np.abs(w0).max() <= limit and np.abs(w0).max() > 0.8 * limit
    assert np.all(p.params[1].numpy() == 0) and np.all(p.params[-1].numpy() == 0)
    assert p.param_names == ["W0", "b0", "W1", "b1", "W2", "b2", "log_std"]


def test_gaussian_log_prob_matches_formula_and_floor():
    p = GaussianMLPPolicy(3, 2, hidden_sizes=(4,), seed=0, dtype="float64")
    theta = p.get_flat()
    theta[-2:] = [-0.5, -20.0]  # second log-std below log(1e-6): floored
    obs = np.random.default_rng(0).normal(size=(1, 5, 3))
    info = p.forward(tf.constant(theta[None]), tf.constant(obs)).numpy()
    mean, log_std = info[..., :2], info[..., 2:]
    np.testing.assert_allclose(log_std[0, 0], [-0.5, MIN_LOG_STD])
    a = mean + 0.3
    expect = -log_std.sum(-1) - 0.5 * (((a - mean) / np.exp(log_std)) ** 2).sum(-1) - math.log(2 * math.pi)
    np.testing.assert_allclose(p.log_prob(tf.constant(info), tf.constant(a)).numpy(), expect, rtol=1e-10)


def test_numpy_forward_equals_tf_forward():
    for p in (GaussianMLPPolicy(3, 2, hidden_sizes=(8, 8), seed=1), CategoricalMLPPolicy(5, 4, hidden_sizes=(8,), seed=1),
              GaussianMLPPolicy(3, 2, hidden_sizes=(8,), hidden_nonlinearity="tanh", seed=2)):
        rng = np.random.default_rng(0)
        theta_b = np.stack([p.get_flat() + 0.1 * rng.normal(size=p.num_params) for _ in range(3)]).astype(np.float32)
        obs = rng.normal(size=(3, 4, p.obs_dim)).astype(np.float32)
        np.testing.assert_allclose(p.numpy_forward_fn(theta_b)(obs), p.forward(tf.constant(theta_b), tf.constant(obs)).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_task_rows_are_applied_to_their_own_observations():
    p = GaussianMLPPolicy(2, 2, hidden_sizes=(5,), seed=0)
    th = p.get_flat()
    obs = np.ones((2, 3, 2), np.float32)
    th2 = th.copy()
    th2[-4:-2] += 1.0  # shift the output bias of task 1 only
    info = p.forward(tf.constant(np.stack([th, th2])), tf.constant(obs)).numpy()
    np.testing.assert_allclose(info[1, :, :2] - info[0, :, :2], 1.0, rtol=1e-6)


def test_categorical_sampling_and_kl():
    p = CategoricalMLPPolicy(3, 4, hidden_sizes=(6,), seed=0)
    info = p.forward(tf.constant(p.get_flat()[None]), tf.zeros((1, 2, 3))).numpy()
    acts = p.sample_numpy(np.repeat(info[0, :1], 5000, 0), np.random.default_rng(0))
    freq = np.bincount(acts[:, 0].astype(int), minlength=4) / 5000
    np.testing.assert_allclose(freq, np.exp(info[0, 0]), atol=0.03)
    assert float(tf.reduce_max(tf.abs(p.kl(tf.constant(info), tf.constant(info))))) < 1e-6


def test_describe_roundtrip_and_bad_input():
    p = GaussianMLPPolicy(4, 3, hidden_sizes=(7,), hidden_nonlinearity="tanh")
    q = make_policy(p.describe())
    assert q.num_params == p.num_params and q.hidden_nonlinearity == "tanh"
    with pytest.raises(ValueError, match="shape"):
        q.set_flat(np.zeros(3))
    with pytest.raises(ValueError, match="hidden_nonlinearity"):
        GaussianMLPPolicy(2, 2, hidden_nonlinearity="gelu")
