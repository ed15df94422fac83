"""Shared machinery of the meta-RL task environments: tasks, their persistence, action scaling.

The reference (cbfinn/maml_rl, rllab) gives every environment a *task variable* (a goal position,
a goal velocity, a scalar u whose threshold picks a direction, a grid map id) that is set through
``reset(reset_args=task)`` and kept across later resets when none is given. Gymnasium has no such
notion, so :class:`TaskEnv` adds it uniformly:

* ``sample_tasks(n, rng)`` (a classmethod) draws tasks with the reference's distribution and the
  reference's numpy calls, so ``np.random.seed(1); env.sample_tasks(40, np.random)`` or a
  ``RandomState(1)`` reproduce the reference's goal lists;
* ``set_task(task)`` / the ``task`` property (usable through vector envs with
  ``envs.call("set_task", t)`` or ``envs.set_attr("task", [t0, t1, ...])``) and
  ``reset(options={"task": task})`` pin a task; ``get_task()`` returns it;
* a pinned task persists across resets (Gymnasium's vector autoreset calls ``reset()`` without
  options, so this is what keeps sub-env i on task i);
* with no task pinned, "rand" envs draw one on their first reset and keep it (the reference drew it
  in the constructor), while oracle envs draw a fresh task on every reset, as the reference's
  oracle envs do when no ``reset_args`` are given (``set_task(None)`` returns to that mode).

Continuous envs expose rllab's ``normalize`` wrapper semantics: the action space is Box(-1, 1),
``scaled = lb + (a + 1)/2 (ub - lb)`` clipped to [lb, ub]. Unbounded Gaussian samples are accepted
(the reference stores the raw sample and lets the wrapper clip); a wrong shape or a non-finite
value raises ``ValueError``.
"""
from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

RNG = np.random.Generator | np.random.RandomState


def check_rng(rng: Any) -> RNG:
    """Return ``rng`` if it is a numpy Generator or RandomState (or the ``np.random`` module)."""
    if rng is np.random:
        return rng  # the reference's global RNG: np.random.uniform(...) has the same signature
    if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
        raise TypeError(
            f"rng must be a numpy Generator, RandomState or the np.random module, got {type(rng).__name__}"
        )
    return rng


def check_count(n: Any) -> int:
    """Validate a number of tasks to sample."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"number of tasks must be a non-negative integer, got {n!r}")
    return int(n)


def normalized_to_bounds(action: Any, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """rllab ``normalize``: map an action in [-1, 1]^d to [low, high]^d, clipping what falls outside.

    Raises ``ValueError`` for a wrong shape (no broadcasting) or NaN/inf entries.
    """
    a = np.asarray(action, dtype=np.float64)
    if a.shape != low.shape:
        raise ValueError(f"action must have shape {low.shape}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"action contains NaN or inf: {a}")
    scaled = low + (a + 1.0) * 0.5 * (high - low)
    return np.minimum(np.maximum(scaled, low), high)  # np.clip, without its Python-level overhead



def reset_task_option(options: dict[str, Any] | None) -> Any:
    """The task given by ``reset(options=...)`` (None if none); the only option the task envs take."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise TypeError(f"reset options must be a dict, got {type(options).__name__}")
    unknown = set(options) - {"task"}
    if unknown:
        raise ValueError(f"unknown reset options {sorted(unknown)}; this env accepts only 'task'")
    return options.get("task")

