"""run_experiments.sh: the registry holds the paper's flags, bad input fails clearly, results assemble.

These tests run no training (fast); tests/test_experiments_quick.py runs the script end to end.
"""
import os
import subprocess
import sys

import pytest

from maml_tf.config import Config
from maml_tf.experiments import cli, plots, registry, results, runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "maml_tf.experiments", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd or REPO)


# ------------------------------------------------------------------------------------------------ registry
def test_registry_covers_every_paper_experiment():
    names = set(registry.EXPERIMENTS)
    for n in (5, 20):
        for k in (1, 5):
            for suffix in ("", "_fo", "_fc", "_fc_fo"):
                assert f"omniglot_{n}way{k}shot{suffix}" in names
    for k in (1, 5):
        assert {f"miniimagenet_5way{k}shot", f"miniimagenet_5way{k}shot_fo"} <= names
    assert {"sinusoid", "sinusoid_pretrained", "sinusoid_oracle"} <= names
    for env in ("point", "cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir"):
        assert {f"rl_{env}_{m}" for m in ("maml", "pretrained", "random", "oracle")} <= names


def _train(name, quick=False):
    exp = registry.EXPERIMENTS[name]
    return exp.commands(quick, "LOG", "DATA", "OUT")[0].flags


def test_paper_flags():
    """The reference README / paper commands, exactly."""
    sin = _train("sinusoid")
    # the reference README's command leaves alpha at main.py's 1e-3 default (it reproduces the paper's table)
    assert (sin["metatrain_iterations"], sin["update_batch_size"], sin["update_lr"], sin["norm"]) == (70000, 10, 0.001, "None")
    pre = _train("sinusoid_pretrained")
    # the baseline is fine-tuned with the paper's "automatically tuned" step: 0.01, measured best here
    assert (pre["pretrain_iterations"], pre["metatrain_iterations"], pre["update_lr"]) == (70000, 0, 0.01)
    assert _train("sinusoid_oracle")["baseline"] == "oracle"
    o5 = _train("omniglot_5way1shot")
    assert (o5["meta_batch_size"], o5["update_lr"], o5["num_updates"], o5["metatrain_iterations"]) == (32, 0.4, 1, 60000)
    o20 = _train("omniglot_20way5shot_fc_fo")
    assert (o20["num_classes"], o20["meta_batch_size"], o20["update_lr"], o20["num_updates"]) == (20, 16, 0.1, 5)
    assert (o20["update_batch_size"], o20["conv"], o20["stop_grad"]) == (5, False, True)
    mi = _train("miniimagenet_5way5shot")
    assert (mi["meta_batch_size"], mi["update_lr"], mi["num_updates"], mi["num_filters"], mi["max_pool"]) == \
        (4, 0.01, 5, 32, True)
    assert "stop_grad" not in mi and _train("miniimagenet_5way1shot_fo")["stop_grad"] is True


@pytest.mark.parametrize("quick", [False, True])
def test_every_supervised_command_is_a_valid_config(quick):
    for exp in registry.EXPERIMENTS.values():
        if exp.family != "supervised":
            continue
        cmds = exp.commands(quick, "LOG", "DATA", "OUT")
        assert cmds[0].role == "train" and cmds[0].flags["test_after_train"] is True
        for c in cmds:
            cfg = Config.from_dict(dict(c.flags))  # raises on a bad flag
            assert cfg.logdir == "LOG"
            if cfg.classification:
                assert cfg.test_set and cfg.data_dir == "DATA"
        # every command of one experiment trains/tests the same experiment folder
        assert len({Config.from_dict(dict(c.flags)).exp_string for c in cmds}) == 1


def test_quick_shrinks_sizes_but_keeps_the_model():
    for exp in registry.EXPERIMENTS.values():
        if exp.family != "supervised":
            continue
        full, quick = _train(exp.name), _train(exp.name, quick=True)
        assert quick["meta_batch_size"] <= 2 and quick["num_test_tasks"] <= 4
        assert max(quick.get("metatrain_iterations", 0), quick.get("pretrain_iterations", 0)) <= 3
        for key in ("datasource", "num_classes", "update_lr", "num_updates", "conv", "stop_grad", "num_filters",
                    "max_pool", "norm", "baseline", "update_batch_size"):
            assert quick.get(key) == full.get(key), (exp.name, key)


