"""Evaluation protocol details: the reference goal lists and step sizes."""
import os

import numpy as np
import pytest

from maml_tf.rl import evaluate as ev
from maml_tf.rl.config import RLConfigError


def test_goal_lists_are_the_reference_seeded_draws():
    np.random.seed(1)
    np.testing.assert_array_equal(ev.test_goals("point"), np.random.uniform(-0.5, 0.5, size=(40, 2)))
    np.random.seed(2)
    np.testing.assert_array_equal(ev.test_goals("ant_dir"), np.random.uniform(0.0, 3.0, size=(40,)))
    np.random.seed(1)
    np.testing.assert_array_equal(ev.test_goals("cheetah_vel"), np.random.uniform(0.0, 2.0, size=(40,)))


def _protocol_run(monkeypatch, env, method, **kw):
    """What `evaluate` hands the per-goal adaptation loop: [(env_id, goals, batch, H, n_itr, alpha_1, alpha_2, seed)]."""
    from maml_tf.rl import train
    from maml_tf.rl.envs import env_info
    from maml_tf.rl.policies import GaussianMLPPolicy

    calls = []

    def record(policy, theta, env_id, goals, proto, n_itr, first_lr, later_lr, seed, env_workers=0):
        calls.append((env_id, len(goals), proto.batch_size, proto.max_path_length, n_itr, first_lr, later_lr, seed))
        return np.zeros((n_itr, len(goals)))

    def load_policy(path):  # a trained checkpoint's policy for the env evaluated
        policy = GaussianMLPPolicy(env_info(ev.FAMILIES[env][method == "oracle"]).obs_dim,
                                   env_info(ev.FAMILIES[env][0]).act_dim, hidden_sizes=(4,))
        return policy, policy.get_flat()

    def load_checkpoint(path):  # trained for this env and method (evaluate checks that it was)
        from types import SimpleNamespace

        return {"config": SimpleNamespace(env=env, algo=method)}

    monkeypatch.setattr(ev, "adapt_and_record", record)
    monkeypatch.setattr(train, "load_policy", load_policy)
    monkeypatch.setattr(train, "load_checkpoint", load_checkpoint)
    result = ev.evaluate(env, method, checkpoint=None if method == "random" else "ckpt.npz", log=lambda s: None, **kw)
    assert np.asarray(result["task_avg_returns"]).shape == (calls[0][4], kw.get("n_goals", 40))
    return result, calls


def test_evaluate_runs_the_reference_protocol(monkeypatch):
    """Step sizes, batches, horizons and iterations as the reference's test scripts ran them."""
    # 2D navigation, MAML: 40 goals at once, 4000 steps of H=100 per goal, 5 samplings, alpha 0.5 then 0.25
    result, calls = _protocol_run(monkeypatch, "point", "maml")
    assert calls == [("maml_tf/PointGoal-v0", 40, 4000, 100, 5, 0.5, 0.25, 4)]
    assert (result["alpha_1"], result["alpha_2"], result["batch_size"], result["seed"]) == (0.5, 0.25, 4000, 4)
    # ant direction, random init: 8000 steps of H=200, first step 1.0 then 1% of it
    _, calls = _protocol_run(monkeypatch, "ant_dir", "random", n_goals=6, goal_chunk=4)
    assert calls == [("maml_tf/AntDir-v0", 4, 8000, 200, 4, 1.0, 0.01, 0),
                     ("maml_tf/AntDir-v0", 2, 8000, 200, 4, 1.0, 0.01, 4)]  # each chunk seeded on from run_seed
    # half-cheetah velocity, pretrained: its own first step size
    _, calls = _protocol_run(monkeypatch, "cheetah_vel", "pretrain", n_goals=2)
    assert calls == [("maml_tf/HalfCheetahVel-v0", 2, 4000, 200, 4, 0.02, 0.01, 2)]
    # --seed: another draw of the run (the random policy's initialisation too), recorded in the result
    result, calls = _protocol_run(monkeypatch, "cheetah_dir", "random", n_goals=2, seed=7)
    assert calls[0][-1] == 7 and result["seed"] == 7
    # the oracle sees the task: one sampling, nothing adapted, on the oracle env
    _, calls = _protocol_run(monkeypatch, "cheetah_dir", "oracle", n_goals=2, batch_size=200)
    assert calls == [("maml_tf/HalfCheetahDirOracle-v0", 2, 200, 200, 1, 0.0, 0.0, 0)]


def test_summary_and_table():
    result = {"env": "point", "method": "oracle", "alpha_1": 0.0, "alpha_2": 0.0, "goals": [[0, 0]] * 4,
              "batch_size": 4000, "task_avg_returns": [[-1.0, -2.0, -3.0, -2.0]]}
    rows = ev.summarize(result)
    assert rows[0][0] == 0 and rows[0][1] == -2.0 and rows[0][3] == -2.29
    np.testing.assert_allclose(rows[0][2], np.std([-1, -2, -3, -2]) / 2)
    assert "-2.29" in ev.format_table(result)


def test_a_tag_puts_the_outputs_beside_the_untagged_ones(tmp_path):
    """A run in progress evaluated at its latest iteration must not overwrite the reference snapshot's json."""
    result = {"env": "point", "method": "maml", "alpha_1": 0.5, "alpha_2": 0.25, "goals": [[0, 0]] * 2,
              "batch_size": 100, "task_avg_returns": [[-1.0, -2.0]], "tag": "itr_7", "checkpoint_iteration": 7}
    paths = ev.write_outputs(result, str(tmp_path))
    assert os.path.basename(paths["json"]) == "point_maml_itr_7.json"
    assert open(paths["table"]).read().startswith("point / maml / itr_7 ")
    with pytest.raises(RLConfigError, match="--tag"):
        ev.check_arguments("point", "maml", 40, 40, None, None, None, 0, "../elsewhere")
