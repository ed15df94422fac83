"""Parallel env stepping across processes, a block of sub-envs per process.

Gymnasium's ``AsyncVectorEnv`` runs one process per sub-env: with 40 cheetah tasks that is 40
processes on a few cores, and a pipe round trip per sub-env step costs more than the MuJoCo step
(``bench/bench_envs.py``: async is ~3x slower than in-process stepping). Here each worker process
instead holds a :class:`BlockEnv` of k sub-envs that it steps one after another, so a lock-step
costs one pipe round trip per *worker*, and :class:`ShardedVectorEnv` presents W such workers as
one vector env of n = W * k sub-envs.

Results are bit-identical to ``SyncVectorEnv(autoreset_mode=AutoresetMode.SAME_STEP)`` over the
same sub-envs: sub-env i is seeded with ``seed + i``, every sub-env is stepped with the same action
values, and a sub-env whose episode ended is reset in the same call with no seed and no options
(its RNG continues), exactly as the sync env does.

How per-sub-env results cross the process boundary: the block's observation is a ``Dict`` of the
sub-env observations batched over k and a [k, 3] float64 array of (reward, terminated, truncated)
per sub-env, so all of it travels through ``AsyncVectorEnv``'s shared memory (two ``np.copyto``;
each shared-memory key costs ~9 us per step, hence one array for the three) and the pipe carries
only the block's constant reward 0 / False / False and an empty info dict. Measured on the 2-core
machine, 20 half-cheetahs in 2 workers, best of 3: 50-53k steps/s this way, 42-49k with the three
arrays pickled in the step info, ~44k with four shared-memory keys (obs, reward, terminated,
truncated). Per-sub-env step infos (``final_obs``/``final_info`` and the envs' own keys,
``step_infos=True``) cost 5-20% more and are off by default: the sampler does not read them.

What it buys depends on the machine: a lock-step stays serial (the main process computes the
policy while the workers sleep, then waits for them) and waking a sleeping worker costs 150-340 us
on the 2-core VM, so there the sampler gained 1.2-1.3x on ant and 1.0-1.05x on half-cheetah at 40
tasks, and lost with 5 envs per worker (bench/README.md, "MAML-RL: env stepping and the sampler").
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from maml_tf.rl.envs.registration import make_env

# keys of a BlockEnv observation, and the columns of its RESULTS array
OBS, RESULTS = "obs", "results"
REWARD, TERMINATED, TRUNCATED = 0, 1, 2
SUB_INFOS = "sub_infos"  # info key: per sub-env, the info dicts SyncVectorEnv would have added


def sub_env_seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    """Per-sub-env reset seeds with ``SyncVectorEnv.reset``'s rule: None, s -> s + i, or a list of n."""
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"a list of reset seeds needs one per sub-env: got {len(seeds)} for {n} sub-envs")
    return seeds


def per_sub_env(values: Any, n: int, name: str) -> list[Any]:
    """``SyncVectorEnv.set_attr``'s rule: a list/tuple gives one value per sub-env, anything else is shared."""
    if not isinstance(values, (list, tuple)):
        return [values] * n
    if len(values) != n:
        raise ValueError(f"set {name!r}: got {len(values)} values for {n} sub-envs (pass one per sub-env, "
                         f"or a single non-list value for all)")
    return list(values)


def check_workers(n: int, workers: int) -> int:
    """The block size k = n / workers; a ValueError naming n, workers and the valid counts otherwise."""
    valid = [w for w in range(1, n + 1) if n % w == 0]
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not 1 <= workers <= n \
            or n % workers:
        raise ValueError(f"cannot split n={n} sub-envs into {workers!r} worker processes: every worker steps an "
                         f"equal block, so the worker count must divide n; valid worker counts for n={n}: {valid}")
    return n // int(workers)


