"""`python -m maml_tf.main`: train or test MAML with the flags of cbfinn/maml's main.py.

    # 10-shot sinusoid (the reference README's command: alpha stays at the 1e-3 default, which
    # reproduces the paper's table; the paper's text says 0.01)
    python -m maml_tf.main --datasource=sinusoid --metatrain_iterations=70000 --norm=None \
        --update_batch_size=10
    # ... then its test protocol (600 tasks), with K=5 test shots
    python -m maml_tf.main --datasource=sinusoid --metatrain_iterations=70000 --norm=None \
        --update_batch_size=5 --train_update_batch_size=10 --train=False
"""
from __future__ import annotations

import os
import sys
import time

from absl import app, flags

from maml_tf.config import Config
from maml_tf.errors import MamlError

FLAGS = flags.FLAGS

# -- reference flags (main.py) ------------------------------------------------------------------
flags.DEFINE_string("datasource", "sinusoid", "sinusoid or omniglot or miniimagenet")
flags.DEFINE_integer("num_classes", 5, "number of classes used in classification (e.g. 5-way classification).")
flags.DEFINE_string("baseline", None, "oracle, or None")
flags.DEFINE_integer("pretrain_iterations", 0, "number of pre-training iterations.")
flags.DEFINE_integer("metatrain_iterations", 15000, "number of metatraining iterations.")
flags.DEFINE_integer("meta_batch_size", 25, "number of tasks sampled per meta-update")
flags.DEFINE_float("meta_lr", 0.001, "the base learning rate of the generator")
flags.DEFINE_integer("update_batch_size", 5, "number of examples used for inner gradient update (K for K-shot learning).")
flags.DEFINE_float("update_lr", 1e-3, "step size alpha for inner gradient update.")
flags.DEFINE_integer("num_updates", 1, "number of inner gradient updates during training.")
flags.DEFINE_string("norm", "batch_norm", "batch_norm, layer_norm, or None")
flags.DEFINE_integer("num_filters", 64, "number of filters for conv nets -- 32 for miniimagenet, 64 for omiglot.")
flags.DEFINE_bool("conv", True, "whether or not to use a convolutional network, only applicable in some cases")
flags.DEFINE_bool("max_pool", False, "Whether or not to use max pooling rather than strided convolutions")
flags.DEFINE_bool("stop_grad", False, "if True, do not use second derivatives in meta-optimization (for speed)")
flags.DEFINE_bool("log", True, "if false, do not log summaries, for debugging code.")
flags.DEFINE_string("logdir", "/tmp/data", "directory for summaries and checkpoints.")
flags.DEFINE_bool("resume", True, "resume training if there is a model available")
flags.DEFINE_bool("train", True, "True to train, False to test.")
flags.DEFINE_integer("test_iter", -1, "iteration to load model (-1 for latest model)")
flags.DEFINE_bool("test_set", False, "Set to true to test on the the test set, False for the validation set.")
flags.DEFINE_integer("train_update_batch_size", -1, "number of examples used for gradient update during training (use if you want to test with a different number).")
flags.DEFINE_float("train_update_lr", -1, "value of inner gradient step step during training. (use if you want to test with a different value)")
# -- maml-tf additions ----------------------------------------------------------------------------
flags.DEFINE_string("data_dir", "data", "[maml-tf] folder holding omniglot_resized/ and miniImagenet/ (the reference used ./data)")
flags.DEFINE_integer("seed", 1, "[maml-tf] seed of the initial weights and of the training task stream")
flags.DEFINE_integer("num_test_tasks", 600, "[maml-tf] tasks in the test protocol (the reference's NUM_TEST_POINTS)")
flags.DEFINE_integer("test_chunk", 50, "[maml-tf] test tasks evaluated together (speed only; results are per task)")
flags.DEFINE_bool("test_after_train", False, "[maml-tf] after training, run the test protocol on the final weights")
flags.DEFINE_bool("jit_compile", False, "[maml-tf] compile the meta-step with XLA")
flags.DEFINE_bool("recompute_inner", False, "[maml-tf] recompute each inner step in the meta-gradient's backward pass instead of storing its activations: less memory on long inner loops, more time, same numbers")
flags.DEFINE_integer("intra_op_threads", 0, "[maml-tf] threads inside one op (0: as --thread_pools says)")
flags.DEFINE_integer("inter_op_threads", 0, "[maml-tf] ops run at the same time (0: as --thread_pools says)")
flags.DEFINE_enum("thread_pools", "auto", ["auto", "tf"], "[maml-tf] TensorFlow's thread pools when --intra/inter_op_threads are unset: auto = on a CPU-only machine without --distribute, nets without max-pool (sinusoid, Omniglot) run one thread per op and one op per core (their per-task ops are small; 1.2-2.1x faster here, bench/README.md), nets with max-pool (MiniImagenet) one op at a time (on that net oneDNN gives run-to-run different meta-gradients when ops run concurrently); tf = always TensorFlow's default")
flags.DEFINE_string("distribute", "none", "[maml-tf] none; mirrored (this host's GPUs, or its CPUs if it has none); or multi_worker (the hosts of TF_CONFIG, one process each): the meta-batch is split over the replicas and their meta-gradients summed (same numbers up to float rounding; --meta_batch_size must be a multiple of the replica count; only worker 0 writes)")
flags.DEFINE_integer("save_interval", 1000, "[maml-tf] checkpoint every N iterations (reference: 1000)")
flags.DEFINE_integer("print_interval", 0, "[maml-tf] print every N iterations (0: reference's 1000 sinusoid / 100 images)")
flags.DEFINE_integer("summary_interval", 100, "[maml-tf] TensorBoard summaries every N iterations")
flags.DEFINE_integer("val_interval", 500, "[maml-tf] meta-validation every N iterations (image datasets)")

REFERENCE_FLAGS = [f.name for f in __import__("dataclasses").fields(Config) if f.name != "norm_variant"]


def config_from_flags() -> Config:
    return Config.from_dict({name: getattr(FLAGS, name) for name in REFERENCE_FLAGS})


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from maml_tf.train.stop import TrainingStopped

    try:
        from maml_tf.run import run

        run(config_from_flags())
    except TrainingStopped as e:  # a requested stop, already checkpointed and logged: not an error
        sys.exit(e.exit_status)
    except MamlError as e:
        print(f"maml_tf: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