class TaskEnv(gym.Env):
    """A Gymnasium env with a persistent task variable (see the module docstring).

    Subclasses define ``task_shape`` (``()`` for a scalar), ``task_low``/``task_high`` (the
    sampling range) and ``redraw_task_each_reset`` (True for oracles), and may override
    :meth:`_validate_task` and :meth:`_on_task_set`.
    """

    task_shape: ClassVar[tuple[int, ...]] = ()
    task_low: ClassVar[float] = 0.0
    task_high: ClassVar[float] = 1.0
    redraw_task_each_reset: ClassVar[bool] = False

    def __init__(self, task: Any = None, redraw_task: bool | None = None) -> None:
        self._redraw = self.redraw_task_each_reset if redraw_task is None else bool(redraw_task)
        self._task: Any = None
        self._pinned = False
        self._task_rng: np.random.Generator | None = None
        self._ready = False  # set by a completed reset(); step() refuses to run before one
        if task is not None:
            self.set_task(task)

    # ----------------------------------------------------------------- task distribution
    @classmethod
    def sample_tasks(cls, n: int, rng: RNG) -> np.ndarray:
        """Draw ``n`` tasks as the reference's ``sample_goals`` does: ``rng.uniform(low, high, size)``."""
        n = check_count(n)
        return check_rng(rng).uniform(cls.task_low, cls.task_high, (n, *cls.task_shape))

    # ----------------------------------------------------------------- task get/set
    def _validate_task(self, task: Any) -> Any:
        """Turn ``task`` into the stored form or raise ``ValueError`` (subclasses may extend).

        Booleans are refused (``True`` would otherwise pass as 1.0), and so is anything that is not numbers.
        """
        if np.asarray(task).dtype.kind not in "iuf":
            raise ValueError(f"{type(self).__name__} task must be a number or an array of numbers, got {task!r}")
        arr = np.asarray(task, dtype=np.float64)
        if self.task_shape == ():
            if arr.shape not in ((), (1,)):
                raise ValueError(f"{type(self).__name__} task must be a scalar, got shape {arr.shape}")
            arr = arr.reshape(())
        elif arr.shape != self.task_shape:
            raise ValueError(f"{type(self).__name__} task must have shape {self.task_shape}, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{type(self).__name__} task must be finite, got {task!r}")
        return float(arr) if arr.shape == () else arr.copy()

    def _on_task_set(self) -> None:
        """Hook: recompute anything derived from the task (e.g. a direction)."""

    def set_task(self, task: Any) -> None:
        """Pin ``task``: it is used by every later reset until another task is set.

        ``None`` unpins: an oracle env then draws a new task at every reset, a rand env keeps its
        current task and draws one only if it never had one (the reference's behaviour).
        """
        if task is None:
            self._pinned = False
            return
        self._task = self._validate_task(task)
        self._pinned = True
        self._on_task_set()

    @property
    def persistent_task(self) -> Any:
        """The current task; setting it restores a task *without* pinning it.

        A resumed run gives its rand envs back the goals they kept (drawn once, at their first reset),
        as an uninterrupted run would still have them; ``None`` forgets the task (drawn at next reset).
        """
        return self.get_task()

    @persistent_task.setter
    def persistent_task(self, value: Any) -> None:
        self._task = None if value is None else self._validate_task(value)
        if value is not None:
            self._on_task_set()

    def get_task(self) -> Any:
        """The current task (``None`` before the first reset when none was given)."""
        return self._task.copy() if isinstance(self._task, np.ndarray) else self._task

    @property
    def task(self) -> Any:
        return self.get_task()

    @task.setter
    def task(self, value: Any) -> None:
        self.set_task(value)

    @property
    def task_rng(self) -> np.random.Generator:
        """The generator tasks are drawn from, a separate stream derived from the reset seed.

        Keeping task draws off ``np_random`` makes an episode after ``reset(seed=s)`` the same
        whether or not that reset had to draw a task.
        """
        if self._task_rng is None:
            raise RuntimeError("task_rng is set by reset()")
        return self._task_rng

    def _draw_task(self) -> Any:
        """One task from the family's distribution, drawn with the env's seeded task stream."""
        return self._validate_task(self.task_rng.uniform(self.task_low, self.task_high, self.task_shape))

    def _task_from_options(self, options: dict[str, Any] | None) -> Any:
        """The validated task of ``reset(options=...)`` (None if none).

        Called first thing in ``reset``: a bad task raises before anything changes (seed, task, state),
        so the env stays as it was, and an env never reset still refuses ``step``.
        """
        task = reset_task_option(options)
        return None if task is None else self._validate_task(task)

    def _prepare_task(self, task: Any, seeded: bool) -> None:
        """Apply ``task`` (from `_task_from_options`) and the persistence rules in ``reset``, after seeding."""
        if seeded or self._task_rng is None:
            self._task_rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        if task is not None:
            self._task = task
            self._pinned = True
            self._on_task_set()
        if self._pinned:
            return
        if self._redraw or self._task is None:
            self._task = self._draw_task()
            self._on_task_set()


def direction_of(u: float, threshold: float) -> float:
    """The reference's direction rule: backward (-1) if u < threshold else forward (+1)."""
    return -1.0 if u < threshold else 1.0
