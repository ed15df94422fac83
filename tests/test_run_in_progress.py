"""Runs that outlive a session, and the shipped meta-initialisations and policies (issues 19 and 17).

* A run stopped with SIGINT mid-training keeps its latest checkpoint in `results/in_progress/`; that
  results folder copied to "another machine" (a fresh logs folder, another path) continues the run,
  and the result equals the uninterrupted run's bit for bit.
* A finished run ships `pretrained/<name>/`; the SavedModel loads in a process that cannot import
  maml_tf and predicts what maml_tf predicts from the shipped TF1 weights, and `maml_tf.main
  --train=False` on the shipped folder reproduces the recorded test numbers.
* The same for an RL experiment (point, a few iterations): stopped, moved, resumed == uninterrupted
  (parameters, best.npz, the evaluated snapshot, the merged curve, the evaluation); the shipped policy
  loads without maml_tf and matches maml_tf's and params.npz's, and its test_command reproduces the
  recorded evaluation. Fast parts: tests/test_rl_in_progress.py.
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


def _run(script, root, args, stop_after_line=None, timeout=300):
    """Run a driver script on results/ and logs/ under `root`; SIGINT it once a line holds `stop_after_line`."""
    proc = subprocess.Popen([sys.executable, "-c", script, os.path.join(root, "results"), os.path.join(root, "logs"),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    out = []
    for line in proc.stdout:
        out.append(line)
        if stop_after_line and stop_after_line in line:
            proc.send_signal(signal.SIGINT)
            stop_after_line = None
    return proc.wait(timeout=timeout), "".join(out)


def _driver(root, stop_after_line=None):
    return _run(DRIVER, root, [json.dumps(FLAGS)], stop_after_line)


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


# ------------------------------------------------------------------------------------------------ RL
RL_FLAGS = dict(n_itr=8, meta_batch_size=4, fast_batch_size=4, max_path_length=50, snapshot_gap=3)
RL_DRIVER = textwrap.dedent("""
    import json, sys
    from maml_tf.experiments import cli, registry, runner
    results, logs, flags, shipped = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] or None
    exp = registry.Experiment("rl_point_maml", "2D navigation, maml, kept across machines", "test", "rl_point", "rl",
                              None, 1.0, dict(env="point", method="maml"), flags, ())
    cli._stop_on_signals()
    rec = runner.run_experiment(exp, True, results, logs, "data", pretrained_dir=shipped)
    print("STATUS", rec["status"], flush=True)
    sys.exit(130 if runner.stop_requested() else 0)
""")


def _rl_driver(root, stop_after_line=None, shipped=""):
    return _run(RL_DRIVER, root, [json.dumps(RL_FLAGS), shipped], stop_after_line, timeout=600)


def _rl_file(root, name):
    from maml_tf.rl import checkpoint as rl_checkpoint

    return rl_checkpoint.load(os.path.join(root, "logs", "rl_point_maml", name))


def _curve(root):
    curve = snapshots.read_curve(os.path.join(root, "results", "runs", "rl_point_maml", "curve.csv"))
    return {tag: series for tag, series in curve.items() if not tag.startswith("t_")}  # wall times differ


LOAD_POLICY_WITHOUT_MAML_TF = textwrap.dedent("""
    import sys
    sys.modules["maml_tf"] = None  # any import of maml_tf now fails: plain TensorFlow only
    import numpy as np, tensorflow as tf
    folder, inputs, out = sys.argv[1:4]
    m = tf.saved_model.load(folder + "/saved_model")
    obs = np.load(inputs)["obs"]
    np.savez(out, dist_info=m.signatures["serving_default"](obs=tf.constant(obs))["dist_info"].numpy())
