"""MAML-RL bad input and faults (issue 16): checkpoints without pickle, one message per problem, tasks checked first."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from maml_tf.errors import MamlError
from maml_tf.rl import checkpoint as rl_checkpoint
from maml_tf.rl.config import RLConfigError, preset
from maml_tf.rl.evaluate import evaluate
from maml_tf.rl.train import Trainer, load_checkpoint, save_checkpoint

TINY = dict(fast_batch_size=2, meta_batch_size=2, max_path_length=10, hidden_sizes=(8,), snapshot_gap=1)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _state():
    rs = np.random.RandomState(3)
    rs.normal()
    gen = np.random.default_rng(5)
    gen.random(3)
    return {"best": -12.5, "action_rng": gen.bit_generator.state, "task_rng": rs.get_state(), "n_resets": 4,
            "env_tasks": [np.array([0.1, -0.2]), 0.3, None], "adam": [np.ones((2, 3), np.float32), np.int64(7)]}


def test_a_checkpoint_is_arrays_and_json_and_round_trips(tmp_path):
    path = str(tmp_path / "latest.npz")
    rl_checkpoint.save(path, np.arange(5.0), {"kind": "gaussian"}, '{"env": "point"}', 9, _state())
    with np.load(path, allow_pickle=False) as z:  # every member loads without pickle
        assert all(z[k].dtype != object for k in z.files) and "extra" not in z.files
    ck = rl_checkpoint.load(path)
    state = ck["state"]
    assert ck["itr"] == 9 and ck["policy"] == {"kind": "gaussian"} and ck["config"] == '{"env": "point"}'
    rs = np.random.RandomState()
    rs.set_state(tuple(state["task_rng"]))
    ref = np.random.RandomState(3)
    ref.normal()
    assert rs.normal() == ref.normal()  # the cached-gaussian flag and key came back
    gen = np.random.default_rng()
    gen.bit_generator.state = state["action_rng"]
    ref = np.random.default_rng(5)
    ref.random(3)
    assert gen.random() == ref.random()
    np.testing.assert_array_equal(state["env_tasks"][0], [0.1, -0.2])
    assert state["env_tasks"][1:] == [0.3, None] and state["n_resets"] == 4 and state["best"] == -12.5
    np.testing.assert_array_equal(state["adam"][0], np.ones((2, 3)))


def test_an_old_pickled_checkpoint_is_refused_without_unpickling(tmp_path):
    path = str(tmp_path / "old.npz")
    blob = np.frombuffer(pickle.dumps({"best": 1.0}), dtype=np.uint8)
    np.savez(path, theta=np.zeros(3), itr=np.int64(1), policy="{}", config="{}", extra=blob)
    with pytest.raises(MamlError, match="older maml_tf.rl, whose bookkeeping was a Python pickle; it is not read"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, message", [
    (b"just some text\n", "is corrupt or not a maml_tf.rl checkpoint"),
    (None, "is corrupt or not a maml_tf.rl checkpoint"),  # a truncated real one
])
def test_bad_checkpoint_files_are_named(tmp_path, content, message):
    path = str(tmp_path / "latest.npz")
    if content is None:
        rl_checkpoint.save(path, np.arange(50.0), {}, "{}", 1, _state())
        os.truncate(path, os.path.getsize(path) // 2)
    else:
        open(path, "wb").write(content)
    with pytest.raises(MamlError, match=f"checkpoint {path} {message}"):
        load_checkpoint(path)
    with pytest.raises(MamlError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.npz"))


@pytest.mark.parametrize("flags, message", [
    (dict(fast_lr=float("nan")), "--fast_lr must be a finite number > 0, got nan"),
    (dict(meta_step_size=float("inf")), "--meta_step_size must be a finite number > 0, got inf"),
    (dict(meta_batch_size=0), "--meta_batch_size must be >= 1, got 0"),
    (dict(seed=-1), "--seed must be >= 0"),
])
def test_bad_rl_flags_are_one_message(flags, message):
    with pytest.raises(RLConfigError, match=message):  # a MamlError: the entry points print it as one line
        preset("point", **flags)
    assert issubclass(RLConfigError, MamlError)


@pytest.mark.parametrize("args, message", [
    (["--fast_lr", "nan"], "--fast_lr must be a finite number > 0"),
    (["--meta_batch_size", "0"], "--meta_batch_size must be >= 1"),
    (["--env", "cheetah_vel", "--env_workers", "3"], "--env_workers=3 must divide the sampler's 40 envs"),
])
def test_rl_main_bad_flags_exit_with_a_message(tmp_path, args, message):
    out = _cli("maml_tf.rl.main", *args, "--run_dir", str(tmp_path / "run"))
    assert out.returncode == 2 and f"maml_tf.rl: error: {message}" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_trainer_refusals_name_the_problem(tmp_path):
    run = str(tmp_path / "run")
    cfg = preset("point", "pretrain", n_itr=1, **TINY)
    Trainer(cfg, run, log=lambda s: None).train()
    with pytest.raises(MamlError, match=f"--run_dir {run} already holds a run"):
        Trainer(cfg, run, log=lambda s: None)
    with pytest.raises(MamlError, match=r"other flags \(--max_path_length 10 there, 12 now, --hidden_sizes 8 there, "
                                        r"4 now\); give the run's flags"):
        Trainer(preset("point", "pretrain", n_itr=2, **{**TINY, "max_path_length": 12, "hidden_sizes": (4,)}), run,
                resume=True, log=lambda s: None)
    open(os.path.join(run, "latest.npz"), "w").write("not a checkpoint")
    with pytest.raises(MamlError, match="latest.npz is corrupt or not a maml_tf.rl checkpoint"):
        Trainer(preset("point", "pretrain", n_itr=2, **TINY), run, resume=True, log=lambda s: None)


def test_a_diverging_rl_run_stops_before_saving(tmp_path):
    run = str(tmp_path / "run")
    tr = Trainer(preset("point", "pretrain", n_itr=2, **TINY), run, log=lambda s: None)
    step = tr.iteration

    def blow_up(itr):
        row = step(itr)
        tr.theta = tr.theta * np.nan
        return row

    tr.iteration = blow_up
    with pytest.raises(MamlError, match="iteration 0: the policy parameters not finite: training diverged; stopped "
                                        "without saving"):
        tr.train()
    assert not [f for f in os.listdir(run) if f.endswith(".npz")]


def test_evaluate_refuses_a_checkpoint_of_another_method(tmp_path):
    cfg = preset("point", "maml", **TINY)
    tr = Trainer(cfg, str(tmp_path / "run"), log=lambda s: None)
    path = str(tmp_path / "maml.npz")
    save_checkpoint(path, tr.theta, tr.policy, cfg, 0)
    with pytest.raises(MamlError, match="--env point --method pretrain: checkpoint .* trained with --env point --algo "
                                        "maml; evaluate it with --env point --method maml"):
        evaluate("point", "pretrain", path, n_goals=2, n_itr=1, batch_size=100)


@pytest.mark.slow  # a subprocess or a training run: CI runs it (slow set)
def test_rl_evaluate_cli_turns_errors_into_messages(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    out = _cli("maml_tf.rl.evaluate", "--env", "point", "--method", "maml", "--checkpoint", str(text),
               "--out_dir", str(tmp_path / "res"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"maml_tf.rl.evaluate: error: checkpoint {text} is corrupt or not a maml_tf.rl checkpoint" in out.stderr
    assert "pickled" not in out.stderr


def test_a_bad_reset_task_changes_nothing_and_step_still_refuses():
    import gymnasium as gym

    from maml_tf.rl.envs.registration import make_vector_env

    envs = make_vector_env("maml_tf/PointGoal-v0", [[0.1, 0.1], [0.2, 0.2]])
    with pytest.raises(ValueError, match="task must be a number or an array of numbers, got 'garbage'"):
        envs.reset(seed=0, options={"task": "garbage"})
    with pytest.raises(RuntimeError, match="call reset\\(\\) \\(with a valid task\\) before step\\(\\)"):
        envs.step(envs.action_space.sample())
    env = gym.make("maml_tf/HalfCheetahVel-v0").unwrapped
    env.reset(seed=1, options={"task": 0.5})
    rng_state = env.np_random.bit_generator.state
    for bad in (True, "fast", [0.1, None]):
        with pytest.raises(ValueError, match="task must be a number"):
            env.reset(options={"task": bad})
    assert env.get_task() == 0.5 and env.np_random.bit_generator.state == rng_state


def test_point_vector_env_refuses_boolean_goals():
    from maml_tf.rl.envs.point_vector import PointGoalVectorEnv

    env = PointGoalVectorEnv(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="point tasks must be an array of numbers"):
        env.reset(options={"task": [[True, False], [0.1, 0.2]]})


def test_a_full_disk_during_an_rl_save_says_what_and_where(tmp_path):
    import resource

    path = str(tmp_path / "latest.npz")
    rl_checkpoint.save(path, np.zeros(3), {}, "{}", 1, _state())
    before = open(path, "rb").read()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # Python ignores SIGXFSZ: writes fail with EFBIG
    try:
        with pytest.raises(MamlError, match=f"could not write checkpoint {path}: .*disk full.*is intact"):
            rl_checkpoint.save(path, np.zeros(1 << 20), {}, "{}", 2, _state())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["latest.npz"]
