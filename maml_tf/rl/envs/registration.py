"""Gymnasium ids of the task envs, their sizes, and helpers to make (vectors of) per-task envs.

Importing :mod:`maml_tf.rl.envs` registers every id below under the ``maml_tf/`` namespace with
the reference's horizon as ``max_episode_steps`` (TimeLimit truncation). ``ENV_INFO`` gives, per id,
the sizes a policy needs (``obs_dim`` is the one-hot size for the discrete grid world).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from maml_tf.rl.envs.base import RNG


@dataclasses.dataclass(frozen=True)
class EnvInfo:
    """Static facts about one registered env id."""

    env_id: str
    entry_point: str
    obs_dim: int
    act_dim: int  # action dimension (continuous) or number of actions (discrete)
    horizon: int  # max_episode_steps, the reference's max_path_length
    dt: float | None  # simulated seconds per step (None: not a physics env)
    task_shape: tuple[int, ...]
    discrete: bool = False
    oracle: bool = False


_M = "maml_tf.rl.envs"
_INFOS = [
    EnvInfo("maml_tf/PointGoal-v0", f"{_M}.point:PointGoalEnv", 2, 2, 100, None, (2,)),
    EnvInfo("maml_tf/PointGoalOracle-v0", f"{_M}.point:PointGoalOracleEnv", 4, 2, 100, None, (2,), oracle=True),
    EnvInfo("maml_tf/HalfCheetahVel-v0", f"{_M}.half_cheetah:HalfCheetahVelEnv", 20, 6, 200, 0.01, ()),
    EnvInfo(
        "maml_tf/HalfCheetahVelOracle-v0", f"{_M}.half_cheetah:HalfCheetahVelOracleEnv",
        21, 6, 200, 0.01, (), oracle=True,
    ),
    EnvInfo("maml_tf/HalfCheetahDir-v0", f"{_M}.half_cheetah:HalfCheetahDirEnv", 20, 6, 200, 0.01, ()),
    EnvInfo(
        "maml_tf/HalfCheetahDirOracle-v0", f"{_M}.half_cheetah:HalfCheetahDirOracleEnv",
        21, 6, 200, 0.01, (), oracle=True,
    ),
    EnvInfo("maml_tf/AntVel-v0", f"{_M}.ant:AntVelEnv", 125, 8, 200, 0.02, ()),
    EnvInfo("maml_tf/AntVelOracle-v0", f"{_M}.ant:AntVelOracleEnv", 126, 8, 200, 0.02, (), oracle=True),
    EnvInfo("maml_tf/AntDir-v0", f"{_M}.ant:AntDirEnv", 125, 8, 200, 0.02, ()),
    EnvInfo("maml_tf/AntDirOracle-v0", f"{_M}.ant:AntDirOracleEnv", 126, 8, 200, 0.02, (), oracle=True),
    EnvInfo("maml_tf/AntGoal-v0", f"{_M}.ant:AntGoalEnv", 125, 8, 200, 0.02, (2,)),
    EnvInfo("maml_tf/AntGoalOracle-v0", f"{_M}.ant:AntGoalOracleEnv", 127, 8, 200, 0.02, (2,), oracle=True),
    EnvInfo("maml_tf/GridWorld4-v0", f"{_M}.grid_world:GridWorld4Env", 9, 4, 10, None, (), discrete=True),
]
ENV_INFO: dict[str, EnvInfo] = {info.env_id: info for info in _INFOS}
ENV_IDS: tuple[str, ...] = tuple(ENV_INFO)

# The reference's experiment names -> (rand env id, oracle env id).
FAMILIES: dict[str, tuple[str, str | None]] = {
    "point": ("maml_tf/PointGoal-v0", "maml_tf/PointGoalOracle-v0"),
    "cheetah_vel": ("maml_tf/HalfCheetahVel-v0", "maml_tf/HalfCheetahVelOracle-v0"),
    "cheetah_dir": ("maml_tf/HalfCheetahDir-v0", "maml_tf/HalfCheetahDirOracle-v0"),
    "ant_vel": ("maml_tf/AntVel-v0", "maml_tf/AntVelOracle-v0"),
    "ant_dir": ("maml_tf/AntDir-v0", "maml_tf/AntDirOracle-v0"),
    "ant_goal": ("maml_tf/AntGoal-v0", "maml_tf/AntGoalOracle-v0"),
    "grid4": ("maml_tf/GridWorld4-v0", None),
}


def register_envs() -> None:
    """Register every id in ``ENV_INFO`` with Gymnasium (idempotent)."""
    for info in _INFOS:
        if info.env_id not in gym.registry:
            gym.register(id=info.env_id, entry_point=info.entry_point, max_episode_steps=info.horizon)


def env_info(env_id: str) -> EnvInfo:
    """``ENV_INFO[env_id]`` with an error that lists the known ids."""
    try:
        return ENV_INFO[env_id]
    except KeyError:
        raise ValueError(f"unknown env id {env_id!r}; known ids: {', '.join(ENV_IDS)}") from None


def env_class(env_id: str) -> type:
    """The env class behind ``env_id`` (for classmethods such as ``sample_tasks``)."""
    module, name = env_info(env_id).entry_point.split(":")
    return getattr(__import__(module, fromlist=[name]), name)


def sample_tasks(env_id: str, n: int, rng: RNG) -> np.ndarray:
    """``n`` tasks of ``env_id``'s family, drawn as the reference does (see ``TaskEnv.sample_tasks``)."""
    return env_class(env_id).sample_tasks(n, rng)