def test_rl_commands_use_the_presets_and_the_protocol():
    from maml_tf.rl.config import preset

    for exp in registry.EXPERIMENTS.values():
        if exp.family != "rl":
            continue
        for quick in (False, True):
            cmds = exp.commands(quick, "LOG", "DATA", "OUT")
            ev = cmds[-1]
            assert ev.module == "maml_tf.rl.evaluate" and ev.flags["out_dir"] == "OUT"
            if exp.spec["method"] == "random":
                assert len(cmds) == 1 and "checkpoint" not in ev.flags
                continue
            train = cmds[0].flags
            assert train["run_dir"] == "LOG" and ev.flags["checkpoint"] == f"LOG/itr_{train['n_itr'] - 1}.npz"
            overrides = {k: v for k, v in train.items() if k not in ("env", "algo", "run_dir")}
            cfg = preset(train["env"], train["algo"], **overrides)
            n_ref, itr = registry.RL_REFERENCE_SNAPSHOT[(exp.spec["env"], exp.spec["method"])]
            if not quick:
                # full runs: the reference presets, trained to the snapshot the reference evaluated
                assert overrides == {"n_itr": itr + 1} and itr < n_ref
                assert ev.label.startswith(f"itr_{itr}") and ev.label.endswith(", as the reference")
                assert (itr == n_ref - 1) == ("params.pkl" in ev.label)
            else:
                assert cfg.n_itr <= 2 and cfg.meta_batch_size <= 2 and "the reference evaluated" in ev.label


def test_rl_snapshots_are_the_ones_the_reference_evaluated():
    """spec 1.2 / 1.3: the itr_N.pkl (or params.pkl = the last) behind each reference curve."""
    want = {("cheetah_dir", "maml"): ("itr_100", 101), ("cheetah_vel", "maml"): ("itr_475", 476),
            ("ant_vel", "maml"): ("itr_375", 376), ("ant_dir", "maml"): ("itr_575", 576),
            ("point", "maml"): ("itr_99 (params.pkl, the last of 100)", 100),
            ("cheetah_dir", "pretrained"): ("itr_999 (params.pkl, the last of 1000)", 1000),
            ("ant_dir", "oracle"): ("itr_1975", 1976)}
    for (env, method), (label, n_itr) in want.items():
        train, ev = registry.EXPERIMENTS[f"rl_{env}_{method}"].commands(False, "LOG", "DATA", "OUT")
        assert train.flags["n_itr"] == n_itr and ev.label == f"{label}, as the reference"
        assert ev.flags["checkpoint"] == f"LOG/itr_{n_itr - 1}.npz"


def test_select_patterns_and_unknown_names():
    assert [e.name for e in registry.select(["rl_point_*"])] == [
        "rl_point_maml", "rl_point_pretrained", "rl_point_random", "rl_point_oracle"]
    with pytest.raises(KeyError, match="nope"):
        registry.select(["sinusoid", "nope"])


# ------------------------------------------------------------------------------------------------ CLI
def test_list_shows_reference_data_and_cost():
    out = cli.list_experiments("/nonexistent")
    for name in registry.EXPERIMENTS:
        assert name in out
    line = next(l for l in out.splitlines() if l.startswith("miniimagenet_5way1shot "))
    assert "Table 1" in line and "miniimagenet" in line and "no data" in line and "~" in line


def test_unknown_name_lists_valid_ones(tmp_path):
    out = _cli("sinusoid", "nonsense", "--results", str(tmp_path))
    assert out.returncode == 2
    assert "unknown experiment(s): nonsense" in out.stderr and "omniglot_5way1shot" in out.stderr


def test_missing_data_names_the_preparation_command(tmp_path):
    out = _cli("omniglot_5way1shot", "miniimagenet_5way1shot", "--data_dir", str(tmp_path / "empty"),
               "--results", str(tmp_path / "r"))
    assert out.returncode == 2
    assert "python -m maml_tf.data.prepare_omniglot" in out.stderr
    assert "python -m maml_tf.data.prepare_miniimagenet" in out.stderr
    assert not (tmp_path / "r" / "runs").exists()  # nothing started


def test_unwritable_results_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = _cli("sinusoid", "--results", str(blocker / "results"), "--logs", str(tmp_path / "logs"))
    assert out.returncode == 2 and "results folder" in out.stderr and "not writable" in out.stderr


