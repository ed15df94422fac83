"""This process's place in a distributed MAML-TRPO run (``--distribute``), and what the trainer shares.

`maml_tf.rl.distributed` all-reduces the meta-step itself; around it the trainer needs:

* a task slice: every worker draws the same task list from the same seeded task RNG and samples,
  processes and packs only ``tasks[start:end]`` (baselines and advantages are per task, so local);
* a few more sums over workers (`all_sum`): the logged returns pick the best checkpoint, so they
  must be the global ones on every worker, else the workers would disagree about it;
* one writer: the chief (the worker holding replica 0) writes checkpoints, csv and TensorBoard;
* agreement at start (`maml_tf.strategy.replica_rows`, as the supervised driver): every worker
  must start from the same parameters / checkpoint;
* action noise of its own: worker w draws iteration itr's noise from
  ``np.random.default_rng([seed, w, itr])``, keyed by iteration rather than a running stream
  because only the chief writes checkpoints: a resumed run needs no other worker's RNG state and
  continues exactly as if uninterrupted. So a distributed run (even ``mirrored`` on one host) does
  not reproduce a ``--distribute=none`` run bit for bit; it optimises the same objective.

Worker ids are the global id of the worker's first replica (= the worker index with one replica
per worker), so they are unique however many devices each worker has.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from maml_tf.strategy import is_chief
from maml_tf.rl.distributed import DistributedMetaObjective
from maml_tf.rl.maml_trpo import MetaObjective


class Workers:
    """This worker's share of the meta-batch and the collectives the trainer issues (same order everywhere)."""

    def __init__(self, strategy: tf.distribute.Strategy, obj: MetaObjective, num_tasks: int):
        self.strategy = strategy
        self.objective = DistributedMetaObjective(strategy, obj, num_tasks)  # uneven split -> --meta_batch_size
        self.task_bounds = self.objective.task_bounds
        self.num_local_tasks = self.objective.num_local_tasks
        self.index = self.objective.first_replica
        self.is_chief = is_chief(strategy)  # the same test as the supervised driver's
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
