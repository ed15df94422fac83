"""Keras layers of the reference networks, written for a leading *task* axis.

Every layer takes inputs shaped [T, B, ...] (T tasks of B examples each) and weights that are either
shared by all tasks (the variable's shape) or per task ([T, *shape], fast weights of the inner loop).
Normalisation statistics are always those of the current call, per task, as in the reference
(tf.contrib batch_norm with is_training=True and no moving averages).

Where the kernels are per task, a convolution's output stays a Python *list* of per-task tensors
[B, ...] through the following bias, normalisation, ReLU and pooling layers, and is stacked once at
the head (`SpatialMean` / `FlattenFeatures`). Stacking after every convolution (one [T, B, ...]
tensor per layer) costs a Pack, an Unpack and their gradients per layer, and runs each batch-norm
pass as one single-threaded op over all tasks; per-task ops run two tasks at a time under the
one-thread-per-op pools, as the reference's map_fn does (bench/README.md, "task layout").

The "chunked" layout sits between the two: the convolutions still run per task (their kernels are),
but the bias, normalisation, ReLU and pooling run on a few stacked groups of tasks [t, B, ...]: fewer,
larger ops than the list, yet several at a time for the cores, and less memory (bench/README.md,
"chunked layout"). In a list of activations, a rank-5 element is such a chunk.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from maml_tf.models.fast_weights import read

TASK_LAYOUTS = ("list", "stacked", "chunked")


def _is_chunk(xi: tf.Tensor) -> bool:
    """In a list of activations, a rank-5 element is a chunk of tasks [t, B, H, W, C]; rank 4 is one task."""
    return xi.shape.rank == 5


def _split(n: int, chunks: int) -> list[tuple[int, int]]:
    """[start, end) of `chunks` contiguous, near-equal groups of n tasks (fewer when n < chunks)."""
    bounds = [round(i * n / chunks) for i in range(chunks + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _per_task(w: tf.Tensor, base_rank: int) -> bool:
    return w.shape.rank == base_rank + 1


def _each(fn, x):
    """Apply `fn` to every per-task tensor of a list layout, or once to a stacked [T, B, ...] tensor."""
    return [fn(xi) for xi in x] if isinstance(x, list) else fn(x)


class TaskDense(keras.layers.Layer):
    """y = x @ W + b, with W, b shared or per task."""

    def __init__(self, units: int, kernel_initializer="glorot_uniform", kernel_name="kernel",
                 bias_name="bias", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_name, self.bias_name = kernel_name, bias_name

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), self.units),
                                      initializer=self.kernel_initializer, name=self.kernel_name)
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name=self.bias_name)

    def call(self, x):
        w, b = read(self.kernel), read(self.bias)
        if _per_task(w, 2):
            y = tf.matmul(x, w)
        else:
            shape = tf.shape(x)
            y = tf.reshape(tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), w),
                           tf.concat([shape[:-1], [self.units]], 0))
        if _per_task(b, 1):
            b = b[:, None, :]
        return y + b


class TaskConv2D(keras.layers.Layer):
    """3x3 SAME convolution + bias (stride 2 without max-pool, 1 with), as the reference conv_block.

    layout: with per-task kernels, "list" returns the list layout (module docstring), "stacked" one
    [T, B, ...] tensor, "chunked" a list of `chunks` stacked groups of tasks. Same numbers up to float32
    rounding; which is faster depends on the thread pools (bench/README.md).
    """

    def __init__(self, filters: int, strides: int, kernel_name="kernel", bias_name="bias", layout: str = "list",
                 chunks: int = 2, **kwargs):
        super().__init__(**kwargs)
        if layout not in TASK_LAYOUTS:
            raise ValueError(f"unknown task layout {layout!r}; expected one of {TASK_LAYOUTS}")
        if chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {chunks}")
        self.filters, self.strides = filters, strides
        self.kernel_name, self.bias_name = kernel_name, bias_name
        self.layout, self.chunks = layout, chunks

    def build(self, input_shape):
        cin = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(3, 3, cin, self.filters), initializer="glorot_uniform",
                                      name=self.kernel_name)
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name=self.bias_name)

    def call(self, x):
        k, b = read(self.kernel), read(self.bias)
        s = [1, self.strides, self.strides, 1]
        if _per_task(k, 4):
            # Per-task kernels: one conv per task, unrolled in the graph (the task count is static
            # wherever fast weights reach a conv: the meta-step and the test protocol trace per shape).
            # The output is in `self.layout` (module docstring).
            if isinstance(x, list):  # chunks of tasks -> one tensor per task
                x = [t for xi in x for t in (tf.unstack(xi) if _is_chunk(xi) else [xi])]
            if not isinstance(x, list):
                if x.shape[0] is None:
                    raise ValueError("TaskConv2D with per-task kernels needs a static task count (axis 0 of the input)")
                # unstack, not x[i]: the gradient of T slices is T full-size StridedSliceGrads summed
                # (O(T^2) memory traffic); the gradient of one Unpack is one Pack.
                x = tf.unstack(x)
            if k.shape[0] is not None and len(x) != k.shape[0]:
                raise ValueError(f"TaskConv2D: {len(x)} tasks of inputs but {k.shape[0]} of kernels")
            ys = [tf.nn.conv2d(xi, ki, s, "SAME") for xi, ki in zip(x, tf.unstack(k))]
            if self.layout in ("list", "chunked"):
                bs = tf.unstack(b) if _per_task(b, 1) else [b] * len(x)
                ys = [yi + bi for yi, bi in zip(ys, bs)]
                if self.layout == "list":
                    return ys
                return [tf.stack(ys[a:e]) for a, e in _split(len(ys), self.chunks)]
            y = tf.stack(ys)
        elif isinstance(x, list):
            return [_conv_stacked(xi, k, s) + b if _is_chunk(xi) else tf.nn.conv2d(xi, k, s, "SAME") + b for xi in x]
        else:
            y = _conv_stacked(x, k, s)
        if _per_task(b, 1):
            b = tf.reshape(b, [-1, 1, 1, 1, self.filters])
        return y + b


def _folded(fn, x: tf.Tensor) -> tf.Tensor:
    """`fn` on [T, B, H, W, C] with the tasks folded into the batch ([T*B, H, W, C]), unfolded after."""
    t, n = tf.shape(x)[0], tf.shape(x)[1]
    y = fn(tf.reshape(x, [-1, x.shape[2], x.shape[3], x.shape[4]]))
    return tf.reshape(y, tf.concat([[t, n], tf.shape(y)[1:]], 0))


def _conv_stacked(x, k, s):
    """One shared-kernel convolution over [T, B, H, W, C]."""
    return _folded(lambda images: tf.nn.conv2d(images, k, s, "SAME"), x)


def _sums_fused_grad(x: tf.Tensor, axes: list[int]):
    """sum(x) and sum(x^2) over `axes` (keepdims), with one hand-written gradient for the pair.

    Autodiff of the two reductions materialises each incoming gradient at x's full size (a Tile per
    reduction, since the shapes are static) before multiplying and adding them; here the backward is
    the single broadcasting expression g1 + x * (2 g2), in differentiable ops, so an outer tape
    differentiates it exactly (second order stays exact). The products are the same float32 products
    as autodiff's (a factor 2 is exact); only how the terms are grouped before they are added differs.
    """

    @tf.custom_gradient
    def sums(x):
        def grad(g1, g2):
            return g1 + x * (2.0 * g2)

        return (tf.reduce_sum(x, axes, keepdims=True), tf.reduce_sum(tf.square(x), axes, keepdims=True)), grad

    return sums(x)


def _moments(x: tf.Tensor, axes: list[int], variant: str, shift: tf.Tensor | None = None,
             fused_grad: bool = False):
    """Mean and variance with exact second derivatives.

    "exact": var = E[(x-s)^2] - E[x-s]^2 (TF 1.0 sufficient statistics; exact for any constant s,
    so its autodiff gives the exact Hessian). "tf2": var = mean((x - stop_gradient(mean))^2), what
    tf.nn.moments / Keras BatchNormalization do: right value and first derivative, but a dropped
    second-derivative term (golden README, quirk 5). Kept only to reproduce *_normvariants fixtures.
    fused_grad: the two sums of "exact" get one hand-written gradient (`_sums_fused_grad`): the same
    values and derivatives, fewer full-size passes, float32 rounding grouped differently.
    """
    if variant == "tf2":
        mean = tf.reduce_mean(x, axes, keepdims=True)
        var = tf.reduce_mean(tf.math.squared_difference(x, tf.stop_gradient(mean)), axes, keepdims=True)
        return mean, var
    if all(x.shape[a] is not None for a in axes):
        count = 1.0
        for a in axes:
            count *= x.shape[a]
        divisor = tf.math.reciprocal(tf.constant(count, x.dtype))
    else:  # sizes known only at run time (e.g. a SavedModel's free batch size): the same divisor
        divisor = tf.math.reciprocal(tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype))
    xs = x if shift is None else x - shift
    if fused_grad:
        sum_x, sum_sq = _sums_fused_grad(xs, axes)
    else:
        sum_x, sum_sq = tf.reduce_sum(xs, axes, keepdims=True), tf.reduce_sum(tf.square(xs), axes, keepdims=True)
    shifted_mean = sum_x * divisor
    var = sum_sq * divisor - tf.square(shifted_mean)
    mean = shifted_mean if shift is None else shifted_mean + shift
    return mean, var


def _normalize(x, mean, var, offset, scale, eps):
    # The formula of tf.nn.batch_normalization, so float32 rounding follows the reference.
    inv = tf.math.rsqrt(var + eps)
    if scale is not None:
        inv = inv * scale
    return x * inv + (offset - mean * inv)


class BatchNormExact(keras.layers.Layer):
    """Batch norm with the statistics of the current call, per task, offset (beta) only, eps 1e-3.

    The reference (contrib batch_norm, is_training=True, scale=False) never uses or updates moving
    averages, so none are kept. Beta is meta-learned but not adapted in the inner loop.
    """

    def __init__(self, variant: str = "exact", epsilon: float = 1e-3, fused_grad: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.variant, self.epsilon, self.fused_grad = variant, epsilon, fused_grad

    def build(self, input_shape):
        self.beta = self.add_weight(shape=(int(input_shape[-1]),), initializer="zeros", name="beta")

    def call(self, x):
        beta = read(self.beta)
        def norm(xi):
            # per task: the batch (and spatial) axes of each task; a stacked tensor or chunk has the task axis first
            first = 1 if not isinstance(x, list) or _is_chunk(xi) else 0
            mean, var = _moments(xi, list(range(first, xi.shape.rank - 1)), self.variant, fused_grad=self.fused_grad)
            return _normalize(xi, mean, var, beta, None, self.epsilon)

        return _each(norm, x)


class LayerNormExact(keras.layers.Layer):
    """Layer norm per example over all its axes, beta and gamma, eps 1e-12 (contrib layer_norm, TF 1.0)."""

    def __init__(self, variant: str = "exact", epsilon: float = 1e-12, fused_grad: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.variant, self.epsilon, self.fused_grad = variant, epsilon, fused_grad

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")
        self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")

    def call(self, x):
        beta, gamma = read(self.beta), read(self.gamma)
        def norm(xi):
            first = 2 if not isinstance(x, list) or _is_chunk(xi) else 1  # every axis of one example
            axes = list(range(first, xi.shape.rank))
            if self.variant == "exact":
                # TF 1.0 nn.moments(shift=None) shifts by stop_gradient(mean); exact, as shown in _moments.
                shift = tf.stop_gradient(tf.reduce_mean(xi, axes, keepdims=True))
                mean, var = _moments(xi, axes, "exact", shift=shift, fused_grad=self.fused_grad)
            else:
                mean, var = _moments(xi, axes, "tf2")
            return _normalize(xi, mean, var, beta, gamma, self.epsilon)

        return _each(norm, x)


class TaskMaxPool(keras.layers.Layer):
    """2x2 VALID max-pool with stride 2 on [T, B, H, W, C]."""

    def call(self, x):
        if isinstance(x, list):
            return [self.call(xi) if _is_chunk(xi) else tf.nn.max_pool2d(xi, 2, 2, "VALID") for xi in x]
        return _folded(lambda images: tf.nn.max_pool2d(images, 2, 2, "VALID"), x)


class ToImage(keras.layers.Layer):
    """Flat pixels [T, B, H*W*C] -> images [T, B, H, W, C] (the reference reshapes inside forward_conv)."""

    def __init__(self, size: int, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.size, self.channels = size, channels

    def call(self, x):
        return tf.reshape(x, tf.concat([tf.shape(x)[:2], [self.size, self.size, self.channels]], 0))


class SpatialMean(keras.layers.Layer):
    """Mean over H and W (the Omniglot conv net's head); stacks a list layout into [T, B, C]."""

    def call(self, x):
        if isinstance(x, list):
            if any(_is_chunk(xi) for xi in x):
                return tf.concat([tf.reduce_mean(xi, [2, 3]) for xi in x], 0)
            return tf.stack([tf.reduce_mean(xi, [1, 2]) for xi in x])
        return tf.reduce_mean(x, [2, 3])


class FlattenFeatures(keras.layers.Layer):
    """[T, B, H, W, C] -> [T, B, H*W*C] in NHWC order (the MiniImagenet conv net's head)."""

    def call(self, x):
        if isinstance(x, list):
            if any(_is_chunk(xi) for xi in x):
                return tf.concat([self.call(xi) for xi in x], 0)
            return tf.stack([tf.reshape(xi, [-1, xi.shape[1] * xi.shape[2] * xi.shape[3]]) for xi in x])
        return tf.reshape(x, tf.concat([tf.shape(x)[:2], [x.shape[2] * x.shape[3] * x.shape[4]]], 0))


class ReLU(keras.layers.Layer):
    def call(self, x):
        return _each(tf.nn.relu, x)
