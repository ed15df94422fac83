"""The reference networks written with standard Keras layers, for the public API.

Why: they are what proves the public API is the faithful algorithm (same meta-gradients as
`maml_tf.models.nets` on the golden fixtures) and what bench/bench_api.py times against it. Each
builder names its layers so `reference_names` can give every trainable variable the reference's TF1
name, and load fixture or checkpoint weights by that name (`assign_by_reference_name`).
"""
from __future__ import annotations

from typing import Mapping

import keras
import numpy as np

from maml_tf.api.batch_norm import ExactBatchNormalization


def sinusoid_net(dtype: str = "float32", hidden: tuple[int, ...] = (40, 40)) -> keras.Sequential:
    """FC 1-40-40-1 with ReLU, no normalisation (the reference's sinusoid regressor)."""
    init = keras.initializers.TruncatedNormal(stddev=0.01)
    layers = [keras.Input((1,), dtype=dtype)]
    for i, units in enumerate(hidden):
        layers.append(keras.layers.Dense(units, "relu", kernel_initializer=init, name=f"dense_{i + 1}", dtype=dtype))
    layers.append(keras.layers.Dense(1, kernel_initializer=init, name=f"dense_{len(hidden) + 1}", dtype=dtype))
    return keras.Sequential(layers, name="sinusoid_net")


def omniglot_conv_net(num_classes: int = 5, num_filters: int = 64, dtype: str = "float32",
                      keras_bn: bool = False) -> keras.Sequential:
    """The reference Omniglot net: flat 784 pixels -> 28x28x1, four [3x3 conv stride 2 SAME + bias,
    batch norm (batch statistics, offset only, eps 1e-3, exact moments), ReLU], mean over H and W,
    dense to N logits (w5 ~ N(0, 1) as the reference). keras_bn: Keras' own BatchNormalization
    instead (tf.nn.moments: the reference's "tf2_moments" variant, inexact second derivatives)."""
    norm = keras.layers.BatchNormalization if keras_bn else ExactBatchNormalization
    layers = [keras.Input((784,), dtype=dtype), keras.layers.Reshape((28, 28, 1), name="to_image", dtype=dtype)]
    for i in range(4):
        layers += [keras.layers.Conv2D(num_filters, 3, strides=2, padding="same", name=f"conv{i + 1}", dtype=dtype),
                   norm(scale=False, epsilon=1e-3, name=f"norm_{i}", dtype=dtype),
                   keras.layers.ReLU(name=f"relu_{i + 1}", dtype=dtype)]
    layers += [keras.layers.GlobalAveragePooling2D(name="spatial_mean", dtype=dtype),
               keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
                                  name="logits", dtype=dtype)]
    return keras.Sequential(layers, name="omniglot_conv_net")


def reference_names(model: keras.Model) -> list[str]:
    """The reference's TF1 variable name of each of `model.trainable_variables` (nets built here)."""
    names, unnamed = [], 0
    for v in model.trainable_variables:
        layer, weight = v.path.split("/")[-2:]
        if layer.startswith("conv"):
            if weight == "kernel":
                names.append(f"model/{layer}")
            else:  # conv biases are the first unnamed tf.Variables of the reference's graph
                names.append(_unnamed(int(layer[4:]) - 1))
        elif layer.startswith("norm_"):
            names.append(f"model/{layer[5:]}/{weight}")
        elif layer == "logits":
            names.append("model/w5" if weight == "kernel" else "model/b5")
        elif layer.startswith("dense_"):
            names.append(_unnamed(unnamed))
            unnamed += 1
        else:
            raise ValueError(f"{v.path}: not a variable of maml_tf.api.reference_nets' networks")
    return names


def assign_by_reference_name(model: keras.Model, tensors: Mapping[str, np.ndarray]) -> None:
    """Set the trainable variables from a mapping reference name -> value (fixture init, checkpoint)."""
    for name, v in zip(reference_names(model), model.trainable_variables):
        value = np.asarray(tensors[name])
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"{name}: value of shape {list(value.shape)} for variable {v.path} of shape {list(v.shape)}")
        v.assign(value.astype(v.dtype))


def _unnamed(i: int) -> str:
    return "model/Variable" if i == 0 else f"model/Variable_{i}"


def bn_fed_biases(model: keras.Model) -> frozenset[str]:
    """Reference names of the biases that feed a batch norm: their true gradient is zero, so their
    meta-gradients are rounding noise and comparisons treat them absolutely (as maml_tf.parity does)."""
    fed = set()
    for layer, nxt in zip(model.layers, model.layers[1:]):
        if isinstance(nxt, keras.layers.BatchNormalization) and getattr(layer, "bias", None) is not None:
            fed.add(layer.bias.path)
    return frozenset(n for n, v in zip(reference_names(model), model.trainable_variables) if v.path in fed)
