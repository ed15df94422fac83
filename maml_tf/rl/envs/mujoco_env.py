"""rllab's ``MujocoEnv`` semantics on the modern ``mujoco`` bindings (``rllab/envs/mujoco/mujoco_env.py``).

What is reproduced, and why it differs from Gymnasium's ``MujocoEnv``:

* frame_skip 1 (neither rllab model defines the ``frame_skip`` numeric), so dt = model timestep
  (cheetah 0.01 s, ant 0.02 s);
* reset: qpos = init_qpos + 0.01 N(0, 1) (``init_qpos`` numeric if the model has one, else qpos0),
  qvel = 0.1 N(0, 1), qacc and ctrl zero, then a forward pass; noise drawn qpos first, then qvel,
  from the env's seeded ``np_random``;
* step: ctrl = the scaled, clipped action; ``mj_step`` frame_skip times, then ``mj_forward`` so
  positions, COMs and contacts are those of the new state (Gymnasium skips this, so its ``xpos``
  lags ``qpos`` by one step);
* derived quantities MuJoCo 1.31's forward pass produced and modern MuJoCo computes only on request:
  ``mj_subtreeVel`` (subtree COM linear velocity, rllab's ``get_body_comvel``) and, for envs that
  observe or pay for contacts, ``mj_rnePostConstraint`` (``cfrc_ext``; all zeros otherwise).

``mj_resetData`` is called before each reset so that an episode does not depend on solver
warm-start state left over from the previous one (determinism under a seed).
"""
from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from maml_tf.rl.envs.base import TaskEnv, normalized_to_bounds
from maml_tf.rl.envs.models import numeric

QPOS_NOISE = 0.01
QVEL_NOISE = 0.1


class MujocoTaskEnv(TaskEnv):
    """Base of the half-cheetah and ant task envs (see the module docstring).

    Subclasses provide ``build_model`` (a staticmethod returning an ``MjModel``), ``_base_obs``,
    ``_reward`` and optionally ``_terminated``; ``oracle = True`` appends ``_task_features()``
    to the observation.
    """

    metadata = {"render_modes": []}
    frame_skip: ClassVar[int] = 1
    oracle: ClassVar[bool] = False
    needs_contact_forces: ClassVar[bool] = False
    base_obs_dim: ClassVar[int] = 0
    task_feature_dim: ClassVar[int] = 1

    @staticmethod
    def build_model() -> mujoco.MjModel:  # pragma: no cover - abstract
        raise NotImplementedError

    def __init__(self, task: Any = None, redraw_task: bool | None = None) -> None:
        super().__init__(task=task, redraw_task=redraw_task)
        self.model = self.build_model()
        self.data = mujoco.MjData(self.model)
        init_qpos = numeric(self.model, "init_qpos")
        self.init_qpos = self.model.qpos0.copy() if init_qpos is None else init_qpos
        if self.init_qpos.shape != (self.model.nq,):
            raise RuntimeError(f"init_qpos has {self.init_qpos.size} entries, the model has nq={self.model.nq}")
        self.init_qvel = np.zeros(self.model.nv)
        self._ctrl_low = self.model.actuator_ctrlrange[:, 0].copy()
        self._ctrl_high = self.model.actuator_ctrlrange[:, 1].copy()
        self.torso_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "torso")
        if self.torso_id < 0:
            raise RuntimeError("the model has no body named 'torso'")
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.observation_dim(),), np.float64)
        self._ready = False

    @classmethod
    def observation_dim(cls) -> int:
        return cls.base_obs_dim + (cls.task_feature_dim if cls.oracle else 0)

    @property
    def dt(self) -> float:
        """Seconds of simulated time per env step."""
        return float(self.model.opt.timestep) * self.frame_skip

    # ----------------------------------------------------------------- physics
    def _forward(self) -> None:
        """Recompute everything derived from (qpos, qvel) at the current state, as MuJoCo 1.31 did."""
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_subtreeVel(self.model, self.data)
        if self.needs_contact_forces:
            mujoco.mj_rnePostConstraint(self.model, self.data)

    def _simulate(self, ctrl: np.ndarray) -> None:
        self.data.ctrl[:] = ctrl
        for _ in range(self.frame_skip):
            mujoco.mj_step(self.model, self.data)
        self._forward()

    def torso_com(self) -> np.ndarray:
        """Subtree centre of mass of the torso (= the whole robot): rllab's ``get_body_com('torso')``."""
        return self.data.subtree_com[self.torso_id].copy()

    def torso_com_velocity(self) -> np.ndarray:
        """Subtree COM linear velocity of the torso: rllab's ``get_body_comvel('torso')``."""
        return self.data.subtree_linvel[self.torso_id].copy()

    # ----------------------------------------------------------------- gym API
    def _task_features(self) -> np.ndarray:
        return np.array([self._task], dtype=np.float64)

    def _base_obs(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        obs = self._base_obs()
        if self.oracle:
            obs = np.concatenate([obs, self._task_features()])
        return obs

    def _reward(self, ctrl: np.ndarray) -> tuple[float, dict[str, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _terminated(self) -> bool:
        return False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        task = self._task_from_options(options)  # a bad task raises before anything changes
        super().reset(seed=seed)
        self._prepare_task(task, seeded=seed is not None)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = self.init_qpos + self.np_random.normal(size=self.model.nq) * QPOS_NOISE
        self.data.qvel[:] = self.init_qvel + self.np_random.normal(size=self.model.nv) * QVEL_NOISE
        self._forward()
        self._ready = True
        return self._obs(), {"task": self.get_task()}

    def step(self, action: Any):
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        ctrl = normalized_to_bounds(action, self._ctrl_low, self._ctrl_high)
        self._simulate(ctrl)
        reward, info = self._reward(ctrl)
        return self._obs(), reward, self._terminated(), False, info
