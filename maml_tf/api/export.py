"""SavedModel export of a model meta-trained through the public API, with the faithful export's signatures.

`serving_default(x)` -> {"predictions"}: the meta-learned initialisation's outputs, x [T, B, *input].
`adapt_and_predict(support_x, support_y, query_x, num_steps, step_size)` -> {"predictions"}: the
inner loop per task inside the graph (a tf.while_loop, so num_steps is an input; < 0 means the
training value, as in `maml_tf.export`), then outputs on the query set [T, Q, ...]. When the labels
have the outputs' rank and fewer columns (N' < N classes), the outputs are cut to the labels' last
dimension before the loss and in the result, as the faithful export uses the first N' head units.
The inner loss is the wrapped `MAML.loss`, traced as is (its scaling, e.g. a fixed K, included).

Reuses `maml_tf.export`: the atomic writer with its metadata asset (`save_module`) and the holder
that keeps the Keras model out of the saved object graph (`_NotSaved`); only the module's own
variable copies are saved, so the SavedModel needs neither maml_tf nor the model's Python code.
"""
from __future__ import annotations

import copy
import os

import tensorflow as tf

from maml_tf.api.maml import MAML
from maml_tf.export.module import _NotSaved
from maml_tf.export.saved_model import ASSET_NAME, _check_target, save_module

__all__ = ["export_maml", "ASSET_NAME"]


def _cut_to_labels(outputs: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    if outputs.shape.rank != labels.shape.rank:
        return outputs
    return outputs[..., :tf.shape(labels)[-1]]


class KerasMetaInitModule(tf.Module):
    """Copies of a wrapped model's weights and the two serving functions."""

    def __init__(self, maml: MAML, input_shape, label_shape, label_dtype):
        super().__init__(name="maml_keras_meta_init")
        wrapped = copy.copy(maml)  # the same MAML with outputs cut to the labels' classes
        wrapped.loss = lambda y, p: maml.loss(y, _cut_to_labels(p, y))
        self._held = _NotSaved(wrapped)
        model = maml.model
        self.weights = [tf.Variable(tf.convert_to_tensor(v), name=_name(v), trainable=False)
                        for v in model.trainable_variables]
        self.state = [tf.Variable(tf.convert_to_tensor(v), name=_name(v), trainable=False)
                      for v in model.non_trainable_variables]
        dtype = tf.as_dtype(model.inputs[0].dtype if getattr(model, "inputs", None) else model.dtype)
        self._out_dtype = tf.as_dtype(model.compute_dtype)
        self.default_num_steps = tf.constant(maml.num_inner_steps, tf.int32)
        self.default_step_size = tf.constant(maml.inner_lr, self._out_dtype)
        x = tf.TensorSpec([None, None, *input_shape], dtype, name="x")
        self.serving_default = tf.function(self._predict, input_signature=[x])
        self.adapt_and_predict = tf.function(self._adapt_and_predict)
        self._specs = (tf.TensorSpec([None, None, *input_shape], dtype, name="support_x"),
                       tf.TensorSpec([None, None, *label_shape], label_dtype, name="support_y"),
                       tf.TensorSpec([None, None, *input_shape], dtype, name="query_x"),
                       tf.TensorSpec([], tf.int32, name="num_steps"),
                       tf.TensorSpec([], self._out_dtype, name="step_size"))

    def _values(self):
        return [tf.convert_to_tensor(w) for w in self.weights], [tf.convert_to_tensor(s) for s in self.state]

    def _predict(self, x):
        maml = self._held.model
        params, state = self._values()
        out = tf.map_fn(lambda xt: maml.forward(params, xt, state), x,
                        fn_output_signature=tf.TensorSpec(None, self._out_dtype))
        return {"predictions": out}

    def _adapt_and_predict(self, support_x, support_y, query_x, num_steps=None, step_size=None):
        maml = self._held.model
        steps = self.default_num_steps if num_steps is None else tf.where(
            num_steps < 0, self.default_num_steps, tf.cast(num_steps, tf.int32))
        lr = self.default_step_size if step_size is None else tf.where(
            step_size < 0, self.default_step_size, tf.cast(step_size, self._out_dtype))
        params, state = self._values()

        def one(task):
            sx, sy, qx = task
            fast = maml.adapt(sx, sy, params, steps, lr, state)
            return _cut_to_labels(fast(qx), sy)

        out = tf.map_fn(one, (support_x, support_y, query_x),
                        fn_output_signature=tf.TensorSpec(None, self._out_dtype))
        return {"predictions": out}

    def signatures(self) -> dict:
        """Concrete functions for the signature map; also traces the 3-argument Python form."""
        self.adapt_and_predict.get_concrete_function(*self._specs[:3])
        return {"serving_default": self.serving_default.get_concrete_function(),
                "adapt_and_predict": self.adapt_and_predict.get_concrete_function(*self._specs)}


def _name(v) -> str:
    return v.path.replace(":", "_")


def export_maml(maml: MAML, export_dir: str, overwrite: bool = False, input_shape=None, label_shape=None,
                label_dtype=None, description: dict | None = None) -> str:
    """Write `maml`'s current initialisation as a SavedModel at `export_dir`, atomically.

    input_shape: one example's shape (default: the model's Input). label_shape / label_dtype: one
    label's (default: the model's output shape with a free last dimension, the output dtype).
    `description` is stored in assets/maml_tf_export.json with the variables and signatures.
    """
    target = os.path.abspath(export_dir)
    _check_target(target, overwrite)
    model = maml.model
    if input_shape is None:
        if not getattr(model, "inputs", None):
            raise ValueError("export_maml: the model has no Input; pass input_shape (one example's shape)")
        input_shape = tuple(model.inputs[0].shape[1:])
    if label_shape is None:
        out_shape = tuple(model.outputs[0].shape[1:]) if getattr(model, "outputs", None) else (None,)
        label_shape = (*out_shape[:-1], None)
    label_dtype = tf.as_dtype(label_dtype or model.compute_dtype)
    module = KerasMetaInitModule(maml, tuple(input_shape), tuple(label_shape), label_dtype)
    meta = {
        "format": "maml_tf meta-initialisation SavedModel (public API, Keras model), version 1",
        "model": model.name,
        "input_shape": list(input_shape), "label_shape": list(label_shape),
        "variables": [{"name": _name(v), "shape": list(v.shape), "dtype": str(v.dtype), "adapted_in_inner_loop": a}
                      for v, a in zip(model.trainable_variables, maml.adaptable)],
        "state_variables": [{"name": _name(v), "shape": list(v.shape)} for v in model.non_trainable_variables],
        "first_order": maml.first_order,
        "signatures": {
            "serving_default": {"inputs": {"x": "[T, B, *input_shape]"}, "outputs": {"predictions": "[T, B, ...]"}},
            "adapt_and_predict": {
                "inputs": {"support_x": "[T, S, *input_shape]", "support_y": "[T, S, *label_shape]",
                           "query_x": "[T, Q, *input_shape]", "num_steps": "int32 scalar, < 0: training value",
                           "step_size": "float scalar, < 0: training value"},
                "outputs": {"predictions": "[T, Q, ...] after num_steps inner SGD steps"},
                "defaults": {"num_steps": maml.num_inner_steps, "step_size": float(maml.inner_lr)}},
        },
        "description": description or {},
        "tensorflow_version": tf.__version__,
    }
    return save_module(module, meta, target, overwrite, module.signatures)
