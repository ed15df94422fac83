"""All point-navigation tasks of a meta-batch in one numpy array: a Gymnasium ``VectorEnv``.

Stepping 20-40 ``PointGoalEnv`` objects through ``SyncVectorEnv`` spends nearly all its time in
Python per-env overhead; the transition itself is a few array operations
(:func:`~maml_tf.rl.envs.point.point_step_batch`). ``PointGoalVectorEnv`` runs the same transition
for every sub-env at once and reproduces ``SyncVectorEnv`` over ``maml_tf/PointGoal-v0`` (or the
oracle) step for step: the 100-step TimeLimit, ``next-step`` autoreset (the step after an
episode ends returns the reset observation with reward 0), one pinned task per sub-env kept across
autoresets. Only the step ``info`` dicts are not reproduced (they are empty here).
"""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from maml_tf.rl.envs.base import reset_task_option
from maml_tf.rl.envs.point import HORIZON, point_step_batch


def _check_goals(tasks: Any, num_envs: int | None = None) -> np.ndarray:
    try:
        if any(isinstance(t, (bool, np.bool_)) for t in np.ravel(np.asarray(tasks, dtype=object))):
            raise ValueError  # True would pass as 1.0
        goals = np.array(tasks, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"point tasks must be an array of numbers of shape [N, 2], got {tasks!r}") from None
    if goals.ndim != 2 or goals.shape[1] != 2 or goals.shape[0] == 0:
        raise ValueError(f"point tasks must be a non-empty array of shape [N, 2], got shape {goals.shape}")
    if num_envs is not None and goals.shape[0] != num_envs:
        raise ValueError(f"got {goals.shape[0]} tasks for a vector env of {num_envs} sub-envs")
    if not np.isfinite(goals).all():
        raise ValueError("point tasks must be finite")
    return goals


class PointGoalVectorEnv(gym.vector.VectorEnv):
    """N point-navigation sub-envs, task i = goal i, stepped as one numpy batch."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, tasks: Sequence[Any] | np.ndarray, oracle: bool = False, max_episode_steps: int = HORIZON):
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self._goals = _check_goals(tasks)
        self.num_envs = self._goals.shape[0]
        self.oracle = bool(oracle)
        self.max_episode_steps = int(max_episode_steps)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (4 if oracle else 2,), np.float64)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._pos = np.zeros((self.num_envs, 2))
        self._t = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._ready = False

    # ----------------------------------------------------------------- tasks
    def set_tasks(self, tasks: Sequence[Any] | np.ndarray) -> None:
        """Pin goal i in sub-env i (reset afterwards to start episodes on them)."""
        self._goals = _check_goals(tasks, self.num_envs)

    def get_tasks(self) -> np.ndarray:
        return self._goals.copy()

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """``SyncVectorEnv.get_attr`` for the task attribute only."""
        if name != "task":
            raise AttributeError(f"PointGoalVectorEnv exposes only the 'task' attribute, not {name!r}")
        return tuple(g.copy() for g in self._goals)

    def set_attr(self, name: str, values: Any) -> None:
        """``SyncVectorEnv.set_attr('task', [g0, g1, ...])`` (a list/tuple: one goal per sub-env)."""
        if name != "task":
            raise AttributeError(f"PointGoalVectorEnv exposes only the 'task' attribute, not {name!r}")
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        self.set_tasks(values)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``SyncVectorEnv.call`` for ``set_task`` (same task everywhere) and ``get_task``."""
        if name == "set_task" and len(args) == 1 and not kwargs:
            self.set_tasks([args[0]] * self.num_envs)
            return (None,) * self.num_envs
        if name == "get_task" and not args and not kwargs:
            return self.get_attr("task")
        raise AttributeError(f"PointGoalVectorEnv supports call('set_task', task) and call('get_task'), not {name!r}")

    # ----------------------------------------------------------------- gym API
    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._goals], axis=1) if self.oracle else self._pos.copy()

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-env to the origin; ``options={"task": [N, 2] goals}`` retasks first."""
        task = reset_task_option(options)
        goals = None if task is None else _check_goals(task, self.num_envs)  # before anything changes
        super().reset(seed=None if isinstance(seed, list) else seed)  # point resets draw nothing
        if goals is not None:
            self._goals = goals
        self._pos[:] = 0.0
        self._t[:] = 0
        self._autoreset[:] = False
        self._ready = True
        return self._obs(), {"task": self._goals.copy(), "_task": np.ones(self.num_envs, dtype=bool)}

    def step(self, actions: Any):
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, 2):
            raise ValueError(f"actions must have shape {(self.num_envs, 2)}, got shape {actions.shape}")
        new_pos, rewards, terminated = point_step_batch(self._pos, self._goals, actions)
        self._t += 1
        truncated = self._t >= self.max_episode_steps  # as TimeLimit: may coincide with terminated
        # next-step autoreset: sub-envs that ended last step restart instead of moving
        done_before = self._autoreset
        new_pos[done_before] = 0.0
        rewards[done_before] = 0.0
        terminated[done_before] = False
        truncated[done_before] = False
        self._t[done_before] = 0
        self._pos = new_pos
        self._autoreset = terminated | truncated
        return self._obs(), rewards, terminated, truncated, {}
