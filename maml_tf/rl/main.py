"""`python -m maml_tf.rl.main`: train MAML-TRPO or a baseline with the reference scripts' flags.

    # 2D navigation, reference settings (maml_trpo_point.py; fast_lr 0.5, fbs 20, mbs 20, H 100)
    python -m maml_tf.rl.main --env point --run_dir logs/point_maml
    # locomotion (cluster_maml_trpo_cheetah.py / _ant.py, settings of the evaluated checkpoints)
    python -m maml_tf.rl.main --env cheetah_vel --run_dir logs/cheetah_vel
    # baselines: pretrain (point: use_maml=False; locomotion: TRPO on the rand env), oracle (TRPO)
    python -m maml_tf.rl.main --env point --algo oracle --run_dir logs/point_oracle
    # MAML on two hosts: run on each, same flags and --run_dir (a shared folder), index 0 and 1
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \
        python -m maml_tf.rl.main --env point --distribute multi_worker --run_dir /shared/logs/point_maml

Unset flags take the experiment's reference value (see `maml_tf.rl.config`). The random-policy
baseline needs no training: `python -m maml_tf.rl.evaluate --method random`.
"""
from __future__ import annotations

import json
import os
import sys
import zlib

from absl import app, flags

from maml_tf.errors import MamlError
from maml_tf.files import atomic_write_text
from maml_tf.rl.config import ALGOS, MAML_PRESETS, preset

FLAGS = flags.FLAGS
flags.DEFINE_enum("env", "point", sorted(MAML_PRESETS), "experiment (task family)")
flags.DEFINE_enum("algo", "maml", list(ALGOS), "maml | pretrain | oracle")
flags.DEFINE_string("run_dir", None, "output folder (progress.csv, tb/, *.npz checkpoints)")
flags.DEFINE_boolean("resume", False, "continue the run in --log_dir from latest.npz")
flags.DEFINE_float("fast_lr", None, "inner SGD step size alpha")
flags.DEFINE_integer("fast_batch_size", None, "trajectories per task per sampling step")
flags.DEFINE_integer("meta_batch_size", None, "tasks per meta-iteration")
flags.DEFINE_integer("max_path_length", None, "horizon H")
flags.DEFINE_integer("n_itr", None, "meta-iterations")
flags.DEFINE_float("meta_step_size", None, "TRPO max mean KL (delta)")
flags.DEFINE_integer("batch_size", None, "timesteps per iteration for plain TRPO baselines")
flags.DEFINE_integer("num_grad_updates", None, "inner steps (1 in every paper run)")
flags.DEFINE_boolean("first_order", None, "stop_gradient on the inner gradient (reference stop_grad)")
flags.DEFINE_enum("hvp", None, ["fd", "exact"], "Hessian-vector product: reference finite differences or exact")
flags.DEFINE_float("fd_base_eps", None, "FD HVP eps = base_eps/||theta|| (reference effective value 1)")
flags.DEFINE_float("discount", None, "gamma")
flags.DEFINE_integer("seed", None, "seed (reference: 1)")
flags.DEFINE_integer("snapshot_gap", None, "write itr_<n>.npz every this many iterations")
flags.DEFINE_integer("envs_per_task", None, "parallel env copies per task (reference: 1)")
flags.DEFINE_boolean("asynchronous", None, "subprocess vector envs")
flags.DEFINE_integer(
    "env_workers", None,
    "step the sampler's envs in this many worker processes, a block of envs each (0 or 1, the default: in this "
    "process). The policy forward stays in the main process, so leave it a core. Must divide the sampler's env "
    "count (meta_batch_size * envs_per_task, per worker under --distribute; plain TRPO: min(100, batch_size / "
    "max_path_length)); not for --env point or "
    "with --asynchronous. Results are bit-identical to in-process stepping.")
flags.DEFINE_enum("inference", None, ["numpy", "tf"], "sampler policy forward (batched numpy or XLA-compiled TF)")
flags.DEFINE_enum("hidden_nonlinearity", None, ["relu", "tanh"], "policy hidden activation")
flags.DEFINE_string(
    "distribute", None,
    "MAML only: none (one process, default) | mirrored (this host's GPUs, else its logical CPUs) | multi_worker "
    "(one process per host, cluster and index from TF_CONFIG, the same flags and a --run_dir every worker can "
    "read). --meta_batch_size must be a multiple of the replica count; each worker samples only its share of the "
    "tasks and only the chief (worker 0) writes. Each worker draws its own action noise (seeded by --seed, the "
    "worker and the iteration), so a distributed run does not reproduce a one-process run bit for bit.")

_OVERRIDES = ["fast_lr", "fast_batch_size", "meta_batch_size", "max_path_length", "n_itr", "meta_step_size",
              "batch_size", "num_grad_updates", "first_order", "hvp", "fd_base_eps", "discount", "seed",
              "snapshot_gap", "envs_per_task", "asynchronous", "env_workers", "hidden_nonlinearity", "inference",
              "distribute"]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.run_dir:
        raise app.UsageError("--run_dir is required")
    try:
        _train()
    except MamlError as e:
        print(f"maml_tf.rl: error: {e}", file=sys.stderr)
        sys.exit(2)


def _train() -> None:
    try:
        cfg = preset(FLAGS.env, FLAGS.algo, **{k: getattr(FLAGS, k) for k in _OVERRIDES})
    except ValueError as e:  # RLConfig's flag checks: a bad flag is the user's error, not a traceback
        raise MamlError(str(e)) from None
    from maml_tf.rl.train import Trainer  # heavy imports after flag validation

    print(f"config: {cfg.to_json()}", flush=True)
    trainer = Trainer(cfg, FLAGS.run_dir, resume=FLAGS.resume, log=lambda s: print(s, flush=True))
    summary = trainer.train()
    summary["last"] = {k: (float(v) if hasattr(v, "__float__") else v) for k, v in summary["last"].items()}
    if trainer.is_chief:
        atomic_write_text(os.path.join(FLAGS.run_dir, "summary.json"), json.dumps(summary, indent=1))
    if trainer.workers is not None:  # lets a launcher check that all workers hold the same parameters
        w = trainer.workers
        print(f"worker {w.index} (tasks {w.task_bounds[0]}-{w.task_bounds[1] - 1}): final parameters crc32 "
              f"{zlib.crc32(trainer.theta.tobytes()):08x}", flush=True)
    print(f"done: best training return {summary['best']:.3f}, wall {summary['wall_s']:.1f}s", flush=True)


if __name__ == "__main__":
    app.run(main)
