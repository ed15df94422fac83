"""Benchmark of the MAML-RL pieces: sampling throughput and the TRPO step's time breakdown.

    scripts/venv.sh python bench/bench_rl.py            # point + cheetah, reference batch sizes
    scripts/venv.sh python bench/bench_rl.py --quick    # smaller batches
    scripts/venv.sh python bench/bench_rl.py --env_workers 1,2,4   # envs in-process, 2 and 4 processes

Prints, per env and per ``--env_workers`` W (1: in-process; W > 1: the sub-envs stepped in W
worker processes, a block each, `maml_tf.rl.envs.block`; the point env stays in-process):
* raw stepping: the vector env stepped with random actions, no policy (upper bound);
* sampler: `TaskSampler.sample` (policy inference for all tasks per lock-step + path bookkeeping)
  with the numpy forward, and for W = 1 also the XLA-compiled TF forward, in env steps per second;
  ``--rounds N`` times the numpy sampler N times per W, alternating the Ws, and reports the median;
* TRPO step: surrogate gradient, 11 HVPs (FD reference vs exact double-backprop), line search,
  on a synthetic meta-batch with the reference's shape (tasks x timesteps per task).
Numbers depend on the machine and its load; nothing here is asserted.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from maml_tf.rl.envs import env_info, sample_tasks
from maml_tf.rl.maml_trpo import Batch, MetaObjective, meta_trpo_step
from maml_tf.rl.policies import GaussianMLPPolicy
from maml_tf.rl.sampler import TaskSampler, numpy_inference, tf_inference


def bench_sampling(env_id: str, n_tasks: int, traj_per_task: int, rng: np.random.Generator,
                   env_workers: tuple[int, ...] = (1,), rounds: int = 1) -> None:
    """Raw stepping and sampler rows per worker count; the numpy sampler runs ``rounds`` times,
    alternating the worker counts, so a shared machine's changing load hits them alike."""
    info = env_info(env_id)
    h = info.horizon
    pol = GaussianMLPPolicy(info.obs_dim, info.act_dim, seed=0)
    obj = MetaObjective(pol, 0.1, 1)
    print(f"{env_id}: {n_tasks} tasks x {traj_per_task} traj x H {h}")
    samplers = {}
    for w in env_workers:
        if w > 1 and env_id.startswith("maml_tf/PointGoal"):
            print(f"  env_workers={w}: skipped (the point env is stepped in-process as one numpy batch)")
        elif w > 1 and n_tasks % w:
            print(f"  env_workers={w}: skipped ({n_tasks} envs do not split into {w} equal blocks)")
        else:
            samplers[w] = TaskSampler(env_id, n_tasks, h, seed=0, env_workers=w)
            samplers[w].set_tasks(sample_tasks(env_id, n_tasks, np.random.RandomState(1)))
    theta_b = np.tile(pol.get_flat()[None], (n_tasks, 1))
    quota = traj_per_task * h * n_tasks
    for w, s in samplers.items():
        s.envs.reset(seed=0)
        n = max(50, traj_per_task * h // 4)
        t = time.perf_counter()
        for _ in range(n):
            s.envs.step(rng.uniform(-1, 1, (s.n_envs, info.act_dim)).astype(np.float32))
        raw = n * s.n_envs / (time.perf_counter() - t)
        kind = ("numpy-batched" if s.batched else "SyncVectorEnv") if w <= 1 else f"ShardedVectorEnv, {w} workers"
        print(f"  env_workers={w}: raw vector-env stepping {raw:,.0f} steps/s ({kind})")
        if w <= 1:  # the TF forward once, in-process only: it does not depend on where the envs step
            inf = tf_inference(obj.dist_info)
            s.sample(inf, theta_b, h * n_tasks, "total", pol.sample_numpy, rng)  # warm-up / trace
            s.sample(inf, theta_b, quota, "total", pol.sample_numpy, rng)
            st = s.last_stats
            print(f"  env_workers={w}: sampler (tf-xla): {st['steps_per_s']:,.0f} steps/s, {st['env_steps']} "
                  f"steps in {st['wall_s']:.2f}s (policy {st['policy_s']:.2f}s)")
    inf = numpy_inference(pol)
    stats = {w: [] for w in samplers}
    for w, s in samplers.items():
        s.sample(inf, theta_b, h * n_tasks, "total", pol.sample_numpy, rng)  # warm-up
    for _ in range(rounds):
        for w, s in samplers.items():
            s.sample(inf, theta_b, quota, "total", pol.sample_numpy, rng)
            stats[w].append(s.last_stats)
    for w, runs in stats.items():
        rates = [st["steps_per_s"] for st in runs]
        st = runs[int(np.argsort(rates)[len(rates) // 2])]  # the median run
        spread = f" (median of {rounds}, range {min(rates):,.0f}-{max(rates):,.0f})" if rounds > 1 else ""
        print(f"  env_workers={w}: sampler (numpy ): {st['steps_per_s']:,.0f} steps/s{spread}, {st['env_steps']} "
              f"steps in {st['wall_s']:.2f}s (policy {st['policy_s']:.2f}s)")
    for s in samplers.values():
        s.close()


def bench_trpo(obs_dim: int, act_dim: int, n_tasks: int, steps_per_task: int, rng: np.random.Generator) -> None:
    pol = GaussianMLPPolicy(obs_dim, act_dim, seed=0)
    obj = MetaObjective(pol, 0.1, 1)
    theta = pol.get_flat()
    th = tf.constant(theta)

    def batch(theta_b):
        obs = tf.constant(rng.normal(size=(n_tasks, steps_per_task, obs_dim)).astype(np.float32))
        info = obj.dist_info(tf.constant(theta_b), obs).numpy()
        return Batch(obs, tf.constant(pol.sample_numpy(info, rng)),
                     tf.constant(rng.normal(size=(n_tasks, steps_per_task)).astype(np.float32)),
                     tf.ones((n_tasks, steps_per_task)), tf.constant(info))

    b0 = batch(np.tile(theta[None], (n_tasks, 1)))
    b1 = batch(obj.adapted_params(th, b0).numpy())
    print(f"TRPO step, policy {obs_dim}->100->100->{act_dim} ({pol.num_params} params), {n_tasks} tasks x "
          f"{steps_per_task} steps")
    for hvp in ("fd", "exact"):
        t = time.perf_counter()
        meta_trpo_step(obj, theta, b0, b1, 0.01, hvp=hvp)  # includes tracing
        first = time.perf_counter() - t
        t = time.perf_counter()
        res, times = meta_trpo_step(obj, theta, b0, b1, 0.01, hvp=hvp)
        total = time.perf_counter() - t
        print(f"  hvp={hvp:5s}: total {total:.2f}s (first call with tracing {first:.1f}s) | grad {times['grad']:.2f}s | "
              f"{times['n_hvp']} HVPs {times['hvp']:.2f}s ({times['hvp'] / times['n_hvp'] * 1e3:.0f} ms each) | "
              f"{times['n_line_search']} line-search evals {times['line_search']:.2f}s | kl {res.kl_after:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller batches")
    ap.add_argument("--skip_mujoco", action="store_true")
    ap.add_argument("--skip_trpo", action="store_true", help="sampling only")
    ap.add_argument("--rounds", type=int, default=1,
                    help="timed numpy-sampler runs per worker count, alternating the counts (median reported)")
    ap.add_argument("--env_workers", default="1,2",
                    help="comma-separated sampler env worker counts to compare (1: in-process; default 1,2)")
    args = ap.parse_args()
    try:
        workers = tuple(int(w) for w in args.env_workers.split(","))
    except ValueError:
        ap.error(f"--env_workers must be comma-separated integers, got {args.env_workers!r}")
    if any(w < 1 for w in workers):
        ap.error(f"--env_workers counts must be >= 1, got {args.env_workers!r}")
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")
    rng = np.random.default_rng(0)
    q = args.quick
    r = args.rounds
    bench_sampling("maml_tf/PointGoal-v0", 20, 5 if q else 20, rng, workers, r)
    if not args.skip_mujoco:
        bench_sampling("maml_tf/HalfCheetahVel-v0", 10 if q else 40, 2 if q else 10, rng, workers, r)
        bench_sampling("maml_tf/AntVel-v0", 10 if q else 40, 1 if q else 5, rng, workers, r)
    if not args.skip_trpo:
        bench_trpo(2, 2, 20, 500 if q else 2000, rng)
        bench_trpo(20, 6, 10 if q else 40, 400 if q else 2000, rng)


if __name__ == "__main__":
    main()
