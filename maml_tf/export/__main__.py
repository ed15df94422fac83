"""`python -m maml_tf.export`: a checkpoint's meta-learned initialisation -> a TF SavedModel.

    # the latest checkpoint of an experiment (same flags as training, as --train=False would use)
    python -m maml_tf.export --datasource=omniglot --num_classes=5 --update_batch_size=1 \
        --update_lr=0.4 --num_updates=1 --logdir=logs/omniglot5way --export_dir=exports/omni5w1s
    # any checkpoint prefix, e.g. the original code's
    python -m maml_tf.export --datasource=miniimagenet --num_filters=32 --max_pool=True \
        --update_lr=0.01 --num_updates=5 \
        --checkpoint=../shared/reference/maml_miniimagenet_5way1shot/model59000 --export_dir=exports/mini

    # a MAML-RL policy checkpoint of maml_tf.rl
    python -m maml_tf.export --rl_checkpoint=logs/rl/point/latest.npz --export_dir=exports/point

The experiment flags are those of `python -m maml_tf.main` (they find the experiment folder and fix
the architecture and the inner-loop defaults). A maml-tf checkpoint records the flags it was trained
with: flags not given take those values, and a given flag that differs is refused. --test_iter picks
the checkpoint as in testing (-1: the latest).
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from maml_tf import main as _main  # defines the experiment flags
from maml_tf.errors import MamlError
from maml_tf.export.saved_model import export_saved_model, resolve_checkpoint

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "[export] folder to write the SavedModel to (must not exist)")
flags.DEFINE_bool("overwrite", False, "[export] replace --export_dir if it is a previous export")
flags.DEFINE_string("rl_checkpoint", None, "[export] a maml_tf.rl policy checkpoint (.npz) to export instead "
                    "(the supervised experiment flags are then ignored)")
flags.DEFINE_string("checkpoint", None, "[export] checkpoint prefix to export (default: --test_iter of "
                    "--logdir/<experiment folder>)")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer is chatty at INFO
    try:
        if not FLAGS.export_dir:
            raise MamlError("--export_dir is required (the folder the SavedModel is written to)")
        if FLAGS.rl_checkpoint:
            from maml_tf.export.rl_policy import export_rl_policy

            out = export_rl_policy(FLAGS.rl_checkpoint, FLAGS.export_dir, overwrite=FLAGS.overwrite)
            print(f"Exported the policy of {FLAGS.rl_checkpoint} to {out}")
            return
        cfg = _main.config_from_flags()
        prefix = resolve_checkpoint(cfg, FLAGS.checkpoint)
        given = {name for name in _main.FLAG_NAMES if FLAGS[name].present}
        out = export_saved_model(cfg, prefix, FLAGS.export_dir, overwrite=FLAGS.overwrite, explicit=given)
        print(f"Exported {prefix} ({cfg.exp_string}) to {out}")
        print("  signatures: serving_default(x), adapt_and_predict(support_x, support_y, query_x, num_steps, "
              "step_size); flags and variable names in assets/maml_tf_export.json")
    except MamlError as e:
        print(f"maml_tf.export: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
