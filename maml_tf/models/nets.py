"""The reference networks as Keras models, with the reference's variable names.

`build_model` returns a `MetaModel`: a Keras model over [T, B, features] inputs, plus what MAML needs
to know about each trainable variable: its reference (TF1) name, and whether the inner loop adapts
it (weights and biases yes, normalisation parameters no: they are meta-learned only).
"""
from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from maml_tf.models import layers as L

NORMS = ("batch_norm", "layer_norm", "None")


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """What determines the architecture (a subset of the experiment config)."""

    kind: str  # "fc" or "conv"
    dim_input: int
    dim_output: int
    norm: str = "None"
    hidden: tuple[int, ...] = (40, 40)  # fc only
    num_filters: int = 64  # conv only
    channels: int = 1
    max_pool: bool = False
    w5_init: str = "normal"  # conv head: "normal" (omniglot, stddev 1) or "glorot" (miniimagenet)
    norm_variant: str = "exact"  # "exact" or "tf2" (only to reproduce *_normvariants fixtures)
    dtype: str = "float32"
    task_layout: str = "list"  # conv only: per-task activations as a list, stacked or chunked (layers.py); speed only
    task_chunks: int = 2  # conv, chunked layout only: groups of tasks between the convolutions
    fused_moments_grad: bool = False  # norm layers: one hand-written gradient for the moments' sums; memory/speed only


class MetaModel(keras.Model):
    """A stack of task-axis layers; `adaptable[i]` / `reference_names[i]` describe trainable_variables[i]."""

    def __init__(self, spec: NetSpec, stack: list[keras.layers.Layer], roles: dict[int, tuple[str, bool]], **kw):
        super().__init__(dtype=spec.dtype, **kw)
        self.spec = spec
        self.stack = stack
        self._roles = roles  # id(layer) -> ... filled after build

    def call(self, x):
        for layer in self.stack:
            x = layer(x)
        return x

    @property
    def adaptable(self) -> list[bool]:
        return [self._roles[v.path][1] for v in self.trainable_variables]

    @property
    def reference_names(self) -> list[str]:
        return [self._roles[v.path][0] for v in self.trainable_variables]


def _norm_layer(spec: NetSpec, scope: str):
    if spec.norm == "batch_norm":
        return L.BatchNormExact(variant=spec.norm_variant, fused_grad=spec.fused_moments_grad, name=f"norm_{scope}",
                                dtype=spec.dtype)
    if spec.norm == "layer_norm":
        return L.LayerNormExact(variant=spec.norm_variant, fused_grad=spec.fused_moments_grad, name=f"norm_{scope}",
                                dtype=spec.dtype)
    return None


def _unnamed(i: int) -> str:
    """Name TF1 gives the i-th unnamed tf.Variable under scope 'model'."""
    return "model/Variable" if i == 0 else f"model/Variable_{i}"


def build_model(spec: NetSpec, seed: int | None = None) -> MetaModel:
    """Build (and initialise) the reference network for `spec`."""
    if spec.norm not in NORMS:
        raise ValueError(f"unknown norm {spec.norm!r}; expected one of {NORMS}")
    init_seed = [seed]

    def next_seed():
        if init_seed[0] is None:
            return None
        init_seed[0] += 1
        return init_seed[0]

    stack: list[keras.layers.Layer] = []
    names: list[tuple[keras.layers.Layer, list[tuple[str, bool]]]] = []
    dt = spec.dtype
    if spec.kind == "fc":
        dims = list(spec.hidden)
        unnamed = 0
        for i, units in enumerate(dims + [spec.dim_output]):
            last = i == len(dims)
            dense = L.TaskDense(units, keras.initializers.TruncatedNormal(stddev=0.01, seed=next_seed()),
                                kernel_name=f"w{i + 1}", bias_name=f"b{i + 1}", name=f"dense_{i + 1}", dtype=dt)
            stack.append(dense)
            names.append((dense, [(_unnamed(unnamed), True), (_unnamed(unnamed + 1), True)]))
            unnamed += 2
            if not last:
                scope = "0" if i == 0 else str(i + 1)  # forward_fc's scopes: '0', '2', '3', ...
                norm = _norm_layer(spec, scope)
                if norm is not None:
                    stack.append(norm)
                    names.append((norm, _norm_names(spec, scope)))
                stack.append(L.ReLU(name=f"relu_{i + 1}", dtype=dt))
    elif spec.kind == "conv":
        size = int(round(math.sqrt(spec.dim_input / spec.channels)))
        if size * size * spec.channels != spec.dim_input:
            raise ValueError(f"dim_input {spec.dim_input} is not a square image with {spec.channels} channels")
        stack.append(L.ToImage(size, spec.channels, name="to_image", dtype=dt))
        for i in range(4):
            conv = L.TaskConv2D(spec.num_filters, 1 if spec.max_pool else 2, kernel_name=f"conv{i + 1}",
                                bias_name=f"b{i + 1}", layout=spec.task_layout, chunks=spec.task_chunks,
                                name=f"conv{i + 1}", dtype=dt)
            stack.append(conv)
            names.append((conv, [(f"model/conv{i + 1}", True), (_unnamed(i), True)]))
            norm = _norm_layer(spec, str(i))
            if norm is not None:
                stack.append(norm)
                names.append((norm, _norm_names(spec, str(i))))
            stack.append(L.ReLU(name=f"relu_{i + 1}", dtype=dt))
            if spec.max_pool:
                stack.append(L.TaskMaxPool(name=f"pool_{i + 1}", dtype=dt))
        if spec.max_pool:
            stack.append(L.FlattenFeatures(name="flatten", dtype=dt))
        else:
            stack.append(L.SpatialMean(name="spatial_mean", dtype=dt))
        if spec.w5_init == "normal":
            w5_init = keras.initializers.RandomNormal(stddev=1.0, seed=next_seed())
        else:
            w5_init = keras.initializers.GlorotUniform(seed=next_seed())
        head = L.TaskDense(spec.dim_output, w5_init, kernel_name="w5", bias_name="b5", name="logits", dtype=dt)
        stack.append(head)
        names.append((head, [("model/w5", True), ("model/b5", True)]))
    else:
        raise ValueError(f"unknown network kind {spec.kind!r}")

    if seed is not None:
        # Glorot kernels of conv layers take their seed from Keras' global generator.
        keras.utils.set_random_seed(seed)
    model = MetaModel(spec, stack, roles={}, name="model")
    model(tf.zeros([1, 2, spec.dim_input], dtype=dt))  # build
    roles = {}
    for layer, entries in names:
        for var, entry in zip(layer.trainable_variables, entries):
            roles[var.path] = entry
    model._roles = roles
    # Biases that feed batch norm have a mathematically zero gradient (BN removes per-channel
    # constants); their meta-gradients are rounding noise, which comparisons must know.
    fed = set()
    for layer, nxt in zip(stack, stack[1:]):
        if isinstance(nxt, L.BatchNormExact) and hasattr(layer, "bias"):
            fed.add(roles[layer.bias.path][0])
    model.bn_fed_biases = frozenset(fed)
    return model


def _norm_names(spec: NetSpec, scope: str) -> list[tuple[str, bool]]:
    entries = [(f"model/{scope}/beta", False)]
    if spec.norm == "layer_norm":
        entries.append((f"model/{scope}/gamma", False))
    return entries