""")


@pytest.mark.slow
def test_stopped_rl_run_continues_exactly_on_another_machine_and_ships_its_policy(tmp_path):
    """An RL experiment stopped mid-training, its results folder alone moved to another path and resumed
    == the uninterrupted run, bit for bit; the finished run ships a policy that loads without maml_tf."""
    a, b, c = (str(tmp_path / n) for n in "abc")
    rc, out = _rl_driver(a)
    assert rc == 0, out

    rc, out = _rl_driver(b, stop_after_line="itr    2 |")
    assert rc == 130, out
    assert "Training stopped by SIGINT" in out
    status = snapshots.read_status(os.path.join(b, "results"), "rl_point_maml")
    assert 3 <= status["next_iteration"] < RL_FLAGS["n_itr"] and status["total"] == RL_FLAGS["n_itr"], status
    assert status["training_return"]["iteration"] == status["next_iteration"] - 1
    rec = json.load(open(os.path.join(b, "results", "runs", "rl_point_maml.json")))
    assert rec["status"].startswith(f"in progress: iteration {status['next_iteration']} of 8; training return ")
    kept = os.path.join(b, "results", "in_progress", "rl_point_maml", "rl_point_maml")
    assert sorted(os.listdir(kept)) == ["best.npz", "latest.npz"]

    shutil.copytree(os.path.join(b, "results"), os.path.join(c, "results"))  # no logs/ on "another machine"
    shipped = os.path.join(c, "pretrained")
    rc, out = _rl_driver(c, shipped=shipped)
    assert rc == 0, out
    assert "seeded" in out and f"resumed from {os.path.join(c, 'logs', 'rl_point_maml', 'latest.npz')} at itr " \
        f"{status['next_iteration']}" in out

    for name in ("latest.npz", "best.npz", "itr_7.npz"):
        np.testing.assert_array_equal(_rl_file(a, name)["theta"], _rl_file(c, name)["theta"], err_msg=name)
    assert _curve(a) == _curve(c) and sorted(_curve(c)["post_return"]) == list(range(8))  # both segments, merged
    rec_a = json.load(open(os.path.join(a, "results", "runs", "rl_point_maml.json")))
    rec_c = json.load(open(os.path.join(c, "results", "runs", "rl_point_maml.json")))
    assert rec_c["results"][0]["means"] == rec_a["results"][0]["means"]
    assert rec_c["status"] == "done" and len(rec_c["segments"]) == 2
    assert rec_c["results"][0]["checkpoint_iteration"] == 7 and rec_c["results"][0]["label"].startswith("itr_7 ")
    assert not os.path.exists(os.path.join(c, "results", "in_progress"))

    # the shipped policy: SavedModel without maml_tf == maml_tf's policy == params.npz by hand
    folder = os.path.join(shipped, "rl_point_maml")
    meta = json.load(open(os.path.join(folder, "meta.json")))
    assert meta["iteration"] == 7 and meta["checkpoint"] == "itr_7.npz"
    assert meta["test"][0]["means"] == rec_c["results"][0]["means"] and meta["test"][0]["num_goals"] == 2
    assert "rl_point_maml" in open(os.path.join(shipped, "README.md")).read()
    obs = np.random.default_rng(0).uniform(-1, 1, (2, 5, 2)).astype(np.float32)
    np.savez(tmp_path / "obs.npz", obs=obs)
    run = subprocess.run([sys.executable, "-c", LOAD_POLICY_WITHOUT_MAML_TF, folder, str(tmp_path / "obs.npz"),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    got = np.load(tmp_path / "out.npz")["dist_info"]
    from maml_tf.rl.train import load_policy

    policy, theta = load_policy(os.path.join(folder, "itr_7.npz"))
    want = policy.forward(np.tile(theta[None], (2, 1)), obs).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    p = np.load(os.path.join(folder, "params.npz"))
    np.testing.assert_array_equal(p["theta"], theta.astype(np.float32))
    h = obs
    for i in range(3):
        h = h @ p[f"W{i}"] + p[f"b{i}"]
        h = np.maximum(h, 0) if i < 2 else h
    np.testing.assert_allclose(got[..., :2], h, rtol=1e-5, atol=1e-5)  # the mean; the log-std follows it
    # its test_command reproduces the recorded evaluation
    argv = meta["test_command"].split()[3:]
    argv = [x.replace("pretrained/rl_point_maml", folder).replace("results/rl_check", str(tmp_path / "check"))
            for x in argv]
    again = subprocess.run([sys.executable, "-m", "maml_tf.rl.evaluate", *argv], capture_output=True, text=True,
                           timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stdout + again.stderr
    m = np.asarray(json.load(open(tmp_path / "check" / "point_maml.json"))["task_avg_returns"])
    np.testing.assert_allclose(m.mean(1), meta["test"][0]["means"], rtol=1e-12)
