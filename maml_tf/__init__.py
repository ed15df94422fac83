"""maml-tf: MAML in TensorFlow 2 / Keras 3, faithful to cbfinn/maml and cbfinn/maml_rl."""

from maml_tf.quiet import quiet_cpu_only_startup as _quiet

_quiet()  # before any submodule imports TensorFlow (see maml_tf/quiet.py)

__version__ = "0.1.0"

# The public API over standard Keras models (maml_tf/api/). Imported on first use, so that
# `import maml_tf` stays free of TensorFlow (the CLIs set thread pools before TF starts).
_API = ("MAML", "FastWeights", "ExactBatchNormalization", "InexactMomentsWarning", "export_maml")


def __getattr__(name: str):
    if name in _API:
        from maml_tf import api

        return getattr(api, name)
    raise AttributeError(f"module 'maml_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
