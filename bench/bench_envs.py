"""Environment throughput of maml_tf.rl.envs next to raw MuJoCo, so the Python overhead is visible.

    scripts/venv.sh python bench/bench_envs.py [--steps 4000] [--num-envs 20] [--async-envs 4] [--workers 2]

Per family it prints env steps per second for:
  raw mj_step          ``mujoco.mj_step`` alone on the same model (the floor of any env);
  physics              what one env step runs in MuJoCo: mj_step + mj_forward + mj_subtreeVel
                       (+ mj_rnePostConstraint for the ant), no Python env code;
  env (unwrapped)      ``env.step`` on the bare class;
  env (gym.make)       with Gymnasium's TimeLimit/OrderEnforcing/PassiveEnvChecker wrappers;
  sync vector xN       ``SyncVectorEnv`` with N sub-envs (steps counted per sub-env);
  async vector xN      ``AsyncVectorEnv`` (processes) with N sub-envs;
  sharded vector xN / W workers
                       ``ShardedVectorEnv``: the sync env's N sub-envs in W processes, a block of N/W
                       each (one pipe round trip per worker per step; `maml_tf.rl.envs.block`);
and for the point env the batched ``PointGoalVectorEnv`` and its bare numpy step ``point_step_batch``
over N tasks.
Actions are N(0, 1) samples as a Gaussian policy would send.
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import mujoco
import numpy as np

import maml_tf.rl.envs as E
from maml_tf.rl.envs.block import ShardedVectorEnv

FAMILIES = {
    "point": "maml_tf/PointGoal-v0",
    "grid4": "maml_tf/GridWorld4-v0",
    "half_cheetah": "maml_tf/HalfCheetahVel-v0",
    "ant": "maml_tf/AntVel-v0",
}


def rate(fn, steps: int, repeats: int) -> float:
    """Calls per second of ``fn``: the best of ``repeats`` runs of ``steps`` calls (after a warm-up call).

    Best-of rather than mean, because on a shared machine other load only ever slows a run down.
    """
    fn()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        best = max(best, steps / (time.perf_counter() - start))
    return best


def actions_for(space: gym.Space, n: int, rng: np.random.Generator):
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.n, size=n)
    return rng.normal(size=(n, *space.shape))


def bench_single(env: gym.Env, steps: int, repeats: int, rng: np.random.Generator) -> float:
    acts = actions_for(env.action_space, repeats * steps + 1, rng)
    env.reset(seed=0)
    it = iter(acts)

    def one():
        _, _, term, trunc, _ = env.step(next(it))
        if term or trunc:
            env.reset()

    return rate(one, steps, repeats)


def bench_vector(envs: gym.vector.VectorEnv, steps: int, repeats: int, rng: np.random.Generator) -> float:
    n = envs.num_envs
    single = envs.single_action_space
    acts = actions_for(single, (repeats * steps + 1) * n, rng)
    acts = acts.reshape(repeats * steps + 1, n, *acts.shape[1:])
    envs.reset(seed=0)
    it = iter(acts)
    return n * rate(lambda: envs.step(next(it)), steps, repeats)


def bench_mujoco(env: E.MujocoTaskEnv, steps: int, repeats: int) -> tuple[float, float]:
    model, data = env.model, mujoco.MjData(env.model)
    data.qpos[:] = env.init_qpos
    mujoco.mj_forward(model, data)
    raw = rate(lambda: mujoco.mj_step(model, data), steps, repeats)
    data2 = mujoco.MjData(model)
    data2.qpos[:] = env.init_qpos

    def physics():
        mujoco.mj_step(model, data2)
        mujoco.mj_forward(model, data2)
        mujoco.mj_subtreeVel(model, data2)
        if env.needs_contact_forces:
            mujoco.mj_rnePostConstraint(model, data2)

    return raw, rate(physics, steps, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000, help="steps per single-env measurement")
    parser.add_argument("--num-envs", type=int, default=20, help="sub-envs of the sync vector env")
    parser.add_argument("--async-envs", type=int, default=4, help="sub-envs (processes) of the async vector env")
    parser.add_argument("--vector-steps", type=int, default=300, help="vector steps per vector measurement")
    parser.add_argument("--no-async", action="store_true", help="skip the AsyncVectorEnv measurement")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of the sharded vector env (must divide --num-envs; 0: skip it)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    if args.workers < 0 or (args.workers and args.num_envs % args.workers):
        parser.error(f"--workers {args.workers} must divide --num-envs {args.num_envs} (or be 0 to skip)")
    reps = max(1, args.repeats)
    rng = np.random.default_rng(0)
    rows = []
    for family, env_id in FAMILIES.items():
        cls = E.env_class(env_id)
        tasks = E.sample_tasks(env_id, max(args.num_envs, args.async_envs), np.random.RandomState(1))
        row = {"family": family}
        bare = cls(task=tasks[0])
        if isinstance(bare, E.MujocoTaskEnv):
            bare.reset(seed=0)
            row["raw mj_step"], row["physics"] = bench_mujoco(bare, args.steps, reps)
        row["env (unwrapped)"] = bench_single(bare, args.steps, reps, rng)
        row["env (gym.make)"] = bench_single(E.make_env(env_id, task=tasks[0]), args.steps, reps, rng)
        envs = E.make_vector_env(env_id, tasks[: args.num_envs])
        row[f"sync vector x{args.num_envs}"] = bench_vector(envs, args.vector_steps, reps, rng)
        envs.close()
        if args.workers:
            envs = ShardedVectorEnv(env_id, tasks[: args.num_envs], args.workers)  # W=1 too: one process
            row[f"sharded vector x{args.num_envs} / {args.workers} workers"] = bench_vector(
                envs, args.vector_steps, reps, rng)
            envs.close()
        if not args.no_async:
            envs = E.make_vector_env(env_id, tasks[: args.async_envs], asynchronous=True)
            row[f"async vector x{args.async_envs}"] = bench_vector(envs, args.vector_steps, reps, rng)
            envs.close()
        if family == "point":
            envs = E.make_vector_env(env_id, tasks[: args.num_envs], batched=True)
            row[f"PointGoalVectorEnv x{args.num_envs}"] = bench_vector(envs, args.vector_steps, reps, rng)
            goals = tasks[: args.num_envs]
            pos = np.zeros_like(goals)
            acts = rng.normal(size=goals.shape)
            row[f"point_step_batch x{args.num_envs}"] = args.num_envs * rate(
                lambda: E.point_step_batch(pos, goals, acts), args.steps, reps
            )
        rows.append(row)
        print(f"{family:>13}: " + ", ".join(f"{k} {v:,.0f}" for k, v in row.items() if k != "family"), flush=True)

    print("\nenv steps per second (higher is better)")
    keys = []
    for row in rows:
        keys += [k for k in row if k != "family" and k not in keys]
    width = max(26, *(len(k) for k in keys))
    print(f"{'':>{width}}" + "".join(f"{r['family']:>14}" for r in rows))
    for k in keys:
        print(f"{k:>{width}}" + "".join(f"{r[k]:>14,.0f}" if k in r else f"{'-':>14}" for r in rows))


if __name__ == "__main__":
    main()
