"""One training iteration of each mode on the point env, checkpoints and resume (tiny sizes)."""
import csv
import os
import signal

import numpy as np
import pytest

from maml_tf.errors import MamlError
from maml_tf.rl.config import preset
from maml_tf.rl.train import Trainer, load_checkpoint
from maml_tf.train.stop import TrainingStopped

TINY = dict(fast_batch_size=2, meta_batch_size=3, max_path_length=20, hidden_sizes=(16, 16), snapshot_gap=1)


def test_one_meta_iteration_keeps_kl_within_the_bound(tmp_path):
    cfg = preset("point", "maml", n_itr=1, **TINY)
    tr = Trainer(cfg, str(tmp_path / "run"), log=lambda s: None)
    theta0 = tr.theta.copy()
    row = tr.iteration(0)
    assert np.isfinite(row["pre_return"]) and np.isfinite(row["post_return"])
    assert row["pre_trajs"] >= 6 and row["post_trajs"] >= 6
    # seeded (RLConfig.seed), so the outcome is fixed: the step is accepted (a rejected step leaving
    # the parameters as they were is test_trpo's line-search check)
    assert row["accepted"], row
    assert 0 < row["mean_kl"] <= cfg.meta_step_size
    assert row["loss_after"] < row["loss_before"]
    assert not np.array_equal(tr.theta, theta0)


def test_pretrain_and_oracle_modes_run(tmp_path):
    cfg = preset("point", "pretrain", n_itr=1, **TINY)
    assert cfg.mode == "maml0"
    tr = Trainer(cfg, str(tmp_path / "pre"), log=lambda s: None)
    theta0 = tr.theta.copy()
    row = tr.iteration(0)
    assert np.isnan(row["post_return"])
    # one Adam step moves every parameter with a nonzero gradient by about lr
    moved = np.abs(tr.theta - theta0)
    assert 0 < moved.max() <= 1.01e-3
    cfg = preset("point", "oracle", n_itr=1, batch_size=100, max_path_length=20, hidden_sizes=(16, 16))
    assert cfg.mode == "trpo" and cfg.env_id.endswith("Oracle-v0") and cfg.trpo_envs() == 5
    row = Trainer(cfg, str(tmp_path / "oracle"), log=lambda s: None).iteration(0)
    assert row["pre_trajs"] >= 5 and row["accepted"], row
    assert 0 < row["mean_kl"] <= 0.01 and row["loss_after"] < row["loss_before"]


def test_train_writes_checkpoints_and_resumes(tmp_path):
    # pretrain mode (first-order, Adam state in the checkpoint) keeps this test cheap
    run = str(tmp_path / "run")
    cfg = preset("point", "pretrain", n_itr=1, **TINY)
    Trainer(cfg, run, log=lambda s: None).train()
    with pytest.raises(MamlError, match="already holds a run .*pass --resume"):
        Trainer(cfg, run, log=lambda s: None)
    cfg2 = preset("point", "pretrain", n_itr=2, **TINY)
    tr = Trainer(cfg2, run, resume=True, log=lambda s: None)
    assert tr.start_itr == 1
    np.testing.assert_array_equal(tr.theta, load_checkpoint(os.path.join(run, "latest.npz"))["theta"])
    assert int(tr.pretrain.opt.iterations.numpy()) == 1  # Adam state restored
    tr.train()
    with open(os.path.join(run, "progress.csv")) as f:
        assert [int(r["itr"]) for r in csv.DictReader(f)] == [0, 1]
    assert {"latest.npz", "best.npz", "itr_0.npz", "itr_1.npz", "config.json"} <= set(os.listdir(run))
    assert load_checkpoint(os.path.join(run, "latest.npz"))["itr"] == 1
    with pytest.raises(MamlError, match=r"was written with other flags \(--fast_lr 0.5 there, 0.1 now\)"):
        Trainer(preset("point", "pretrain", n_itr=3, **{**TINY, "fast_lr": 0.1}), run, resume=True, log=lambda s: None)


def test_bad_flags_are_named():
    with pytest.raises(ValueError, match="--env"):
        preset("pong")
    with pytest.raises(ValueError, match="meta_step_size"):
        preset("point", meta_step_size=-1.0)
    with pytest.raises(ValueError, match="num_grad_updates"):
        preset("point", num_grad_updates=2)