def test_relative_paths_are_relative_to_the_caller(tmp_path):
    env = dict(os.environ, MAML_TF_CALLER_CWD=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "maml_tf.experiments", "report", "--results", "rel", "--no-figures"],
                         capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "rel" / "README.md").exists()


def test_paths_inside_the_repo_are_recorded_relative(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAML_TF_CALLER_CWD", str(tmp_path / "sub"))
    assert cli._abs("results") == os.path.join("sub", "results")
    assert cli._abs("/elsewhere/r") == "/elsewhere/r"


def test_quick_and_full_results_never_mix(tmp_path):
    rec = _record("sinusoid", quick=True)
    (tmp_path / "runs").mkdir()
    runner.write_record(str(tmp_path), rec)
    with pytest.raises(runner.ExperimentError, match="quick"):
        cli.check_mode(str(tmp_path), quick=False)
    cli.check_mode(str(tmp_path), quick=True)


def test_missing_data_detection(tmp_path):
    om = registry.EXPERIMENTS["omniglot_5way1shot"]
    assert "prepare_omniglot" in runner.missing_data(om, str(tmp_path))
    (tmp_path / "omniglot_resized" / "Alphabet" / "character01").mkdir(parents=True)
    assert runner.missing_data(om, str(tmp_path)) is None
    mini = registry.EXPERIMENTS["miniimagenet_5way1shot"]
    for s in ("train", "val"):
        (tmp_path / "miniImagenet" / s).mkdir(parents=True)
    assert "test" in runner.missing_data(mini, str(tmp_path))
    assert runner.missing_data(registry.EXPERIMENTS["sinusoid"], str(tmp_path)) is None


# ------------------------------------------------------------------------------------------------ results
def _record(name, quick=False, results=None, status="done"):
    exp = registry.EXPERIMENTS[name]
    return {"name": name, "title": exp.title, "paper_ref": exp.paper_ref, "table": exp.table, "spec": exp.spec,
            "quick": quick, "status": status, "date": "2026-01-01 00:00 UTC", "hardware": "test CPU",
            "command": f"./run_experiments.sh {name}", "commands": [], "results": results or [], "wall_s": 75.0}


def _sup(k, means, ci):
    return {"label": f"K={k}", "K": k, "metric": "mse", "means": means, "stds": ci, "ci95": ci, "num_tasks": 600}


def test_readme_tables(tmp_path):
    steps = [float(x) for x in range(11, 0, -1)]
    records = {
        "sinusoid": _record("sinusoid", results=[_sup(10, steps, [0.1] * 11), _sup(5, [9.0] * 11, [0.2] * 11)]),
        "omniglot_5way1shot": _record("omniglot_5way1shot", results=[
            {"label": "K=1", "K": 1, "metric": "accuracy", "means": [0.2, 0.95, 0.96, 0.97] + [0.987] * 7,
             "ci95": [0.01] + [0.004] * 10}]),
        "rl_point_maml": _record("rl_point_maml", results=[
            {"metric": "average return", "means": [-40.0, -12.0, -3.5, -3.1, -3.0], "ci95": [4.0, 2.0, 0.5, 0.5, 0.5]}]),
        "omniglot_5way5shot": _record("omniglot_5way5shot", status="failed: train exited with 1 (log: x)"),
    }
    records["sinusoid"]["commands"] = [{"role": "train", "resumed": [
        "Restoring model weights from logs/x/model69999 (resuming at iteration 70000)",
        "Nothing to train: the checkpoint is already at iteration 70000 of 70000."]}]
    path = results.assemble(str(tmp_path), records, quick=False, figures={"Fig. 3": "fig3.png"},
                            skipped={"miniimagenet_5way1shot": "MiniImagenet not found"})
    text = open(path).read()
    t1 = text.split("## Table 1")[1].split("## Sinusoid")[0]
    row = next(l for l in t1.splitlines() if "| omniglot_5way1shot |" in l)
    assert "98.7 ± 0.4" in row and "1m15s" in row and "test CPU" in row
    # the last step, then 1 step and the paper's evaluation step (appendix A.1: 3 for Omniglot 5-way)
    assert "98.70 ± 0.40 (10 steps); 1 step: 95.00 ± 0.40; 3 steps (the paper's evaluation): 97.00 ± 0.40" in row
    assert "failed: train exited with 1" in next(l for l in t1.splitlines() if "| omniglot_5way5shot |" in l)
    assert "not run" in next(l for l in t1.splitlines() if "| miniimagenet_5way1shot |" in l)
    sin = text.split("## Sinusoid")[1].split("## RL")[0]
    k5 = next(l for l in sin.splitlines() if l.startswith("| maml | sinusoid | 5 |"))
    assert "| 0.67 | 9.000 ± 0.200 | 0.38 | 9.000 ± 0.200 | 0.35 | 9.000 ± 0.200 |" in k5
    assert results._pm(2.4e10, 4.7e10) == "2.4e+10 ± 4.7e+10"
    k10 = next(l for l in sin.splitlines() if l.startswith("| maml | sinusoid | 10 |"))
    assert "11.000 ± 0.100" in k10 and "1.000 ± 0.100" in k10
    assert "not run" in next(l for l in sin.splitlines() if l.startswith("| oracle |"))
    point = text.split("2D navigation")[1].split("## RL")[0]
    maml = next(l for l in point.splitlines() if l.startswith("| maml |"))
    assert "| -40.41 | -40.00 ± 4.00 | -11.68 | -12.00 ± 2.00 |" in maml
    assert "- `sinusoid`: Nothing to train: the checkpoint is already at iteration 70000" in text
    assert "![Fig. 3](fig3.png)" in text and "MiniImagenet not found" in text and "QUICK" not in text
    quick = open(results.assemble(str(tmp_path), {}, quick=True, figures={}, skipped={})).read()
    assert "QUICK" in quick and "not run" in quick


def test_figures_from_records(tmp_path):
    pytest.importorskip("matplotlib")
    records = {
        "sinusoid": _record("sinusoid", results=[_sup(10, [3.0] + [0.5] * 10, [0.1] * 11),
                                                  _sup(5, [3.0, 0.9, 1e14] + [float("nan")] * 8, [0.1] * 11)]),
        "sinusoid_pretrained": _record("sinusoid_pretrained", results=[_sup(10, [2.5] + [2.2] * 10, [0.1] * 11)]),
        "rl_point_oracle": _record("rl_point_oracle", results=[{"means": [-2.5], "ci95": [0.2]}]),
        "rl_point_maml": _record("rl_point_maml", results=[{"means": [-40.0, -12.0, -3.5, -3.1, -3.0],
                                                            "ci95": [4.0, 2.0, 0.5, 0.5, 0.5]}]),
    }
    assert plots.sinusoid_error_vs_steps(records, str(tmp_path / "f3.png"))  # a diverged task must not break it
    assert plots.rl_returns(records, str(tmp_path / "f5.png"))
    assert not plots.accuracy_vs_steps(records, str(tmp_path / "acc.png"))  # no Table 1 record
    for fn in ("f3.png", "f5.png"):
        assert (tmp_path / fn).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_skips_missing_data_and_reports_failures(tmp_path, monkeypatch, capsys):
    """The orchestration of `all`, with the entry points replaced by a stub (the quick test runs them)."""
    ran = []

    def fake_run(exp, quick, results_dir, logs_dir, data_dir, echo=print, pretrained_dir=None):
        ran.append(exp.name)
        rec = _record(exp.name, quick=quick, status="failed: train exited with 1 (log: x)"
                      if exp.name == "sinusoid_oracle" else "done")
        runner.write_record(results_dir, rec)
        return rec

    monkeypatch.setattr(runner, "run_experiment", fake_run)
    monkeypatch.setenv("MAML_TF_CALLER_CWD", str(tmp_path))
    rc = cli.main(["--quick", "all", "--no-figures", "--data_dir", "nodata", "--results", "r", "--logs", "l"])
    out = capsys.readouterr()
    assert rc == 1 and "FAILED: sinusoid_oracle" in out.err
    image = [n for n, e in registry.EXPERIMENTS.items() if e.data in ("omniglot", "miniimagenet")]
    assert ran == [n for n in registry.EXPERIMENTS if n not in image]
    for name in image:
        assert f"skipping {name}: " in out.out
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "## Skipped in the last invocation" in readme and "prepare_miniimagenet" in readme
    assert "## Failed runs" in readme and "`sinusoid_oracle`: failed" in readme


def test_jobs_run_experiments_side_by_side(tmp_path, monkeypatch, capsys):
    """--jobs 2: two experiments are in flight at once, every record is written, lines carry their name."""
    import threading
    import time

    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def fake_run(exp, quick, results_dir, logs_dir, data_dir, echo=print, pretrained_dir=None):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        echo("    a line of output")
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        rec = _record(exp.name, quick=quick)
        runner.write_record(results_dir, rec)
        return rec

    monkeypatch.setattr(runner, "run_experiment", fake_run)
    monkeypatch.setenv("MAML_TF_CALLER_CWD", str(tmp_path))
    names = ["sinusoid", "sinusoid_pretrained", "sinusoid_oracle", "rl_point_random"]
    rc = cli.main(["--quick", "--jobs", "2", *names, "--no-figures", "--results", "r", "--logs", "l"])
    out = capsys.readouterr().out
    assert rc == 0 and state["peak"] == 2
    assert set(runner.load_records(str(tmp_path / "r"))) == set(names)
    assert "sinusoid_oracle | a line of output" in out
    assert cli.main(["--jobs", "0", "sinusoid"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err


def test_commit_of_ignores_what_runs_write(tmp_path):
    """A run rewrites results/ and pretrained/ while it trains: that is not uncommitted code."""
    import subprocess

    from maml_tf.experiments.pretrained import commit_of

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@t"})

    for name in ("code.py", "results/README.md", "pretrained/README.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    head = commit_of(str(tmp_path))
    assert len(head) == 40
    (tmp_path / "results" / "README.md").write_text("b\n")
    (tmp_path / "pretrained" / "README.md").write_text("b\n")
    assert commit_of(str(tmp_path)) == head
    (tmp_path / "code.py").write_text("b\n")
    assert commit_of(str(tmp_path)) == head + "-dirty"


def test_fig2_reads_the_shipped_checkpoint_when_the_logs_are_gone(tmp_path):
    """logs/ is not kept between sessions; the shipped pretrained/sinusoid folder holds the same weights."""
    import json

    import numpy as np

    shipped = os.path.join(REPO, "pretrained", "sinusoid")
    if not os.path.isdir(shipped):
        pytest.skip("pretrained/sinusoid is not in this checkout")
    flags = dict(json.load(open(os.path.join(shipped, "meta.json")))["flags"], logdir=str(tmp_path / "gone"))
    grid = np.linspace(-5, 5, 20)
    with pytest.raises(FileNotFoundError, match="gone"):
        plots.sinusoid_predictions(flags, 5, 3, grid)
    p = plots.sinusoid_predictions(flags, 5, 3, grid, shipped=shipped)
    assert p[0].shape == p[1].shape == p[10].shape == (20,)
    err = lambda y: float(np.mean((y - p["truth"]) ** 2))  # noqa: E731
    assert err(p[10]) < err(p[0])  # the meta-trained init adapts to the task


def test_table1_distance_reads_the_paper_interval_off_the_records():
    """Inside, above and below the paper's interval, at the paper's evaluation step count (3 for 5-way)."""
    from maml_tf.experiments.results import table1_distance

    def acc(at3, ci=0.001):
        return [{"K": 1, "metric": "accuracy", "means": [0.2, 0.5, 0.6, at3] + [0.0] * 7, "ci95": [ci] * 11}]
    records = {"omniglot_5way1shot": _record("omniglot_5way1shot", results=acc(0.988)),          # paper 98.7 ± 0.4
               "omniglot_5way5shot": _record("omniglot_5way5shot", results=acc(0.9957, 0.0011)),  # paper 99.9 ± 0.1
               "omniglot_5way1shot_fc": _record("omniglot_5way1shot_fc", results=acc(0.92)),      # paper 89.7 ± 1.1
               "omniglot_20way1shot": _record("omniglot_20way1shot", status="in progress: iteration 5 of 60,000")}
    lines = {ln.split("`")[1]: ln for ln in table1_distance(records)}
    assert set(lines) == {"omniglot_5way1shot", "omniglot_5way5shot", "omniglot_5way1shot_fc"}
    assert "98.80 ± 0.10 after 3 steps" in lines["omniglot_5way1shot"]
    assert "inside the paper's interval" in lines["omniglot_5way1shot"]
    assert "below the paper's interval by 0.23 points" in lines["omniglot_5way5shot"]
    assert "-0.33 points from its mean; the intervals do not overlap" in lines["omniglot_5way5shot"]
    assert "above the paper's interval by 1.20 points" in lines["omniglot_5way1shot_fc"]
