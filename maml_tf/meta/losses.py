"""Per-task losses with the reference's scaling (maml.py / utils.py of cbfinn/maml)."""
from __future__ import annotations

import tensorflow as tf


def mse(pred: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
    """Mean squared error of each task: [T, B, D] -> [T]."""
    return tf.reduce_mean(tf.square(pred - label), axis=[1, 2])


def xent(pred: tf.Tensor, label: tf.Tensor, update_batch_size: int) -> tf.Tensor:
    """Softmax cross-entropy per example divided by K: [T, B, N] -> [T, B].

    The reference never reduces this vector: its inner gradient is that of the *sum* over the task's
    examples (N x mean CE for K-shot), and the query loss keeps the divisor K even with 15 queries
    per class. Labels get no gradient (TF1 softmax_cross_entropy_with_logits semantics).
    """
    ce = tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(label), logits=pred)
    return ce / tf.cast(update_batch_size, pred.dtype)


def accuracy(pred: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
    """Per-task accuracy of argmax(softmax(logits)) vs argmax(label): [T, B, N] -> [T]."""
    hit = tf.equal(tf.argmax(tf.nn.softmax(pred), -1), tf.argmax(label, -1))
    return tf.reduce_mean(tf.cast(hit, pred.dtype), axis=1)
