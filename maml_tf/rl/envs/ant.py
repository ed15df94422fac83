"""Ant goal velocity, forward/backward and goal position (``rllab/envs/mujoco/ant_env_rand*.py``).

Model: rllab's ant (see :mod:`maml_tf.rl.envs.models`): dt = 0.02 s, RK4, motors ctrlrange
[-150, 150] with gear 1, so the normalized action is multiplied by 150. Episodes start from the
``init_qpos`` pose (torso z 0.55, ankles +-1 rad) plus noise.

Observation (125-D): qpos (15, with x, y), qvel (14), clip(cfrc_ext, -1, 1) of all 14 bodies incl.
the world body (84), torso rotation matrix (9), torso subtree COM (3).

Reward = forward - ctrl - contact + 0.05, with ctrl = 0.005 sum((ctrl/150)^2) (= 0.005 sum of the
squared clipped normalized action), contact = 0.0005 sum(clip(cfrc_ext, -1, 1)^2) and the +0.05
survive reward paid on every step including the terminal one. v = x-velocity of the torso subtree
COM. Forward term per family:

* goal velocity: g ~ U(0, 3), forward = -|v - g| + 1.0;
* forward/backward: u ~ U(0, 3), d = -1 if u < 1.5 else +1, forward = d v;
* goal position: goal ~ U(-3, 3)^2, forward = -||com_xy - goal||_1 + 4.0.

Terminates when qpos/qvel are not finite or the torso z leaves [0.2, 1.0]. Oracles append the
task (g, d or the 2-D goal). The velocity and direction oracles draw a new task every reset unless
one is set; the goal-position oracle, like the reference's ``AntEnvRandGoalOracle``, keeps its
first task (pass ``redraw_task=True`` to redraw).
"""
from __future__ import annotations

import numpy as np

from maml_tf.rl.envs.base import direction_of
from maml_tf.rl.envs.models import ANT_CTRL_LIMIT, build_ant
from maml_tf.rl.envs.mujoco_env import MujocoTaskEnv

CTRL_COST = 0.005  # the reference's 0.5 * 1e-2, on action / 150
CONTACT_COST = 0.0005  # 0.5 * 1e-3
SURVIVE_REWARD = 0.05
VELOCITY_BONUS = 1.0
GOAL_BONUS = 4.0
DIRECTION_THRESHOLD = 1.5
HEALTHY_Z = (0.2, 1.0)
HORIZON = 200


class _AntTaskEnv(MujocoTaskEnv):
    """Common ant dynamics, observation, costs and termination; subclasses give the forward term."""

    build_model = staticmethod(build_ant)
    needs_contact_forces = True
    base_obs_dim = 125

    def _forward(self) -> None:
        super()._forward()
        # clipped external contact forces, used by both the observation and the contact cost
        self._contact = np.minimum(np.maximum(self.data.cfrc_ext, -1.0), 1.0).ravel()

    def _base_obs(self) -> np.ndarray:
        d = self.data
        return np.concatenate(
            [
                d.qpos,
                d.qvel,
                self._contact,
                d.xmat[self.torso_id],
                d.subtree_com[self.torso_id],
            ]
        )

    def _forward_reward(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reward(self, ctrl: np.ndarray) -> tuple[float, dict[str, float]]:
        forward = self._forward_reward()
        scaled = ctrl / ANT_CTRL_LIMIT  # the reference divides by (ub - lb) / 2
        ctrl_cost = CTRL_COST * float(scaled @ scaled)
        contact_cost = CONTACT_COST * float(self._contact @ self._contact)
        reward = forward - ctrl_cost - contact_cost + SURVIVE_REWARD
        info = {
            "x_velocity": float(self.data.subtree_linvel[self.torso_id, 0]),
            "reward_forward": forward,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
            "reward_survive": SURVIVE_REWARD,
        }
        return reward, info

    def _terminated(self) -> bool:
        d = self.data
        finite = np.isfinite(d.qpos).all() and np.isfinite(d.qvel).all()
        return not (finite and HEALTHY_Z[0] <= d.qpos[2] <= HEALTHY_Z[1])


class AntVelEnv(_AntTaskEnv):
    """``AntEnvRand``: walk along x at the goal velocity g ~ U(0, 3)."""

    task_low = 0.0
    task_high = 3.0

    def _forward_reward(self) -> float:
        return -abs(float(self.data.subtree_linvel[self.torso_id, 0]) - self._task) + VELOCITY_BONUS


class AntDirEnv(_AntTaskEnv):
    """``AntEnvRandDirec``: walk forward (u >= 1.5) or backward (u < 1.5) along x."""

    task_low = 0.0
    task_high = 3.0
    direction: float = 1.0

    def _on_task_set(self) -> None:
        self.direction = direction_of(self._task, DIRECTION_THRESHOLD)

    def _forward_reward(self) -> float:
        return self.direction * float(self.data.subtree_linvel[self.torso_id, 0])

    def _task_features(self) -> np.ndarray:
        return np.array([self.direction])


class AntGoalEnv(_AntTaskEnv):
    """``AntEnvRandGoal``: bring the centre of mass to a 2-D goal position ~ U(-3, 3)^2."""

    task_shape = (2,)
    task_low = -3.0
    task_high = 3.0
    task_feature_dim = 2

    def _forward_reward(self) -> float:
        com_xy = self.data.subtree_com[self.torso_id, :2]
        return -float(np.sum(np.abs(com_xy - self._task))) + GOAL_BONUS

    def _task_features(self) -> np.ndarray:
        return np.asarray(self._task, dtype=np.float64).copy()


class AntVelOracleEnv(AntVelEnv):
    """``AntEnvOracle``: goal velocity appended (126-D), redrawn every reset unless set."""

    oracle = True
    redraw_task_each_reset = True


class AntDirOracleEnv(AntDirEnv):
    """``AntEnvDirecOracle``: direction appended (126-D), u redrawn every reset unless set."""

    oracle = True
    redraw_task_each_reset = True


class AntGoalOracleEnv(AntGoalEnv):
    """``AntEnvRandGoalOracle``: goal appended (127-D); keeps its first goal, as the reference."""

    oracle = True
    redraw_task_each_reset = False
