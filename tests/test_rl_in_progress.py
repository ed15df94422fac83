"""RL runs that outlive a session (fast parts): the snapshot of an RL run folder, seeding, the status and
the README row. tests/test_run_in_progress.py runs the real thing (stop, copy, resume, ship)."""
import csv
import os

import numpy as np

from maml_tf.experiments import registry, results, runner, snapshots
from maml_tf.rl import checkpoint as rl_checkpoint

FIELDS = ["itr", "pre_return", "post_return", "t_total"]


def _fake_run(folder, upto: int, evaluated: int | None = None):
    """A run folder as maml_tf.rl.main leaves it after iterations 0..upto (tiny stand-in checkpoints)."""
    os.makedirs(folder, exist_ok=True)
    save = lambda name, itr, state=None: rl_checkpoint.save(  # noqa: E731
        os.path.join(folder, name), np.full(3, float(itr)), {"kind": "fake"}, "{}", itr, state)
    save("latest.npz", upto, {"best": -1.0})
    save("best.npz", upto - 1)
    if evaluated is not None:
        save(f"itr_{evaluated}.npz", evaluated)
    with open(os.path.join(folder, "progress.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        for i in range(upto + 1):
            w.writerow([i, -50.0 + i, -20.0 + i, 1.5])


def _keeper(tmp_path, logs="logs"):
    exp = registry.EXPERIMENTS["rl_cheetah_dir_maml"]
    train, ev = exp.commands(False, str(tmp_path / logs / exp.name), "", str(tmp_path / "results" / "runs" / exp.name))
    return runner.RunKeeper(exp, train, str(tmp_path / "results"), str(tmp_path / "results" / "runs" / exp.name),
                            keep=(os.path.basename(ev.flags["checkpoint"]),))


def test_an_rl_run_is_kept_and_seeds_an_empty_logs_folder(tmp_path):
    keeper = _keeper(tmp_path)
    assert keeper.total == 101 and keeper.run.keep == ("best.npz", "itr_100.npz")
    _fake_run(keeper.train_dir, 2)
    keeper.begin()
    assert keeper._start_itr == 3
    _fake_run(keeper.train_dir, 5)
    status = keeper.snapshot()
    assert status["next_iteration"] == 6 and status["total"] == 101
    assert status["segments"][0]["from_iteration"] == 3 and status["segments"][0]["to_iteration"] == 6
    assert status["training_return"] == {"iteration": 5, "pre_return": -45.0, "post_return": -15.0}
    assert keeper.status_line() == ("in progress: iteration 6 of 101; training return -45.00, post-update -15.00 "
                                    "(iteration 5)")
    kept = os.path.join(snapshots.folder(str(tmp_path / "results"), "rl_cheetah_dir_maml"), "rl_cheetah_dir_maml")
    assert sorted(os.listdir(kept)) == ["best.npz", "latest.npz"]  # itr_100.npz does not exist yet
    curve = snapshots.read_curve(os.path.join(keeper.out_dir, snapshots.CURVE))
    assert sorted(curve["post_return"]) == list(range(6)) and curve["t_total"][5] == 1.5

    # the evaluated snapshot travels once it exists; the curve keeps earlier segments' rows
    _fake_run(keeper.train_dir, 100, evaluated=100)
    with open(os.path.join(keeper.train_dir, "progress.csv"), "w") as f:  # a resumed segment's csv: its rows only
        f.write("itr,pre_return,post_return,t_total\n100,7.0,8.0,2.0\n")
    keeper.end()
    assert sorted(os.listdir(kept)) == ["best.npz", "itr_100.npz", "latest.npz"]
    curve = snapshots.read_curve(os.path.join(keeper.out_dir, snapshots.CURVE))
    assert sorted(curve["pre_return"]) == list(range(6)) + [100]

    # another machine: an empty logs folder is seeded with exactly the kept files; a newer one is left alone
    other = _keeper(tmp_path, logs="elsewhere")
    assert other.seed().startswith(f"seeded {other.train_dir} with ")
    for name in ("latest.npz", "best.npz", "itr_100.npz"):
        with open(os.path.join(kept, name), "rb") as a, open(os.path.join(other.train_dir, name), "rb") as b:
            assert a.read() == b.read(), name
    assert other.seed() is None
    assert other.segments == keeper.segments  # the wall time of the earlier segments comes along


def test_rl_rows_in_progress_and_old_records_render(tmp_path):
    def rec(name, **kw):
        exp = registry.EXPERIMENTS[name]
        return {"name": name, "title": exp.title, "paper_ref": exp.paper_ref, "table": exp.table, "spec": exp.spec,
                "quick": False, "status": "done", "date": "2026-01-01 00:00 UTC", "hardware": "test CPU",
                "command": f"./run_experiments.sh {name}", "commands": [], "results": [], "wall_s": 5.0, **kw}

    res = {"metric": "average return", "means": [-50.0, 290.0, 310.0, 312.0], "ci95": [3.0, 9.0, 8.0, 7.0]}
    records = {
        "rl_cheetah_dir_maml": rec("rl_cheetah_dir_maml", results=[{**res, "label": "itr_100, as the reference"}]),
        "rl_cheetah_dir_oracle": rec("rl_cheetah_dir_oracle", status="in progress: iteration 312 of 1,000",
                                     latest_evaluation={**res, "label": "itr_311, the latest of a run in progress"}),
        "rl_cheetah_dir_pretrained": rec("rl_cheetah_dir_pretrained", status="in progress: iteration 5 of 1,000"),
        "rl_cheetah_dir_random": rec("rl_cheetah_dir_random", results=[{**res, "checkpoint": None}]),
    }
    text = open(results.assemble(str(tmp_path), records, quick=False, figures={}, skipped={})).read()
    section = text.split("half-cheetah forward/backward")[1].split("## ")[0]
    row = {line.split(" | ")[0][2:]: line for line in section.splitlines() if line.startswith("| ")}
    assert "| itr_100, as the reference | -50.69 | -50.00 ± 3.00 | 293.19 | 290.00 ± 9.00 |" in row["maml"]
    assert "| itr_311, the latest of a run in progress; in progress: iteration 312 of 1,000 | 442.69 | " \
           "-50.00 ± 3.00 |" in row["oracle"]
    assert "| -43.03 | in progress: iteration 5 of 1,000 |" in row["pretrained"]
    assert "a fresh random policy" in row["random"]
    # the records made before snapshots were labelled (results/runs/rl_point_*.json) still render
    kept = runner.load_records(os.path.join(os.path.dirname(os.path.dirname(__file__)), "results"))
    old = {n: r for n, r in kept.items() if n.startswith("rl_point_")}
    text = open(results.assemble(str(tmp_path), old, quick=False, figures={}, skipped={})).read()
    point = text.split("2D navigation")[1].split("## ")[0]
    assert set(old) == {f"rl_point_{m}" for m in registry.RL_METHODS}
    assert "not run" not in point and "| best.npz (an older run's: after the best-returning iteration's update) |" \
        in point


def test_an_evaluation_of_a_snapshot_never_written_fails_clearly(tmp_path):
    ev = registry.EXPERIMENTS["rl_cheetah_dir_maml"].commands(False, str(tmp_path), "", "OUT")[-1]
    assert "itr_100.npz was not written" in runner._missing_snapshot(ev)
    open(tmp_path / "itr_100.npz", "w").close()
    assert runner._missing_snapshot(ev) is None


def test_latest_evaluates_the_kept_run_beside_its_record(tmp_path, monkeypatch):
    """--latest: seed from in_progress/, evaluate latest.npz tagged itr_<X>, keep the record's status."""
    import json

    keeper = _keeper(tmp_path, logs="first")
    _fake_run(keeper.train_dir, 41)
    keeper.begin()
    keeper.end()
    ran = []

    def fake_eval(cmd, log_path, echo, on_line=None):  # what rl.evaluate --tag writes
        ran.append(cmd)
        os.makedirs(cmd.flags["out_dir"], exist_ok=True)
        with open(os.path.join(cmd.flags["out_dir"], f"cheetah_dir_maml_{cmd.flags['tag']}.json"), "w") as f:
            json.dump({"task_avg_returns": [[1.0, 3.0]] * 4, "checkpoint": cmd.flags["checkpoint"],
                       "checkpoint_iteration": 41}, f)
        return 0, 1.0, []

    monkeypatch.setattr(runner, "run_command", fake_eval)
    exp = registry.EXPERIMENTS["rl_cheetah_dir_maml"]
    rec = runner.evaluate_latest(exp, False, str(tmp_path / "results"), str(tmp_path / "other_logs"), echo=lambda s: None)
    (cmd,) = ran
    assert cmd.flags["tag"] == "itr_41" and cmd.flags["checkpoint"].endswith("other_logs/rl_cheetah_dir_maml/latest.npz")
    ev = rec["latest_evaluation"]
    assert ev["label"].startswith("itr_41, the latest of a run in progress") and ev["means"] == [2.0] * 4
    assert rec["status"] == "in progress: iteration 42 of 101" and rec["results"] == []
    assert runner.load_records(str(tmp_path / "results"))["rl_cheetah_dir_maml"]["latest_evaluation"] == ev