@pytest.mark.parametrize("family, algo", [("cheetah_vel", "pretrain"), ("point", "maml")])
def test_a_resumed_run_continues_exactly(tmp_path, family, algo):
    """2 iterations + resume to 3 == 3 iterations, bit for bit. For plain TRPO on a rand env this needs
    the envs' persistent goals in the checkpoint (a fresh env would draw a new one at its first reset)."""
    kw = (dict(batch_size=40, max_path_length=10, hidden_sizes=(16, 16), snapshot_gap=1) if algo == "pretrain"
          else TINY)
    quiet = dict(log=lambda s: None)
    whole = Trainer(preset(family, algo, n_itr=3, **kw), str(tmp_path / "whole"), **quiet)
    whole.train()
    Trainer(preset(family, algo, n_itr=2, **kw), str(tmp_path / "parts"), **quiet).train()
    resumed = Trainer(preset(family, algo, n_itr=3, **kw), str(tmp_path / "parts"), resume=True, **quiet)
    assert resumed.start_itr == 2
    resumed.train()
    np.testing.assert_array_equal(whole.theta, resumed.theta)
    if algo == "pretrain":  # the goals were restored, not pinned: the envs still follow the reference's rule
        assert resumed.sampler.envs.get_attr("task") == whole.sampler.envs.get_attr("task")
        assert not any(resumed.sampler.envs.get_attr("_pinned"))


def test_trpo_baselines_use_the_reference_step_size():
    """cluster_trpo_cheetah.py trains the pretrained/oracle baselines at step_size 0.01; only the cheetah
    fwd/bwd MAML checkpoint used 0.02 (`mlr0.02`), which must not leak into its baselines."""
    assert preset("cheetah_dir", "maml").meta_step_size == 0.02
    for env in ("point", "cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir"):
        assert preset(env, "oracle").meta_step_size == 0.01
        assert preset(env, "pretrain").meta_step_size == 0.01


def _spy_thetas(tr: Trainer) -> dict:
    """Record theta before every iteration of `tr` (what earns that iteration's training return)."""
    before, step = {}, tr.iteration

    def spy(itr):
        before[itr] = tr.theta.copy()
        return step(itr)

    tr.iteration = spy
    return before


def test_snapshot_numbering_and_best_hold_what_the_reference_means(tmp_path):
    """itr_N: after iteration N's update, N % gap == 0 plus the last (the reference's itr_N.pkl / params.pkl);
    best.npz: the parameters that earned the best training return, i.e. before that iteration's update."""
    run = tmp_path / "run"
    cfg = preset("point", "pretrain", n_itr=4, **{**TINY, "snapshot_gap": 2})
    tr = Trainer(cfg, str(run), log=lambda s: None)
    before = _spy_thetas(tr)
    tr.train()
    assert sorted(f.name for f in run.glob("itr_*.npz")) == ["itr_0.npz", "itr_2.npz", "itr_3.npz"]
    for n, after in ((0, before[1]), (2, before[3]), (3, tr.theta)):
        ck = load_checkpoint(str(run / f"itr_{n}.npz"))
        assert ck["itr"] == n
        np.testing.assert_array_equal(ck["theta"], after)
    with open(run / "progress.csv") as f:
        returns = [float(r["pre_return"]) for r in csv.DictReader(f)]
    i = int(np.argmax(returns))  # the first best: a tie does not replace best.npz
    best = load_checkpoint(str(run / "best.npz"))
    np.testing.assert_array_equal(best["theta"], before[i])
    assert best["itr"] == i - 1 and best["state"]["return_iteration"] == i
    assert best["state"]["params"] == (f"itr_{i - 1}" if i else "initial")
    assert best["state"]["train_return"] == pytest.approx(returns[i])


def test_a_signal_stops_after_the_iteration_in_progress(tmp_path):
    run = tmp_path / "run"
    lines = []
    tr = Trainer(preset("point", "pretrain", n_itr=4, **TINY), str(run), log=lines.append)
    step = tr.iteration

    def signalled(itr):
        row = step(itr)
        if itr == 1:  # as `kill` would, in the middle of an iteration
            os.kill(os.getpid(), signal.SIGTERM)
        return row

    tr.iteration = signalled
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingStopped) as stopped:
        tr.train()
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back
    err = stopped.value
    assert (err.next_itr, err.total, err.exit_status) == (2, 4, 143)
    assert err.checkpoint == str(run / "latest.npz") and lines[-1] == f"Training {err}"
    ck = load_checkpoint(err.checkpoint)
    assert ck["itr"] == 1
    np.testing.assert_array_equal(ck["theta"], tr.theta)  # exactly the state after the finished iteration
    with open(run / "progress.csv") as f:
        assert [int(r["itr"]) for r in csv.DictReader(f)] == [0, 1]
