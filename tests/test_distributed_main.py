"""`--distribute` in the supervised entry point: the same checkpoints as one replica, only the chief writes.

TensorFlow must be configured before it starts (two logical CPUs; the multi-worker cluster), so the
distributed runs happen in child processes (this file as a script, or `python -m maml_tf.main`);
the one-replica runs they are compared with happen here. float32 and no norm: the weights agree to
float reassociation (~1e-7 relative), checked at 1e-5.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

# tests/test_distributed.py's helpers (loaded by path: pytest runs with --import-mode=importlib).
_spec = importlib.util.spec_from_file_location("_test_distributed",
                                               pathlib.Path(__file__).with_name("test_distributed.py"))
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
REPO, _free_ports = _helpers.REPO, _helpers._free_ports

SIN = dict(datasource="sinusoid", norm="None", update_batch_size=10, update_lr=0.01, meta_batch_size=4,
           print_interval=5, summary_interval=5, save_interval=5)
FIRST, TOTAL = 6, 10  # train to FIRST iterations, then resume to TOTAL
ENV = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _config(**kw):
    from maml_tf.config import Config
    return Config.from_dict({**SIN, **kw})


def _final(logdir: str, itr: int = TOTAL - 1) -> dict:
    from maml_tf import checkpoint as ckpt
    return ckpt.load(os.path.join(logdir, _config().exp_string, f"model{itr}"))


def _assert_same_state(a: dict, b: dict) -> None:
    names = [n for n in a if n.startswith(("model/", "beta")) or "Adam" in n]
    assert len(names) > 6 and sorted(names) == sorted(n for n in b if n in names)
    for n in names:
        np.testing.assert_allclose(a[n], b[n], rtol=1e-5, atol=1e-7, err_msg=n)
    assert a["maml_tf/next_itr"] == b["maml_tf/next_itr"] and a["maml_tf/stream_state"] == b["maml_tf/stream_state"]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> str:
    """A --distribute=none run: FIRST iterations, resumed to TOTAL, then 20 test tasks."""
    from maml_tf.run import run
    logdir = str(tmp_path_factory.mktemp("single"))
    run(_config(logdir=logdir, metatrain_iterations=FIRST), log=lambda *a: None)
    run(_config(logdir=logdir, metatrain_iterations=TOTAL, test_after_train=True, num_test_tasks=20),
        log=lambda *a: None)
    return logdir


def _child(out: str, logdir: str) -> None:
    """The same runs as `single` with --distribute=mirrored on two logical CPUs, and an uneven split."""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from maml_tf.errors import MamlError
    from maml_tf.run import run
    logs = []
    run(_config(logdir=logdir, metatrain_iterations=FIRST, distribute="mirrored"), log=logs.append)
    run(_config(logdir=logdir, metatrain_iterations=TOTAL, distribute="mirrored", test_after_train=True,
                num_test_tasks=20), log=logs.append)
    try:
        run(_config(logdir=logdir + "-uneven", meta_batch_size=3, distribute="mirrored"), log=logs.append)
        uneven = None
    except MamlError as e:
        uneven = str(e)
    with open(out, "w") as f:
        json.dump({"logs": [str(x) for x in logs], "uneven": uneven}, f)


@pytest.mark.slow
def test_mirrored_two_logical_cpus_equals_one_replica(tmp_path, single):
    logdir, out = str(tmp_path / "mirrored"), tmp_path / "child.json"
    proc = subprocess.run([sys.executable, __file__, str(out), logdir], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    child = json.loads(out.read_text())
    assert any("--distribute=mirrored: 2 replicas, 2 tasks each" in line for line in child["logs"])
    assert any(f"resuming at iteration {FIRST}" in line for line in child["logs"])
    _assert_same_state(_final(logdir), _final(single))
    folder = _config().exp_string
    a = json.loads((tmp_path / "mirrored" / folder / "test_ubs10_stepsize0.01.json").read_text())
    b = json.loads(open(os.path.join(single, folder, "test_ubs10_stepsize0.01.json")).read())
    np.testing.assert_allclose(a["means"], b["means"], rtol=1e-5)  # the test protocol on the mirrored weights
    assert "does not split evenly over 2 replicas" in child["uneven"]
    assert "--meta_batch_size as a multiple of 2" in child["uneven"]
    assert not os.path.exists(logdir + "-uneven")  # refused before anything was written


def test_bad_distribute_inputs_are_named(tmp_path, monkeypatch):
    from maml_tf.errors import MamlError
    from maml_tf.run import run
    with pytest.raises(MamlError, match="--distribute='ring': expected one of none, mirrored, multi_worker"):
        _config(distribute="ring")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(MamlError, match="--distribute=multi_worker needs TF_CONFIG"):
        run(_config(logdir=str(tmp_path), distribute="multi_worker"), log=lambda *a: None)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    with pytest.raises(MamlError, match="TF_CONFIG is not valid JSON"):
        run(_config(logdir=str(tmp_path), distribute="multi_worker"), log=lambda *a: None)
    assert os.listdir(tmp_path) == []  # refused before anything was written


def test_distribute_is_a_resumable_maml_tf_extra():
    from maml_tf import main
    from maml_tf.errors import MamlError
    from maml_tf.run import check_same_run
    assert "distribute" in main.FLAG_NAMES and main.FLAGS["distribute"].help.startswith("[maml-tf]")
    cfg = _config(distribute="mirrored")
    assert cfg.exp_string == _config().exp_string  # the reference folder name ignores it
    check_same_run(cfg, _config().to_dict(), "model5")  # a run may move to more devices / hosts on resume
    with pytest.raises(MamlError, match="--meta_batch_size=4 there"):
        check_same_run(cfg.replace(meta_batch_size=8), _config().to_dict(), "model5")


def _main_workers(logdirs: list[str], iterations: int, timeout: float = 400) -> list[str]:
    """`python -m maml_tf.main --distribute=multi_worker` on two localhost workers; their outputs."""
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    args = [f"--{k}={v}" for k, v in SIN.items()] + ["--distribute=multi_worker",
                                                      f"--metatrain_iterations={iterations}"]
    procs = []
    for i, logdir in enumerate(logdirs):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen([sys.executable, "-m", "maml_tf.main", *args, f"--logdir={logdir}"],
                                      env=dict(ENV, TF_CONFIG=json.dumps(tf_config)), cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    from _procs import wait_all

    return wait_all(procs, timeout)


def _files(folder) -> dict:
    return {p: os.path.getmtime(os.path.join(folder, p)) for p in sorted(os.listdir(folder))}


@pytest.mark.slow  # two TensorFlow processes and a gRPC cluster, twice: about two minutes on 2 cores
def test_multi_worker_main_equals_one_process_and_only_the_chief_writes(tmp_path, single):
    chief, other = str(tmp_path / "chief"), str(tmp_path / "other")  # hosts without a shared disk
    outs = _main_workers([chief, other], FIRST)
    assert "not the chief" in outs[1] and "not the chief" not in outs[0]
    assert not os.path.exists(other)  # worker 1 wrote nothing, not even the folder
    folder = _config().exp_string
    assert os.path.exists(os.path.join(chief, folder, f"model{FIRST - 1}.index"))
    _assert_same_state(_final(chief, FIRST - 1), _final(single, FIRST - 1))
    # Resume on both from the same checkpoint: worker 1 reads a copy of the chief's folder.
    shutil.copytree(os.path.join(chief, folder), os.path.join(other, folder))
    before = _files(os.path.join(other, folder))
    outs = _main_workers([chief, other], TOTAL)
    assert all(f"resuming at iteration {FIRST}" in out for out in outs)
    assert _files(os.path.join(other, folder)) == before
    _assert_same_state(_final(chief), _final(single))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _child(sys.argv[1], sys.argv[2])
