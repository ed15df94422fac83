"""The compiled meta-train step: outer tape around the inner loop, clipping, Adam.

`MetaLearner` owns a model, its two optimisers (the reference builds one Adam for pretraining on
the pre-update loss and one for the meta-update) and the compiled functions. The gradient part is a
pure function of (weights, batch) so that a tf.distribute strategy can run it per replica and
all-reduce the result (see maml_tf.meta.distributed).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

from maml_tf.meta.adam import TF1Adam
from maml_tf.meta.adapt import InnerLoop, adapt_and_evaluate, totals


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    loop: InnerLoop
    meta_lr: float = 1e-3
    meta_batch_size: int = 25  # the divisor of the totals (global meta-batch under tf.distribute)
    clip_value: float | None = None  # miniimagenet clips meta-gradients to [-10, 10]
    jit_compile: bool = False


class MetaLearner:
    """MAML on one model: `meta_train_step`, `pretrain_step`, `evaluate`, `meta_gradients`."""

    def __init__(self, model, config: MetaConfig):
        self.model = model
        self.config = config
        self.variables = list(model.trainable_variables)
        self.meta_optimizer = TF1Adam(self.variables, config.meta_lr, name="meta_adam")
        self.pretrain_optimizer = TF1Adam(self.variables, config.meta_lr, name="pretrain_adam")
        # Training fetches only the first num_updates steps (the meta-loss and the summaries); the
        # reference's TF1 session prunes the other evaluated steps the same way, so the train steps
        # do not build them (10x less work for Omniglot's 1-step training, which evaluates 10).
        self.train_loop = dataclasses.replace(config.loop, num_steps=config.loop.num_updates)
        # Without summaries a training step also skips the query pass after intermediate steps.
        self.lean_train_loop = dataclasses.replace(self.train_loop, query_every_step=False)
        jit = config.jit_compile
        self._train = tf.function(self._train_step, jit_compile=jit)
        self._pretrain = tf.function(self._pretrain_step, jit_compile=jit)
        self._eval = tf.function(self._evaluate, jit_compile=jit)
        self._grads = tf.function(self._gradients, jit_compile=jit)

    # -- pure parts -------------------------------------------------------------------------
    def compute(self, params, batch, loop: InnerLoop | None = None, outer_tape=None) -> dict[str, tf.Tensor]:
        """Per-task results and totals for `batch` = (inputa, labela, inputb, labelb)."""
        loop = loop or self.config.loop
        result = adapt_and_evaluate(self.model, params, *batch, loop=loop, outer_tape=outer_tape)
        result.update(totals(result, self.config.meta_batch_size))
        return result

    def _gradients(self, batch, which: str = "meta", loop: InnerLoop | None = None):
        """Gradients of the meta-loss (or the pretrain loss) w.r.t. the trainable variables."""
        with tf.GradientTape() as tape:
            params = [v.value for v in self.variables]
            for p in params:
                tape.watch(p)
            result = self.compute(params, batch, loop=loop, outer_tape=tape)
            loop = loop or self.config.loop
            if which == "meta":
                index = self.config.loop.num_updates - 1 if loop.query_every_step else -1
                objective = result["total_losses2"][index]
            else:
                objective = result["total_loss1"]
        grads = tape.gradient(objective, params)
        return grads, result

    def _clip(self, grads):
        c = self.config.clip_value
        if c is None:
            return grads
        return [tf.clip_by_value(g, -c, c) for g in grads]

    # -- drivers -----------------------------------------------------------------------------
    def _train_step(self, batch, summaries: bool):
        grads, result = self._gradients(batch, "meta", self.train_loop if summaries else self.lean_train_loop)
        self.meta_optimizer.apply(self._clip(grads))
        return _summary(result)

    def _pretrain_step(self, batch, summaries: bool):
        grads, result = self._gradients(batch, "pretrain", self.train_loop if summaries else self.lean_train_loop)
        self.pretrain_optimizer.apply(grads)
        return _summary(result)

    def _evaluate(self, batch):
        params = [v.value for v in self.variables]
        return self.compute(params, batch)

    def meta_train_step(self, batch, summaries: bool = True) -> dict[str, Any]:
        """One meta-update. With summaries=False the returned total_losses2/total_accuracies2 hold
        only the value after the last training step (intermediate query passes are skipped)."""
        return self._train(tuple(batch), summaries)

    def pretrain_step(self, batch, summaries: bool = True) -> dict[str, Any]:
        return self._pretrain(tuple(batch), summaries)

    def evaluate(self, batch) -> dict[str, Any]:
        """Per-task results without any update (the test protocol, validation)."""
        return self._eval(tuple(batch))

    def meta_gradients(self, batch, which: str = "meta"):
        """(unclipped gradients, per-task results) — what parity checks compare."""
        return self._grads(tuple(batch), which)


def _summary(result: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    keys = ("total_loss1", "total_losses2", "total_accuracy1", "total_accuracies2")
    return {k: result[k] for k in keys if k in result}
