"""Envs stepped in worker processes, a block each (`envs.block`): bit-identical to the in-process
SyncVectorEnv, tasks on the right sub-envs, clear errors, no processes left; the sampler, evaluate
and `rl.main` wiring of env_workers."""
import glob
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import maml_tf.rl.envs as E
from maml_tf.rl.config import preset
from maml_tf.rl.envs.block import BlockEnv, ShardedVectorEnv
from maml_tf.rl.evaluate import evaluate
from maml_tf.rl.policies import GaussianMLPPolicy
from maml_tf.rl.sampler import TaskSampler, numpy_inference

CHEETAH = "maml_tf/HalfCheetahVel-v0"
GRID = "maml_tf/GridWorld4-v0"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _children() -> set[int]:
    """Pids of this process's live children (from /proc: no psutil here)."""
    me, kids = os.getpid(), set()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            kids.add(int(stat.split("/")[2]))
    return kids


def _assert_same(a, b, where="infos"):
    """Recursive equality of vector-env info dicts (arrays, object arrays of arrays, nested dicts)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert isinstance(b, np.ndarray) and b.dtype == object and a.shape == b.shape, where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif a is None:
        assert b is None, where
    else:
        assert np.asarray(a).dtype == np.asarray(b).dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)


def _same_step(sync_out, sharded_out, step_infos):
    for name, x, y in zip(("obs", "rewards", "terminations", "truncations"), sync_out[:4], sharded_out[:4]):
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    if step_infos:
        _assert_same(sync_out[4], sharded_out[4])
    else:
        assert sharded_out[4] == {}


@pytest.mark.parametrize("env_id,horizon,step_infos", [(CHEETAH, 6, True), (GRID, 1, False)])
def test_sharded_matches_sync_bit_for_bit(env_id, horizon, step_infos):
    n, workers = 4, 2
    tasks = list(E.sample_tasks(env_id, n, np.random.RandomState(3)))
    kw = dict(env_kwargs={"max_episode_steps": horizon}, autoreset_mode=AutoresetMode.SAME_STEP)
    sync = E.make_vector_env(env_id, tasks, **kw)
    sharded = E.make_vector_env(env_id, tasks, workers=workers, step_infos=step_infos, **kw)
    try:
        assert isinstance(sharded, ShardedVectorEnv) and sharded.num_envs == n and sharded.workers == workers
        assert sharded.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        assert sharded.single_observation_space == sync.single_observation_space
        assert sharded.action_space == sync.action_space
        rng = np.random.default_rng(0)
        if E.ENV_INFO[env_id].discrete:
            actions = rng.integers(4, size=(16, n))
        else:  # unbounded Gaussian samples, as the policy sends (the env clips)
            actions = (1.5 * rng.normal(size=(16, n, E.ENV_INFO[env_id].act_dim))).astype(np.float32)
        ended = np.zeros(2, dtype=bool)
        total_reward = 0.0
        for t, a in enumerate(actions):
            if t in (0, 9):  # a second seeded reset mid-way, as every sampling round does
                (o_s, i_s), (o_p, i_p) = sync.reset(seed=11 * t + 1), sharded.reset(seed=11 * t + 1)
                assert o_s.dtype == o_p.dtype
                np.testing.assert_array_equal(o_s, o_p)
                _assert_same(i_s, i_p)
            out_s, out_p = sync.step(a), sharded.step(a)
            _same_step(out_s, out_p, step_infos)
            ended |= [out_s[2].any(), out_s[3].any()]
            total_reward += float(np.abs(out_s[1]).sum())
        # the sequence crossed episode ends (SAME_STEP resets) and the rewards are not all zero
        assert ended[1] if env_id == CHEETAH else ended.all()
        assert total_reward > 0
    finally:
        sync.close()
        sharded.close()


def test_sampler_with_two_env_workers_gives_the_in_process_paths():
    pol = GaussianMLPPolicy(20, 6, hidden_sizes=(16,), seed=0)
    tasks = E.sample_tasks(CHEETAH, 2, np.random.RandomState(1))
    theta_b = np.tile(pol.get_flat()[None], (2, 1))
    theta_b[:, -6:] = 0.5  # wide policy: raw samples outside [-1, 1]
    runs = {}
    for workers in (1, 2):
        s = TaskSampler(CHEETAH, 2, 8, envs_per_task=2, seed=3, env_workers=workers)
        assert isinstance(s.envs, ShardedVectorEnv) == (workers == 2)
        s.set_tasks(tasks)
        rng = np.random.default_rng(0)
        # two rounds: the second reset's seed differs (sampler._n_resets), both must match
        runs[workers] = [s.sample(numpy_inference(pol), theta_b, 50, "total", pol.sample_numpy, rng)
                         for _ in range(2)]
        s.close()
    n_paths = 0
    for one, two in zip(runs[1], runs[2]):
        for paths_1, paths_2 in zip(one, two):
            assert len(paths_1) == len(paths_2) >= 2
            for p, q in zip(paths_1, paths_2):
                for field in ("observations", "actions", "rewards", "dist_info"):
                    np.testing.assert_array_equal(getattr(p, field), getattr(q, field), err_msg=field)
                n_paths += 1
    assert n_paths >= 8


def test_evaluate_with_env_workers_matches_in_process():
    kw = dict(n_goals=2, n_itr=1, batch_size=20, log=lambda s: None)
    one = evaluate("cheetah_vel", "random", **kw)
    two = evaluate("cheetah_vel", "random", env_workers=2, **kw)
    assert one["task_avg_returns"] == two["task_avg_returns"]


def test_set_attr_puts_each_task_on_its_sub_env():
    goals = [0.0, 0.5, 1.5, 2.0]
    envs = ShardedVectorEnv(CHEETAH, [None] * 4, 2, {"max_episode_steps": 5})
    try:
        E.set_tasks(envs, goals)  # set_attr("task", [...]): sub-envs 0-1 in worker 0, 2-3 in worker 1
        assert [float(t) for t in envs.get_attr("task")] == goals
        envs.reset(seed=[7] * 4)  # the same start everywhere: only the goal differs
        _, rewards, *_ = envs.step(np.zeros((4, 6), np.float32))
        for goal, got in zip(goals, rewards):
            single = E.make_env(CHEETAH, task=goal)
            single.reset(seed=7)
            assert got == single.step(np.zeros(6, np.float32))[1]
        assert len(set(rewards.tolist())) == 4  # -|v - goal|: four goals, four rewards
        envs.set_attr("task", 1.25)  # a single value goes to every sub-env, as in SyncVectorEnv
        assert [float(t) for t in envs.get_attr("task")] == [1.25] * 4
        assert envs.call("get_task") == envs.get_attr("task")
    finally:
        envs.close()


def test_block_env_steps_its_sub_envs_and_takes_a_task_list():
    block = BlockEnv(GRID, [0, 1])
    block.task = [2, 3]  # map 2: goal up, map 3: goal down
    assert block.task == [2, 3]
    obs, info = block.reset(seed=0)
    assert obs["obs"].tolist() == [4, 4] and len(info["sub_infos"]) == 2
    obs, reward, term, trunc, info = block.step(np.array([3, 3]))  # both move up: a goal and a hole
    assert obs["results"].tolist() == [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]  # (reward, terminated, truncated)
    assert obs["obs"].tolist() == [4, 4]  # SAME_STEP: the reset observation comes back
    assert (reward, term, trunc, info) == (0.0, False, False, {})  # the block itself never ends
    block.close()
    blocks = gym.vector.AsyncVectorEnv([lambda: BlockEnv(GRID, [0, 0])] * 2)
    try:
        blocks.set_attr("task", [[0, 1], [2, 3]])
        assert blocks.get_attr("task") == ([0, 1], [2, 3])
    finally:
        blocks.close()


@pytest.mark.parametrize("workers", [0, 4, 7])
def test_bad_worker_counts_are_named(workers):
    before = _children()
    with pytest.raises(ValueError, match=rf"n=6 sub-envs into {workers} worker.*valid worker counts for n=6: "
                                         r"\[1, 2, 3, 6\]"):
        ShardedVectorEnv(GRID, [0] * 6, workers)
    assert _children() == before  # refused before any process started


def test_env_workers_errors_elsewhere():
    with pytest.raises(ValueError, match="n=3 sub-envs into 2"):
        TaskSampler(CHEETAH, 3, 5, env_workers=2)
    with pytest.raises(ValueError, match="point env"):
        TaskSampler("maml_tf/PointGoal-v0", 2, 5, env_workers=2)
    with pytest.raises(ValueError, match="asynchronous"):
        E.make_vector_env(CHEETAH, [None] * 2, asynchronous=True, workers=2)
    with pytest.raises(ValueError, match="SAME_STEP"):
        E.make_vector_env(CHEETAH, [None] * 2, workers=2, autoreset_mode=AutoresetMode.NEXT_STEP)
    with pytest.raises(ValueError, match=r"--env_workers=3 must divide the sampler's 40 envs"):
        preset("cheetah_vel", env_workers=3)
    with pytest.raises(ValueError, match="--env_workers must be an integer >= 0"):
        preset("cheetah_vel", env_workers=-1)
    with pytest.raises(ValueError, match="point env"):
        preset("point", env_workers=2)
    with pytest.raises(ValueError, match="asynchronous"):
        preset("cheetah_vel", env_workers=2, asynchronous=True)
    assert preset("cheetah_vel", env_workers=8).env_workers == 8
    assert preset("cheetah_vel", "oracle", env_workers=4).env_workers == 4  # TRPO: 20000 / 200 = 100 envs


def test_close_ends_every_worker_process():
    before = _children()
    envs = ShardedVectorEnv(GRID, [0, 1, 2, 3], 2)
    procs = envs.processes
    assert len(procs) == 2 and all(p.is_alive() for p in procs)
    assert {p.pid for p in procs} <= _children()
    envs.reset(seed=0)
    envs.step(np.zeros(4, dtype=np.int64))
    envs.close()
    assert all(not p.is_alive() and p.exitcode == 0 for p in procs)
    assert _children() <= before
    with pytest.raises(gym.error.ClosedEnvironmentError):
        envs.step(np.zeros(4, dtype=np.int64))


def test_training_with_env_workers_is_bit_identical_and_resumes_with_another_count(tmp_path):
    from maml_tf.rl.train import Trainer

    # TRPO on the rand env (the cheap mode): batch 40 / H 10 = 4 envs, 2 per worker process
    kw = dict(batch_size=40, max_path_length=10, hidden_sizes=(16, 16), snapshot_gap=1)
    quiet = dict(log=lambda s: None)
    in_process = Trainer(preset("cheetah_vel", "pretrain", n_itr=2, **kw), str(tmp_path / "a"), **quiet)
    in_process.train()
    sharded = Trainer(preset("cheetah_vel", "pretrain", n_itr=2, env_workers=2, **kw), str(tmp_path / "b"), **quiet)
    sharded.train()
    np.testing.assert_array_equal(in_process.theta, sharded.theta)
    # env_workers changes no result, so a run may resume with another count
    resumed = Trainer(preset("cheetah_vel", "pretrain", n_itr=3, **kw), str(tmp_path / "b"), resume=True, **quiet)
    assert resumed.start_itr == 2 and resumed.cfg.env_workers == 0
    resumed.train()


@pytest.mark.slow  # the CLI in a subprocess with 2 env workers: ~6 s (the in-process bit-identity test stays default)
def test_rl_main_with_env_workers(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    # TRPO on the rand env (the cheap mode): batch 40 / H 10 = 4 envs in 2 worker processes
    p = subprocess.run([sys.executable, "-m", "maml_tf.rl.main", "--env", "cheetah_vel", "--algo", "pretrain",
                        "--batch_size", "40", "--max_path_length", "10", "--n_itr", "1", "--env_workers", "2",
                        "--run_dir", str(run)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert '"env_workers": 2' in p.stdout and "itr    0 | pre" in p.stdout and "done: best training return" in p.stdout
    assert (run / "best.npz").exists()
