"""`./run_experiments.sh --quick all` end to end, one experiment family per test (integration set).

Every experiment at tiny sizes on every experiment's data: all the real Omniglot characters (from
../shared: 20-way tasks need 20 validation classes) and synthetic MiniImagenet folders. Each family
runs in its own test, so a failure names it; the last test assembles the report from all of them
(tables filled, figures written) and re-runs two experiments to show that a second invocation
resumes instead of training again. The whole module took about 6 minutes on the quiet 2-core
development machine (TensorFlow start-ups and traces, not arithmetic).

The script itself only re-executes `python -m maml_tf.experiments` inside scripts/venv.sh's venv;
here the module runs under this interpreter (`sys.executable`), importing this checkout.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from maml_tf.experiments import registry

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[1]
FAMILIES = {"sinusoid": "sinusoid*", "omniglot": "omniglot_*", "miniimagenet": "miniimagenet_*",
            "rl_point": "rl_point_*", "rl_cheetah": "rl_cheetah_*", "rl_ant": "rl_ant_*"}


class QuickRuns:
    """One results/logs/data folder shared by the module's tests, and which families ran how."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.data = root / "data"
        self.outcome: dict[str, bool] = {}

    def run(self, *args, timeout=1800) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        return subprocess.run([sys.executable, "-m", "maml_tf.experiments", "--quick",
                               "--results", str(self.root / "results"), "--logs", str(self.root / "logs"),
                               "--data_dir", str(self.data), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=str(self.root), env=env)

    def records(self) -> dict[str, dict]:
        return {p.stem: json.loads(p.read_text()) for p in (self.root / "results" / "runs").glob("*.json")}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, synthetic_miniimagenet) -> QuickRuns:
    runs = QuickRuns(tmp_path_factory.mktemp("quick_all"))
    runs.data.mkdir()
    (runs.data / "miniImagenet").symlink_to(synthetic_miniimagenet / "miniImagenet")
    return runs


def _prepare_omniglot(runs: QuickRuns, zips: pathlib.Path) -> None:
    from maml_tf.data.prepare_omniglot import prepare_omniglot

    logs = []
    prepare_omniglot(zips, runs.data / "omniglot_resized", log=logs.append)
    assert any("1623/1623 characters" in line for line in logs), logs[-3:]


def _run_family(runs: QuickRuns, family: str, request) -> None:
    if family == "omniglot" and not (runs.data / "omniglot_resized").exists():
        _prepare_omniglot(runs, request.getfixturevalue("omniglot_zips"))
    runs.outcome[family] = False
    out = runs.run(FAMILIES[family], "--jobs", "2", "--no-figures")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "skipping" not in out.stdout
    names = {e.name for e in registry.select([FAMILIES[family]])}
    records = {n: r for n, r in runs.records().items() if n in names}
    assert set(records) == names  # every experiment of the family ran: no data was missing
    assert all(r["quick"] is True and r["status"] == "done" and r["results"] for r in records.values())
    runs.outcome[family] = True


@pytest.mark.parametrize("family", FAMILIES)
def test_quick_family(quick, family, request):
    _run_family(quick, family, request)
    if family == "sinusoid":  # three tests each (K = 10 after training, then 5 and 20), 0..10 steps
        records = quick.records()
        for name in ("sinusoid", "sinusoid_pretrained", "sinusoid_oracle"):
            rec = records[name]
            assert sorted(r["K"] for r in rec["results"]) == [5, 10, 20]
            assert all(r["num_tasks"] == 4 and len(r["means"]) == 11 for r in rec["results"])
            assert [c["role"] for c in rec["commands"]] == ["train", "test", "test"]
            assert all("--metatrain_iterations=3" in c["argv"] or "--pretrain_iterations=3" in c["argv"]
                       for c in rec["commands"])
        # the checkpoints live under --logs, one folder per experiment
        assert (quick.root / "logs" / "sinusoid" / "run_experiments.log").exists()


def test_quick_report_then_resume(quick, request):
    """The report over every family (run here first if this test runs alone), then a resumed re-run."""
    from maml_tf.experiments.results import rl_reference
    from maml_tf.rl.evaluate import REFERENCE

    assert rl_reference() == REFERENCE  # the report's literal read of the table is the table
    failed = [f for f, ok in quick.outcome.items() if not ok]
    assert not failed, f"families that failed above: {failed}"
    for family in FAMILIES:
        if family not in quick.outcome:
            _run_family(quick, family, request)
    assert set(quick.records()) == set(registry.EXPERIMENTS)
    out = quick.run("report")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = quick.root / "results"
    readme = (results / "README.md").read_text()
    assert "QUICK" in readme
    for section in readme.split("\n## ")[1:]:
        if "|---" in section:
            assert "not run" not in section, section[:200]
    sin = readme.split("## Sinusoid")[1].split("\n## ")[0]
    assert "`./run_experiments.sh --quick sinusoid`" in sin
    maml_k5 = next(line for line in sin.splitlines() if line.startswith("| maml | sinusoid | 5 |"))
    assert " ± " in maml_k5
    for png in ("fig2_sinusoid_fits.png", "fig3_sinusoid_error_vs_steps.png", "fig_table1_accuracy_vs_steps.png",
                "fig5_rl_returns.png", "fig_training_curves.png"):
        assert (results / png).exists() and f"]({png})" in readme
    # a second invocation resumes: nothing is trained again
    out = quick.run("sinusoid", "rl_point_maml", "--no-figures")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Nothing to train" in out.stdout and "resumed from" in out.stdout
