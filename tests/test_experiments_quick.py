"""`./run_experiments.sh --quick` end to end: the wiring of the experiments, on every change.

The default tests run the sinusoid MAML and pretrained experiments, and one experiment of each other
family (Omniglot 5-way 1-shot on a few real characters, MiniImagenet on synthetic folders, 2D navigation,
a MuJoCo oracle) at tiny sizes: each entry-point process costs a TensorFlow start-up and a trace, so this
is the CI budget. `--runslow` runs `--quick --jobs 2 all` on every experiment's data (all 43: about 12
minutes here on 2 busy cores), then re-runs two to show that a second invocation resumes.
"""
import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "run_experiments.sh")


def _run(tmp_path, *args, timeout=1800):
    return subprocess.run([SCRIPT, "--quick", "--results", str(tmp_path / "results"), "--logs",
                           str(tmp_path / "logs"), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(tmp_path))


def _records(tmp_path):
    folder = tmp_path / "results" / "runs"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_quick_sinusoid_end_to_end(tmp_path):
    out = _run(tmp_path, "sinusoid", "sinusoid_pretrained")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = _records(tmp_path)
    assert set(records) == {"sinusoid", "sinusoid_pretrained"}
    for rec in records.values():
        assert rec["quick"] is True and rec["status"] == "done"
        assert sorted(r["K"] for r in rec["results"]) == [5, 10, 20]
        for r in rec["results"]:
            assert r["num_tasks"] == 4 and len(r["means"]) == 11  # 0..10 steps
        assert [c["role"] for c in rec["commands"]] == ["train", "test", "test"]
        assert all("--metatrain_iterations=3" in c["argv"] or "--pretrain_iterations=3" in c["argv"]
                   for c in rec["commands"])
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "QUICK" in readme
    sin = readme.split("## Sinusoid")[1].split("## RL")[0]
    assert "`./run_experiments.sh --quick sinusoid`" in sin and "not run" in sin  # the oracle did not run
    maml_k5 = next(l for l in sin.splitlines() if l.startswith("| maml | sinusoid | 5 |"))
    assert "not run" not in maml_k5 and " ± " in maml_k5
    for png in ("fig2_sinusoid_fits.png", "fig3_sinusoid_error_vs_steps.png", "fig_training_curves.png"):
        assert (tmp_path / "results" / png).exists() and f"]({png})" in readme
    assert not (tmp_path / "results" / "fig5_rl_returns.png").exists()
    # the checkpoints live under --logs, one folder per experiment
    assert (tmp_path / "logs" / "sinusoid" / "run_experiments.log").exists()


@pytest.fixture(scope="module")
def all_data_dir(shared_dir, synthetic_miniimagenet, tmp_path_factory):
    """Every experiment's data: all real Omniglot characters (20-way tasks need 20 validation classes)
    prepared by our tool, and synthetic MiniImagenet in the real layout."""
    from maml_tf.data.prepare_omniglot import prepare_omniglot

    root = tmp_path_factory.mktemp("all_data")
    prepare_omniglot(shared_dir / "data" / "omniglot", root / "omniglot_resized", log=lambda s: None)
    (root / "miniImagenet").symlink_to(synthetic_miniimagenet / "miniImagenet")
    return root


@pytest.mark.slow
def test_quick_all_then_resume(tmp_path, all_data_dir):
    from maml_tf.experiments import registry
    from maml_tf.experiments.results import rl_reference
    from maml_tf.rl.evaluate import REFERENCE

    assert rl_reference() == REFERENCE  # the report's literal read of the table is the table
    out = _run(tmp_path, "all", "--jobs", "2", "--data_dir", str(all_data_dir), timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = _records(tmp_path)
    assert set(records) == set(registry.EXPERIMENTS)  # every experiment ran: no data was missing
    assert "skipping" not in out.stdout
    assert all(r["quick"] is True and r["status"] == "done" and r["results"] for r in records.values())
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "not run" not in readme.split("## Table 1")[1].split("\n## ")[0]
    # a second invocation resumes: nothing is trained again
    out = _run(tmp_path, "sinusoid", "rl_point_maml", "--no-figures")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Nothing to train" in out.stdout and "resumed from" in out.stdout


def test_quick_image_and_rl_families_end_to_end(tmp_path, small_omniglot_src, synthetic_miniimagenet):
    """One experiment of each other family through the script, two at a time (--jobs 2): Omniglot on real
    characters, MiniImagenet on synthetic folders, 2D navigation MAML, and a MuJoCo oracle."""
    from maml_tf.data.prepare_omniglot import prepare_omniglot

    prepare_omniglot(small_omniglot_src, tmp_path / "data" / "omniglot_resized", log=lambda s: None)
    (tmp_path / "data" / "miniImagenet").symlink_to(synthetic_miniimagenet / "miniImagenet")
    names = {"omniglot_5way1shot", "miniimagenet_5way1shot", "rl_point_maml", "rl_cheetah_vel_oracle"}
    out = _run(tmp_path, *sorted(names), "--jobs", "2", "--data_dir", str(tmp_path / "data"), "--no-figures")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = _records(tmp_path)
    assert set(records) == names
    assert all(r["quick"] is True and r["status"] == "done" and r["results"] for r in records.values())
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "QUICK" in readme
