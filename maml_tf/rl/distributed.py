"""MAML-TRPO across replicas and workers with tf.distribute: tasks sharded, sums all-reduced.

The meta-objective is a sum over tasks once its normalisers are global: the surrogate loss is the
mean over the T tasks of each task's masked mean, so replica r contributes
``loss_r * T_r / T``; the KL is timestep-weighted over the M post-update timesteps of all tasks
(``sum(kl * mask) / M``), so replica r contributes ``kl_r * M_r / M``, where ``loss_r``, ``kl_r``
are the ordinary `MetaObjective` values on its T_r tasks (M_r timesteps). Gradients and
Hessian-vector products (finite-difference or exact) are linear in these contributions, so the
same weights apply to them, and a SUM all-reduce returns the single-replica values up to float
reassociation. Averaging per-replica means instead would be wrong whenever replicas hold
different numbers of timesteps. The inner step is per task, so it needs no communication.

Every reduced value is identical on every worker, so the numpy CG and line search of
`trpo.trpo_step` run identically everywhere and every worker takes the same step (and issues
the same sequence of collectives, which is what keeps them in lock-step).

How a trainer uses it (one program per worker; for several hosts create
``maml_tf.strategy.make_strategy("multi_worker")`` before any other TensorFlow op)::

    d = DistributedMetaObjective(strategy, obj, num_tasks=cfg.meta_batch_size)
    start, end = d.task_bounds                      # this worker's slice of the meta-batch
    goals = sample_tasks(env_id, cfg.meta_batch_size, task_rng)[start:end]  # same rng on all workers
    ... sample, process and pack ONLY these tasks -> local b0; adapt (obj.adapted_params is per
    task, no communication) and sample -> local b1 ...
    res, times = meta_trpo_step(d, theta, b0, b1, max_kl)  # theta: the same on every worker

Each worker holds only its own tasks' batches (padded to its own longest task); within a worker
the batch is split evenly over its local replicas by global replica id (`shard_bounds`). Logged
statistics such as the average return need their own all-reduce, and only worker 0 should write
checkpoints.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from maml_tf.errors import MamlError
from maml_tf.strategy import shard_bounds
from maml_tf.rl import maml_trpo, trpo
from maml_tf.rl.maml_trpo import Batch, MetaObjective

_SUM = tf.distribute.ReduceOp.SUM


class GlobalCounts(NamedTuple):
    """The objective's global normalisers, all-reduced once per meta-step (see `global_counts`)."""
    tasks: tf.Tensor      # T: tasks of all workers (the loss's divisor)
    timesteps: tf.Tensor  # M: real post-update timesteps of all tasks (the KL's divisor)


def local_replica_ids(strategy: tf.distribute.Strategy) -> list[int]:
    """Global ids of the replicas that run in this process (all of them for MirroredStrategy)."""
    ids: list[int] = []

    def value_fn(ctx: tf.distribute.ValueContext):
        ids.append(int(ctx.replica_id_in_sync_group))
        return tf.constant(0)

    strategy.experimental_distribute_values_from_function(value_fn)
    return sorted(ids)


