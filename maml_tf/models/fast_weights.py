"""Run a Keras model with substituted weights, optionally one set per task.

Why not `Layer.stateless_call`: it insists that each substituted value has the variable's own shape.
MAML adapts one copy of the weights per task, and computing all tasks of a meta-batch together means
passing weights with a leading task axis ([T, *shape]). This module is the same idea as stateless_call
(a scope that maps variables to tensors, read by the layers) without that restriction: the layers of
`maml_tf.models.layers` read their weights through `read(var)`, and accept both shapes.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

import tensorflow as tf

_state = threading.local()


def _mapping() -> dict[int, tf.Tensor] | None:
    return getattr(_state, "mapping", None)


@contextlib.contextmanager
def substitute(variables: Sequence, values: Sequence[tf.Tensor]) -> Iterator[None]:
    """Within the block, layers read `values[i]` wherever they would read `variables[i]`."""
    if len(variables) != len(values):
        raise ValueError(f"substitute: {len(variables)} variables but {len(values)} values")
    previous = _mapping()
    mapping = dict(previous or {})
    mapping.update({id(v): t for v, t in zip(variables, values)})
    _state.mapping = mapping
    try:
        yield
    finally:
        _state.mapping = previous


def read(variable) -> tf.Tensor:
    """The value a layer should compute with: the substituted tensor if any, else the variable."""
    mapping = _mapping()
    if mapping is not None and id(variable) in mapping:
        return mapping[id(variable)]
    return variable.value
