"""SavedModel export of a MAML-RL policy checkpoint: numbers equal maml_tf.rl's own functions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from maml_tf.errors import MamlError
from maml_tf.export.rl_policy import export_rl_policy
from maml_tf.rl.config import RLConfig
from maml_tf.rl.maml_trpo import Batch, MetaObjective
from maml_tf.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from maml_tf.rl.train import save_checkpoint


@pytest.mark.parametrize("kind", ["gaussian", pytest.param("categorical", marks=pytest.mark.slow)])
def test_rl_policy_export_matches_meta_objective(kind, tmp_path):
    if kind == "gaussian":
        policy = GaussianMLPPolicy(3, 2, hidden_sizes=(8, 8), seed=0)
    else:
        policy = CategoricalMLPPolicy(3, 4, hidden_sizes=(8, 8), seed=0)
    rs = np.random.RandomState(0)
    theta = (policy.get_flat() + rs.normal(0, 0.1, policy.num_params)).astype(np.float32)
    cfg = RLConfig()
    path = str(tmp_path / "itr_3.npz")
    save_checkpoint(path, theta, policy, cfg, 3)
    export_dir = export_rl_policy(path, str(tmp_path / "export"))
    meta = json.loads((tmp_path / "export" / "assets" / "maml_tf_export.json").read_text())
    assert meta["signatures"]["defaults"] == {"num_steps": cfg.num_grad_updates, "step_size": cfg.fast_lr}
    loaded = tf.saved_model.load(export_dir)

    t, n, m = 2, 7, 5
    obs = rs.normal(size=(t, n, 3)).astype(np.float32)
    if kind == "gaussian":
        actions = rs.normal(size=(t, n, 2)).astype(np.float32)
    else:
        actions = rs.randint(0, 4, (t, n, 1)).astype(np.float32)
    adv = rs.normal(size=(t, n)).astype(np.float32)
    mask = np.ones((t, n), np.float32)
    mask[1, 5:] = 0
    query = rs.normal(size=(t, m, 3)).astype(np.float32)
    objective = MetaObjective(policy, fast_lr=cfg.fast_lr, num_grad_updates=1)
    b0 = Batch(*(tf.constant(x) for x in (obs, actions, adv, mask, np.zeros((t, n, policy.info_dim), np.float32))))
    theta_b = tf.tile(tf.constant(theta)[None], [t, 1])
    np.testing.assert_allclose(loaded.serving_default(tf.constant(obs))["dist_info"],
                               objective.dist_info(theta_b, obs), rtol=1e-6, atol=1e-6)
    sig = loaded.signatures["adapt_and_predict"]
    for steps, lr in ((-1, -1.0), (2, 0.05)):
        got = sig(obs=obs, actions=actions, advantages=adv, mask=mask, query_obs=query,
                  num_steps=tf.constant(steps), step_size=tf.constant(lr, tf.float32))["dist_info"]
        expected = theta_b
        for _ in range(cfg.num_grad_updates if steps < 0 else steps):
            expected = objective.adapt_from(expected, b0, tf.constant(cfg.fast_lr if lr < 0 else lr, tf.float32))
        expected = objective.dist_info(expected, query)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert np.abs(got - objective.dist_info(theta_b, query)).max() > 1e-5  # adaptation did something
    with pytest.raises(MamlError, match="already exists"):
        export_rl_policy(path, export_dir)
    with pytest.raises(MamlError, match="missing.npz does not exist"):
        export_rl_policy(str(tmp_path / "missing.npz"), str(tmp_path / "e2"))
