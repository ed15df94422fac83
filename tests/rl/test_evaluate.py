"""Evaluation protocol details: the reference goal lists and step sizes."""
import numpy as np

from maml_tf.rl import evaluate as ev


def test_goal_lists_are_the_reference_seeded_draws():
    np.random.seed(1)
    np.testing.assert_array_equal(ev.test_goals("point"), np.random.uniform(-0.5, 0.5, size=(40, 2)))
    np.random.seed(2)
    np.testing.assert_array_equal(ev.test_goals("ant_dir"), np.random.uniform(0.0, 3.0, size=(40,)))
    np.random.seed(1)
    np.testing.assert_array_equal(ev.test_goals("cheetah_vel"), np.random.uniform(0.0, 2.0, size=(40,)))


def test_protocol_step_sizes_and_batches():
    p = ev.PROTOCOLS["ant_dir"]
    assert p.batch_size == 8000 and p.later_factor == 0.01 and p.first_lr["random"] == 1.0
    assert ev.PROTOCOLS["point"].n_itr == 5 and ev.PROTOCOLS["cheetah_vel"].first_lr["pretrain"] == 0.02


def test_summary_and_table():
    result = {"env": "point", "method": "oracle", "alpha_1": 0.0, "alpha_2": 0.0, "goals": [[0, 0]] * 4,
              "batch_size": 4000, "task_avg_returns": [[-1.0, -2.0, -3.0, -2.0]]}
    rows = ev.summarize(result)
    assert rows[0][0] == 0 and rows[0][1] == -2.0 and rows[0][3] == -2.29
    np.testing.assert_allclose(rows[0][2], np.std([-1, -2, -3, -2]) / 2)
    assert "-2.29" in ev.format_table(result)
