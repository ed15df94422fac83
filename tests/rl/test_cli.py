"""Smoke tests of the two command-line drivers with tiny sizes (subprocesses)."""
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_main_then_evaluate(tmp_path):
    run = tmp_path / "run"
    # pretrain (use_maml=False) keeps the subprocess cheap; the MAML step itself is covered in test_train
    out = _run(["maml_tf.rl.main", "--env", "point", "--algo", "pretrain", "--n_itr", "1", "--fast_batch_size", "2",
                "--meta_batch_size", "2",
                "--max_path_length", "10", "--run_dir", str(run)], REPO)
    assert "itr    0 | pre" in out and "done: best training return" in out
    assert (run / "best.npz").exists() and (run / "progress.csv").exists() and (run / "tb").is_dir()
    res = tmp_path / "res"
    out = _run(["maml_tf.rl.evaluate", "--env", "point", "--method", "pretrain", "--checkpoint", str(run / "best.npz"),
                "--n_goals", "3", "--n_itr", "2", "--batch_size", "200", "--out_dir", str(res)], REPO)
    assert "reference" in out and "-40.81" in out
    with open(res / "point_pretrain.json") as f:
        result = json.load(f)
    m = np.asarray(result["task_avg_returns"])
    assert m.shape == (2, 3) and np.all(m < 0)
    assert result["alpha_1"] == 0.5 and result["alpha_2"] == 0.25
    assert (res / "point_pretrain.csv").exists() and (res / "point_pretrain.txt").exists()


def test_main_rejects_bad_flags(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, "-m", "maml_tf.rl.main", "--env", "point", "--meta_step_size", "-1",
                        "--run_dir", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "maml_tf.rl: error: --meta_step_size" in p.stderr
    assert "Traceback" not in p.stderr and not os.listdir(tmp_path)  # refused before anything was written