class DistributedMetaObjective:
    """`MetaObjective`'s loss, KL, gradients and HVPs, summed over all replicas' tasks.

    Arguments are this worker's LOCAL batches (tasks ``task_bounds``) and the `GlobalCounts`;
    results are the global values, identical on every worker. ``bind(counts)`` gives an object
    with `MetaObjective`'s call signature, which is what `maml_trpo.meta_trpo_step` drives.
    """

    def __init__(self, strategy: tf.distribute.Strategy, obj: MetaObjective, num_tasks: int):
        self.strategy = strategy
        self.obj = obj
        self.dtype = obj.dtype
        self.num_tasks = int(num_tasks)
        n = strategy.num_replicas_in_sync
        shard_bounds(self.num_tasks, n, 0)  # fail early on an uneven split
        if self.num_tasks < n:
            raise MamlError(f"meta-batch of {self.num_tasks} tasks is smaller than the {n} replicas; "
                            f"every replica needs at least one task")
        self.share = self.num_tasks // n
        ids = local_replica_ids(strategy)
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise MamlError(f"this worker's replica ids {ids} are not contiguous; cannot give it one task slice")
        self.first_replica = ids[0]
        self.task_bounds = (shard_bounds(self.num_tasks, n, ids[0])[0], shard_bounds(self.num_tasks, n, ids[-1])[1])
        self.num_local_tasks = self.task_bounds[1] - self.task_bounds[0]

        theta_spec, b_spec, _ = obj.loss_and_kl.input_signature
        scalar = tf.TensorSpec([], self.dtype)
        c_spec = GlobalCounts(scalar, scalar)
        # Fixed signatures: one trace per function on every worker whatever the padded lengths, so
        # all workers build their collectives in the same order.
        self._counts = tf.function(self._counts_fn, input_signature=[b_spec])
        self._loss_and_kl = tf.function(self._loss_and_kl_sum, input_signature=[theta_spec, b_spec, b_spec, c_spec])
        self._loss_and_grad = tf.function(self._loss_and_grad_sum, input_signature=[theta_spec, b_spec, b_spec, c_spec])
        self._kl_grad = tf.function(self._kl_grad_sum, input_signature=[theta_spec, b_spec, b_spec, c_spec])
        self._kl_hvp_exact = tf.function(self._kl_hvp_exact_sum,
                                         input_signature=[theta_spec, theta_spec, b_spec, b_spec, c_spec])
        self._kl_hvp_fd = tf.function(self._kl_hvp_fd_sum,
                                      input_signature=[theta_spec, theta_spec, b_spec, b_spec, c_spec, scalar])

    # ------------------------------------------------------------------ replica side
    def _slice(self, b: Batch) -> Batch:
        """This replica's rows of the worker-local batch."""
        rid = tf.distribute.get_replica_context().replica_id_in_sync_group
        lo = (tf.cast(rid, tf.int32) - self.first_replica) * self.share
        return Batch(*(x[lo:lo + self.share] for x in b))

    def _weights(self, b1: Batch, counts: GlobalCounts) -> tuple[tf.Tensor, tf.Tensor]:
        """(T_r / T, M_r / M): this replica's share of the loss's and the KL's normaliser."""
        t_r = tf.cast(tf.shape(b1.mask)[0], self.dtype)
        return t_r / counts.tasks, tf.reduce_sum(b1.mask) / counts.timesteps

    def _counts_fn(self, b1):
        def replica_fn(b1):
            b1 = self._slice(b1)
            return GlobalCounts(tf.cast(tf.shape(b1.mask)[0], self.dtype), tf.reduce_sum(b1.mask))
        return GlobalCounts(*self._sum(replica_fn, b1))

    def _sum(self, replica_fn, *args):
        """Run replica_fn(*args) on every replica and SUM-reduce its outputs over all replicas."""
        out = self.strategy.run(replica_fn, args=args)
        return tf.nest.map_structure(lambda v: self.strategy.reduce(_SUM, v, axis=None), out)

    # cross-replica bodies of the compiled functions (one method each: one trace each)
    def _loss_and_kl_sum(self, *args):
        return self._sum(self._loss_and_kl_r, *args)

    def _loss_and_grad_sum(self, *args):
        return self._sum(self._loss_and_grad_r, *args)

    def _kl_grad_sum(self, *args):
        return self._sum(self._kl_grad_r, *args)

    def _kl_hvp_exact_sum(self, *args):
        return self._sum(self._kl_hvp_exact_r, *args)

    def _kl_hvp_fd_sum(self, *args):
        return self._sum(self._kl_hvp_fd_r, *args)

    def _loss_and_kl_r(self, theta, b0, b1, counts):
        b0, b1 = self._slice(b0), self._slice(b1)
        w_loss, w_kl = self._weights(b1, counts)
        loss, kl = self.obj.loss_and_kl(theta, b0, b1)
        return loss * w_loss, kl * w_kl

    def _loss_and_grad_r(self, theta, b0, b1, counts):
        b0, b1 = self._slice(b0), self._slice(b1)
        w_loss, _ = self._weights(b1, counts)
        loss, grad = self.obj.loss_and_grad(theta, b0, b1)
        return loss * w_loss, grad * w_loss

    def _kl_grad_r(self, theta, b0, b1, counts):
        b0, b1 = self._slice(b0), self._slice(b1)
        return self.obj.kl_grad(theta, b0, b1) * self._weights(b1, counts)[1]

    def _kl_hvp_exact_r(self, theta, v, b0, b1, counts):
        b0, b1 = self._slice(b0), self._slice(b1)
        return self.obj.kl_hvp_exact(theta, v, b0, b1) * self._weights(b1, counts)[1]

    def _kl_hvp_fd_r(self, theta, v, b0, b1, counts, base_eps):
        # eps depends on ||theta|| only, so every replica probes the same points.
        b0, b1 = self._slice(b0), self._slice(b1)
        return self.obj.kl_hvp_fd(theta, v, b0, b1, base_eps) * self._weights(b1, counts)[1]

    # ------------------------------------------------------------------ worker side
    def _check(self, **batches: Batch) -> None:
        for name, b in batches.items():
            sizes = {int(x.shape[0]) for x in b}
            if sizes != {self.num_local_tasks}:
                raise MamlError(f"distributed MAML-TRPO: {name} must hold this worker's {self.num_local_tasks} "
                                f"tasks {self.task_bounds} (of {self.num_tasks}), got leading sizes {sorted(sizes)}")

    def global_counts(self, b1: Batch) -> GlobalCounts:
        """All-reduce the task count and the post-update timestep count (a collective: call on all workers)."""
        self._check(b1=b1)
        empty = np.flatnonzero(np.asarray(b1.mask).sum(axis=1) <= 0)
        if empty.size:
            raise MamlError(f"distributed MAML-TRPO: local post-update tasks {empty.tolist()} have no timesteps "
                            "(every task needs at least one sampled step)")
        counts = self._counts(b1)
        if int(round(float(counts.tasks))) != self.num_tasks:
            raise MamlError(f"distributed MAML-TRPO: the workers hold {float(counts.tasks):.0f} tasks in all, "
                            f"expected num_tasks={self.num_tasks} (same meta-batch size on every worker?)")
        return counts

    def loss_and_kl(self, theta, b0: Batch, b1: Batch, counts: GlobalCounts) -> tuple[tf.Tensor, tf.Tensor]:
        self._check(b0=b0, b1=b1)
        return self._loss_and_kl(theta, b0, b1, counts)

    def loss_and_grad(self, theta, b0: Batch, b1: Batch, counts: GlobalCounts) -> tuple[tf.Tensor, tf.Tensor]:
        self._check(b0=b0, b1=b1)
        return self._loss_and_grad(theta, b0, b1, counts)

    def kl_grad(self, theta, b0: Batch, b1: Batch, counts: GlobalCounts) -> tf.Tensor:
        self._check(b0=b0, b1=b1)
        return self._kl_grad(theta, b0, b1, counts)

    def kl_hvp_exact(self, theta, v, b0: Batch, b1: Batch, counts: GlobalCounts) -> tf.Tensor:
        self._check(b0=b0, b1=b1)
        return self._kl_hvp_exact(theta, v, b0, b1, counts)

    def kl_hvp_fd(self, theta, v, b0: Batch, b1: Batch, counts: GlobalCounts, base_eps) -> tf.Tensor:
        self._check(b0=b0, b1=b1)
        return self._kl_hvp_fd(theta, v, b0, b1, counts, base_eps)

    def bind(self, counts: GlobalCounts) -> "BoundObjective":
        return BoundObjective(self, counts)


