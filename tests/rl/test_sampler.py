"""Lock-step sampler on the point env: stop rules, raw actions, path bookkeeping."""
import numpy as np
import pytest

from maml_tf.rl.envs import sample_tasks
from maml_tf.rl.policies import GaussianMLPPolicy
from maml_tf.rl.sampler import TaskSampler, numpy_inference

H = 15


def _run(batched, stop_rule, quota, n_tasks=3, k=1):
    pol = GaussianMLPPolicy(2, 2, hidden_sizes=(8,), seed=0)
    s = TaskSampler("maml_tf/PointGoal-v0", n_tasks, H, k, seed=0, batched_point=batched)
    goals = sample_tasks("maml_tf/PointGoal-v0", n_tasks, np.random.RandomState(1))
    s.set_tasks(goals)
    theta_b = np.tile(pol.get_flat()[None], (n_tasks, 1))
    theta_b[:, -2:] = 0.7  # wide policy: many raw samples outside [-1, 1]
    paths = s.sample(numpy_inference(pol), theta_b, quota, stop_rule, pol.sample_numpy, np.random.default_rng(0))
    s.close()
    return pol, goals, theta_b, paths, s


@pytest.mark.parametrize("batched", [True, False])
def test_paths_are_consistent_rollouts_with_raw_actions(batched):
    pol, goals, theta_b, paths, _ = _run(batched, "total", 200)
    all_actions = np.concatenate([p.actions for ps in paths for p in ps])
    assert np.abs(all_actions).max() > 1.0  # the unclipped Gaussian sample is what is stored
    for i, ps in enumerate(paths):
        for p in ps:
            assert 1 <= len(p) <= H
            np.testing.assert_allclose(p.observations[0], 0.0)
            # position advances by the clipped, scaled action; reward is -distance after the move
            moved = p.observations[:-1] + np.clip(0.1 * p.actions[:-1], -0.1, 0.1)
            np.testing.assert_allclose(p.observations[1:], moved, atol=1e-5)
            last = p.observations[-1] + np.clip(0.1 * p.actions[-1], -0.1, 0.1)
            np.testing.assert_allclose(p.rewards[-1], -np.linalg.norm(last - goals[i]), atol=1e-5)
            info = pol.numpy_forward_fn(theta_b[i:i + 1])(p.observations[None].astype(np.float32))[0]
            np.testing.assert_allclose(p.dist_info, info, rtol=1e-5, atol=1e-6)


def test_total_stop_rule_counts_completed_paths_over_all_tasks():
    _, _, _, paths, s = _run(True, "total", 100)
    total = sum(len(p) for ps in paths for p in ps)
    assert 100 <= total < 100 + 3 * H  # stopped at the first lock-step that crossed the quota
    assert s.last_stats["kept_steps"] == total


def test_per_task_stop_rule():
    _, _, _, paths, _ = _run(True, "per_task", 40, n_tasks=2, k=2)
    for ps in paths:
        n = sum(len(p) for p in ps)
        assert n >= 40 and n - len(ps[-1]) < 40  # the path that crossed the quota is the last kept


def test_bad_arguments():
    s = TaskSampler("maml_tf/PointGoal-v0", 2, H, seed=0)
    pol = GaussianMLPPolicy(2, 2, hidden_sizes=(4,))
    with pytest.raises(RuntimeError, match="set_tasks"):
        s.sample(numpy_inference(pol), np.zeros((2, pol.num_params), np.float32), 10, "total", pol.sample_numpy,
                 np.random.default_rng(0))
    with pytest.raises(ValueError, match="stop_rule"):
        s.set_tasks(np.zeros((2, 2)))
        s.sample(numpy_inference(pol), np.zeros((2, pol.num_params), np.float32), 10, "all", pol.sample_numpy,
                 np.random.default_rng(0))
    with pytest.raises(ValueError, match="built for 2"):
        s.set_tasks(np.zeros((3, 2)))