class BlockEnv(gym.Env):
    """k sub-envs ``make_env(env_id, task, **env_kwargs)`` stepped one after another in one process.

    ``reset(seed=s)`` seeds sub-env j with ``s + j`` (or takes a list of k seeds); ``step(actions)``
    takes the k actions stacked on the first axis. Observations are a ``Dict``: ``obs`` (the
    sub-env observation space batched over k) and ``results`` ([k, 3] float64: reward, terminated,
    truncated of each sub-env). Ended sub-envs are reset within ``step`` (SAME_STEP); the block
    itself always returns reward 0 and never terminates or truncates. ``set_wrapper_attr`` (what a
    vector env's ``set_attr`` calls) and the ``task`` attribute take one value per sub-env.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env_id: str, tasks: Sequence[Any], env_kwargs: dict[str, Any] | None = None,
                 step_infos: bool = False) -> None:
        tasks = list(tasks)
        if not tasks:
            raise ValueError("BlockEnv needs at least one task (one per sub-env)")
        self.envs: list[gym.Env] = [make_env(env_id, task, **dict(env_kwargs or {})) for task in tasks]
        self.env_id = env_id
        self.k = len(self.envs)
        self.step_infos = bool(step_infos)
        first = self.envs[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        for env in self.envs[1:]:
            if env.observation_space != self.single_observation_space or env.action_space != self.single_action_space:
                raise RuntimeError(f"the sub-envs of a block must share their spaces; got {env.observation_space}, "
                                   f"{env.action_space} next to {self.single_observation_space}, "
                                   f"{self.single_action_space}")
        self.metadata = dict(first.metadata)
        self.action_space = batch_space(self.single_action_space, self.k)
        self.observation_space = gym.spaces.Dict({
            OBS: batch_space(self.single_observation_space, self.k),
            RESULTS: gym.spaces.Box(-np.inf, np.inf, (self.k, 3), np.float64),
        })
        self._sub_obs: list[Any] = [None] * self.k
        self._obs = create_empty_array(self.single_observation_space, n=self.k, fn=np.zeros)
        self._results = np.zeros((self.k, 3), dtype=np.float64)

    def _packed(self) -> dict[str, np.ndarray]:
        self._obs = concatenate(self.single_observation_space, self._sub_obs, self._obs)
        return {OBS: self._obs, RESULTS: self._results}

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-env (sub-env j with seed ``seed + j``); info: ``{"sub_infos": [[info_j], ...]}``."""
        if options is not None and "reset_mask" in options:
            raise ValueError("BlockEnv resets all of its sub-envs; options['reset_mask'] is not supported")
        sub_infos = []
        for j, (env, s) in enumerate(zip(self.envs, sub_env_seeds(seed, self.k))):
            self._sub_obs[j], info = env.reset(seed=s, options=options)
            sub_infos.append([info])
        self._results[:] = 0.0
        return self._packed(), {SUB_INFOS: sub_infos}

    def step(self, action: Any):
        """Step sub-env j with ``action[j]``, resetting (no seed) those whose episode ended."""
        if len(action) != self.k:
            raise ValueError(f"BlockEnv of {self.k} sub-envs got {len(action)} actions")
        sub_infos = [] if self.step_infos else None
        results = self._results
        for j, env in enumerate(self.envs):
            obs, reward, terminated, truncated, info = env.step(action[j])
            results[j, REWARD] = reward  # float64, as SyncVectorEnv stores it
            results[j, TERMINATED] = terminated
            results[j, TRUNCATED] = truncated
            events = [] if sub_infos is not None else None
            if terminated or truncated:
                if events is not None:
                    events.append({"final_obs": obs, "final_info": info})
                obs, info = env.reset()
            if events is not None:
                events.append(info)
                sub_infos.append(events)
            self._sub_obs[j] = obs
        return self._packed(), 0.0, False, False, ({SUB_INFOS: sub_infos} if sub_infos is not None else {})

    # ------------------------------------------------------------------ per-sub-env attributes
    def set_wrapper_attr(self, name: str, value: Any, *, force: bool = True) -> bool:
        """Set ``name`` on the sub-envs: one value each from a list/tuple of k, else the same on all."""
        for env, v in zip(self.envs, per_sub_env(value, self.k, name)):
            env.set_wrapper_attr(name, v)
        return True

    def call_sub_envs(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``SyncVectorEnv.call`` over the block: call ``name`` on each sub-env, or read it if not callable."""
        results = []
        for env in self.envs:
            attr = env.get_wrapper_attr(name)
            results.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(results)

    @property
    def task(self) -> list[Any]:
        """The k sub-envs' tasks."""
        return [env.get_wrapper_attr("task") for env in self.envs]

    @task.setter
    def task(self, tasks: Sequence[Any] | Any) -> None:
        self.set_wrapper_attr("task", tasks)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class ShardedVectorEnv(gym.vector.VectorEnv):
    """n = W * k sub-envs in W worker processes (an ``AsyncVectorEnv`` of W :class:`BlockEnv`).

    Behaves as ``SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)`` over the same sub-envs,
    with bit-identical observations, rewards, terminations and truncations for the same seeds and
    actions. Sub-env i lives in worker ``i // k``. ``reset`` infos are the sync env's; ``step``
    infos are ``{}`` unless ``step_infos=True`` (then also the sync env's, ``final_obs`` and
    ``final_info`` included). ``reset(options={"reset_mask": ...})`` is not supported.
    """

    def __init__(self, env_id: str, tasks: Sequence[Any], workers: int, env_kwargs: dict[str, Any] | None = None,
                 *, step_infos: bool = False, context: str | None = None, daemon: bool = True) -> None:
        tasks = list(tasks)
        if not tasks:
            raise ValueError("ShardedVectorEnv needs at least one task (one per sub-env)")
        self.num_envs = len(tasks)
        self.block_size = check_workers(self.num_envs, workers)
        self.workers = int(workers)
        self.env_id = env_id
        self.step_infos = bool(step_infos)
        k = self.block_size
        fns = [functools.partial(BlockEnv, env_id, tasks[w * k:(w + 1) * k], dict(env_kwargs or {}), step_infos)
               for w in range(self.workers)]
        # copy=False: observations are read straight from the shared buffers and copied here, once
        self._blocks = gym.vector.AsyncVectorEnv(fns, shared_memory=True, copy=False, context=context, daemon=daemon,
                                                 autoreset_mode=AutoresetMode.SAME_STEP)
        self.single_observation_space = self._blocks.get_attr("single_observation_space")[0]
        self.single_action_space = self._blocks.get_attr("single_action_space")[0]
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = dict(self._blocks.metadata)
        self.metadata["autoreset_mode"] = AutoresetMode.SAME_STEP
        self.render_mode = None

    @property
    def processes(self) -> list:
        """The worker processes (one per block)."""
        return list(self._blocks.processes)

    def _split(self, values: list[Any]) -> list[list[Any]]:
        k = self.block_size
        return [values[w * k:(w + 1) * k] for w in range(self.workers)]

    def _results(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        shared = self._blocks.observations  # views of the shared buffers, [W, k, ...]
        n = self.num_envs
        obs = np.array(shared[OBS].reshape((n, *shared[OBS].shape[2:])))
        results = shared[RESULTS].reshape(n, 3)
        return (obs, results[:, REWARD].copy(), results[:, TERMINATED] != 0, results[:, TRUNCATED] != 0)

    def _replay_infos(self, block_infos: dict[str, Any]) -> dict[str, Any]:
        """Rebuild the sync env's info dict by adding each sub-env's infos in the sync env's order."""
        infos: dict[str, Any] = {}
        for w, per_env in enumerate(block_infos[SUB_INFOS]):
            for j, events in enumerate(per_env):
                for info in events:
                    infos = self._add_info(infos, info, w * self.block_size + j)
        return infos

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset all sub-envs; sub-env i gets ``seed + i`` (or ``seed[i]``), as in ``SyncVectorEnv``."""
        if options is not None and "reset_mask" in options:
            raise ValueError("ShardedVectorEnv resets all sub-envs; options['reset_mask'] is not supported")
        seeds = self._split(sub_env_seeds(seed, self.num_envs))
        _, block_infos = self._blocks.reset(seed=seeds, options=options)
        obs, *_ = self._results()
        return obs, self._replay_infos(block_infos)

    def step(self, actions: Any):
        """Step sub-env i with ``actions[i]``; returns (obs, rewards, terminations, truncations, infos)."""
        actions = np.asarray(actions)
        if actions.ndim == 0 or actions.shape[0] != self.num_envs:
            raise ValueError(f"ShardedVectorEnv of {self.num_envs} sub-envs got actions of shape {actions.shape}")
        _, _, _, _, block_infos = self._blocks.step(
            actions.reshape((self.workers, self.block_size, *actions.shape[1:])))
        obs, rewards, terms, truncs = self._results()
        return obs, rewards, terms, truncs, (self._replay_infos(block_infos) if self.step_infos else {})

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call ``name`` on every sub-env (or read it if not callable); one result per sub-env."""
        per_block = self._blocks.call("call_sub_envs", name, *args, **kwargs)
        return tuple(r for block in per_block for r in block)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.call(name)

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | Any) -> None:
        """Set ``name`` on the sub-envs: ``values[i]`` on sub-env i (a list/tuple of n), else one value for all."""
        self._blocks.set_attr(name, self._split(per_sub_env(values, self.num_envs, name)))

    def close_extras(self, **kwargs: Any) -> None:
        """Close the sub-envs and end the worker processes (joined before this returns)."""
        if hasattr(self, "_blocks"):
            self._blocks.close(**kwargs)

    def __repr__(self) -> str:
        return f"ShardedVectorEnv({self.env_id}, num_envs={self.num_envs}, workers={self.workers})"
