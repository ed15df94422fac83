"""Half-cheetah goal velocity and forward/backward (``rllab/envs/mujoco/half_cheetah_env_*.py``).

Observation (20-D): qpos[1:] (8), qvel (9), torso subtree COM (3; the x coordinate is unbounded).
v = x-velocity of the torso subtree COM after the step's forward pass. Control cost
0.05 * sum(a^2) on the action after scaling and clipping to [-1, 1]. Never terminates; episodes end
at the 200-step horizon (2 s at dt = 0.01).

* goal velocity: task g ~ U(0, 2), reward = -|v - g| - ctrl;
* forward/backward: task u ~ U(0, 2), direction d = -1 if u < 1.0 else +1, reward = d v - ctrl;
* oracles append g (resp. d) to the observation (21-D) and draw a new task every reset unless one
  is set.
"""
from __future__ import annotations

import numpy as np

from maml_tf.rl.envs.base import direction_of
from maml_tf.rl.envs.models import build_half_cheetah
from maml_tf.rl.envs.mujoco_env import MujocoTaskEnv

CTRL_COST = 0.05  # the reference's 1e-1 * 0.5
DIRECTION_THRESHOLD = 1.0
HORIZON = 200


class HalfCheetahVelEnv(MujocoTaskEnv):
    """``HalfCheetahEnvRand``: run at the goal velocity g."""

    build_model = staticmethod(build_half_cheetah)
    base_obs_dim = 20
    task_low = 0.0
    task_high = 2.0

    def _base_obs(self) -> np.ndarray:
        d = self.data
        return np.concatenate([d.qpos[1:], d.qvel, d.subtree_com[self.torso_id]])

    def _forward_reward(self, velocity: float) -> float:
        return -abs(velocity - self._task)

    def _reward(self, ctrl: np.ndarray) -> tuple[float, dict[str, float]]:
        velocity = float(self.data.subtree_linvel[self.torso_id, 0])
        forward = self._forward_reward(velocity)
        ctrl_cost = CTRL_COST * float(ctrl @ ctrl)
        return forward - ctrl_cost, {"x_velocity": velocity, "reward_forward": forward, "reward_ctrl": -ctrl_cost}


class HalfCheetahDirEnv(HalfCheetahVelEnv):
    """``HalfCheetahEnvRandDirec``: run forward (u >= 1) or backward (u < 1) as fast as possible."""

    direction: float = 1.0

    def _on_task_set(self) -> None:
        self.direction = direction_of(self._task, DIRECTION_THRESHOLD)

    def _forward_reward(self, velocity: float) -> float:
        return self.direction * velocity

    def _task_features(self) -> np.ndarray:
        return np.array([self.direction])


class HalfCheetahVelOracleEnv(HalfCheetahVelEnv):
    """``HalfCheetahEnvOracle``: goal velocity appended to the observation (21-D)."""

    oracle = True
    redraw_task_each_reset = True


class HalfCheetahDirOracleEnv(HalfCheetahDirEnv):
    """``HalfCheetahEnvDirecOracle``: direction (+-1) appended to the observation (21-D).

    The reference draws d from {-1, +1} directly when no task is given; here u ~ U(0, 2) is drawn
    and thresholded, which gives the same distribution and keeps one task representation.
    """

    oracle = True
    redraw_task_each_reset = True
