"""`./run_experiments.sh --quick all` end to end: the wiring of every experiment, on every change.

One test runs all 43 experiments at tiny sizes (`--quick --jobs 2 all`: about 6 minutes on the quiet
2-core development machine, the largest share of the suite's time; each experiment costs TensorFlow
start-ups and traces, not arithmetic) on every experiment's data: all the real Omniglot characters and
synthetic MiniImagenet folders. It then checks the records, the report and the figures, and re-runs two
experiments to show that a second invocation resumes instead of training again.
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


@pytest.fixture(scope="module")
def all_data_dir(shared_dir, synthetic_miniimagenet, tmp_path_factory):
    """Every experiment's data: all real Omniglot characters (20-way tasks need 20 validation classes)
    prepared by our tool, and synthetic MiniImagenet in the real layout."""
    from maml_tf.data.prepare_omniglot import prepare_omniglot

    root = tmp_path_factory.mktemp("all_data")
    prepare_omniglot(shared_dir / "data" / "omniglot", root / "omniglot_resized", log=lambda s: None)
    (root / "miniImagenet").symlink_to(synthetic_miniimagenet / "miniImagenet")
    return root


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
    # the sinusoid experiments: three tests each (K = 10 after training, then 5 and 20), 0..10 steps
    for name in ("sinusoid", "sinusoid_pretrained", "sinusoid_oracle"):
        rec = records[name]
        assert sorted(r["K"] for r in rec["results"]) == [5, 10, 20]
        assert all(r["num_tasks"] == 4 and len(r["means"]) == 11 for r in rec["results"])
        assert [c["role"] for c in rec["commands"]] == ["train", "test", "test"]
        assert all("--metatrain_iterations=3" in c["argv"] or "--pretrain_iterations=3" in c["argv"]
                   for c in rec["commands"])
    # the report: labelled QUICK, every table filled, the figures written and linked
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "QUICK" in readme
    for section in readme.split("\n## ")[1:]:
        if "|---" in section:
            assert "not run" not in section, section[:200]
    sin = readme.split("## Sinusoid")[1].split("\n## ")[0]
    assert "`./run_experiments.sh --quick sinusoid`" in sin
    maml_k5 = next(l for l in sin.splitlines() if l.startswith("| maml | sinusoid | 5 |"))
    assert " ± " in maml_k5
    for png in ("fig2_sinusoid_fits.png", "fig3_sinusoid_error_vs_steps.png", "fig_table1_accuracy_vs_steps.png",
                "fig5_rl_returns.png",
                "fig_training_curves.png"):
        assert (tmp_path / "results" / png).exists() and f"]({png})" in readme
    # the checkpoints live under --logs, one folder per experiment
    assert (tmp_path / "logs" / "sinusoid" / "run_experiments.log").exists()
    # a second invocation resumes: nothing is trained again
    out = _run(tmp_path, "sinusoid", "rl_point_maml", "--no-figures")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Nothing to train" in out.stdout and "resumed from" in out.stdout
