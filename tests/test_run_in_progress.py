"""Runs that outlive a session, and the shipped meta-initialisations (issue 19's machinery).

* A run stopped with SIGINT mid-training keeps its latest checkpoint in `results/in_progress/`; that
  results folder copied to "another machine" (a fresh logs folder, another path) continues the run,
  and the result equals the uninterrupted run's bit for bit.
* A finished run ships `pretrained/<name>/`; the SavedModel loads in a process that cannot import
  maml_tf and predicts what maml_tf predicts from the shipped TF1 weights, and `maml_tf.main
  --train=False` on the shipped folder reproduces the recorded test numbers.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from maml_tf import checkpoint as ckpt
from maml_tf.experiments import registry, snapshots

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = 1500
FLAGS = dict(registry.SINUSOID, metatrain_iterations=ITERATIONS, meta_batch_size=5, save_interval=250,
             print_interval=100, summary_interval=50, num_test_tasks=20, test_chunk=20)

# The experiment lives in a small driver script so that it can be stopped with a real SIGINT, as a
# user (or the end of a session) stops ./run_experiments.sh.
DRIVER = textwrap.dedent("""
    import json, sys
    from maml_tf.experiments import cli, registry, runner
    results, logs, flags = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    exp = registry.Experiment("sinusoid_keep", "sinusoid, kept across machines", "test", "sinusoid", "supervised",
                              None, 1.0, dict(method="maml"), flags, (dict(update_batch_size=10),))
    cli._stop_on_signals()
    rec = runner.run_experiment(exp, False, results, logs, "data")
    print("STATUS", rec["status"], flush=True)
    sys.exit(130 if runner.stop_requested() else 0)
""")


def _driver(root, stop_after_line=None):
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, os.path.join(root, "results"), os.path.join(root, "logs"),
                             json.dumps(FLAGS)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO)
    out = []
    for line in proc.stdout:
        out.append(line)
        if stop_after_line and stop_after_line in line:
            proc.send_signal(signal.SIGINT)
            stop_after_line = None
    return proc.wait(timeout=300), "".join(out)


def _final_state(root):
    folder = os.path.join(root, "logs", "sinusoid_keep")
    (exp_folder,) = [d for d in os.listdir(folder) if d.startswith("cls_")]
    prefix = ckpt.find(os.path.join(folder, exp_folder))
    return os.path.basename(prefix), ckpt.load(prefix)


@pytest.mark.slow
def test_stopped_run_continues_exactly_on_another_machine(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    rc, out = _driver(a)
    assert rc == 0, out

    rc, out = _driver(b, stop_after_line="Iteration 300:")
    assert rc == 130, out
    assert "Training stopped by SIGINT" in out
    rec = json.load(open(os.path.join(b, "results", "runs", "sinusoid_keep.json")))
    assert rec["status"].startswith("in progress: iteration "), rec["status"]
    status = snapshots.read_status(os.path.join(b, "results"), "sinusoid_keep")
    assert 300 < status["next_iteration"] < ITERATIONS and status["total"] == ITERATIONS
    kept = os.path.join(b, "results", "in_progress", "sinusoid_keep", status["exp_folder"])
    assert ckpt.list_iterations(kept) == [status["next_iteration"] - 1]  # the latest only

    # "another machine": only the (committed) results folder travels, to another path; no logs
    shutil.copytree(os.path.join(b, "results"), os.path.join(c, "results"))
    rc, out = _driver(c)
    assert rc == 0, out
    assert "seeded" in out and f"resuming at iteration {status['next_iteration']}" in out

    (name_a, state_a), (name_c, state_c) = _final_state(a), _final_state(c)
    assert name_a == name_c == f"model{ITERATIONS - 1}"
    assert set(state_a) == set(state_c)
    for key in state_a:
        if key != "maml_tf/config":  # holds --logdir, which differs by design
            np.testing.assert_array_equal(state_a[key], state_c[key], err_msg=key)
    res_a = json.load(open(os.path.join(a, "results", "runs", "sinusoid_keep.json")))["results"][0]
    rec_c = json.load(open(os.path.join(c, "results", "runs", "sinusoid_keep.json")))
    assert rec_c["results"][0]["means"] == res_a["means"]
    assert rec_c["status"] == "done" and len(rec_c["segments"]) == 2
    assert not os.path.exists(os.path.join(c, "results", "in_progress"))  # finished: nothing left to resume
    curve = snapshots.read_curve(os.path.join(c, "results", "runs", "sinusoid_keep", "curve.csv"))
    steps = sorted(curve["metatrain_Pre-update loss"])
    assert steps[0] == 0 and steps[-1] >= ITERATIONS - 50  # the curve spans both machines' segments


LOAD_WITHOUT_MAML_TF = textwrap.dedent("""
    import sys
    sys.modules["maml_tf"] = None  # any import of maml_tf now fails: plain TensorFlow only
    import json, numpy as np, tensorflow as tf
    folder, inputs, out = sys.argv[1:4]
    m = tf.saved_model.load(folder + "/saved_model")
    d = np.load(inputs)
    pred = m.signatures["serving_default"](x=tf.constant(d["x"]))["predictions"].numpy()
    adapted = m.signatures["adapt_and_predict"](support_x=tf.constant(d["sx"]), support_y=tf.constant(d["sy"]),
        query_x=tf.constant(d["x"]), num_steps=tf.constant(-1), step_size=tf.constant(-1.0))["predictions"].numpy()
    np.savez(out, pred=pred, adapted=adapted)
