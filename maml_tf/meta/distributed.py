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
replica id, so no data moves between hosts. `flag_strategy` is what ``--distribute`` (main.py and
the RL driver) creates; see README.md "Several GPUs and hosts" for how to launch it.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.meta.step import MetaLearner, _summary


def make_strategy(kind: str, devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """"mirrored" (devices of this host; all GPUs by default) or "multi_worker" (hosts from TF_CONFIG)."""
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if kind == "multi_worker":
        if devices:
            raise MamlError("multi_worker strategy: devices come from TF_CONFIG and each worker's GPUs, "
                            "not from a device list")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise MamlError(f"unknown strategy {kind!r}; expected 'mirrored' or 'multi_worker'")


def check_tf_config() -> dict:
    """The parsed TF_CONFIG that ``--distribute=multi_worker`` needs (cluster and this task)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise MamlError("--distribute=multi_worker needs TF_CONFIG (the cluster's hosts and this worker's index), "
                        'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                        '"task": {"type": "worker", "index": 0}}\'')
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as e:
        raise MamlError(f"--distribute=multi_worker: TF_CONFIG is not valid JSON ({e})") from None
    if not isinstance(spec, dict) or not spec.get("cluster") or not isinstance(spec.get("task"), dict):
        raise MamlError("--distribute=multi_worker: TF_CONFIG must hold a 'cluster' and this process's 'task'")
    return spec


def flag_strategy(kind: str) -> tf.distribute.Strategy:
    """The strategy of ``--distribute``; create it before any other TensorFlow op (multi_worker needs that).

    mirrored: every GPU of this host, or every logical CPU if it has none; multi_worker: TF_CONFIG.
    """
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return make_strategy("mirrored", [d.name for d in devices])
    if kind == "multi_worker":
        check_tf_config()
        return make_strategy("multi_worker")
    raise MamlError(f"--distribute={kind!r}: expected 'mirrored' or 'multi_worker'")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process is the one writer (worker 0 / the 'chief' task; always True on one host)."""
    return bool(strategy.extended.should_checkpoint)


def replica_rows(strategy: tf.distribute.Strategy, values: Sequence[float]) -> np.ndarray:
    """Every replica's copy of its worker's `values`, one row per global replica id (a collective).

    Each replica fills only its own row of a zero matrix and the matrices are summed, so the result
    (exact: one non-zero term per entry) is the same on every worker and every worker can raise the
    same error when they disagree, instead of one raising while the others wait in a collective.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    n = strategy.num_replicas_in_sync

    def value_fn(ctx: tf.distribute.ValueContext):
        rows = np.zeros((n, v.size))
        rows[ctx.replica_id_in_sync_group] = v
        return tf.constant(rows)

    per_replica = strategy.experimental_distribute_values_from_function(value_fn)
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()


def shard_bounds(global_size: int, num_replicas: int, replica: int) -> tuple[int, int]:
    """[start, end) of `replica`'s tasks; the meta-batch must split evenly (equal work per replica)."""
    if global_size % num_replicas:
        raise MamlError(f"meta-batch of {global_size} tasks does not split evenly over {num_replicas} replicas; "
                        f"choose --meta_batch_size as a multiple of {num_replicas}")
    share = global_size // num_replicas
    return replica * share, (replica + 1) * share


class DistributedMetaLearner:
    """A `MetaLearner` whose variables are mirrored and whose steps run on every replica.

    `learner` is the wrapped MetaLearner (its model, variables and Adams are the mirrored ones), so
    checkpointing (`experiment.state_tensors(d.learner)`) and evaluation work as usual.
    """

    def __init__(self, strategy: tf.distribute.Strategy, cfg: Config, dtype: str = "float32"):
        from maml_tf.learner import build  # late: experiment imports this package's step module

        self.strategy = strategy
        self.global_meta_batch = cfg.meta_batch_size
        shard_bounds(cfg.meta_batch_size, strategy.num_replicas_in_sync, 0)  # fail early on a bad split
        with strategy.scope():
            # The totals (and so the gradients) of each replica are divided by the GLOBAL meta-batch.
            self.learner = build(cfg, dtype=dtype, meta_batch_size=cfg.meta_batch_size)
        self._dtype = dtype
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

