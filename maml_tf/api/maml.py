"""`MAML`: meta-learning any Keras 3 model (standard or user layers), the reference's algorithm.

Why this exists beside `maml_tf.meta`: the faithful path needs networks built from
`maml_tf.models.layers` (they read substituted weights with a task axis). Here the model is any
built Keras 3 model, run with other weights through Keras' own `Layer.stateless_call`, so no layer
is re-implemented. `stateless_call` wants each weight in its variable's shape, so tasks are handled
one at a time: an unrolled loop over the task axis (`task_axis="loop"`, the default) or
`tf.vectorized_map` (`"vectorized_map"`); bench/bench_api.py measures both against the faithful path.

The algorithm is the reference's (cbfinn/maml): per task, `num_inner_steps` plain SGD steps on the
support loss with step size `inner_lr`, every step from the support set; the meta-loss is the mean
over tasks of the query loss after the last step; second order by running the inner loop under the
outer GradientTape (nested tapes), first order by `tf.stop_gradient` on the inner gradients.
Normalisation parameters are meta-learned but not adapted by default, as in the reference.

Non-trainable state that a call updates (batch norm moving averages, dropout seed state) is read
but the updates made while adapting are discarded: every task starts from the same state.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf

from maml_tf.api.batch_norm import warn_inexact_batch_norm
from maml_tf.models import layers as task_layers

TASK_AXES = ("loop", "vectorized_map")
_NORMALIZATION = tuple(c for c in (
    keras.layers.BatchNormalization, keras.layers.LayerNormalization, keras.layers.GroupNormalization,
    getattr(keras.layers, "RMSNormalization", None), task_layers.BatchNormExact, task_layers.LayerNormExact)
    if c is not None)

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
Tasks = Sequence[tf.Tensor]  # (support_x, support_y, query_x, query_y), each [tasks, examples, ...]


class FastWeights:
    """One task's adapted weights (`params`, aligned with `model.trainable_variables`), callable as the model."""

    def __init__(self, maml: "MAML", params: list[tf.Tensor], state: Sequence[tf.Tensor] | None = None):
        self.maml, self.params, self.state = maml, params, state

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.maml.forward(self.params, x, self.state)

    def __iter__(self):
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)


