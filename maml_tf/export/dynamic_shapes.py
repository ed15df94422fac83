"""Let the core's normalisation layers run on batches whose size is only known at run time.

A SavedModel signature has `None` for the number of tasks, shots and queries, so that N-way K-shot
tasks of any size can be served without re-exporting. The core's exact batch-norm moments
(`maml_tf.models.layers._moments`, variant "exact") divide by the element count taken from the
*static* shape, which is unknown in such a trace. This module supplies the same formula with the
count read from the dynamic shape, and only where a static dimension is missing: with known shapes
the core's own function runs, so every graph the training code builds is untouched. The divisor is
the same number either way (an integer count, exact in float32 below 2**24), so results are equal.

Used as a context manager around tracing only (`with dynamic_moments(): fn.get_concrete_function()`).
If the core's `_moments` learns dynamic counts itself, this wrapper is never taken.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import tensorflow as tf

from maml_tf.models import layers as _layers


def _dynamic_exact_moments(x: tf.Tensor, axes: list[int], shift: tf.Tensor | None):
    """The "exact" moments of the core with a run-time element count."""
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
    divisor = tf.math.reciprocal(count)
    xs = x if shift is None else x - shift
    shifted_mean = tf.reduce_sum(xs, axes, keepdims=True) * divisor
    var = tf.reduce_sum(tf.square(xs), axes, keepdims=True) * divisor - tf.square(shifted_mean)
    mean = shifted_mean if shift is None else shifted_mean + shift
    return mean, var


@contextlib.contextmanager
def dynamic_moments() -> Iterator[None]:
    """Within the block, the core's moments accept inputs with unknown batch/spatial sizes."""
    original = _layers._moments

    def moments(x, axes, variant, shift=None):
        static = all(x.shape[a] is not None for a in axes)
        if variant != "exact" or static:
            return original(x, axes, variant, shift=shift)
        return _dynamic_exact_moments(x, axes, shift)

    _layers._moments = moments
    try:
        yield
    finally:
        _layers._moments = original
