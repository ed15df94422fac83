"""main.py as a user runs it: training, the test protocol, resume, and bad input."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from maml_tf import checkpoint as ckpt
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.run import run

SIN = dict(datasource="sinusoid", norm="None", update_batch_size=10, update_lr=0.01, meta_batch_size=5,
           print_interval=10, summary_interval=5, save_interval=10)


def _main(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "maml_tf.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_trains_then_tests_sinusoid(tmp_path):
    out = _main("--datasource=sinusoid", "--norm=None", "--update_batch_size=10", "--update_lr=0.01",
                "--metatrain_iterations=30", "--meta_batch_size=5", "--print_interval=10",
                f"--logdir={tmp_path}", "--test_after_train", "--num_test_tasks=20",
                "--intra_op_threads=1", "--inter_op_threads=2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Iteration 10:" in out.stdout and "Mean validation accuracy/loss" in out.stdout
    assert "TensorFlow threads: intra-op 1, inter-op 2" in out.stdout
    folder = tmp_path / "cls_5.mbs_5.ubs_10.numstep1.updatelr0.01nonorm"
    assert ckpt.list_iterations(str(folder)) == [29]
    rows = list(csv.reader(open(folder / "test_ubs10_stepsize0.01.csv")))
    assert rows[0] == [f"update{i}" for i in range(11)] and len(rows) == 4
    record = json.loads((folder / "test_ubs10_stepsize0.01.json").read_text())
    assert record["num_tasks"] == 20 and len(record["means"]) == 11
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(folder))
    # --train=False on the same folder tests the saved checkpoint, with other test shots
    out = _main("--datasource=sinusoid", "--norm=None", "--update_batch_size=5", "--train_update_batch_size=10",
                "--update_lr=0.01", "--metatrain_iterations=30", "--meta_batch_size=5", f"--logdir={tmp_path}",
                "--train=False", "--num_test_tasks=10")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (folder / "test_ubs5_stepsize0.01.csv").exists()
    # no thread flags on a CPU-only machine: the automatic pools, said in the log
    assert f"TensorFlow threads: intra-op 1, inter-op {len(os.sched_getaffinity(0))} (--thread_pools=auto)" in out.stdout


def _weights(folder, itr):
    return ckpt.load(os.path.join(folder, f"model{itr}"))


def test_resume_continues_exactly(tmp_path):
    whole = Config.from_dict({**SIN, "metatrain_iterations": 40, "logdir": str(tmp_path / "whole")})
    run(whole, log=lambda *a: None)
    first = whole.replace(metatrain_iterations=25, logdir=str(tmp_path / "split"))
    run(first, log=lambda *a: None)  # "interrupted" after iteration 24 (checkpoints at 10, 20, 24)
    logs = []
    run(first.replace(metatrain_iterations=40), log=logs.append)
    assert any("resuming at iteration 25" in str(l) for l in logs)
    a = _weights(os.path.join(whole.logdir, whole.exp_string), 39)
    b = _weights(os.path.join(first.logdir, first.exp_string), 39)
    for name in a:
        if name.startswith(("model/", "beta")) or "Adam" in name:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_corrupt_checkpoint_on_resume_falls_back_and_nothing_is_overwritten(tmp_path):
    cfg = Config.from_dict({**SIN, "metatrain_iterations": 12, "logdir": str(tmp_path)})
    run(cfg, log=lambda *a: None)
    folder = os.path.join(str(tmp_path), cfg.exp_string)
    data = [p for p in os.listdir(folder) if p.startswith("model11.data")][0]
    with open(os.path.join(folder, data), "r+b") as f:
        f.seek(10)
        f.write(b"garbage!" * 8)
    before = {p: os.path.getmtime(os.path.join(folder, p)) for p in os.listdir(folder)}
    logs = []
    run(cfg.replace(metatrain_iterations=14), log=logs.append)
    assert any(f"{data} cannot be read" in str(l) and "falling back" in str(l) for l in logs)
    assert any("Restoring model weights from" in str(l) and "model10 (resuming at iteration 11" in str(l) for l in logs)
    after = {p: os.path.getmtime(os.path.join(folder, p)) for p in os.listdir(folder) if p in before}
    assert all(before[p] == t for p, t in after.items() if not p.startswith(("events", "checkpoint", "progress.csv")))


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    cfg = Config.from_dict({**SIN, "metatrain_iterations": 3, "logdir": str(tmp_path)})
    run(cfg, log=lambda *a: None)
    folder = os.path.join(str(tmp_path), cfg.exp_string)
    for p in os.listdir(folder):
        if p.startswith("model2.data"):
            os.truncate(os.path.join(folder, p), 50)
    with pytest.raises(MamlError, match=r"no readable checkpoint in .*: model2 is corrupt \(see above\); move it away"):
        run(cfg.replace(metatrain_iterations=5), log=lambda *a: None)


def test_mismatched_checkpoint_names_the_variable(tmp_path):
    cfg = Config.from_dict({**SIN, "metatrain_iterations": 3, "logdir": str(tmp_path)})
    run(cfg, log=lambda *a: None)
    folder = os.path.join(str(tmp_path), cfg.exp_string)
    tensors = ckpt.load(os.path.join(folder, "model2"))
    tensors["model/Variable_2"] = np.zeros((40, 41), np.float32)
    ckpt.save(os.path.join(folder, "model2"), tensors)
    with pytest.raises(MamlError, match=r"model/Variable_2 has shape \[40, 41\]"):
        run(cfg.replace(metatrain_iterations=5), log=lambda *a: None)


@pytest.mark.parametrize("args, message", [
    (["--datasource=cifar"], "--datasource='cifar': unknown datasource"),
    pytest.param(["--baseline=oracle", "--datasource=omniglot"], "--baseline=oracle needs --datasource=sinusoid",
                 marks=pytest.mark.slow),
    pytest.param(["--meta_batch_size=0"], "--meta_batch_size=0: must be a positive integer", marks=pytest.mark.slow),
    pytest.param(["--logdir=/proc/nope"], "--logdir: cannot write", marks=pytest.mark.slow),
    (["--intra_op_threads=-1"], "--intra_op_threads=-1: must be >= 0"),
])
def test_cli_bad_input_is_one_clear_message(args, message):
    out = _main(*args, "--metatrain_iterations=1")
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_cli_test_without_checkpoint_says_what_to_do(tmp_path):
    out = _main("--norm=None", f"--logdir={tmp_path}", "--train=False")
    assert out.returncode == 2 and "no checkpoint to test" in out.stderr


def test_resume_refuses_a_checkpoint_from_other_flags(tmp_path):
    """The reference names pretraining and MAML runs alike: resuming one as the other must be refused."""
    maml = Config.from_dict({**SIN, "metatrain_iterations": 3, "logdir": str(tmp_path)})
    run(maml, log=lambda *a: None)
    pretrain = maml.replace(pretrain_iterations=3, metatrain_iterations=0)
    assert pretrain.exp_string == maml.exp_string
    with pytest.raises(MamlError, match="--pretrain_iterations=0 there, 3 now"):
        run(pretrain, log=lambda *a: None)


@pytest.mark.parametrize("settings, plan", [
    (dict(datasource="sinusoid"), (1, "cores")),
    (dict(datasource="omniglot"), (1, "cores")),
    (dict(datasource="miniimagenet", max_pool=True, num_filters=32), (0, 1)),  # max-pool: one op at a time
    (dict(datasource="omniglot", max_pool=True), (0, 1)),
    (dict(datasource="sinusoid", thread_pools="tf"), (0, 0)),
    (dict(datasource="sinusoid", distribute="mirrored"), (0, 0)),
    (dict(datasource="sinusoid", intra_op_threads=2), (2, 0)),  # explicit wins
    (dict(datasource="miniimagenet", max_pool=True, num_filters=32, inter_op_threads=3), (0, 3)),
])
def test_thread_plan(settings, plan, monkeypatch):
    """The plan on a machine without a GPU, on any host (the GPU case: the next test)."""
    import tensorflow as tf

    from maml_tf.run import thread_plan

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    cores = len(os.sched_getaffinity(0))
    assert thread_plan(Config(**settings)) == tuple(cores if p == "cores" else p for p in plan)


def test_thread_plan_keeps_tensorflows_pools_with_a_gpu(monkeypatch):
    import tensorflow as tf

    from maml_tf.run import thread_plan

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert thread_plan(Config(datasource="sinusoid")) == (0, 0)


def test_thread_pools_flag_is_checked():
    with pytest.raises(MamlError, match="thread_pools"):
        Config(thread_pools="many").validate()


def test_threads_cannot_change_once_tensorflow_runs(tmp_path):
    """TensorFlow fixes its thread pools at start-up: a later run asking for others is told so."""
    import tensorflow as tf

    tf.constant(1.0) + 1  # TensorFlow has started in this (the test) process
    cfg = Config(datasource="sinusoid", norm="None", metatrain_iterations=1, logdir=str(tmp_path),
                 intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads() + 3)
    with pytest.raises(MamlError, match="--intra_op_threads=.*TensorFlow already started"):
        run(cfg, log=lambda *a: None)
    assert not any(tmp_path.iterdir())  # refused before anything was written
