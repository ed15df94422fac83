"""The inner loop: per-task fast weights by SGD on the support set, evaluated on the query set.

All tasks of a meta-batch are computed together: adapted weights get a leading task axis, and the
gradient of the *sum* of the task losses w.r.t. those per-task weights is exactly each task's own
gradient (tasks share nothing). Second-order MAML falls out of running this under an outer
GradientTape; `stop_grad` cuts the inner gradients (first-order MAML), as the reference's flag does.
`recompute` trades time for memory on long inner loops (maml_tf.meta.recompute).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Sequence

import tensorflow as tf

from maml_tf.models.fast_weights import substitute
from maml_tf.meta import losses
from maml_tf.meta.recompute import recomputed_step


@dataclasses.dataclass(frozen=True)
class InnerLoop:
    """The inner-loop hyperparameters.

    num_updates: steps whose result feeds the meta-loss (training); num_steps: steps evaluated
    (max(test_num_updates, num_updates) in the reference); the extra ones are not differentiated.
    """

    update_lr: float
    num_updates: int
    num_steps: int
    stop_grad: bool = False
    classification: bool = False
    update_batch_size: int = 1  # K, the divisor of the classification loss
    # False: query outputs only after the last unrolled step (what a training step needs when no
    # summary is written; the reference's session prunes the others the same way).
    query_every_step: bool = True
    # True: the unrolled steps' backward passes recompute them instead of the outer tape storing
    # their activations (maml_tf.meta.recompute); the same numbers, less memory, more time.
    recompute: bool = False

    def loss(self, pred: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
        if self.classification:
            return losses.xent(pred, label, self.update_batch_size)
        return losses.mse(pred, label)


def forward(model, params: Sequence[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """Run the Keras `model` with `params` in place of its trainable variables."""
    with substitute(model.trainable_variables, params):
        return model(x)


def per_task(params: Sequence[tf.Tensor], adaptable: Sequence[bool], num_tasks) -> list[tf.Tensor]:
    """Give each adapted weight a leading task axis (one copy per task); others stay shared."""
    return [tf.broadcast_to(p, tf.concat([[num_tasks], tf.shape(p)], 0)) if a else p
            for p, a in zip(params, adaptable)]


def sgd_step(model, fast: list[tf.Tensor], adaptable: Sequence[bool], x, y, loop: InnerLoop,
             pause: Callable | None = None):
    """One inner step on (x, y): returns (outputs before the step, task losses, new fast weights).

    With `loop.recompute`, `pause` (the outer tape's stop_recording) keeps that tape out of the forward.
    """
    if loop.recompute:
        plain = dataclasses.replace(loop, recompute=False)
        return recomputed_step(lambda w, xs, ys: sgd_step(model, w, adaptable, xs, ys, plain),
                               fast, adaptable, x, y, pause)
    idx = [i for i, a in enumerate(adaptable) if a]
    with tf.GradientTape() as tape:
        for i in idx:
            tape.watch(fast[i])
        out = forward(model, fast, x)
        task_loss = loop.loss(out, y)
        objective = tf.reduce_sum(task_loss)
    grads = tape.gradient(objective, [fast[i] for i in idx])
    new = list(fast)
    for i, g in zip(idx, grads):
        if loop.stop_grad:
            g = tf.stop_gradient(g)
        lr = loop.update_lr
        # A tensor step size (a SavedModel input) is used as is; a Python float becomes a constant of
        # the weights' dtype directly (tf.cast would round it through float32 first).
        lr = tf.cast(lr, g.dtype) if tf.is_tensor(lr) else tf.constant(lr, g.dtype)
        new[i] = fast[i] - lr * g
    return out, task_loss, new


def adapt_and_evaluate(model, params: Sequence[tf.Tensor], inputa, labela, inputb, labelb,
                       loop: InnerLoop, outer_tape: tf.GradientTape | None = None) -> dict[str, tf.Tensor]:
    """The reference's `task_metalearn` for all tasks at once.

    Returns per-task quantities: outputas [T,B,D], lossesa, and for each step j=1..num_steps the
    query outputs/losses after j steps (stacked on a leading step axis; only the last unrolled step
    when `loop.query_every_step` is False), plus accuracies when
    classifying. The steps the meta-loss depends on (all of them without `outer_tape`: then only
    the first) are unrolled under the tape; the remaining evaluation-only steps run in a
    tf.while_loop with the tape paused, so a 10-step evaluation traces one step, not ten.
    """
    adaptable = model.adaptable
    fast = per_task(params, adaptable, tf.shape(inputa)[0])
    unrolled = min(loop.num_steps, max(1, loop.num_updates if outer_tape is not None else 1))
    outputbs, lossesb = [], []
    outputas = lossesa = None
    pause = outer_tape.stop_recording if outer_tape is not None else None
    for j in range(unrolled):
        outa, lossa, fast = sgd_step(model, fast, adaptable, inputa, labela, loop, pause)
        if j == 0:
            outputas, lossesa = outa, lossa
        if loop.query_every_step or j == unrolled - 1:
            outb = forward(model, fast, inputb)
            outputbs.append(outb)
            lossesb.append(loop.loss(outb, labelb))
    outputbs, lossesb = tf.stack(outputbs), tf.stack(lossesb)
    rest = loop.num_steps - unrolled if loop.query_every_step else 0
    if rest > 0:
        paused = outer_tape.stop_recording() if outer_tape is not None else contextlib.nullcontext()
        with paused:
            # Evaluation-only steps: the outer tape does not see them, so there is nothing to recompute.
            more_out, more_loss = _evaluation_steps(model, fast, adaptable, inputa, labela, inputb, labelb,
                                                    dataclasses.replace(loop, recompute=False), rest)
        outputbs = tf.concat([outputbs, more_out], 0)
        lossesb = tf.concat([lossesb, more_loss], 0)
    result = {"outputas": outputas, "lossesa": lossesa, "outputbs": outputbs, "lossesb": lossesb}
    if loop.classification:
        result["accuraciesa"] = losses.accuracy(outputas, labela)
        result["accuraciesb"] = tf.map_fn(lambda o: losses.accuracy(o, labelb), outputbs,
                                          fn_output_signature=outputbs.dtype)
    return result


def _evaluation_steps(model, fast, adaptable, inputa, labela, inputb, labelb, loop: InnerLoop, steps: int):
    """`steps` more inner steps in a tf.while_loop: query outputs and losses after each, stacked."""
    out_ta = tf.TensorArray(inputb.dtype if hasattr(inputb, "dtype") else tf.float32, size=steps)
    loss_ta = tf.TensorArray(out_ta.dtype, size=steps)

    def body(j, fast_w, out_ta, loss_ta):
        _, _, fast_w = sgd_step(model, list(fast_w), adaptable, inputa, labela, loop)
        outb = forward(model, fast_w, inputb)
        return j + 1, fast_w, out_ta.write(j, outb), loss_ta.write(j, loop.loss(outb, labelb))

    _, _, out_ta, loss_ta = tf.while_loop(lambda j, *_: j < steps, body,
                                          (tf.constant(0), list(fast), out_ta, loss_ta))
    return out_ta.stack(), loss_ta.stack()


def totals(result: dict[str, tf.Tensor], meta_batch_size) -> dict[str, tf.Tensor]:
    """The reference's totals: sums over tasks (and examples) divided by meta_batch_size."""
    mb = tf.cast(meta_batch_size, result["lossesa"].dtype)
    steps_axes = list(range(1, result["lossesb"].shape.rank))
    out = {"total_loss1": tf.reduce_sum(result["lossesa"]) / mb,
           "total_losses2": tf.reduce_sum(result["lossesb"], axis=steps_axes) / mb}
    if "accuraciesa" in result:
        out["total_accuracy1"] = tf.reduce_sum(result["accuraciesa"]) / mb
        out["total_accuracies2"] = tf.reduce_sum(result["accuraciesb"], axis=1) / mb
    return out

