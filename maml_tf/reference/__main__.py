"""`python -m maml_tf.reference COMMAND [flags]`: checkpoints both ways, and numbers to compare.

    # a checkpoint of the original code -> logdir/<exp_string>/model59000, ready for --train=False
    python -m maml_tf.reference import-ckpt \
        --checkpoint=../shared/reference/maml_miniimagenet_5way1shot/model59000 \
        --datasource=miniimagenet --num_filters=32 --max_pool=True --update_lr=0.01 --num_updates=5 \
        --meta_batch_size=4 --update_batch_size=1 --logdir=logs/miniimagenet1shot
    # a maml-tf checkpoint -> a TF1 checkpoint the original main.py restores (only its variables)
    python -m maml_tf.reference export-ckpt --checkpoint=logs/.../model1000 --output=ref_logs/<exp>/model1000 [flags]
    # maml-tf's numbers on a batch, in the golden fixtures' format (npz + json)
    python -m maml_tf.reference dump --batch=batch.npz --checkpoint=PREFIX --output=ours.npz [flags]
    python -m maml_tf.reference dump --fixture=../shared/golden/case_C.json --output=ours_C.npz

The experiment flags are those of `python -m maml_tf.main`; they fix the network the checkpoint must
fit. Every tensor is checked by name and shape, and an error names the one that does not fit.
"""
from __future__ import annotations

import os
import sys
import tempfile

from absl import app, flags, logging

from maml_tf import main as _main  # defines the experiment flags
from maml_tf.errors import MamlError

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "[reference] checkpoint prefix to read (e.g. .../model59000)")
flags.DEFINE_string("output", None, "[reference] export-ckpt: checkpoint prefix to write; dump: the npz to write")
flags.DEFINE_integer("itr", None, "[reference] import-ckpt: iteration to file it under (default: from the name)")
flags.DEFINE_bool("overwrite", False, "[reference] replace an existing output")
flags.DEFINE_bool("verify", True, "[reference] export-ckpt: read back and restore with a tf.compat.v1 Saver")
flags.DEFINE_string("batch", None, "[reference] dump: npz with inputa, labela, inputb, labelb "
                    "(and optionally init__<var>)")
flags.DEFINE_string("fixture", None, "[reference] dump: take flags, batch and initial weights from a "
                    "golden fixture json")
flags.DEFINE_integer("test_num_updates", None, "[reference] dump: steps evaluated (default: what main.py uses)")
flags.DEFINE_enum("dtype", "float32", ["float32", "float64"], "[reference] dump: compute in this dtype")
flags.DEFINE_list("adam_steps", ["1", "3"], "[reference] dump: record weights/Adam state after these meta-steps")

COMMANDS = ("import-ckpt", "export-ckpt", "dump")


def _require(name: str) -> str:
    value = getattr(FLAGS, name)
    if not value:
        raise MamlError(f"--{name} is required for this command")
    return value


def run(command: str) -> None:
    from maml_tf.reference import checkpoints, cli

    if command == "import-ckpt":
        checkpoints.import_reference(_main.config_from_flags(), _require("checkpoint"), FLAGS.itr, FLAGS.overwrite)
    elif command == "export-ckpt":
        checkpoints.export_reference(_main.config_from_flags(), _require("checkpoint"), _require("output"),
                                     FLAGS.overwrite, FLAGS.verify)
    elif command == "dump":
        output = _require("output")
        try:
            steps = tuple(int(s) for s in FLAGS.adam_steps)
        except ValueError:
            raise MamlError(f"--adam_steps={','.join(FLAGS.adam_steps)}: expected integers") from None
        if FLAGS.fixture:
            with tempfile.TemporaryDirectory() as tmp:
                batch = os.path.join(tmp, "batch.npz")
                cfg = cli.fixture_batch(FLAGS.fixture, batch)
                tnu = FLAGS.test_num_updates
                if tnu is None:
                    from maml_tf.reference import golden
                    tnu = int(golden.load(FLAGS.fixture).meta["test_num_updates"])
                cli.dump(cfg, batch, output, FLAGS.checkpoint, tnu, FLAGS.dtype, steps, FLAGS.overwrite)
        else:
            cli.dump(_main.config_from_flags(), _require("batch"), output, FLAGS.checkpoint,
                     FLAGS.test_num_updates, FLAGS.dtype, steps, FLAGS.overwrite)


def main(argv) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m maml_tf.reference {{{'|'.join(COMMANDS)}}} [flags]"
                             + (f" (got: {' '.join(argv[1:])})" if len(argv) > 1 else ""))
    logging.set_verbosity(logging.WARNING)
    try:
        run(argv[1])
    except MamlError as e:
        print(f"maml_tf.reference: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
