"""One full-size MAML-TRPO meta-iteration of the real trainer, with its time breakdown.

    scripts/venv.sh python bench/bench_rl_iteration.py                      # cheetah_dir, 3 iterations
    scripts/venv.sh python bench/bench_rl_iteration.py --env cheetah_vel --iterations 2
    scripts/venv.sh python bench/bench_rl_iteration.py --hvp fd,exact       # both HVPs, alternated

Runs `maml_tf.rl.train.Trainer.iteration` (the code `python -m maml_tf.rl.main` runs, at the
experiment's reference preset: e.g. cheetah_dir 40 tasks x 20 trajectories x H 200) in a temporary
folder, and prints per iteration: sampling (pre + post update), sample processing with the
baseline fits inside it, the inner step, and the TRPO step split into the surrogate gradient, the
HVPs (10 CG iterations + 1 for the step size) and the line search. The first iteration includes
tracing and is reported apart. Then the raw env-stepping rate of the same vector env with random
actions and no policy, and what the reference's evaluated checkpoint iterations cost at the
measured rate. Figures depend on the machine and its load; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from maml_tf.rl import advantages
from maml_tf.rl.config import preset

# The reference evaluated these snapshots (spec 1.2: itr_<n>, 0-based, after that iteration's update).
REFERENCE_EVAL_ITR = {"point": 99, "cheetah_dir": 100, "cheetah_vel": 475, "ant_vel": 375, "ant_dir": 575}


class _FitTimer:
    """Adds up the wall time of every LinearFeatureBaseline.fit call (bench-only instrumentation)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.calls = 0
        self._fit = advantages.LinearFeatureBaseline.fit

    def __enter__(self) -> "_FitTimer":
        timer, fit = self, self._fit

        def timed(baseline, observations, returns):
            t = time.perf_counter()
            try:
                return fit(baseline, observations, returns)
            finally:
                timer.total += time.perf_counter() - t
                timer.calls += 1

        advantages.LinearFeatureBaseline.fit = timed
        return self

    def __exit__(self, *exc) -> None:
        advantages.LinearFeatureBaseline.fit = self._fit


def raw_stepping(trainer, seconds: float = 5.0) -> float:
    """Env steps/s of the trainer's vector env with uniform random actions and no policy."""
    envs = trainer.sampler.envs
    info = trainer.sampler.info
    rng = np.random.default_rng(0)
    envs.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        envs.step(rng.uniform(-1, 1, (trainer.sampler.n_envs, info.act_dim)).astype(np.float32))
        n += trainer.sampler.n_envs
    return n / (time.perf_counter() - t0)


def describe(row: dict, fits: float, n_fits: int) -> str:
    n_hvp = int(row["n_hvp"])
    per = row["t_hvp"] / max(n_hvp, 1)
    steps_s = row["env_steps"] / max(row["t_sample"], 1e-9)
    return (f"total {row['t_total']:6.1f}s | sample {row['t_sample']:5.1f}s ({row['env_steps']:,} steps, "
            f"{steps_s:,.0f}/s) | process {row['t_process']:4.1f}s (baseline fits {fits:.1f}s, {n_fits}) | "
            f"inner step {row['t_adapt']:.2f}s | TRPO {row['t_update']:5.1f}s = grad {row['t_grad']:.2f}s + "
            f"{n_hvp} HVPs {row['t_hvp']:.1f}s ({per:.2f}s each) + line search {row['t_line_search']:.2f}s "
            f"({int(row['n_backtracks']) + 1} evals) | accepted {int(row['accepted'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="cheetah_dir", choices=sorted(REFERENCE_EVAL_ITR))
    ap.add_argument("--iterations", type=int, default=3, help="meta-iterations per HVP kind (the first traces)")
    ap.add_argument("--hvp", default="fd", help="comma list of fd (reference) and exact")
    ap.add_argument("--env_workers", type=int, default=0)
    args = ap.parse_args()
    from maml_tf.rl.train import Trainer

    kinds = args.hvp.split(",")
    trainers = {}
    for kind in kinds:
        cfg = preset(args.env, "maml", hvp=kind, env_workers=args.env_workers)
        trainers[kind] = Trainer(cfg, tempfile.mkdtemp(prefix=f"bench_rl_{kind}_"), log=lambda s: None)
    cfg = trainers[kinds[0]].cfg
    print(f"{args.env} MAML-TRPO, reference preset: {cfg.meta_batch_size} tasks x {cfg.fast_batch_size} trajectories "
          f"x H {cfg.max_path_length} (pre + post update), policy {trainers[kinds[0]].policy.num_params} params, "
          f"hvp {args.hvp}")
    steady: dict[str, list[float]] = {k: [] for k in kinds}
    for itr in range(args.iterations):
        for kind, trainer in trainers.items():  # kinds alternate, so load changes hit them alike
            with _FitTimer() as fits:
                row = trainer.iteration(itr)
            label = "first (tracing)" if itr == 0 else f"iteration {itr}"
            print(f"  hvp={kind:5s} {label:15s} {describe(row, fits.total, fits.calls)}", flush=True)
            if itr > 0:
                steady[kind].append(row["t_total"])
    raw = raw_stepping(trainers[kinds[0]])
    print(f"  raw vector-env stepping (random actions, no policy): {raw:,.0f} steps/s")
    for kind, totals in steady.items():
        if not totals:
            continue
        per = statistics.median(totals)
        ref = REFERENCE_EVAL_ITR[args.env] + 1
        print(f"  hvp={kind}: median {per:.1f}s per meta-iteration -> the reference's evaluated snapshot "
              f"(itr_{ref - 1}, {ref} iterations) ~{ref * per / 3600:.1f} h; all {cfg.n_itr} iterations "
              f"~{cfg.n_itr * per / 3600:.1f} h")
    for trainer in trainers.values():
        trainer.sampler.close()


if __name__ == "__main__":
    main()
