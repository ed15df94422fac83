"""PointGoalVectorEnv must reproduce SyncVectorEnv over the point envs step for step."""
import numpy as np
import pytest

import maml_tf.rl.envs as E


@pytest.mark.parametrize("env_id", ["maml_tf/PointGoal-v0", "maml_tf/PointGoalOracle-v0"])
def test_batched_point_env_matches_sync_vector_env(env_id):
    rng = np.random.default_rng(0)
    goals = E.sample_tasks(env_id, 6, rng)
    goals[0] = [0.05, 0.0]  # reached quickly -> termination and autoreset
    batched = E.make_vector_env(env_id, goals, batched=True)
    sync = E.make_vector_env(env_id, goals)
    ob, ib = batched.reset(seed=0)
    os_, is_ = sync.reset(seed=0)
    np.testing.assert_array_equal(ob, os_)
    np.testing.assert_array_equal(ib["task"], is_["task"])
    ends = 0
    for t in range(230):  # crosses the 100-step limit twice
        # steer towards the goal with noise: some sub-envs terminate, the rest truncate
        pos = ob[:, :2]
        actions = 10 * (goals - pos) + 0.3 * rng.normal(size=(6, 2))
        ob, rb, tb, trb, _ = batched.step(actions)
        os_, rs, ts, trs, _ = sync.step(actions)
        np.testing.assert_array_equal(ob, os_)
        np.testing.assert_array_equal(rb, rs)
        np.testing.assert_array_equal(tb, ts)
        np.testing.assert_array_equal(trb, trs)
        ends += int(tb.sum())
    assert ends > 0
    assert batched.observation_space == sync.observation_space
    assert batched.action_space == sync.action_space


def test_batched_point_env_tasks_and_errors():
    envs = E.make_vector_env("maml_tf/PointGoal-v0", np.zeros((3, 2)), batched=True)
    E.set_tasks(envs, [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
    envs.reset()
    _, r, _, _, _ = envs.step(np.zeros((3, 2)))
    np.testing.assert_allclose(r, -np.sqrt(2) * np.array([0.1, 0.2, 0.3]))
    envs.call("set_task", [0.0, 0.5])
    assert all(np.array_equal(t, [0.0, 0.5]) for t in envs.get_attr("task"))
    envs.reset(options={"task": np.ones((3, 2)) * 0.2})
    np.testing.assert_array_equal(envs.get_tasks(), np.full((3, 2), 0.2))
    with pytest.raises(ValueError, match="shape"):
        envs.step(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        envs.step(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="tasks for a vector env"):
        E.set_tasks(envs, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown reset options"):
        envs.reset(options={"goal": 1})
    with pytest.raises(ValueError, match="point ids only"):
        E.make_vector_env("maml_tf/AntVel-v0", [1.0], batched=True)
    with pytest.raises(ValueError, match="shape"):
        E.PointGoalVectorEnv(np.zeros(3))
    with pytest.raises(RuntimeError, match="reset"):
        E.PointGoalVectorEnv(np.zeros((2, 2))).step(np.zeros((2, 2)))
