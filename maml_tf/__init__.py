"""maml-tf: MAML in TensorFlow 2 / Keras 3, faithful to cbfinn/maml and cbfinn/maml_rl."""

__version__ = "0.1.0"
