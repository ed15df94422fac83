"""The reference's per-task losses in the public API's form: `loss(y_true, y_pred)` of one task.

Why not Keras' losses: the reference (cbfinn/maml) scales its losses in its own way, and the
meta-gradients are only the reference's with that scaling. These wrap `maml_tf.meta.losses`
(the faithful path's losses, which take a leading task axis) for one task's examples.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from maml_tf.meta import losses


def reference_classification(shots: int) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Sum over the task's examples of softmax cross-entropy / K (one-hot labels [B, N], logits [B, N]).

    `shots` is K, the support examples per class; the reference keeps that divisor for the query
    loss too (even with 15 queries per class), so the meta-loss uses the same function.
    """
    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(losses.xent(y_pred[None], y_true[None], shots))

    return loss


def reference_regression(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Mean squared error over the task's examples and outputs ([B, D] each), as the reference's sinusoid."""
    return losses.mse(y_pred[None], y_true[None])[0]


def accuracy(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Accuracy of argmax(logits) against one-hot labels, for outputs with a leading task axis: [T]."""
    return losses.accuracy(y_pred, y_true)
