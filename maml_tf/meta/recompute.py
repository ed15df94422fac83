"""One inner step whose backward pass recomputes it: memory for time, same numbers.

Why: under the outer tape every unrolled inner step keeps its forward activations and its inner
gradient graph until the meta-gradient is taken, so memory grows with num_updates x activations
(MiniImagenet-size images, many steps). Here a step is a `tf.custom_gradient` function of
(all weights, support batch) -> (outputs before the step, task losses, new adapted weights):

* its forward runs with the outer tape paused (the step's own inner tape still records, which
  `tf.recompute_grad` cannot offer: it stops *every* tape, so the inner gradient came back None);
  between steps only the fast weights stay alive (params-sized);
* its backward re-runs the same step under a fresh tape - whose inside again has the inner tape,
  so the second-order term is exact (and with stop_grad it is stopped as usual) - and returns the
  vector-Jacobian product for every weight, adapted or shared (norm beta/gamma); the support
  inputs and labels get none.

The recomputation executes the same ops on the same values: run eagerly, the meta-gradient is the
default path's bit for bit; compiled, only the order in which gradient terms are summed may differ
(~1e-15 relative in float64; tests/test_recompute.py compares them).
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Sequence

import tensorflow as tf

# step(weights, x, y) -> (outputs, task losses, new weights): the plain (taped) inner step.
StepFn = Callable[[list, tf.Tensor, tf.Tensor], tuple]


def recomputed_step(step: StepFn, fast: Sequence[tf.Tensor], adaptable: Sequence[bool], x, y,
                    pause: Callable[[], ContextManager] | None = None):
    """`step(fast, x, y)` with the same results, but its backward recomputes it instead of storing.

    `pause` returns a context in which the caller's outer tape does not record (its
    `stop_recording`): the forward's intermediates are then not kept by that tape in eager mode
    (inside a tf.function nothing references them anyway). Non-adapted weights pass through as is.
    """
    fast = list(fast)
    n = len(fast)
    idx = [i for i, a in enumerate(adaptable) if a]

    @tf.custom_gradient
    def run(*args):
        weights, xs, ys = list(args[:n]), args[n], args[n + 1]
        with pause() if pause is not None else contextlib.nullcontext():
            out, loss, new = step(weights, xs, ys)
        results = (out, loss, *[new[i] for i in idx])

        def grad(*upstream):
            weights_now = _after(weights, upstream)
            with tf.GradientTape() as tape:
                tape.watch(weights_now)
                r_out, r_loss, r_new = step(weights_now, xs, ys)
            again = (r_out, r_loss, *[r_new[i] for i in idx])
            pairs = [(t, u) for t, u in zip(again, upstream) if u is not None]
            grads = tape.gradient([t for t, _ in pairs], weights_now, output_gradients=[u for _, u in pairs],
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return (*grads, None, None)

        return results, grad

    results = run(*fast, x, y)
    new = list(fast)
    for k, i in enumerate(idx):
        new[i] = results[2 + k]
    return results[0], results[1], new


def _after(weights: list, upstream: Sequence) -> list:
    """`weights`, made to depend on every upstream gradient in a graph, with unchanged values.

    Without it the executor may run every step's recomputation as soon as its inputs exist (all
    during the forward pass), and graph optimisers (grappler's or XLA's CSE) may merge it with the
    original forward: both would keep the activations alive again. Every upstream gradient counts:
    those of outputs the caller ignores are zeros the tape makes at once, so one of them alone
    would not hold the recomputation back. A data dependency, unlike a control dependency, is also
    respected by XLA. `where` with a never-true condition returns the weights bit for bit.
    """
    if tf.executing_eagerly():
        return list(weights)
    probes = [tf.math.is_nan(tf.reshape(u, [-1])[:1]) for u in upstream if u is not None]
    if not probes:
        return list(weights)
    probe = tf.concat(probes, 0)
    never = tf.reduce_any(tf.logical_and(probe, tf.logical_not(probe)))
    return [tf.where(never, tf.zeros_like(w), w) for w in weights]
