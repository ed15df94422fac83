"""tf.distribute MAML equals the single-replica run (up to float reassociation).

Both strategies need TensorFlow configured before it starts (logical devices; the multi-worker
cluster), so each distributed run happens in a child process running this file as a script; the
single-replica run happens here. float64 and layer norm keep the comparison tight: no BN-fed
biases with rounding-noise gradients that Adam would turn into +-lr steps (golden README quirk 4).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 3
FLAGS = dict(datasource="sinusoid", meta_batch_size=4, update_batch_size=5, update_lr=0.1, num_updates=2,
             norm="layer_norm", meta_lr=0.01)


def _config():
    from maml_tf.config import Config
    return Config(**FLAGS)


def _batches(cfg, steps=STEPS):
    from maml_tf.data.sinusoid import SinusoidTasks
    tasks = SinusoidTasks(cfg.samples_per_class, seed=7)
    return [tasks.split_batch(cfg.meta_batch_size, cfg.update_batch_size, dtype=np.float64) for _ in range(steps)]


def _single_replica():
    from maml_tf.learner import build
    cfg = _config()
    learner = build(cfg, dtype="float64")
    losses = [float(learner.meta_train_step(b)["total_losses2"][cfg.num_updates - 1]) for b in _batches(cfg)]
    return [v.numpy() for v in learner.variables], losses


def _child(mode: str, out: str) -> None:
    """Run STEPS distributed meta-steps and write weights and losses to `out` (npz)."""
    import tensorflow as tf
    from maml_tf.learner import build
    from maml_tf.meta.distributed import DistributedMetaLearner
    from maml_tf.strategy import make_strategy
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    else:
        strategy = make_strategy("multi_worker")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    cfg = _config()
    d = DistributedMetaLearner(strategy, lambda: build(cfg, dtype="float64"))
    losses = [float(d.meta_train_step(b)["total_losses2"][cfg.num_updates - 1]) for b in _batches(cfg)]
    np.savez(out, *d.weights(), losses=np.array(losses))


def _run_children(tmp_path, mode: str, tf_configs: list[dict | None], timeout: float = 240) -> list[dict]:
    procs, outs = [], []
    for i, tf_config in enumerate(tf_configs):
        out = tmp_path / f"{mode}_{i}.npz"
        env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        if tf_config is not None:
            env["TF_CONFIG"] = json.dumps(tf_config)
        procs.append(subprocess.Popen([sys.executable, __file__, mode, str(out)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outs.append(out)
    from _procs import wait_all

    wait_all(procs, timeout, tail=3000)
    results = []
    for out in outs:
        with np.load(out) as z:
            results.append({"weights": [z[f"arr_{i}"] for i in range(len(z.files) - 1)], "losses": z["losses"]})
    return results


def _assert_same(dist, single):
    weights, losses = single
    np.testing.assert_allclose(dist["losses"], losses, rtol=1e-10)
    assert len(dist["weights"]) == len(weights)
    for a, b in zip(dist["weights"], weights):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def single():
    return _single_replica()


@pytest.mark.slow  # two logical-CPU replicas: ~7 s; kept out of the 5-minute default set
def test_mirrored_two_logical_cpus_equals_single_replica(tmp_path, single):
    (dist,) = _run_children(tmp_path, "mirrored", [None])
    _assert_same(dist, single)
    assert not np.allclose(dist["weights"][0], _initial_weights()[0])  # the steps did move the weights


def _free_ports(n):
    from _procs import free_ports

    return free_ports(n)


@pytest.mark.slow  # two TensorFlow processes and a gRPC cluster: about a minute on 2 cores
def test_multi_worker_two_processes_equals_single_replica(tmp_path, single):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    configs = [{"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}} for i in range(2)]
    results = _run_children(tmp_path, "multi_worker", configs)
    for dist in results:  # both workers hold the same weights, equal to the single-replica run
        _assert_same(dist, single)


def _initial_weights():
    from maml_tf.learner import build
    return [v.numpy() for v in build(_config(), dtype="float64").variables]


def test_uneven_meta_batch_is_rejected():
    from maml_tf.errors import MamlError
    from maml_tf.strategy import shard_bounds
    assert shard_bounds(8, 2, 1) == (4, 8)
    with pytest.raises(MamlError, match="does not split evenly over 3 replicas"):
        shard_bounds(8, 3, 0)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _child(sys.argv[1], sys.argv[2])
