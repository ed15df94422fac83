"""SavedModel export of a MAML-RL policy checkpoint (maml_tf.rl: `itr_N.npz` / `latest.npz`).

Same contract as the supervised export: `serving_default(obs)` gives the meta-learned policy's
distribution parameters ("dist_info": mean and log-std for a Gaussian policy, normalised logits for
a categorical one) and `adapt_and_predict(obs, actions, advantages, mask, query_obs, num_steps,
step_size)` runs the MAML-RL inner loop inside the graph (vanilla policy-gradient steps on the
support trajectories, `maml_tf.rl.maml_trpo.MetaObjective._adapt_from`, all parameters including
the log-std) and returns the adapted policy's dist_info on query observations. Shapes:
obs [T, N, obs_dim], actions [T, N, action_dim_stored], advantages and mask [T, N] (mask 1 for real
timesteps, 0 for padding), query_obs [T, M, obs_dim]; T, N and M are free. num_steps / step_size
< 0 mean the training values (num_grad_updates, fast_lr).
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from maml_tf.errors import MamlError
from maml_tf.export.module import _NotSaved
from maml_tf.export.saved_model import _check_target, save_module


class PolicyModule(tf.Module):
    def __init__(self, objective, theta: np.ndarray, num_steps: int, step_size: float):
        super().__init__(name="maml_rl_policy")
        policy = objective.policy
        self._held = _NotSaved(objective)
        d = policy.param_dtype
        self.theta = tf.Variable(np.asarray(theta, d.as_numpy_dtype), name="theta", trainable=False)
        self.default_num_steps = tf.constant(num_steps, tf.int32)
        self.default_step_size = tf.constant(step_size, d)
        obs = tf.TensorSpec([None, None, policy.obs_dim], d)
        self.serving_default = tf.function(self._predict, input_signature=[tf.TensorSpec.from_spec(obs, name="obs")])
        self.adapt_and_predict = tf.function(self._adapt, input_signature=[
            tf.TensorSpec.from_spec(obs, name="obs"),
            tf.TensorSpec([None, None, policy.action_dim_stored], d, name="actions"),
            tf.TensorSpec([None, None], d, name="advantages"),
            tf.TensorSpec([None, None], d, name="mask"),
            tf.TensorSpec.from_spec(obs, name="query_obs"),
            tf.TensorSpec([], tf.int32, name="num_steps"),
            tf.TensorSpec([], d, name="step_size")])

    def _tiled(self, tasks):
        return tf.tile(tf.convert_to_tensor(self.theta)[None], [tasks, 1])

    def _predict(self, obs):
        objective = self._held.model
        return {"dist_info": objective.policy.forward(self._tiled(tf.shape(obs)[0]), obs)}

    def _adapt(self, obs, actions, advantages, mask, query_obs, num_steps, step_size):
        from maml_tf.rl.maml_trpo import Batch

        objective = self._held.model
        steps = tf.where(num_steps < 0, self.default_num_steps, num_steps)
        lr = tf.where(step_size < 0, self.default_step_size, step_size)
        info = tf.zeros(tf.concat([tf.shape(obs)[:2], [objective.policy.info_dim]], 0), obs.dtype)
        b0 = Batch(obs, actions, advantages, mask, info)  # dist_info is not used by the inner loss
        theta_b = self._tiled(tf.shape(obs)[0])
        _, theta_b = tf.while_loop(lambda i, _: i < steps,
                                   lambda i, th: (i + 1, objective._adapt_from(th, b0, lr)), (tf.constant(0), theta_b))
        return {"dist_info": objective.policy.forward(theta_b, query_obs)}


def export_rl_policy(checkpoint: str, export_dir: str, overwrite: bool = False) -> str:
    """Export the policy of a maml_tf.rl checkpoint (.npz) to `export_dir`, atomically."""
    from maml_tf.rl.maml_trpo import MetaObjective
    from maml_tf.rl.train import load_checkpoint, load_policy

    target = os.path.abspath(export_dir)
    _check_target(target, overwrite)
    try:
        ck = load_checkpoint(checkpoint)
        policy, theta = load_policy(checkpoint)
    except MamlError:
        raise  # already names the file and the problem
    except (FileNotFoundError, KeyError, ValueError, OSError) as e:
        raise MamlError(f"--rl_checkpoint {checkpoint}: not a readable maml_tf.rl checkpoint ({e})") from None
    cfg = ck["config"]
    if theta.shape != (policy.num_params,):
        raise MamlError(f"--rl_checkpoint {checkpoint}: theta has shape {list(theta.shape)}, the policy "
                        f"{ck['policy']} needs [{policy.num_params}]")
    objective = MetaObjective(policy, fast_lr=cfg.fast_lr, num_grad_updates=1)
    module = PolicyModule(objective, theta, max(cfg.num_grad_updates, 0), cfg.fast_lr)
    meta = {"format": "maml_tf MAML-RL policy SavedModel, version 1", "checkpoint": os.path.abspath(checkpoint),
            "iteration": ck["itr"], "policy": ck["policy"], "config": json.loads(cfg.to_json()),
            "variables": [{"name": n, "shape": list(s)} for n, s in zip(policy.param_names, policy.param_shapes)],
            "theta_layout": "the variable 'theta' is these parameters flattened and concatenated in this order",
            "signatures": {"serving_default": "obs [T, N, obs_dim] -> dist_info [T, N, K]",
                           "adapt_and_predict": "obs, actions, advantages, mask, query_obs, num_steps, step_size "
                                                "-> dist_info [T, M, K] of the adapted policy",
                           "defaults": {"num_steps": cfg.num_grad_updates, "step_size": cfg.fast_lr}},
            "tensorflow_version": tf.__version__}
    return save_module(module, meta, target, overwrite, lambda: {
        "serving_default": module.serving_default.get_concrete_function(),
        "adapt_and_predict": module.adapt_and_predict.get_concrete_function()})
