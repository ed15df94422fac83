"""Keras models of the reference networks, runnable with substituted (fast) weights."""
from maml_tf.models.nets import MetaModel, build_model

__all__ = ["MetaModel", "build_model"]
