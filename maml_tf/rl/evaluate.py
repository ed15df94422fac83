"""Test-time protocol of the reference scripts (`maml_examples/test_maml_*.py`, spec 1.4 / 3.10).

For each of 40 seeded test goals: start from the policy (a checkpoint, or a fresh random policy),
then ``n_itr`` times: collect ``batch`` timesteps on that goal, record AverageReturn (mean
undiscounted return of the batch's paths), fit the per-batch linear baseline, standardise
advantages and take one SGD step on ``-mean(log pi * A)`` over all parameters with lr alpha_1
(first step) or alpha_2 (later steps).  Oracles: one iteration, no update.

All goals run side by side: goal g is "task" g of a vector env with ``batch / H`` sub-envs each
(the reference's VectorizedSampler used ``min(100, batch/H)`` envs per goal run) and its own
parameter row, with the per-task stop rule.  One RNG stream serves all goals (the reference
re-seeded per goal run; the distribution is the same, the draws are not).

Output: ``task_avg_returns`` M with M[k][g] = AverageReturn of goal g after k steps, as json and
csv, a table of mean ± s.e. next to the reference numbers (spec 4.1) and, if matplotlib is
available, a plot. The files are ``<out_dir>/<env>_<method>.*``, or ``<env>_<method>_<tag>.*`` with
``--tag`` (e.g. ``itr_312`` for the latest iteration of a run in progress, beside the evaluation of
the snapshot the reference used); the json records the checkpoint's iteration.

    python -m maml_tf.rl.evaluate --env point --method maml --checkpoint logs/rl_point_maml/latest.npz --out_dir results/rl
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import time

import numpy as np
import tensorflow as tf

from maml_tf.errors import MamlError
from maml_tf.files import atomic_savefig, atomic_write_text, writable_problem
from maml_tf.rl.advantages import pack, process_task
from maml_tf.rl.config import RLConfigError
from maml_tf.rl.envs.registration import FAMILIES, env_info, sample_tasks
from maml_tf.rl.maml_trpo import MetaObjective, to_batch
from maml_tf.rl.policies import GaussianMLPPolicy, MLPPolicy
from maml_tf.rl.sampler import TaskSampler, numpy_inference

METHODS = ("maml", "pretrain", "random", "oracle")


@dataclasses.dataclass(frozen=True)
class Protocol:
    goal_seed: int
    run_seed: int
    batch_size: int        # timesteps per goal per iteration
    max_path_length: int
    n_itr: int
    first_lr: dict         # method -> alpha_1
    later_factor: float    # alpha_2 = later_factor * alpha_1
    random_nonlinearity: str = "relu"


PROTOCOLS = {
    "point": Protocol(1, 4, 4000, 100, 5, dict(maml=0.5, pretrain=0.5, random=0.5, oracle=0.0), 0.5, "tanh"),
    "cheetah_vel": Protocol(1, 2, 4000, 200, 4, dict(maml=0.1, pretrain=0.02, random=0.1, oracle=0.0), 0.5),
    "cheetah_dir": Protocol(1, 0, 4000, 200, 4, dict(maml=0.1, pretrain=0.2, random=1.0, oracle=0.0), 0.5),
    "ant_vel": Protocol(1, 1, 4000, 200, 4, dict(maml=0.1, pretrain=0.2, random=1.0, oracle=0.0), 0.5),
    "ant_dir": Protocol(2, 0, 8000, 200, 4, dict(maml=0.1, pretrain=0.2, random=1.0, oracle=0.0), 0.01),
}

# spec 4.1: mean over the 40 goals after 0, 1, 2, 3 (, 4) steps; oracle: one value
REFERENCE = {
    "point": {"maml": [-40.41, -11.68, -3.33, -3.23, -3.35], "pretrain": [-40.81, -19.73, -11.72, -8.47, -7.49],
              "random": [-82.66, -57.96, -53.84, -46.81, -42.91], "oracle": [-2.29]},
    "cheetah_vel": {"maml": [-129.53, -78.57, -66.62, -60.78], "pretrain": [-158.00, -135.39, -128.47, -133.61],
                    "random": [-254.83, -254.33, -246.79, -230.83], "oracle": [-54.47]},
    "cheetah_dir": {"maml": [-50.69, 293.19, 313.48, 315.65], "pretrain": [-43.03, -24.75, -12.85, 19.57],
                    "random": [-35.73, 21.83, 62.32, 86.18], "oracle": [442.69]},
    "ant_vel": {"maml": [30.58, 96.74, 100.06, 101.41], "pretrain": [-1.83, 6.11, 8.47, 9.47],
                "random": [-78.64, -62.81, -48.55, -35.56], "oracle": [107.89]},
    "ant_dir": {"maml": [8.66, 499.15, 500.68, 499.11], "pretrain": [3.16, 1.27, 6.51, 6.86],
                "random": [3.11, 9.25, 15.96, 26.11], "oracle": [524.80]},
}


def test_goals(env: str, n_goals: int = 40) -> np.ndarray:
    """The reference's goal list: ``np.random.seed(s); np.random.uniform(low, high, size)``."""
    return sample_tasks(FAMILIES[env][0], n_goals, np.random.RandomState(PROTOCOLS[env].goal_seed))


