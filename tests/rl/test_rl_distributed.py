"""Distributed MAML-TRPO equals the single-replica objective and step (up to float reassociation).

As in tests/test_distributed.py, each distributed run is a child process running this file as a
script (logical devices and the multi-worker cluster must be configured before TensorFlow starts);
the single-replica reference is computed here. Each worker holds only its own tasks, padded to its
own longest task. The tasks have unequal post-update lengths, so the two halves hold different
numbers of KL timesteps: averaging per-replica KL means instead of all-reducing the sums and the
global timestep count would fail (checked below).
"""
from __future__ import annotations

import functools
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ALPHA = 0.3
MAX_KL = 0.01
LEN0 = (9, 6, 8, 4)  # pre-update timesteps per task
LEN1 = (7, 9, 3, 5)  # post-update: 16 timesteps in tasks 0-1, 8 in tasks 2-3
KEYS = ("loss", "kl", "loss_g", "grad", "kl_grad", "hvp_exact", "hvp_fd", "hvp_fd_small",
        "step_fd", "step_exact", "step_info")


@functools.lru_cache(maxsize=None)
def _problem():
    """float64 Gaussian policy, 4 tasks; b1 sampled from the adapted policies (KL 0 at theta)."""
    import tensorflow as tf
    from maml_tf.rl.maml_trpo import Batch, MetaObjective
    from maml_tf.rl.policies import GaussianMLPPolicy

    pol = GaussianMLPPolicy(3, 2, hidden_sizes=(4,), hidden_nonlinearity="tanh", seed=0, dtype="float64")
    obj = MetaObjective(pol, ALPHA, 1, False)
    rng = np.random.default_rng(0)
    theta = pol.get_flat() + 0.05 * rng.normal(size=pol.num_params)

    def batch(theta_b, lengths):
        n = max(lengths)
        mask = (np.arange(n)[None] < np.array(lengths)[:, None]).astype(np.float64)
        obs = rng.normal(size=(len(lengths), n, 3))
        info = pol.numpy_forward_fn(theta_b)(obs)
        act = pol.sample_numpy(info, rng)
        adv = rng.normal(size=mask.shape)
        # zero padding, as advantages.pack writes it
        return Batch(*(tf.constant(x * (mask if x.ndim == 2 else mask[..., None]))
                       for x in (obs, act, adv, mask, info)))

    b0 = batch(np.tile(theta[None], (len(LEN0), 1)), LEN0)
    b1 = batch(obj.adapted_params(tf.constant(theta), b0).numpy(), LEN1)
    theta1 = theta + 0.05 * rng.normal(size=theta.shape)  # a point where loss, KL and HVPs are non-trivial
    v = rng.normal(size=theta.shape)
    return pol, obj, theta, theta1, v, b0, b1


def _local(b, start, end):
    """Tasks [start, end) of a global batch, padded only to their own longest task."""
    from maml_tf.rl.maml_trpo import Batch
    n = int(np.asarray(b.mask)[start:end].sum(axis=1).max())
    return Batch(*(x[start:end, :n] for x in b))


def _values(obj, b0, b1, counts=None):
    """Every quantity the comparison checks; `obj` is a MetaObjective or a DistributedMetaObjective."""
    import tensorflow as tf
    from maml_tf.rl import distributed, maml_trpo
    _, _, theta, theta1, v, _, _ = _problem()
    f = obj if counts is None else obj.bind(counts)
    th1, vt = tf.constant(theta1), tf.constant(v)
    step = maml_trpo.meta_trpo_step if counts is None else distributed.meta_trpo_step
    out = {}
    out["loss"], out["kl"] = (float(x) for x in f.loss_and_kl(th1, b0, b1))
    loss_g, grad = f.loss_and_grad(th1, b0, b1)
    out["loss_g"], out["grad"] = float(loss_g), grad.numpy()
    out["kl_grad"] = f.kl_grad(th1, b0, b1).numpy()
    out["hvp_exact"] = f.kl_hvp_exact(th1, vt, b0, b1).numpy()
    out["hvp_fd"] = f.kl_hvp_fd(th1, vt, b0, b1, tf.constant(1.0, tf.float64)).numpy()
    out["hvp_fd_small"] = f.kl_hvp_fd(th1, vt, b0, b1, tf.constant(1e-4, tf.float64)).numpy()
    info = []
    for hvp in ("fd", "exact"):
        res, times = step(obj, theta, b0, b1, MAX_KL, hvp=hvp)
        out[f"step_{hvp}"] = res.theta
        info += [res.accepted, res.loss_before, res.loss_after, res.kl_after, res.n_backtracks,
                 res.initial_step_size, times["n_hvp"]]
    out["step_info"] = np.array(info, dtype=np.float64)
    return out


