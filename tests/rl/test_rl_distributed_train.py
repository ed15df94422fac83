"""The MAML-TRPO trainer with --distribute (mirrored replicas; several worker processes).

Distributed runs need TensorFlow configured before it starts (two logical CPUs; the multi-worker
cluster), so they happen in child processes: the mirrored one runs this file as a script, the
multi-worker one runs `python -m maml_tf.rl.main` twice with TF_CONFIG. The mirrored child spies on
the distributed TRPO step the trainer takes and recomputes it with the single-replica objective on
the same batches, and on half of the tasks, which must differ clearly: so the check fails if a
replica's tasks or the global normalisers go missing (tried: per-replica weights of 1 instead of
T_r/T and M_r/M move theta by 0.1 and fail it).
"""
from __future__ import annotations

import csv
import json
import os
import pathlib
import re
import subprocess
import sys
import zlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = dict(fast_batch_size=2, meta_batch_size=4, max_path_length=20, hidden_sizes=(16, 16), snapshot_gap=1,
            n_itr=2)
STEP_KEYS = ("theta", "loss_before", "loss_after", "kl_after", "initial_step_size")


def _child_env(tf_config=None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _step_values(res) -> dict:
    return {"theta": res.theta, **{k: np.float64(getattr(res, k)) for k in STEP_KEYS[1:]},
            "accepted": np.float64(res.accepted)}


def _child_mirrored(run_dir: str, out: str) -> None:
    """Train 2 iterations on 2 logical CPUs; save each step and its single-replica recomputations."""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from maml_tf.errors import MamlError
    from maml_tf.rl import distributed, maml_trpo
    from maml_tf.rl.config import preset
    from maml_tf.rl.train import Trainer

    try:
        Trainer(preset("point", distribute="mirrored", **{**TINY, "meta_batch_size": 3}), run_dir + "_bad")
        bad = ""
    except MamlError as e:
        bad = str(e)

    steps = []
    real_step = distributed.meta_trpo_step

    def spy(d, theta, b0, b1, *args):
        res, times = real_step(d, theta, b0, b1, *args)
        steps.append((np.array(theta), b0, b1, args, res, d.task_bounds))
        return res, times

    distributed.meta_trpo_step = spy  # the trainer calls it through the module
    cfg = preset("point", distribute="mirrored", **TINY)
    tr = Trainer(cfg, run_dir, log=lambda s: None)
    summary = tr.train()
    vals = {"bad": np.array(bad), "replicas": np.array(tr.workers.num_replicas), "final": tr.theta,
            "best": np.array(summary["best"])}
    for i, (theta, b0, b1, args, res, bounds) in enumerate(steps):
        single, _ = maml_trpo.meta_trpo_step(tr.obj, theta, b0, b1, *args)
        half = maml_trpo.Batch(*(x[:2] for x in b0)), maml_trpo.Batch(*(x[:2] for x in b1))
        halved, _ = maml_trpo.meta_trpo_step(tr.obj, theta, *half, *args)
        for name, r in (("dist", res), ("single", single), ("half", halved)):
            vals.update({f"{name}{i}_{k}": v for k, v in _step_values(r).items()})
        vals[f"bounds{i}"] = np.array(bounds)
        vals[f"tasks{i}"] = np.array(b1.mask.shape[0])
    np.savez(out, **vals)


@pytest.mark.slow
def test_mirrored_two_replicas_trains_and_takes_the_single_replica_step(tmp_path):
    run, out = tmp_path / "run", tmp_path / "out.npz"
    p = subprocess.run([sys.executable, __file__, "mirrored", str(run), str(out)], env=_child_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    z = dict(np.load(out))
    assert int(z["replicas"]) == 2
    assert "--meta_batch_size" in str(z["bad"]) and "2 replicas" in str(z["bad"])
    assert not (tmp_path / "run_bad").exists()  # refused before anything is written
    for i in range(2):
        # one process holds all 4 tasks and splits them over its 2 replicas
        np.testing.assert_array_equal(z[f"bounds{i}"], [0, 4])
        assert int(z[f"tasks{i}"]) == 4
        for k in STEP_KEYS:  # float32 policy: sums reassociated over replicas (measured: ~1e-7 relative)
            np.testing.assert_allclose(z[f"dist{i}_{k}"], z[f"single{i}_{k}"], rtol=1e-4, atol=1e-7,
                                       err_msg=f"itr {i} {k}")
        assert z[f"dist{i}_accepted"] == z[f"single{i}_accepted"] == 1  # a real step was taken
        # the check tells the tasks apart: the step on half of them is far from the one taken
        # (measured: ~0.15 in theta, ~1e-3..1e-2 in the loss after vs ~1e-8 differences above)
        for k, tol in (("theta", 1e-2), ("loss_after", 1e-4), ("kl_after", 1e-4)):
            assert np.abs(z[f"half{i}_{k}"] - z[f"dist{i}_{k}"]).max() > tol, (i, k)

    files = set(os.listdir(run))
    assert {"latest.npz", "best.npz", "itr_0.npz", "itr_1.npz", "config.json", "progress.csv", "tb"} <= files
    assert not any(".tmp" in f for f in files)
    with open(run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["itr"]) for r in rows] == [0, 1]  # written once per iteration
    for i, r in enumerate(rows):  # the logged step is the one taken; every task's paths are counted
        assert float(r["loss_before"]) == pytest.approx(float(z[f"dist{i}_loss_before"]), rel=1e-12)
        assert float(r["mean_kl"]) == pytest.approx(float(z[f"dist{i}_kl_after"]), rel=1e-12)
        assert min(int(r["pre_trajs"]), int(r["post_trajs"])) >= 4 * TINY["fast_batch_size"]
    assert max(float(r["post_return"]) for r in rows) == pytest.approx(float(z["best"]))
    with np.load(run / "latest.npz") as ck:
        np.testing.assert_array_equal(ck["theta"], z["final"])
        np.testing.assert_array_equal(ck["theta"], z["dist1_theta"])
    with open(run / "config.json") as f:
        assert json.load(f)["distribute"] == "mirrored"


def test_bad_distribute_flags_are_named(monkeypatch, tmp_path):
    from maml_tf.errors import MamlError
    from maml_tf.rl.config import RLConfig, preset
    from maml_tf.strategy import check_tf_config

    with pytest.raises(MamlError, match="--distribute must be one of"):
        preset("point", distribute="ring")
    with pytest.raises(MamlError, match="--algo=maml"):
        preset("point", "pretrain", distribute="mirrored")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(MamlError, match="--distribute=multi_worker needs TF_CONFIG"):
        check_tf_config()
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(MamlError, match="TF_CONFIG is not valid JSON"):
        check_tf_config()
    # a checkpoint written before the flag existed reads as distribute="none"
    old = json.loads(RLConfig().to_json())
    del old["distribute"]
    assert RLConfig.from_json(json.dumps(old)).distribute == "none"


def test_main_names_missing_tf_config(tmp_path):
    p = subprocess.run([sys.executable, "-m", "maml_tf.rl.main", "--env", "point", "--distribute", "multi_worker",
                        "--run_dir", str(tmp_path / "run")], cwd=REPO, env=_child_env(), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "--distribute=multi_worker needs TF_CONFIG" in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def _free_ports(n):
    from _procs import free_ports

    return free_ports(n)


def _run_workers(run_dirs, n_itr, resume=False, timeout=400) -> list[str]:
    workers = [f"127.0.0.1:{p}" for p in _free_ports(len(run_dirs))]
    procs = []
    for i, run_dir in enumerate(run_dirs):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        args = [sys.executable, "-m", "maml_tf.rl.main", "--env", "point", "--distribute", "multi_worker",
                "--run_dir", str(run_dir), f"--resume={resume}"]
        args += [f"--{k}={v}" for k, v in {**TINY, "n_itr": n_itr}.items() if k != "hidden_sizes"]
        procs.append(subprocess.Popen(args, cwd=REPO, env=_child_env(tf_config), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    from _procs import wait_all

    return wait_all(procs, timeout)


def _final_crc(log: str) -> str:
    (crc,) = re.findall(r"final parameters crc32 ([0-9a-f]{8})", log)
    return crc


@pytest.mark.slow  # two TensorFlow processes and a gRPC cluster, twice
def test_multi_worker_two_processes(tmp_path):
    chief, other = tmp_path / "chief", tmp_path / "other"
    logs = _run_workers([chief, other], n_itr=2)
    assert "worker 0 (tasks 0-1)" in logs[0] and "worker 1 (tasks 2-3)" in logs[1]
    assert not other.exists()  # only the chief writes
    assert {"latest.npz", "best.npz", "itr_0.npz", "itr_1.npz", "config.json", "progress.csv", "summary.json",
            "tb"} <= set(os.listdir(chief))
    assert _final_crc(logs[0]) == _final_crc(logs[1])  # both end with the same parameters
    with np.load(chief / "latest.npz") as ck:
        assert f"{zlib.crc32(ck['theta'].tobytes()):08x}" == _final_crc(logs[0])
    with open(chief / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["itr"]) for r in rows] == [0, 1]
    for r in rows:  # the paths of all 4 tasks (>= 2 per task: paths that reach the goal end early)
        assert min(int(r["pre_trajs"]), int(r["post_trajs"])) >= 4 * TINY["fast_batch_size"]
    # every worker logs the same returns: the global ones (the two workers sampled different tasks)
    lines = [[ln.split("| sample")[0] for ln in log.splitlines() if ln.startswith("itr ")] for log in logs]
    assert len(lines[0]) == 2 and lines[0] == lines[1]

    # resume: both workers read the chief's folder and continue from the same checkpoint
    logs = _run_workers([chief, chief], n_itr=3, resume=True)
    assert all("resumed from" in log and "at itr 2" in log for log in logs)
    assert _final_crc(logs[0]) == _final_crc(logs[1])
    with open(chief / "progress.csv") as f:
        assert [int(r["itr"]) for r in csv.DictReader(f)] == [0, 1, 2]


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    if sys.argv[1] == "mirrored":
        _child_mirrored(sys.argv[2], sys.argv[3])
