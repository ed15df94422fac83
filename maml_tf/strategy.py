"""tf.distribute strategies and the few collectives both drivers share (``--distribute``).

The supervised driver (`maml_tf.run`, through `maml_tf.meta.distributed`) and the RL driver
(`maml_tf.rl.train`, through `maml_tf.rl.workers`) create their strategy, pick their one writer,
check that the workers start alike and split the meta-batch with these same functions. The module
knows no Config and no flags object: callers pass the ``--distribute`` value and sizes themselves.
See README.md "Several GPUs and hosts" for how to launch a run.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from maml_tf.errors import MamlError


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
