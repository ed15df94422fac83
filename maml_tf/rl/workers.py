"""This process's place in a distributed MAML-TRPO run (``--distribute``), and what the trainer shares.

`maml_tf.rl.distributed` all-reduces the meta-step itself; around it the trainer needs:

* a task slice: every worker draws the same task list from the same seeded task RNG and samples,
  processes and packs only ``tasks[start:end]`` (baselines and advantages are per task, so local);
* a few more sums over workers (`all_sum`): the logged returns pick the best checkpoint, so they
  must be the global ones on every worker, else the workers would disagree about it;
* one writer: the chief (the worker holding replica 0) writes checkpoints, csv and TensorBoard;
* agreement at start (`gather`): every worker must start from the same parameters / checkpoint;
* action noise of its own: worker w draws iteration itr's noise from
  ``np.random.default_rng([seed, w, itr])``, keyed by iteration rather than a running stream
  because only the chief writes checkpoints: a resumed run needs no other worker's RNG state and
  continues exactly as if uninterrupted. So a distributed run (even ``mirrored`` on one host) does
  not reproduce a ``--distribute=none`` run bit for bit; it optimises the same objective.

Worker ids are the global id of the worker's first replica (= the worker index with one replica
per worker), so they are unique however many devices each worker has.
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from maml_tf.errors import MamlError
from maml_tf.rl.config import DISTRIBUTE
from maml_tf.rl.distributed import DistributedMetaObjective
from maml_tf.rl.maml_trpo import MetaObjective


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


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """The strategy of ``--distribute``; create it before any other TensorFlow op (multi_worker needs that).

    mirrored: every GPU of this host, or every logical CPU if it has none; multi_worker: TF_CONFIG.
    """
    from maml_tf.meta import distributed as meta_distributed

    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return meta_distributed.make_strategy("mirrored", [d.name for d in devices])
    if kind == "multi_worker":
        check_tf_config()
        return meta_distributed.make_strategy("multi_worker")
    raise MamlError(f"--distribute must be one of {DISTRIBUTE[1:]} here, got {kind!r}")


class Workers:
    """This worker's share of the meta-batch and the collectives the trainer issues (same order everywhere)."""

    def __init__(self, strategy: tf.distribute.Strategy, obj: MetaObjective, num_tasks: int):
        self.strategy = strategy
        self.objective = DistributedMetaObjective(strategy, obj, num_tasks)  # uneven split -> --meta_batch_size
        self.task_bounds = self.objective.task_bounds
        self.num_local_tasks = self.objective.num_local_tasks
        self.index = self.objective.first_replica
        self.is_chief = self.index == 0
        self.num_replicas = strategy.num_replicas_in_sync
        self._sum = tf.function(self._sum_fn, input_signature=[tf.TensorSpec([None], tf.float64)])

    def local(self, tasks):
        """This worker's tasks of the global (identically drawn) task list."""
        start, end = self.task_bounds
        return tasks[start:end]

    def action_rng(self, seed: int, itr: int) -> np.random.Generator:
        """Iteration `itr`'s action noise on this worker (see the module docstring for why per iteration)."""
        return np.random.default_rng([seed, self.index, itr])

    def _sum_fn(self, x):
        def replica_fn(x):  # this worker's first replica contributes x, its other replicas zeros
            rid = tf.distribute.get_replica_context().replica_id_in_sync_group
            return tf.where(tf.equal(tf.cast(rid, tf.int32), self.index), x, tf.zeros_like(x))
        out = self.strategy.run(replica_fn, args=(x,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)

    def all_sum(self, values) -> np.ndarray:
        """Sum of a float64 vector over workers (a collective: every worker calls it, same length)."""
        return self._sum(tf.constant(np.asarray(values, dtype=np.float64).ravel())).numpy()

    def gather(self, values) -> np.ndarray:
        """Every worker's vector, one row per worker in worker-id order (a collective)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        k = v.size + 1  # a leading 1 marks the rows of workers (other replicas' rows stay 0)
        slots = np.zeros((self.num_replicas, k))
        slots[self.index] = np.concatenate([[1.0], v])
        rows = self.all_sum(slots.ravel()).reshape(self.num_replicas, k)
        return rows[rows[:, 0] == 1.0, 1:]
