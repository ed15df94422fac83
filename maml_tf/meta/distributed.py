"""Supervised MAML across replicas with tf.distribute: the meta-batch sharded, meta-gradients summed.

MAML's meta-gradient is a sum over tasks divided by the meta-batch size, and tasks share nothing in
the inner loop. So each replica runs the ordinary (pure) `MetaLearner._gradients` on its share of
the tasks, with the totals divided by the *global* meta-batch size; the per-replica gradients are
all-reduced with SUM, which gives exactly the single-replica meta-gradient up to float
reassociation; then one TF1 Adam update (clipping, as the reference, on the summed gradient) is
applied in cross-replica context to the mirrored variables, identically on every replica/worker.

Works with `tf.distribute.MirroredStrategy` (several devices of one host) and
`tf.distribute.MultiWorkerMirroredStrategy` (several hosts, TF_CONFIG). Every worker must feed the
same global batch (e.g. the same task stream seed); each replica takes its slice by its global
replica id, so no data moves between hosts. Creating the strategy (``--distribute``) and the
collectives the drivers share live in `maml_tf.strategy`; this module knows no flags: the caller
passes a function that builds the `MetaLearner` (called inside the strategy's scope).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from maml_tf.errors import MamlError
from maml_tf.meta.step import MetaLearner, _summary
from maml_tf.strategy import shard_bounds


class DistributedMetaLearner:
    """A `MetaLearner` whose variables are mirrored and whose steps run on every replica.

    `build()` returns the MetaLearner to wrap; it runs inside the strategy's scope, so its model,
    variables and Adams are the mirrored ones, and its totals' divisor (`config.meta_batch_size`)
    must be the GLOBAL meta-batch: each replica's gradients are then its share of the global ones.
    `learner` is that MetaLearner, so checkpointing (`maml_tf.learner.state_tensors(d.learner)`)
    and evaluation work as usual.
    """

    def __init__(self, strategy: tf.distribute.Strategy, build: Callable[[], MetaLearner]):
        self.strategy = strategy
        with strategy.scope():
            self.learner = build()
        self.global_meta_batch = self.learner.config.meta_batch_size
        shard_bounds(self.global_meta_batch, strategy.num_replicas_in_sync, 0)  # fail early on a bad split
        self._dtype = tf.as_dtype(self.learner.variables[0].dtype).name
        self._train = tf.function(lambda b, summaries: self._step(b, "meta", summaries))
        self._pretrain = tf.function(lambda b, summaries: self._step(b, "pretrain", summaries))

    # -- data --------------------------------------------------------------------------------
    def distribute(self, batch) -> tuple:
        """The global (inputa, labela, inputb, labelb) -> per-replica slices along the task axis."""
        batch = tuple(np.asarray(b, dtype=self._dtype) for b in batch)
        size = batch[0].shape[0]
        if size != self.global_meta_batch or any(b.shape[0] != size for b in batch):
            raise MamlError(f"distributed step: expected {self.global_meta_batch} tasks in every array of the batch, "
                            f"got {[b.shape[0] for b in batch]}")
        n = self.strategy.num_replicas_in_sync

        def shards(array):
            def value_fn(ctx: tf.distribute.ValueContext):
                lo, hi = shard_bounds(size, n, ctx.replica_id_in_sync_group)
                return tf.constant(array[lo:hi])
            return self.strategy.experimental_distribute_values_from_function(value_fn)

        return tuple(shards(b) for b in batch)  # one per-replica value per array

    # -- steps -------------------------------------------------------------------------------
    def _step(self, dist_batch, which: str, summaries: bool):
        learner = self.learner
        loop = learner.train_loop if summaries else learner.lean_train_loop

        def replica_fn(inputa, labela, inputb, labelb):
            return learner._gradients((inputa, labela, inputb, labelb), which, loop)

        grads, result = self.strategy.run(replica_fn, args=tuple(dist_batch))
        sum_ = tf.distribute.ReduceOp.SUM
        grads = [self.strategy.reduce(sum_, g, axis=None) for g in grads]
        summary = {k: self.strategy.reduce(sum_, v, axis=None) for k, v in _summary(result).items()}
        if which == "meta":
            learner.meta_optimizer.apply(learner._clip(grads))
        else:
            learner.pretrain_optimizer.apply(grads)
        return summary

    def meta_train_step(self, batch, summaries: bool = True) -> dict[str, tf.Tensor]:
        """One meta-update from the global batch; returns the global totals (as MetaLearner's)."""
        return self._train(self.distribute(batch), summaries)

    def pretrain_step(self, batch, summaries: bool = True) -> dict[str, tf.Tensor]:
        return self._pretrain(self.distribute(batch), summaries)

    def weights(self) -> list[np.ndarray]:
        return [np.asarray(v.numpy()) for v in self.learner.variables]