""")


@pytest.mark.slow
def test_finished_run_ships_a_loadable_meta_initialisation(tmp_path):
    results, logs, shipped = (str(tmp_path / n) for n in ("results", "logs", "pretrained"))
    proc = subprocess.run([sys.executable, "-m", "maml_tf.experiments", "--quick", "sinusoid", "--no-figures",
                           "--results", results, "--logs", logs, "--pretrained", shipped],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = os.path.join(shipped, "sinusoid")
    meta = json.load(open(os.path.join(folder, "meta.json")))
    assert meta["iteration"] == registry.QUICK_ITERATIONS - 1 and meta["test"][0]["num_tasks"] == 4
    assert "Adam" not in " ".join(ckpt.load(os.path.join(folder, meta["checkpoint"])))  # weights only
    assert "sinusoid" in open(os.path.join(shipped, "README.md")).read()

    # predictions in a fresh process without maml_tf == maml_tf's from the shipped TF1 weights
    from maml_tf.config import Config
    from maml_tf.export.saved_model import build_module

    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, (2, 7, 1)).astype(np.float32)
    sx = rng.uniform(-5, 5, (2, 10, 1)).astype(np.float32)
    sy = np.sin(sx).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, sx=sx, sy=sy)
    run = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_MAML_TF, folder, str(tmp_path / "in.npz"),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    got = np.load(tmp_path / "out.npz")
    cfg = Config.from_dict(meta["flags"])
    module, _ = build_module(cfg, ckpt.load(os.path.join(folder, meta["checkpoint"])), "shipped")
    want = module.serving_default(x=x)["predictions"].numpy()
    np.testing.assert_allclose(got["pred"], want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(got["adapted"], got["pred"])  # adaptation did something

    # maml_tf.main --train=False on the shipped folder: the recorded test numbers again
    argv = meta["test_command"].split()[3:]
    argv = [a.replace("--logdir=pretrained/sinusoid", f"--logdir={folder}") for a in argv]
    t0 = time.time()
    test = subprocess.run([sys.executable, "-m", "maml_tf.main", *argv, "--num_test_tasks=4", "--test_chunk=4",
                           f"--update_batch_size={meta['test'][0]['K']}"],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert test.returncode == 0, test.stdout + test.stderr + f" ({time.time() - t0:.0f}s)"
    (result,) = [f for f in os.listdir(os.path.join(folder, meta["exp_folder"])) if f.endswith(".json")]
    again = json.load(open(os.path.join(folder, meta["exp_folder"], result)))
    np.testing.assert_allclose(again["means"], meta["test"][0]["means"], rtol=1e-6)