def make_env(env_id: str, task: Any = None, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, task=task, **kwargs)`` after checking the id (module-level, so picklable)."""
    env_info(env_id)
    register_envs()  # a fresh subprocess of AsyncVectorEnv gets here through this import
    return gym.make(env_id, task=task, **kwargs)


def make_vector_env(
    env_id: str,
    tasks: Sequence[Any] | np.ndarray,
    asynchronous: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    batched: bool = False,
    workers: int = 0,
    **vector_kwargs: Any,
) -> gym.vector.VectorEnv:
    """A Gymnasium vector env with one sub-env per task, task i pinned in sub-env i.

    Sub-envs keep their task across (auto)resets. Retask later with :func:`set_tasks`.
    ``vector_kwargs`` go to ``SyncVectorEnv``/``AsyncVectorEnv`` (e.g. ``autoreset_mode``).
    ``asynchronous=True`` runs one process per sub-env (``AsyncVectorEnv``). ``workers=W > 1``
    runs the sub-envs in W processes, a block of ``len(tasks) / W`` each
    (:class:`~maml_tf.rl.envs.block.ShardedVectorEnv`: SAME_STEP autoreset only, results
    bit-identical to the ``SyncVectorEnv``; ``vector_kwargs`` may then hold ``autoreset_mode``
    (SAME_STEP), ``context``, ``daemon`` and ``step_infos``); 0 or 1 steps them in this process.
    ``batched=True`` (point ids only) returns a :class:`PointGoalVectorEnv`, which steps all tasks
    as one numpy batch and otherwise behaves as the ``SyncVectorEnv``.
    """
    info = env_info(env_id)
    tasks = list(tasks)
    if not tasks:
        raise ValueError("make_vector_env needs at least one task")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0 (0 or 1: in-process), got {workers!r}")
    if workers > 1:
        if asynchronous or batched:
            raise ValueError(f"workers={workers} shards the sub-envs over worker processes; it cannot be combined "
                             f"with asynchronous=True (a process per sub-env) or batched=True (in-process numpy)")
        from maml_tf.rl.envs.block import ShardedVectorEnv

        mode = vector_kwargs.pop("autoreset_mode", AutoresetMode.SAME_STEP)
        if AutoresetMode(mode) != AutoresetMode.SAME_STEP:
            raise ValueError(f"workers={workers}: the sharded vector env autoresets SAME_STEP only, got {mode!r}")
        unknown = set(vector_kwargs) - {"context", "daemon", "step_infos"}
        if unknown:
            raise ValueError(f"workers={workers}: unsupported vector env arguments {sorted(unknown)}")
        return ShardedVectorEnv(env_id, tasks, int(workers), env_kwargs, **vector_kwargs)
    if batched:
        if not env_id.startswith("maml_tf/PointGoal") or asynchronous or env_kwargs or vector_kwargs:
            raise ValueError(
                "batched=True is available for the point ids only, without asynchronous/env_kwargs/vector_kwargs"
            )
        from maml_tf.rl.envs.point_vector import PointGoalVectorEnv

        return PointGoalVectorEnv(tasks, oracle=info.oracle, max_episode_steps=info.horizon)
    env_kwargs = dict(env_kwargs or {})
    fns = [functools.partial(make_env, env_id, task, **env_kwargs) for task in tasks]
    if asynchronous:
        return gym.vector.AsyncVectorEnv(fns, **vector_kwargs)
    return gym.vector.SyncVectorEnv(fns, **vector_kwargs)


def set_tasks(envs: gym.vector.VectorEnv, tasks: Sequence[Any] | np.ndarray) -> None:
    """Pin task i in sub-env i of a vector env; reset the vector env afterwards to start episodes on them."""
    tasks = list(tasks)
    if len(tasks) != envs.num_envs:
        raise ValueError(f"got {len(tasks)} tasks for a vector env of {envs.num_envs} sub-envs")
    envs.set_attr("task", tasks)
