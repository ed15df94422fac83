"""The exported computation: a tf.Module holding the meta-learned weights and two tf.functions.

* `serving_default(x)`: predictions of the meta-learned initialisation on x [T, B, D]
  (T groups of B examples; normalisation statistics are those of each group, as in training).
* `adapt_and_predict(support_x, support_y, query_x, num_steps, step_size)`: the MAML inner loop
  (plain SGD on the support set, all adaptable weights, normalisation parameters fixed) run per task
  inside the graph, then predictions on the query set. num_steps / step_size < 0 mean the training
  values. The loop over steps is a tf.while_loop, so num_steps is a run-time input.

Shapes: support_x [T, N*K, D], support_y [T, N*K, N'], query_x [T, Q, D]; T, N*K, Q and N' are free.
For classification N' may be smaller than the trained N: the task then uses the first N' output
units of the head (MAML assigns classes to output units at random, so any N' of them serve), and K
(the loss divisor, the reference's update_batch_size) is N*K / N'.

Everything runs the core's Keras model through `maml_tf.meta.adapt.forward` (weights substituted)
and the core's loss (`InnerLoop.loss`). Tasks are mapped one at a time (tf.map_fn): a single task
needs no per-task weight copies, so the layers run their shared-weight path, which works for any
batch size (the per-task convolution variants want static task and batch sizes).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from maml_tf.meta.adapt import InnerLoop, forward, sgd_step
from maml_tf.models import layers as L


def _head_indices(model) -> tuple[int, int] | None:
    """Positions (in trainable_variables) of the output layer's kernel and bias."""
    head = model.stack[-1]
    if not isinstance(head, L.TaskDense):
        return None
    ids = [id(v) for v in model.trainable_variables]
    return ids.index(id(head.kernel)), ids.index(id(head.bias))


class _NotSaved:
    """A plain holder, so tf.Module does not track (and save a second copy of) the Keras model."""

    def __init__(self, model):
        self.model = model


class MetaInitModule(tf.Module):
    """Weights of one meta-learned initialisation plus the functions that serve them."""

    def __init__(self, model, loop: InnerLoop, dim_input: int, dim_output: int, dtype: str = "float32"):
        super().__init__(name="maml_meta_init")
        self._held = _NotSaved(model)  # the Keras model computes; only self.weights are saved
        self._loop = loop
        # The SavedModel's variables: plain tf.Variables under the reference's names (model/conv1,
        # model/0/beta, ...), so they are unique (TF1-style loaders such as `saved_model_cli run`
        # fail on duplicate names like Keras' per-layer 'beta') and say what they are. The model
        # computes with them through weight substitution, exactly as the inner loop does.
        self.weights = [tf.Variable(tf.convert_to_tensor(v.value), name=n, trainable=False)
                        for n, v in zip(model.reference_names, model.trainable_variables)]
        self._adaptable = list(model.adaptable)
        self._head = _head_indices(model)
        self._dtype = tf.as_dtype(dtype)
        self.dim_input, self.dim_output = dim_input, dim_output
        self.default_num_steps = tf.constant(loop.num_updates, tf.int32)
        self.default_step_size = tf.constant(loop.update_lr, self._dtype)
        d = self._dtype
        self.serving_default = tf.function(
            self._predict, input_signature=[tf.TensorSpec([None, None, dim_input], d, name="x")])
        self.adapt_and_predict = tf.function(self._adapt_and_predict)
        self._specs = (tf.TensorSpec([None, None, dim_input], d, name="support_x"),
                           tf.TensorSpec([None, None, None], d, name="support_y"),
                           tf.TensorSpec([None, None, dim_input], d, name="query_x"),
                           tf.TensorSpec([], tf.int32, name="num_steps"),
                           tf.TensorSpec([], d, name="step_size"))

    # -- traced bodies ----------------------------------------------------------------------
    def _predict(self, x):
        return {"predictions": forward(self._held.model, self._read_weights(), x)}

    def _read_weights(self) -> list[tf.Tensor]:
        # Read each variable once, in the outer function, rather than inside the while loops.
        return [tf.convert_to_tensor(w) for w in self.weights]

    def _adapt_and_predict(self, support_x, support_y, query_x, num_steps=None, step_size=None):
        steps = self.default_num_steps if num_steps is None else tf.where(
            num_steps < 0, self.default_num_steps, tf.cast(num_steps, tf.int32))
        lr = self.default_step_size if step_size is None else tf.where(
            step_size < 0, self.default_step_size, tf.cast(step_size, self._dtype))
        n_out = tf.shape(support_y)[-1]
        tf.debugging.assert_less_equal(n_out, self.dim_output,
                                       message=f"support_y has more classes than the model's {self.dim_output} outputs")
        params = self._read_weights()
        preds = tf.map_fn(lambda task: self._adapt_one(params, *task, steps, lr, n_out),
                          (support_x, support_y, query_x),
                          fn_output_signature=tf.TensorSpec([None, None], self._dtype))
        return {"predictions": preds}

    def _adapt_one(self, params, support_x, support_y, query_x, num_steps, step_size, n_out):
        """One task: [S, D], [S, N'], [Q, D] -> query predictions [Q, N'] after `num_steps` steps."""
        loop = self._loop
        if loop.classification:
            # The reference's loss divisor is update_batch_size = K = (N*K) / N.
            shots = tf.cast(tf.shape(support_x)[0], self._dtype) / tf.cast(n_out, self._dtype)
            loop = dataclasses.replace(loop, update_batch_size=shots)
        x, y, q = support_x[None], support_y[None], query_x[None]
        # One task: the weights keep their own shapes (the layers' shared-weight path, plain ops with
        # ordinary gradients for any batch size), except the head: it gets the task axis and only
        # its first N' columns (the shared path would reshape to the layer's N units).
        fast = list(params)
        if self._head is not None:
            k, b = self._head
            fast[k], fast[b] = params[k][None, :, :n_out], params[b][None, :n_out]
        idx = [i for i, a in enumerate(self._adaptable) if a]

        step_loop = dataclasses.replace(loop, update_lr=step_size)  # a run-time step size

        def body(i, *adapted):
            weights = list(fast)
            for j, w in zip(idx, adapted):
                weights[j] = w
            _, _, new = sgd_step(self._held.model, weights, self._adaptable, x, y, step_loop)
            return (i + 1, *[new[j] for j in idx])

        _, *adapted = tf.while_loop(lambda i, *_: i < num_steps, body, (tf.constant(0), *[fast[i] for i in idx]))
        weights = list(fast)
        for j, w in zip(idx, adapted):
            weights[j] = w
        return forward(self._held.model, weights, q)[0]

    # -- tracing ----------------------------------------------------------------------------
    def signatures(self) -> dict:
        """Concrete functions for the signature map; also traces the 3-argument Python form."""
        self.adapt_and_predict.get_concrete_function(*self._specs[:3])
        return {"serving_default": self.serving_default.get_concrete_function(),
                "adapt_and_predict": self.adapt_and_predict.get_concrete_function(*self._specs)}