def adapt_and_record(policy: MLPPolicy, theta: np.ndarray, env_id: str, goals: np.ndarray, proto: Protocol,
                     n_itr: int, first_lr: float, later_lr: float, seed: int,
                     discount: float = 0.99, env_workers: int = 0) -> np.ndarray:
    """Run the per-goal VPG protocol for a set of goals side by side; returns M [n_itr, n_goals].

    ``env_workers`` > 1 steps the goals' envs in that many processes (same results; it must divide
    ``n_goals * k``, k = batch / H envs per goal).
    """
    n = len(goals)
    k = max(1, min(100, proto.batch_size // proto.max_path_length))
    try:
        sampler = TaskSampler(env_id, n, proto.max_path_length, k, seed=seed, env_workers=env_workers)
    except ValueError as e:  # --env_workers that does not divide the envs
        raise RLConfigError(f"--env_workers={env_workers}: {e}") from None
    sampler.set_tasks(list(goals))
    obj = MetaObjective(policy, fast_lr=first_lr, num_grad_updates=1)
    rng = np.random.default_rng(seed)
    theta_b = np.tile(np.asarray(theta, dtype=np.float32)[None], (n, 1))
    out = np.zeros((n_itr, n))
    for it in range(n_itr):
        paths = sampler.sample(numpy_inference(policy), theta_b, proto.batch_size, "per_task",
                               policy.sample_numpy, rng)
        proc = [process_task(p, discount) for p in paths]
        out[it] = [float(np.mean(t.path_returns)) for t in proc]
        if it < n_itr - 1:
            lr = first_lr if it == 0 else later_lr
            if lr != 0.0:
                theta_b = obj.adapt_from(tf.constant(theta_b), to_batch(pack(proc)),
                                         tf.constant(lr, tf.float32)).numpy()
    sampler.close()
    return out


def evaluate(env: str, method: str, checkpoint: str | None = None, n_goals: int = 40, goal_chunk: int = 40,
             n_itr: int | None = None, batch_size: int | None = None, seed: int | None = None,
             log=print, env_workers: int = 0, tag: str | None = None) -> dict:
    """Evaluate one method on the reference test goals; returns the result dict (see module doc)."""
    check_arguments(env, method, n_goals, goal_chunk, n_itr, batch_size, seed, env_workers, tag)
    checkpoint_itr = None
    proto = PROTOCOLS[env]
    if batch_size is not None:
        proto = dataclasses.replace(proto, batch_size=batch_size)
    rand_id, oracle_id = FAMILIES[env]
    env_id = oracle_id if method == "oracle" else rand_id
    if method == "random":
        info = env_info(env_id)
        policy = GaussianMLPPolicy(info.obs_dim, info.act_dim, hidden_nonlinearity=proto.random_nonlinearity,
                                   seed=proto.run_seed if seed is None else seed)
        theta = policy.get_flat()
    else:
        if not checkpoint:
            raise RLConfigError(f"--method {method} needs --checkpoint (a .npz written by maml_tf.rl.main)")
        from maml_tf.rl.train import load_checkpoint, load_policy

        loaded = load_checkpoint(checkpoint)
        trained, checkpoint_itr = loaded["config"], loaded.get("itr")
        if (trained.env, trained.algo) != (env, method):
            raise RLConfigError(f"--env {env} --method {method}: checkpoint {checkpoint} holds a policy trained with "
                            f"--env {trained.env} --algo {trained.algo}; evaluate it with --env {trained.env} "
                            f"--method {trained.algo} (each method has its own step sizes)")
        policy, theta = load_policy(checkpoint)
        if policy.obs_dim != env_info(env_id).obs_dim:
            raise RLConfigError(f"checkpoint {checkpoint} has obs_dim {policy.obs_dim} but {env_id} needs "
                            f"{env_info(env_id).obs_dim} (oracle checkpoints go with --method oracle)")
    if n_itr is None:
        n_itr = 1 if method == "oracle" else proto.n_itr
    first = proto.first_lr[method]
    later = proto.later_factor * first
    goals = test_goals(env, n_goals)
    run_seed = proto.run_seed if seed is None else seed
    t0 = time.perf_counter()
    blocks = []
    for s in range(0, n_goals, goal_chunk):
        blocks.append(adapt_and_record(policy, theta, env_id, goals[s:s + goal_chunk], proto, n_itr, first, later,
                                       run_seed + s, env_workers=env_workers))
        log(f"goals {s}..{min(s + goal_chunk, n_goals) - 1} done ({time.perf_counter() - t0:.1f}s)")
    m = np.concatenate(blocks, axis=1)
    return {"env": env, "method": method, "checkpoint": checkpoint, "checkpoint_iteration": checkpoint_itr,
            "tag": tag, "seed": run_seed, "goals": goals.tolist(),
            "alpha_1": first, "alpha_2": later, "batch_size": proto.batch_size, "n_itr": n_itr,
            "task_avg_returns": m.tolist(), "wall_s": time.perf_counter() - t0}


def check_arguments(env: str, method: str, n_goals: int, goal_chunk: int, n_itr: int | None,
                    batch_size: int | None, seed: int | None, env_workers: int, tag: str | None = None) -> None:
    """One message per bad argument, before any env or policy is built."""
    if tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", tag):
        raise RLConfigError(f"--tag must be letters, digits, '_', '.' or '-' (it names the output files), got {tag!r}")
    if env not in PROTOCOLS:
        raise RLConfigError(f"--env must be one of {sorted(PROTOCOLS)}, got {env!r}")
    if method not in METHODS:
        raise RLConfigError(f"--method must be one of {METHODS}, got {method!r}")
    for name, value, low in (("n_goals", n_goals, 1), ("goal_chunk", goal_chunk, 1), ("n_itr", n_itr, 1),
                             ("batch_size", batch_size, 1), ("seed", seed, 0), ("env_workers", env_workers, 0)):
        if value is not None and value < low:
            raise RLConfigError(f"--{name} must be >= {low}, got {value}")


def summarize(result: dict) -> list[tuple[int, float, float, float | None]]:
    """Rows (step, mean, standard error over goals, reference mean or None)."""
    m = np.asarray(result["task_avg_returns"])
    ref = REFERENCE.get(result["env"], {}).get(result["method"], [])
    rows = []
    for k in range(m.shape[0]):
        rows.append((k, float(m[k].mean()), float(m[k].std() / np.sqrt(m.shape[1])),
                     ref[k] if k < len(ref) else None))
    return rows


def format_table(result: dict) -> str:
    what = f"{result['env']} / {result['method']}"
    if result.get("checkpoint_iteration") is not None:
        what += f" / itr_{result['checkpoint_iteration']}"
    lines = [f"{what}  (alpha_1 {result['alpha_1']}, alpha_2 {result['alpha_2']}, "
             f"{len(result['goals'])} goals, batch {result['batch_size']})",
             "steps |        ours (mean ± s.e.) | reference"]
    for k, mean, se, ref in summarize(result):
        lines.append(f"{k:5d} | {mean:12.2f} ± {se:8.2f} | {'' if ref is None else f'{ref:9.2f}'}")
    return "\n".join(lines)


def output_stem(env: str, method: str, tag: str | None = None) -> str:
    """`<env>_<method>` (what the plot and the runner read), `<env>_<method>_<tag>` for a tagged evaluation."""
    return f"{env}_{method}" + (f"_{tag}" if tag else "")


def write_outputs(result: dict, out_dir: str) -> dict:
    """json + csv + table (+ png when matplotlib is importable); returns the written paths."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, output_stem(result["env"], result["method"], result.get("tag")))
    paths = {"json": stem + ".json", "csv": stem + ".csv", "table": stem + ".txt"}
    atomic_write_text(paths["json"], json.dumps(result, indent=1))
    m = np.asarray(result["task_avg_returns"])
    rows = io.StringIO(newline="")
    w = csv.writer(rows)
    w.writerow(["step", "goal_index", "goal", "average_return"])
    for k in range(m.shape[0]):
        for g in range(m.shape[1]):
            w.writerow([k, g, json.dumps(result["goals"][g]), m[k, g]])
    atomic_write_text(paths["csv"], rows.getvalue())
    atomic_write_text(paths["table"], format_table(result) + "\n")
    png = plot(result["env"], out_dir)
    if png:
        paths["png"] = png
    return paths


def plot(env: str, out_dir: str) -> str | None:
    """Mean ± s.e. per step for every method evaluated in out_dir, reference curves dashed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, method in enumerate(METHODS):
        p = os.path.join(out_dir, f"{env}_{method}.json")
        color = f"C{i}"
        ref = REFERENCE[env][method]
        n_steps = 5 if env == "point" else 4
        ref_y = ref * n_steps if method == "oracle" else ref
        ax.plot(range(len(ref_y)), ref_y, "--", color=color, alpha=0.6, label=f"{method} (reference)")
        if os.path.exists(p):
            with open(p) as f:
                m = np.asarray(json.load(f)["task_avg_returns"])
            mean, se = m.mean(1), m.std(1) / np.sqrt(m.shape[1])
            if method == "oracle":
                mean, se = np.repeat(mean, n_steps), np.repeat(se, n_steps)
            x = np.arange(len(mean))
            ax.plot(x, mean, "-o", color=color, label=f"{method} (ours)")
            ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.2)
    ax.set_xlabel("number of gradient steps")
    ax.set_ylabel("average return")
    ax.set_title(env)
    ax.legend(fontsize=6)
    fig.tight_layout()
    out = os.path.join(out_dir, f"{env}.png")
    atomic_savefig(fig, out, dpi=120)
    plt.close(fig)
    return out


def _main(argv):
    import sys

    from absl import app, flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        problem = writable_problem(f.out_dir)
        if problem:  # checked first: the evaluation takes minutes
            raise MamlError(f"--out_dir: cannot write to {f.out_dir}: {problem}")
        result = evaluate(f.env, f.method, f.checkpoint, f.n_goals, f.goal_chunk, f.n_itr, f.batch_size, f.seed,
                          env_workers=f.env_workers, tag=f.tag)
        paths = write_outputs(result, f.out_dir)
    except MamlError as e:
        print(f"maml_tf.rl.evaluate: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(format_table(result))
    print(f"wrote {', '.join(paths.values())} in {result['wall_s']:.1f}s")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_enum("env", "point", sorted(PROTOCOLS), "experiment")
    flags.DEFINE_enum("method", "maml", list(METHODS), "which policy / step sizes")
    flags.DEFINE_string("checkpoint", None, "policy checkpoint (.npz from maml_tf.rl.main)")
    flags.DEFINE_string("out_dir", "results/rl", "where the json/csv/table/plot go")
    flags.DEFINE_integer("n_goals", 40, "test goals (reference: 40)")
    flags.DEFINE_integer("goal_chunk", 40, "goals evaluated side by side (memory bound)")
    flags.DEFINE_integer("n_itr", None, "override the number of sampling iterations (tests only)")
    flags.DEFINE_integer("batch_size", None, "override the per-goal batch in timesteps (tests only)")
    flags.DEFINE_integer("seed", None, "override the run seed")
    flags.DEFINE_string("tag", None, "name the outputs <env>_<method>_<tag>.* (e.g. itr_312 for the latest iteration "
                        "of a run in progress), so that they sit beside the untagged evaluation")
    flags.DEFINE_integer("env_workers", 0, "step the envs in this many worker processes, a block each (0 or 1: "
                         "in-process); must divide goal_chunk * batch_size / H; not for point; results are "
                         "bit-identical to in-process stepping")
    app.run(_main)
