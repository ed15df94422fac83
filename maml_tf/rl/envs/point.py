"""2D point navigation to a random goal (``maml_examples/point_env_randgoal*.py``), pure numpy.

The point starts at the origin every episode; an action a in [-1, 1]^2 moves it by
clip(0.1 a, -0.1, 0.1) (rllab ``normalize`` of the Box(-0.1, 0.1) action space). The reward after
the move is minus the *Euclidean* distance to the goal (the paper says squared; the code does not),
and the episode terminates, terminal reward included, once |dx| < 0.01 and |dy| < 0.01 (a box).
Goals ~ U(-0.5, 0.5)^2. The oracle variant appends the goal to the observation.

:func:`point_step_batch` is the same transition as a pure function on arrays so a sampler can step
many point tasks at once without Python-level env objects.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from maml_tf.rl.envs.base import TaskEnv, normalized_to_bounds

ACTION_BOUND = 0.1
SUCCESS_TOLERANCE = 0.01
HORIZON = 100


def point_step_batch(
    positions: np.ndarray, goals: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step N point robots at once: ``(new_positions [N,2], rewards [N], terminated [N])``.

    ``actions`` are normalized actions (any real values; they are scaled by 0.1 and clipped to
    [-0.1, 0.1] per coordinate). Shapes must match exactly ([N, 2] each); NaN actions raise.
    """
    positions = np.asarray(positions, dtype=np.float64)
    goals = np.asarray(goals, dtype=np.float64)
    actions = np.asarray(actions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions must have shape [N, 2], got {positions.shape}")
    if goals.shape != positions.shape or actions.shape != positions.shape:
        raise ValueError(
            f"positions, goals and actions must share the shape [N, 2]; got {positions.shape}, "
            f"{goals.shape}, {actions.shape}"
        )
    if not np.all(np.isfinite(actions)):
        raise ValueError("actions contain NaN or inf")
    # the normalize formula written as in normalized_to_bounds, so both agree to the last bit
    moves = np.clip(-ACTION_BOUND + (actions + 1.0) * 0.5 * (2 * ACTION_BOUND), -ACTION_BOUND, ACTION_BOUND)
    new_positions = positions + moves
    delta = new_positions - goals
    rewards = -np.sqrt(np.sum(delta * delta, axis=1))
    terminated = np.all(np.abs(delta) < SUCCESS_TOLERANCE, axis=1)
    return new_positions, rewards, terminated


class PointGoalEnv(TaskEnv):
    """``PointEnvRandGoal`` under rllab ``normalize``: obs = position (2), task = goal (2)."""

    metadata = {"render_modes": []}
    task_shape = (2,)
    task_low = -0.5
    task_high = 0.5
    redraw_task_each_reset = False

    _low = np.full(2, -ACTION_BOUND)
    _high = np.full(2, ACTION_BOUND)

    def __init__(self, task: Any = None, redraw_task: bool | None = None) -> None:
        super().__init__(task=task, redraw_task=redraw_task)
        obs_dim = self.observation_dim()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2)

    @classmethod
    def observation_dim(cls) -> int:
        return 2

    def _obs(self) -> np.ndarray:
        return self._pos.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        task = self._task_from_options(options)  # a bad task raises before anything changes
        super().reset(seed=seed)
        self._prepare_task(task, seeded=seed is not None)
        self._pos = np.zeros(2)
        self._ready = True
        return self._obs(), {"task": self.get_task()}

    def step(self, action: Any):
        if not self._ready:
            raise RuntimeError("call reset() (with a valid task) before step()")
        move = normalized_to_bounds(action, self._low, self._high)
        self._pos = self._pos + move
        delta = self._pos - self._task
        reward = -float(np.sqrt(np.sum(delta * delta)))
        terminated = bool(np.all(np.abs(delta) < SUCCESS_TOLERANCE))
        return self._obs(), reward, terminated, False, {"distance": -reward}


class PointGoalOracleEnv(PointGoalEnv):
    """``PointEnvRandGoalOracle``: obs = (x, y, goal_x, goal_y); a new goal every reset unless one is set."""

    redraw_task_each_reset = True

    @classmethod
    def observation_dim(cls) -> int:
        return 4

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._task])