def _child(mode: str, out: str) -> None:
    import tensorflow as tf
    from maml_tf.strategy import make_strategy
    from maml_tf.rl.distributed import DistributedMetaObjective
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    else:
        strategy = make_strategy("multi_worker")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    _, obj, _, _, _, b0, b1 = _problem()
    d = DistributedMetaObjective(strategy, obj, num_tasks=len(LEN1))
    start, end = d.task_bounds
    b0, b1 = _local(b0, start, end), _local(b1, start, end)  # this worker holds only its tasks
    counts = d.global_counts(b1)
    vals = _values(d, b0, b1, counts)
    fns = (d._counts, d._loss_and_kl, d._loss_and_grad, d._kl_grad, d._kl_hvp_exact, d._kl_hvp_fd)
    traces = np.array([f.experimental_get_tracing_count() for f in fns])
    np.savez(out, bounds=np.array([start, end]), counts=np.array([float(c) for c in counts]), traces=traces, **vals)


def _run_children(tmp_path, mode: str, tf_configs: list, timeout: float = 300) -> list[dict]:
    procs, outs = [], []
    for i, tf_config in enumerate(tf_configs):
        out = tmp_path / f"{mode}_{i}.npz"
        env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        env.pop("TF_CONFIG", None)
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
            results.append({k: z[k] for k in z.files})
    return results


@pytest.fixture(scope="module")
def single():
    _, obj, _, _, _, b0, b1 = _problem()
    return _values(obj, b0, b1)


def _assert_same(dist, single):
    # one trace per compiled function (workers must build their collectives in the same order)
    np.testing.assert_array_equal(dist["traces"], np.ones(6))
    for k in KEYS:
        # objective values agree to ~1e-15; ten CG iterations on the exact KL Hessian (condition number
        # ~1.6e4 here) amplify that to ~1e-11 in the step, hence 1e-9 there
        rtol = 1e-9 if k.startswith("step") else 1e-10
        np.testing.assert_allclose(dist[k], single[k], rtol=rtol, atol=1e-13, err_msg=k)


def test_problem_discriminates_wrong_normalisers(single):
    """Averaging the two halves' KL means (instead of global sums / global count) is visibly wrong."""
    import tensorflow as tf
    _, obj, _, theta1, _, b0, b1 = _problem()
    halves = [obj.loss_and_kl(tf.constant(theta1), _local(b0, s, s + 2), _local(b1, s, s + 2)) for s in (0, 2)]
    naive_kl = np.mean([float(kl) for _, kl in halves])
    assert single["kl"] > 1e-4
    assert abs(naive_kl - single["kl"]) > 1e-2 * single["kl"]
    assert single["step_info"][0] == 1 and single["step_info"][7] == 1  # both steps accepted: a real move


@pytest.mark.slow
def test_mirrored_two_logical_cpus_equals_single_replica(tmp_path, single):
    (dist,) = _run_children(tmp_path, "mirrored", [None])
    np.testing.assert_array_equal(dist["bounds"], [0, 4])  # one worker holds every task
    np.testing.assert_array_equal(dist["counts"], [4, sum(LEN1)])
    _assert_same(dist, single)


def _free_ports(n):
    from _procs import free_ports

    return free_ports(n)


@pytest.mark.slow  # two TensorFlow processes and a gRPC cluster
def test_multi_worker_two_processes_equals_single_replica(tmp_path, single):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    configs = [{"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}} for i in range(2)]
    results = _run_children(tmp_path, "multi_worker", configs)
    for i, dist in enumerate(results):  # each worker held only its two tasks, and both took the same step
        np.testing.assert_array_equal(dist["bounds"], [2 * i, 2 * i + 2])
        np.testing.assert_array_equal(dist["counts"], [4, sum(LEN1)])
        _assert_same(dist, single)
    for k in KEYS:
        np.testing.assert_array_equal(results[0][k], results[1][k], err_msg=k)  # bitwise the same everywhere


def test_local_batches_are_checked():
    import tensorflow as tf
    from maml_tf.errors import MamlError
    from maml_tf.rl import distributed
    from maml_tf.rl.maml_trpo import Batch
    _, obj, theta, _, _, b0, b1 = _problem()
    d = distributed.DistributedMetaObjective(tf.distribute.get_strategy(), obj, num_tasks=4)
    assert d.task_bounds == (0, 4)
    with pytest.raises(MamlError, match="this worker's 4 tasks"):
        d.global_counts(_local(b1, 0, 2))
    empty = Batch(*b1[:3], tf.concat([b1.mask[:3], tf.zeros_like(b1.mask[3:])], 0), b1.dist_info)
    with pytest.raises(MamlError, match=r"tasks \[3\] have no timesteps"):
        d.global_counts(empty)
    with pytest.raises(ValueError, match="hvp"):
        distributed.meta_trpo_step(d, theta, b0, b1, MAX_KL, hvp="perlmutter")
    # one replica: the same values as the plain objective
    counts = d.global_counts(b1)
    th = tf.constant(theta)
    np.testing.assert_allclose(d.loss_and_kl(th, b0, b1, counts), obj.loss_and_kl(th, b0, b1), rtol=1e-12)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _child(sys.argv[1], sys.argv[2])