class BoundObjective:
    """A `DistributedMetaObjective` with one meta-step's counts fixed: `MetaObjective`'s call signature."""

    def __init__(self, d: DistributedMetaObjective, counts: GlobalCounts):
        self.d, self.counts, self.dtype = d, counts, d.dtype

    def loss_and_kl(self, theta, b0, b1):
        return self.d.loss_and_kl(theta, b0, b1, self.counts)

    def loss_and_grad(self, theta, b0, b1):
        return self.d.loss_and_grad(theta, b0, b1, self.counts)

    def kl_grad(self, theta, b0, b1):
        return self.d.kl_grad(theta, b0, b1, self.counts)

    def kl_hvp_exact(self, theta, v, b0, b1):
        return self.d.kl_hvp_exact(theta, v, b0, b1, self.counts)

    def kl_hvp_fd(self, theta, v, b0, b1, base_eps):
        return self.d.kl_hvp_fd(theta, v, b0, b1, self.counts, base_eps)


def meta_trpo_step(d: DistributedMetaObjective, theta: np.ndarray, b0: Batch, b1: Batch, max_kl: float,
                   hvp: str = "fd", fd_base_eps: float = trpo.REFERENCE_FD_BASE_EPS,
                   cg_iters: int = trpo.REFERENCE_CG_ITERS) -> tuple[trpo.TRPOResult, dict]:
    """`maml_trpo.meta_trpo_step` on the global objective; call it on every worker with the same theta.

    b0/b1 are this worker's local batches (tasks ``d.task_bounds``). One extra collective computes
    the global counts; then the single-replica driver runs unchanged on the all-reduced values.
    """
    if hvp not in ("fd", "exact"):  # before the first collective, so a bad flag fails on every worker
        raise ValueError(f"hvp must be 'fd' (reference) or 'exact', got {hvp!r}")
    counts = d.global_counts(b1)
    return maml_trpo.meta_trpo_step(d.bind(counts), theta, b0, b1, max_kl, hvp, fd_base_eps, cg_iters)
