"""maml-tf: MAML in TensorFlow 2 / Keras 3, faithful to cbfinn/maml and cbfinn/maml_rl."""

from maml_tf.quiet import quiet_cpu_only_startup as _quiet

_quiet()  # before any submodule imports TensorFlow (see maml_tf/quiet.py)

__version__ = "0.1.0"