class MAML:
    """Wrap a built Keras model for MAML.

    model: any built Keras 3 model; it maps one task's examples [B, ...] to outputs [B, ...].
    loss: `loss(y_true, y_pred)` of one task, a scalar (a non-scalar result is summed, as the
        reference's tf.gradients of a per-example vector does). Keras losses work; the reference's
        scaling is in `maml_tf.api.losses`.
    inner_lr, num_inner_steps: the inner SGD step size (alpha) and number of steps.
    first_order: stop_gradient on the inner gradients (first-order MAML, the reference's --stop_grad).
    adapted: which trainable variables the inner loop adapts: "weights" (all but normalisation
        layers', the reference's choice), "all", or a predicate on the Keras variable.
    task_axis: "loop" (unrolled over a static number of tasks) or "vectorized_map".
    training: the `training` argument of the model's calls (True: batch norm uses each task's
        batch statistics, as the reference does).
    jit_compile: XLA-compile the meta-gradient, meta-update and prediction functions.
    """

    def __init__(self, model: keras.Model, loss: LossFn, inner_lr: float, num_inner_steps: int = 1,
                 first_order: bool = False, *, adapted: str | Callable = "weights", task_axis: str = "loop",
                 training: bool = True, jit_compile: bool = False):
        if not model.built:
            raise ValueError("MAML needs a built model: give it an Input or call it once on a batch first")
        if task_axis not in TASK_AXES:
            raise ValueError(f"task_axis must be one of {TASK_AXES}, got {task_axis!r}")
        if int(num_inner_steps) < 0:
            raise ValueError(f"num_inner_steps must be >= 0, got {num_inner_steps}")
        self.model, self.loss = model, loss
        self.inner_lr, self.num_inner_steps = inner_lr, int(num_inner_steps)
        self.first_order, self.task_axis, self.training = bool(first_order), task_axis, training
        self.variables = list(model.trainable_variables)
        self.adaptable = _adaptable(model, self.variables, adapted)
        if not self.first_order:
            # First order never differentiates through the moments twice: nothing to warn about.
            warn_inexact_batch_norm(model)
        self._jit = jit_compile
        self._meta_gradients_fn = tf.function(self._meta_gradients, jit_compile=jit_compile)
        self._predict_fn = tf.function(self._adapt_and_predict, jit_compile=jit_compile)
        # one compiled update per optimizer; each closure keeps its optimizer alive, so ids are not reused
        self._update_fns: dict[int, Callable] = {}

    # -- one task -----------------------------------------------------------------------------
    def params(self) -> list[tf.Tensor]:
        """The current values of the trainable variables (the meta-learned initialisation)."""
        return [tf.convert_to_tensor(v) for v in self.variables]

    def forward(self, params: Sequence[tf.Tensor], x: tf.Tensor, state: Sequence[tf.Tensor] | None = None
                ) -> tf.Tensor:
        """The model's outputs on one task's examples `x` with `params` in place of its trainable weights
        (and `state` in place of its non-trainable ones: an export passes its own copies)."""
        if state is None:
            state = [tf.convert_to_tensor(v) for v in self.model.non_trainable_variables]
        out, _ = self.model.stateless_call(list(params), list(state), x, training=self.training)
        return out

    def task_loss(self, params: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor, state=None) -> tf.Tensor:
        """The loss of one task's examples under `params` (a scalar)."""
        value = self.loss(y, self.forward(params, x, state))
        return tf.reduce_sum(value) if value.shape.rank else value

    def inner_step(self, params: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor, inner_lr=None, state=None
                   ) -> list[tf.Tensor]:
        """One SGD step on (x, y) of the adapted weights; second order unless `first_order`."""
        idx = [i for i, a in enumerate(self.adaptable) if a]
        watched = [params[i] for i in idx]
        with tf.GradientTape() as tape:
            tape.watch(watched)
            loss = self.task_loss(params, x, y, state)
        grads = tape.gradient(loss, watched, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        lr = self.inner_lr if inner_lr is None else inner_lr
        new = list(params)
        for i, g in zip(idx, grads):
            if self.first_order:
                g = tf.stop_gradient(g)
            # A Python float becomes a constant of the weight's dtype directly (no float32 rounding).
            step = tf.cast(lr, g.dtype) if tf.is_tensor(lr) else tf.constant(lr, g.dtype)
            new[i] = params[i] - step * g
        return new

    def adapt(self, support_x: tf.Tensor, support_y: tf.Tensor, params: Sequence[tf.Tensor] | None = None,
              num_steps: int | tf.Tensor | None = None, inner_lr=None, state=None) -> FastWeights:
        """Adapt to one task's support set: `num_steps` (default num_inner_steps) SGD steps from
        `params` (default the model's weights). A Python `num_steps` unrolls the steps (so an outer
        tape sees them); a tensor runs them in a tf.while_loop (evaluation, export)."""
        fast = list(self.params() if params is None else params)
        steps = self.num_inner_steps if num_steps is None else num_steps
        if not tf.is_tensor(steps):
            for _ in range(int(steps)):
                fast = self.inner_step(fast, support_x, support_y, inner_lr, state)
            return FastWeights(self, fast, state)
        idx = [i for i, a in enumerate(self.adaptable) if a]

        def body(j, *adapted):
            weights = list(fast)
            for i, w in zip(idx, adapted):
                weights[i] = w
            new = self.inner_step(weights, support_x, support_y, inner_lr, state)
            return (j + 1, *[new[i] for i in idx])

        _, *adapted = tf.while_loop(lambda j, *_: j < steps, body, (tf.constant(0), *[fast[i] for i in idx]))
        for i, w in zip(idx, adapted):
            fast[i] = w
        return FastWeights(self, fast, state)

    # -- a batch of tasks ---------------------------------------------------------------------
    def task_losses(self, tasks: Tasks, params: Sequence[tf.Tensor] | None = None) -> tf.Tensor:
        """Query loss of each task after adapting to its support set: [tasks]."""
        params = self.params() if params is None else list(params)

        def one(task):
            sx, sy, qx, qy = task
            return self.task_loss(self.adapt(sx, sy, params).params, qx, qy)

        return self._map_tasks(one, tuple(tasks))

    def meta_loss(self, tasks: Tasks, params: Sequence[tf.Tensor] | None = None) -> tf.Tensor:
        """The MAML objective: the query losses after adaptation summed over tasks / number of tasks."""
        losses = self.task_losses(tasks, params)
        return tf.reduce_sum(losses) / tf.cast(tf.shape(losses)[0], losses.dtype)

    def _meta_gradients(self, tasks):
        with tf.GradientTape() as tape:
            params = self.params()
            tape.watch(params)
            loss = self.meta_loss(tasks, params)
        grads = tape.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, grads

    def meta_gradients(self, tasks: Tasks) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """(meta-loss, its gradients w.r.t. `self.variables`) for `tasks` = (support_x, support_y,
        query_x, query_y), each with a leading task axis. Compiled (tf.function)."""
        return self._meta_gradients_fn(tuple(tasks))

    def meta_update(self, tasks: Tasks, optimizer: keras.optimizers.Optimizer) -> tf.Tensor:
        """One meta-update of `self.variables` with any Keras optimizer; returns the meta-loss."""
        fn = self._update_fns.get(id(optimizer))
        if fn is None:
            if not optimizer.built:
                optimizer.build(self.variables)  # its slots are created outside the traced function

            def update(tasks):
                # the compiled meta-gradient function: traced once for both entry points
                loss, grads = self._meta_gradients_fn(tasks)
                optimizer.apply(grads, self.variables)
                return loss

            fn = self._update_fns[id(optimizer)] = tf.function(update, jit_compile=self._jit)
        return fn(tuple(tasks))

    def _adapt_and_predict(self, support_x, support_y, query_x, num_steps, inner_lr):
        params = self.params()

        def one(task):
            sx, sy, qx = task
            return self.adapt(sx, sy, params, num_steps, inner_lr)(qx)

        return self._map_tasks(one, (support_x, support_y, query_x))

    def adapt_and_predict(self, support_x: tf.Tensor, support_y: tf.Tensor, query_x: tf.Tensor,
                          num_steps: int | None = None, inner_lr: float | None = None) -> tf.Tensor:
        """Outputs on each task's query set after adapting to its support set: [tasks, Q, ...]
        (num_steps=0: the meta-learned initialisation's outputs). Compiled; no gradients."""
        steps = self.num_inner_steps if num_steps is None else int(num_steps)
        return self._predict_fn(support_x, support_y, query_x, steps, inner_lr)

    def _map_tasks(self, fn: Callable, tasks: tuple) -> tf.Tensor:
        """fn over the leading task axis: an unrolled loop or tf.vectorized_map, results stacked."""
        if self.task_axis == "vectorized_map":
            return tf.vectorized_map(fn, tasks)
        count = tasks[0].shape[0]
        if count is None:
            raise ValueError("task_axis='loop' needs a static number of tasks (the leading axis); use "
                             "task_axis='vectorized_map' for a varying one")
        # unstack, not t[i]: the gradient of one Unpack is one Pack; that of T slices is T
        # full-size StridedSliceGrads summed (see bench/README.md, "the unstack fix").
        per_task = zip(*[tf.unstack(t) for t in tasks])
        return tf.stack([fn(task) for task in per_task])


def _adaptable(model: keras.Model, variables: list, adapted) -> list[bool]:
    if callable(adapted):
        return [bool(adapted(v)) for v in variables]
    if adapted == "all":
        return [True] * len(variables)
    if adapted != "weights":
        raise ValueError(f"adapted must be 'weights', 'all' or a predicate on variables, got {adapted!r}")
    norm_ids = {id(v) for layer in model._flatten_layers(include_self=False, recursive=True)
                if isinstance(layer, _NORMALIZATION) for v in layer.trainable_variables}
    return [id(v) not in norm_ids for v in variables]
