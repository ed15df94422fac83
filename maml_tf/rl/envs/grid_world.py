"""The discrete four-state grid world of ``maml_examples/maml_trpo_4state.py``
(``rllab/envs/grid_world_env_rand.py``, map set 'four-state').

Four 3x3 maps, one per task; the agent starts at S in the centre, the goal G is left, right, up or
down of it and every other cell is a hole H. Entering G gives reward 1 and ends the episode,
entering H ends it with 0; moves off the grid are clipped to the border. Actions: 0 left, 1 down,
2 right, 3 up (rllab's convention: "down" increases the row index). Observation: the cell index
row * 3 + col (a Discrete(9); the reference's policy one-hot encodes it). Horizon 10.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from maml_tf.rl.envs.base import RNG, TaskEnv, check_count, check_rng

FOUR_STATE_MAPS = (
    ("HHH", "GSH", "HHH"),
    ("HHH", "HSG", "HHH"),
    ("HGH", "HSH", "HHH"),
    ("HHH", "HSH", "HGH"),
)
MOVES = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]])  # left, down, right, up as (drow, dcol)
HORIZON = 10


class GridWorld4Env(TaskEnv):
    """``GridWorldEnvRand('four-state')``: task = map id in {0, 1, 2, 3}."""

    metadata = {"render_modes": []}
    n_maps = len(FOUR_STATE_MAPS)

    def __init__(self, task: Any = None, redraw_task: bool | None = None) -> None:
        super().__init__(task=task, redraw_task=redraw_task)
        self.n_row, self.n_col = 3, 3
        self.observation_space = gym.spaces.Discrete(self.n_row * self.n_col)
        self.action_space = gym.spaces.Discrete(len(MOVES))
        self._state: int | None = None

    @classmethod
    def sample_tasks(cls, n: int, rng: RNG) -> np.ndarray:
        """Map ids, as the reference's ``np.random.randint(4, size=(n,))`` (``integers`` for a Generator)."""
        n, rng = check_count(n), check_rng(rng)
        if isinstance(rng, np.random.Generator):
            return rng.integers(cls.n_maps, size=(n,))
        return rng.randint(cls.n_maps, size=(n,))

    def _validate_task(self, task: Any) -> int:
        arr = np.asarray(task)
        if arr.shape != () or arr.dtype.kind not in "iu" or not 0 <= int(arr) < self.n_maps:
            raise ValueError(f"GridWorld4 task must be an integer map id in [0, {self.n_maps}), got {task!r}")
        return int(arr)

    def _draw_task(self) -> int:
        return int(self.task_rng.integers(self.n_maps))

    @property
    def desc(self) -> np.ndarray:
        """The current map as a 3x3 array of characters."""
        return np.array([list(row) for row in FOUR_STATE_MAPS[self._task]])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        task = self._task_from_options(options)  # a bad task raises before anything changes
        super().reset(seed=seed)
        self._prepare_task(task, seeded=seed is not None)
        (row,), (col,) = np.nonzero(self.desc == "S")
        self._state = int(row * self.n_col + col)
        return self._state, {"task": self._task}

    def step(self, action: Any):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action)
        if a.shape != () or a.dtype.kind not in "iu" or not 0 <= int(a) < len(MOVES):
            raise ValueError(f"action must be an integer in [0, {len(MOVES)}), got {action!r}")
        desc = self.desc
        row, col = divmod(self._state, self.n_col)
        if desc[row, col] in "HG":  # absorbing, as the reference (only reachable past termination)
            nrow, ncol = row, col
        else:
            nrow, ncol = np.clip(np.array([row, col]) + MOVES[int(a)], 0, [self.n_row - 1, self.n_col - 1])
        self._state = int(nrow * self.n_col + ncol)
        cell = desc[nrow, ncol]
        reward = 1.0 if cell == "G" else 0.0
        return self._state, reward, bool(cell in "HG"), False, {}
