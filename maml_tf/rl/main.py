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
baseline needs no training: `python -m maml_tf.rl.evaluate --method random`. SIGINT/SIGTERM stop a
one-process run after the iteration in progress (exit status 130/143, one line saying where);
`--resume` continues it exactly.
"""
from __future__ import annotations

import json
import os
import sys
import zlib

from absl import app, flags

from maml_tf import flagspec
from maml_tf.errors import MamlError
from maml_tf.files import atomic_write_text
from maml_tf.rl.config import RLConfig, preset

FLAGS = flags.FLAGS
# The run's settings, as `RLConfig` declares them; unset ones keep the experiment's reference value.
flagspec.define_flags(RLConfig, module_name=__name__)
flags.DEFINE_string("run_dir", None, "output folder (progress.csv, tb/, *.npz checkpoints)")
flags.DEFINE_boolean("resume", False, "continue the run in --run_dir from latest.npz")

_OVERRIDES = flagspec.names(RLConfig, flagspec.OVERRIDE)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.run_dir:
        raise app.UsageError("--run_dir is required")
    from maml_tf.train.stop import TrainingStopped

    try:
        _train()
    except TrainingStopped as e:  # a requested stop, latest.npz written and the line logged: not an error
        sys.exit(e.exit_status)
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
