"""Per-task rollouts in lock-step, as the reference's `VectorizedSampler` does.

One Gymnasium vector env holds ``envs_per_task`` sub-envs for each of T tasks (sub-env e serves
task ``e // envs_per_task``; the reference's MAML runs use one per task, its non-MAML runs
``min(100, batch / H)`` copies of one task).  Every lock-step the observations of all sub-envs
go through **one** compiled policy call that applies task i's parameter row to task i's
observations (pre-update: theta tiled; post-update: theta'_i), actions are drawn with a numpy
RNG, and the *raw* Gaussian sample is stored while the env clips the action it executes.

Stop rules (reference quirk 16):

* ``"total"`` (MAML training): stop once the timesteps of *completed* paths, summed over all
  tasks, reach the quota (fast_batch_size * H * meta_batch_size); unfinished paths are dropped,
  so terminating envs give a variable number of paths per task.
* ``"per_task"`` (test-time VPG runs, one per goal, evaluated side by side): task i stops
  collecting once its own completed timesteps reach the quota.

``env_workers`` W > 1 steps the sub-envs in W worker processes, a block each
(`envs.block.ShardedVectorEnv`); the policy forward stays here, one per lock-step, and the paths
are bit-identical to in-process stepping.

Episodes end on termination or at H (the env's TimeLimit is set to H). Gymnasium vector envs
are built with SAME_STEP autoreset (the reset observation comes back in the same call); the
numpy-batched point env (`envs.point_vector`, NEXT_STEP autoreset) is also supported: the step
after an episode's end only returns the reset observation and is not recorded.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf
from gymnasium.vector import AutoresetMode

from maml_tf.rl.advantages import Path

# theta_b [T, P] -> (obs [T, k, obs_dim] -> dist info [T, k, K]); built once per sampling round
InfoFnFactory = Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]]


def numpy_inference(policy) -> InfoFnFactory:
    """Batched numpy forward (default: fastest for these small MLPs on a CPU)."""
    return policy.numpy_forward_fn


def tf_inference(dist_info_fn) -> InfoFnFactory:
    """A compiled TF forward such as `MetaObjective.dist_info` (theta converted once per round)."""
    def factory(theta_b):
        theta_t = tf.constant(theta_b)
        return lambda obs: dist_info_fn(theta_t, obs).numpy()
    return factory


class TaskSampler:
    """Owns the vector env; :meth:`sample` returns completed paths per task."""

    def __init__(self, env_id: str, n_tasks: int, max_path_length: int, envs_per_task: int = 1,
                 asynchronous: bool = False, seed: int = 0, batched_point: bool = True, env_workers: int = 0):
        """``env_workers`` W > 1 steps the ``n_tasks * envs_per_task`` sub-envs in W worker processes,
        a block of sub-envs each (`envs.block.ShardedVectorEnv`; W must divide that count); the paths
        are bit-identical to in-process stepping (0 or 1)."""
        from maml_tf.rl import envs as task_envs  # registers the ids

        if n_tasks < 1 or envs_per_task < 1 or max_path_length < 1:
            raise ValueError(f"n_tasks, envs_per_task and max_path_length must be >= 1, got "
                             f"{n_tasks}, {envs_per_task}, {max_path_length}")
        if isinstance(env_workers, bool) or not isinstance(env_workers, (int, np.integer)) or env_workers < 0:
            raise ValueError(f"env_workers must be an integer >= 0 (0 or 1: step the envs in this process), "
                             f"got {env_workers!r}")
        self.info = task_envs.env_info(env_id)
        self.env_id = env_id
        self.n_tasks = n_tasks
        self.k = envs_per_task
        self.n_envs = n_tasks * envs_per_task
        self.max_path_length = max_path_length
        # The point env is a few array ops: step all sub-envs as one numpy batch (tasks pinned).
        self.batched = batched_point and env_id.startswith("maml_tf/PointGoal") and not asynchronous
        self.env_workers = int(env_workers)
        if self.batched and self.env_workers > 1:
            # Refused rather than sharding gym point envs: a batched point step is a few array ops
            # for all sub-envs at once (~10^6 steps/s), far less than one pipe round trip to a
            # worker, so worker processes could only slow the point env down.
            raise ValueError(f"env_workers={env_workers}: the point env is stepped as one in-process numpy batch, "
                             f"which worker processes cannot speed up; use env_workers=0 (or batched_point=False "
                             f"to shard the gym point envs)")
        if self.batched:
            from maml_tf.rl.envs.point_vector import PointGoalVectorEnv

            self.envs = PointGoalVectorEnv(np.zeros((self.n_envs, 2)), oracle=self.info.oracle,
                                           max_episode_steps=max_path_length)
        else:
            self.envs = task_envs.make_vector_env(
                env_id, [None] * self.n_envs, asynchronous=asynchronous, workers=self.env_workers,
                env_kwargs={"max_episode_steps": max_path_length}, autoreset_mode=AutoresetMode.SAME_STEP)
        self.next_step_reset = self.envs.metadata.get("autoreset_mode") == AutoresetMode.NEXT_STEP
        self._tasks_set = not self.batched
        self._seed = int(seed)
        self._n_resets = 0
        self.last_stats: dict[str, float] = {}

    def close(self) -> None:
        self.envs.close()

    def set_tasks(self, tasks: Sequence[Any] | np.ndarray | None) -> None:
        """Pin task i on its sub-envs; None unpins (rand envs keep theirs, oracles redraw)."""
        from maml_tf.rl import envs as task_envs

        if tasks is None:
            if self.batched:
                raise ValueError("the batched point env needs pinned tasks; build the sampler with batched_point=False")
            task_envs.set_tasks(self.envs, [None] * self.n_envs)
            return
        self._tasks_set = True
        tasks = list(tasks)
        if len(tasks) != self.n_tasks:
            raise ValueError(f"got {len(tasks)} tasks for a sampler built for {self.n_tasks}")
        task_envs.set_tasks(self.envs, [t for t in tasks for _ in range(self.k)])

    def sample(self, info_fn_for: InfoFnFactory, theta_b: np.ndarray, quota: int, stop_rule: str,
               sample_fn: Callable[[np.ndarray, np.random.Generator], np.ndarray],
               rng: np.random.Generator) -> list[list[Path]]:
        """Roll out until the stop rule holds; returns per-task lists of completed paths."""
        if stop_rule not in ("total", "per_task"):
            raise ValueError(f"stop_rule must be 'total' or 'per_task', got {stop_rule!r}")
        if theta_b.shape[0] != self.n_tasks:
            raise ValueError(f"theta_b has {theta_b.shape[0]} rows for {self.n_tasks} tasks")
        if quota < 1:
            raise ValueError(f"the sample quota must be >= 1 timestep, got {quota}")
        if not self._tasks_set:
            raise RuntimeError("call set_tasks() before sample() on the batched point env")
        t_start = time.perf_counter()
        t_policy = 0.0
        info_fn = info_fn_for(theta_b)  # parameters prepared once, not per lock-step
        discrete = self.info.discrete
        obs, _ = self.envs.reset(seed=self._seed + 100_003 * self._n_resets)
        self._n_resets += 1
        task_of_env = np.arange(self.n_envs) // self.k
        buf = [([], [], [], []) for _ in range(self.n_envs)]
        done_paths: list[list[Path]] = [[] for _ in range(self.n_tasks)]
        done_steps = np.zeros(self.n_tasks, dtype=np.int64)
        n_steps = 0
        resetting = np.zeros(self.n_envs, dtype=bool)  # NEXT_STEP: this step only resets these envs
        while True:
            if stop_rule == "total" and done_steps.sum() >= quota:
                break
            if stop_rule == "per_task" and np.all(done_steps >= quota):
                break
            o = np.asarray(obs, dtype=np.float32).reshape(self.n_tasks, self.k, -1)
            tp = time.perf_counter()
            info = np.asarray(info_fn(o)).reshape(self.n_envs, -1)
            t_policy += time.perf_counter() - tp
            actions = np.asarray(sample_fn(info, rng), dtype=np.float32)
            env_actions = actions[:, 0].astype(np.int64) if discrete else actions
            next_obs, rewards, terms, truncs, _ = self.envs.step(env_actions)
            n_steps += self.n_envs
            flat_obs = o.reshape(self.n_envs, -1)
            for e in range(self.n_envs):
                if resetting[e]:
                    continue
                b = buf[e]
                for column, value in zip(b, (flat_obs[e], actions[e], rewards[e], info[e])):
                    column.append(value)
                if terms[e] or truncs[e]:
                    i = task_of_env[e]
                    if stop_rule == "total" or done_steps[i] < quota:
                        done_paths[i].append(Path(np.stack(b[0]), np.stack(b[1]),
                                                  np.asarray(b[2], dtype=np.float64), np.stack(b[3])))
                        done_steps[i] += len(b[2])
                    buf[e] = ([], [], [], [])
            if self.next_step_reset:
                resetting = np.logical_and(np.logical_or(terms, truncs), ~resetting)
            obs = next_obs
        wall = time.perf_counter() - t_start
        self.last_stats = {"wall_s": wall, "policy_s": t_policy, "env_steps": n_steps,
                           "kept_steps": int(done_steps.sum()), "steps_per_s": n_steps / max(wall, 1e-9)}
        return done_paths
