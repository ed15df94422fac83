"""Batch norm for MAML over standard Keras models: the exact-moments drop-in and the warning.

Why: Keras `BatchNormalization` takes its batch moments from `tf.nn.moments`, which computes the
variance as mean((x - stop_gradient(mean))^2). Value and first derivative are right, but the
second derivative drops a term, so second-order MAML meta-gradients through it differ from the
reference's (golden README, quirk 5: 30-80% on case C's conv weights). `ExactBatchNormalization`
is the same Keras layer (same arguments, weights, moving statistics, serialisation) whose batch
moments use the project's exact formula (`maml_tf.models.layers._moments`, TF 1.0's sufficient
statistics), and `inexact_batch_norm_layers` / `warn_inexact_batch_norm` find the others.
"""
from __future__ import annotations

import warnings
import weakref

import keras
import tensorflow as tf

from maml_tf.models.layers import _moments


class InexactMomentsWarning(UserWarning):
    """A wrapped model has a batch-norm layer whose second derivative is not exact."""


@keras.saving.register_keras_serializable(package="maml_tf")
class ExactBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with batch moments that have exact second derivatives.

    A drop-in: same constructor, weights and behaviour; in training mode the batch variance is
    E[x^2] - E[x]^2 (autodiff of that is exact to every order) instead of tf.nn.moments'
    stop-gradient form. Masked calls keep Keras' two-pass masked moments, which have no
    stop_gradient and are exact already. For the reference's batch norm use
    `ExactBatchNormalization(scale=False, epsilon=1e-3)` (offset only) and call it in training mode.
    """

    def _moments(self, inputs, mask):
        if mask is not None or (self.synchronized and tf.distribute.has_strategy()):
            # Both of Keras' paths here are exact already: two-pass masked moments without
            # stop_gradient, and cross-replica E[x^2] - E[x]^2.
            return super()._moments(inputs, mask)
        mean, var = _moments(inputs, list(self._reduction_axes), "exact")
        return keras.ops.squeeze(mean, self._reduction_axes), keras.ops.squeeze(var, self._reduction_axes)


def inexact_batch_norm_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every `keras.layers.BatchNormalization` in `model` (nested models included) that is not exact."""
    found = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not isinstance(layer, ExactBatchNormalization):
            found.append(layer)
    return found


_warned: "weakref.WeakSet[keras.layers.Layer]" = weakref.WeakSet()  # not ids: those are reused after collection


def warn_inexact_batch_norm(model: keras.layers.Layer, stacklevel: int = 3) -> list[keras.layers.Layer]:
    """Warn once per layer about each inexact batch-norm layer of `model`; returns them all."""
    layers = inexact_batch_norm_layers(model)
    new = [layer for layer in layers if layer not in _warned]
    if new:
        _warned.update(new)
        names = ", ".join(repr(layer.name) for layer in new)
        warnings.warn(
            f"{names}: keras.layers.BatchNormalization computes its batch moments with tf.nn.moments, whose "
            "second derivative drops a term, so second-order MAML meta-gradients through it are not the "
            "reference's. Use maml_tf.ExactBatchNormalization (same arguments) instead; it differs only there.",
            InexactMomentsWarning, stacklevel=stacklevel)
    return layers
