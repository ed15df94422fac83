"""Tests of the meta-RL task envs (maml_tf.rl.envs) against the reference's definitions (spec section 2, 4.3)."""
import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import maml_tf.rl.envs as E
from maml_tf.rl.envs import models

CONTINUOUS_IDS = [i for i in E.ENV_IDS if not E.ENV_INFO[i].discrete]
MUJOCO_IDS = [i for i in E.ENV_IDS if E.ENV_INFO[i].dt is not None]


def default_task(env_id):
    return np.array([0.2, -0.3]) if E.ENV_INFO[env_id].task_shape == (2,) else (1 if "Grid" in env_id else 1.3)


def rollout(env, actions, seed, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    out = [obs]
    rewards = []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        out.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return np.array(out, dtype=np.float64), np.array(rewards)


# ---------------------------------------------------------------------------- registration
def test_every_id_is_registered_with_its_horizon_and_sizes():
    assert len(E.ENV_IDS) == 13
    for env_id, info in E.ENV_INFO.items():
        spec = gym.spec(env_id)
        assert spec.max_episode_steps == info.horizon
        env = gym.make(env_id)
        u = env.unwrapped
        if info.discrete:
            assert env.observation_space.n == info.obs_dim and env.action_space.n == info.act_dim
        else:
            assert env.observation_space.shape == (info.obs_dim,)
            assert env.action_space.shape == (info.act_dim,)
            np.testing.assert_array_equal(env.action_space.low, -1.0)
            np.testing.assert_array_equal(env.action_space.high, 1.0)
            obs, _ = env.reset(seed=0)
            assert obs.shape == (info.obs_dim,) and obs.dtype == np.float64
        if info.dt is not None:
            assert u.dt == pytest.approx(info.dt) and u.frame_skip == 1
        env.close()


def test_sizes_match_the_reference():
    dims = {i: E.ENV_INFO[i].obs_dim for i in E.ENV_IDS}
    assert dims["maml_tf/PointGoal-v0"] == 2 and dims["maml_tf/PointGoalOracle-v0"] == 4
    assert dims["maml_tf/HalfCheetahVel-v0"] == 20 and dims["maml_tf/HalfCheetahDirOracle-v0"] == 21
    assert dims["maml_tf/AntVel-v0"] == 125 and dims["maml_tf/AntDirOracle-v0"] == 126
    assert dims["maml_tf/AntGoalOracle-v0"] == 127
    assert E.ENV_INFO["maml_tf/HalfCheetahVel-v0"].dt == 0.01 and E.ENV_INFO["maml_tf/AntVel-v0"].dt == 0.02
    assert E.ENV_INFO["maml_tf/PointGoal-v0"].horizon == 100 and E.ENV_INFO["maml_tf/AntDir-v0"].horizon == 200


@pytest.mark.parametrize("env_id", E.ENV_IDS)
def test_gymnasium_env_checker(env_id):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(gym.make(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", E.ENV_IDS)
def test_deterministic_under_a_seed(env_id):
    env_a, env_b = gym.make(env_id), gym.make(env_id)
    if E.ENV_INFO[env_id].discrete:
        actions = [0, 2, 1, 3, 0]
    else:
        actions = list(np.random.default_rng(0).normal(size=(30, env_a.action_space.shape[0])))
    oa, ra = rollout(env_a, actions, seed=7)
    ob, rb = rollout(env_b, actions, seed=7)
    np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(ra, rb)
    assert env_a.unwrapped.get_task() == pytest.approx(env_b.unwrapped.get_task())
    # the same env re-seeded replays its episode (the task persists, the noise is re-drawn)
    oc, rc = rollout(env_a, actions, seed=7)
    np.testing.assert_array_equal(oa, oc)
    np.testing.assert_array_equal(ra, rc)
    if E.ENV_INFO[env_id].dt is not None:
        od, _ = rollout(env_a, actions[:1], seed=8)
        assert not np.array_equal(od[0], oa[0])


# ---------------------------------------------------------------------------- tasks
@pytest.mark.parametrize(
    "env_id, low, high, shape",
    [
        ("maml_tf/PointGoal-v0", -0.5, 0.5, (2,)),
        ("maml_tf/HalfCheetahVel-v0", 0.0, 2.0, ()),
        ("maml_tf/HalfCheetahDir-v0", 0.0, 2.0, ()),
        ("maml_tf/AntVel-v0", 0.0, 3.0, ()),
        ("maml_tf/AntDir-v0", 0.0, 3.0, ()),
        ("maml_tf/AntGoal-v0", -3.0, 3.0, (2,)),
        ("maml_tf/AntGoalOracle-v0", -3.0, 3.0, (2,)),
    ],
)
def test_sample_tasks_replays_the_reference_goal_lists(env_id, low, high, shape):
    np.random.seed(1)
    expected = np.random.uniform(low, high, (40, *shape))
    np.random.seed(1)
    np.testing.assert_array_equal(E.sample_tasks(env_id, 40, np.random), expected)
    np.testing.assert_array_equal(E.env_class(env_id).sample_tasks(40, np.random.RandomState(1)), expected)
    gen = E.sample_tasks(env_id, 1000, np.random.default_rng(0))
    assert gen.shape == (1000, *shape) and gen.min() >= low and gen.max() < high


def test_direction_tasks_keep_u_and_threshold_it():
    for cls, threshold in [(E.HalfCheetahDirEnv, 1.0), (E.AntDirEnv, 1.5)]:
        env = cls()
        for u, d in [(threshold - 1e-9, -1.0), (threshold, 1.0), (0.0, -1.0), (2 * threshold - 1e-9, 1.0)]:
            env.reset(seed=0, options={"task": u})
            assert env.get_task() == u and env.direction == d
    # the reference's cheetah-dir test goals: seed 1, U(0, 2) -> 22 of 40 backward (spec 4.1)
    np.random.seed(1)
    u = E.sample_tasks("maml_tf/HalfCheetahDir-v0", 40, np.random)
    assert sum(E.direction_of(x, 1.0) < 0 for x in u) == 22
    # ant-dir, seed 2, U(0, 3) < 1.5 -> 25 of 40 backward
    np.random.seed(2)
    u = E.sample_tasks("maml_tf/AntDir-v0", 40, np.random)
    assert sum(E.direction_of(x, 1.5) < 0 for x in u) == 25


def test_task_persists_across_resets_in_rand_envs():
    env = gym.make("maml_tf/PointGoal-v0")
    env.reset(seed=0)
    first = env.unwrapped.get_task()
    env.reset(seed=1)
    env.reset()
    np.testing.assert_array_equal(env.unwrapped.get_task(), first)
    env.reset(options={"task": [0.1, 0.2]})
    env.reset()
    np.testing.assert_array_equal(env.unwrapped.get_task(), [0.1, 0.2])
    env.unwrapped.set_task(np.array([-0.3, 0.0]))
    obs, info = env.reset(seed=3)
    np.testing.assert_array_equal(info["task"], [-0.3, 0.0])


def test_oracles_redraw_each_reset_unless_a_task_is_set():
    env = gym.make("maml_tf/HalfCheetahVelOracle-v0")
    tasks = set()
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, _ = env.reset()
        assert obs[-1] == env.unwrapped.get_task()
        tasks.add(env.unwrapped.get_task())
    assert len(tasks) == 5
    env.unwrapped.set_task(0.7)
    for _ in range(3):
        obs, _ = env.reset()
        assert obs[-1] == 0.7
    env.unwrapped.set_task(None)
    env.reset()
    assert env.unwrapped.get_task() != 0.7
    # direction oracle appends d, not u
    env = gym.make("maml_tf/AntDirOracle-v0")
    obs, _ = env.reset(seed=0, options={"task": 0.3})
    assert obs[-1] == -1.0 and obs.shape == (126,)
    # point oracle appends the goal; goal-position ant oracle keeps its first goal, as the reference
    obs, _ = gym.make("maml_tf/PointGoalOracle-v0").reset(seed=0, options={"task": [0.25, -0.125]})
    np.testing.assert_array_equal(obs, [0.0, 0.0, 0.25, -0.125])
    env = gym.make("maml_tf/AntGoalOracle-v0")
    obs, _ = env.reset(seed=0)
    obs2, _ = env.reset()
    np.testing.assert_array_equal(obs[-2:], obs2[-2:])
    env = E.AntGoalOracleEnv(redraw_task=True)
    a, _ = env.reset(seed=0)
    b, _ = env.reset()
    assert not np.array_equal(a[-2:], b[-2:])


# ---------------------------------------------------------------------------- point
def test_point_zero_action_pays_minus_the_distance_every_step():
    goal = np.array([0.3, -0.4])
    env = gym.make("maml_tf/PointGoal-v0")
    obs, _ = env.reset(seed=0, options={"task": goal})
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    total, steps, trunc = 0.0, 0, False
    while not trunc:
        obs, r, term, trunc, _ = env.step(np.zeros(2))
        assert r == pytest.approx(-0.5) and not term
        total += r
        steps += 1
    assert steps == 100 and total == pytest.approx(-50.0)


def test_point_action_scaling_clipping_and_success_box():
    env = E.PointGoalEnv(task=[0.1, -0.05])
    env.reset(seed=0)
    obs, r, term, _, _ = env.step(np.array([5.0, -0.5]))  # -> move (0.1, -0.05): clipped, then scaled
    np.testing.assert_allclose(obs, [0.1, -0.05])
    assert term and r == pytest.approx(0.0, abs=1e-12)
    env.reset(options={"task": [0.0, 0.0]})
    _, r, term, _, _ = env.step(np.array([0.095, -0.095]))  # |dx|, |dy| = 0.0095 < 0.01: a box, not a ball
    assert term and r == pytest.approx(-np.hypot(0.0095, 0.0095))
    env.reset()
    _, _, term, _, _ = env.step(np.array([0.1, 0.0]))  # dx = 0.01: not < 0.01
    assert not term


def test_point_step_batch_matches_the_env():
    rng = np.random.default_rng(0)
    goals = E.PointGoalEnv.sample_tasks(5, rng)
    envs = [E.PointGoalEnv(task=g) for g in goals]
    pos = np.stack([e.reset(seed=0)[0] for e in envs])
    for _ in range(10):
        actions = rng.normal(size=(5, 2))
        pos, rewards, terms = E.point_step_batch(pos, goals, actions)
        for i, env in enumerate(envs):
            o, r, t, _, _ = env.step(actions[i])
            np.testing.assert_array_equal(o, pos[i])
            assert r == rewards[i] and t == terms[i]
    with pytest.raises(ValueError, match="shape"):
        E.point_step_batch(pos, goals[:3], actions)
    with pytest.raises(ValueError, match="NaN"):
        E.point_step_batch(pos, goals, np.full((5, 2), np.nan))


# ---------------------------------------------------------------------------- half-cheetah
def test_cheetah_model_is_the_reference_model():
    m = models.build_half_cheetah()
    assert m.opt.timestep == 0.01 and m.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    assert m.body_mass.sum() == pytest.approx(14.0)
    np.testing.assert_array_equal(m.actuator_gear[:, 0], [120, 90, 60, 120, 60, 30])
    np.testing.assert_array_equal(m.actuator_ctrlrange, np.tile([-1.0, 1.0], (6, 1)))


def test_cheetah_mass_scaling_equals_the_deprecated_settotalmass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo logs the deprecation warning to ./MUJOCO_LOG.TXT
    try:
        ref = mujoco.MjModel.from_xml_path(models.gymnasium_asset("half_cheetah.xml"))
    except ValueError as err:  # a MuJoCo that dropped settotalmass
        pytest.skip(f"settotalmass no longer compiles: {err}")
    ours = models.build_half_cheetah()
    for field in ["body_mass", "body_inertia", "body_subtreemass", "dof_invweight0", "body_invweight0", "actuator_acc0"]:
        np.testing.assert_allclose(getattr(ours, field), getattr(ref, field), rtol=1e-12, err_msg=field)


def test_cheetah_held_still_earns_minus_the_goal_velocity():
    env = E.HalfCheetahVelEnv(task=1.3)
    env.reset(seed=0)
    env.data.qpos[:] = env.init_qpos
    env.data.qvel[:] = 0.0
    env._forward()
    rewards = [env.step(np.zeros(6))[1] for _ in range(200)]
    assert np.mean(rewards) == pytest.approx(-1.3, abs=0.02)
    np.testing.assert_allclose(rewards[-50:], -1.3, atol=1e-2)


def test_cheetah_reward_terms_and_velocity_definition():
    env = E.HalfCheetahVelEnv(task=0.5)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.normal(size=6) * 1.5
        obs, r, term, trunc, info = env.step(action)
        # v = mass-weighted mean of every body's COM linear velocity (rllab's get_body_comvel)
        m, d = env.model, env.data
        vel = np.zeros(3)
        for b in range(1, m.nbody):
            v6 = np.zeros(6)
            mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_BODY, b, v6, 0)  # at the body COM, world frame
            vel += m.body_mass[b] * v6[3:]
        vel /= m.body_mass[1:].sum()
        assert info["x_velocity"] == pytest.approx(vel[0], abs=1e-9)
        expected = -abs(vel[0] - 0.5) - 0.05 * np.sum(np.clip(action, -1, 1) ** 2)
        assert r == pytest.approx(expected, abs=1e-9)
        assert not term and not trunc
    # obs layout: qpos[1:], qvel, torso subtree COM
    np.testing.assert_array_equal(obs[:8], env.data.qpos[1:])
    np.testing.assert_array_equal(obs[8:17], env.data.qvel)
    np.testing.assert_array_equal(obs[17:], env.data.subtree_com[1])


def test_cheetah_direction_reward_and_random_action_ctrl_anchor():
    env = E.HalfCheetahDirEnv(task=0.4)  # backward
    env.reset(seed=0)
    ctrl = 0.0
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = rng.normal(size=6)
        _, r, _, _, info = env.step(a)
        assert r == pytest.approx(-info["x_velocity"] - 0.05 * np.sum(np.clip(a, -1, 1) ** 2))
        ctrl += info["reward_ctrl"]
    # spec 4.3: unit-sigma clipped random actions cost ~0.05 * 6 * 0.52 * 200 = 31 per episode
    assert -36 < ctrl < -26


def test_observations_are_taken_after_a_forward_pass():
    for cls in [E.HalfCheetahVelEnv, E.AntVelEnv]:
        env = cls(task=1.0)
        env.reset(seed=0)
        env.step(np.ones(env.action_space.shape))
        fresh = mujoco.MjData(env.model)
        fresh.qpos[:], fresh.qvel[:] = env.data.qpos, env.data.qvel
        mujoco.mj_forward(env.model, fresh)
        np.testing.assert_allclose(env.data.subtree_com, fresh.subtree_com, atol=1e-12)
        np.testing.assert_allclose(env.data.xmat, fresh.xmat, atol=1e-12)


def test_reset_noise_scales():
    env = E.HalfCheetahVelEnv(task=1.0)
    dq, dv = [], []
    for seed in range(100):
        env.reset(seed=seed)
        dq.append(env.data.qpos - env.init_qpos)
        dv.append(env.data.qvel.copy())
    assert np.std(dq) == pytest.approx(0.01, rel=0.1)
    assert np.std(dv) == pytest.approx(0.1, rel=0.1)


# ---------------------------------------------------------------------------- ant
def test_ant_model_has_the_reference_physics():
    m = models.build_ant()
    assert m.opt.timestep == 0.02 and m.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    np.testing.assert_array_equal(m.actuator_ctrlrange, np.tile([-150.0, 150.0], (8, 1)))
    np.testing.assert_array_equal(m.actuator_gear[:, 0], 1.0)
    np.testing.assert_allclose(m.geom_solref, np.tile([0.02, 1.0], (m.ngeom, 1)))
    np.testing.assert_allclose(m.geom_solimp[:, :3], np.tile([0.8, 0.8, 0.01], (m.ngeom, 1)))
    np.testing.assert_allclose(m.geom_margin, 0.01)
    np.testing.assert_allclose(m.geom_friction, np.tile([1.0, 0.5, 0.5], (m.ngeom, 1)))
    assert m.nbody == 14 and m.body_mass.sum() == pytest.approx(0.911, abs=1e-3)
    np.testing.assert_array_equal(
        models.numeric(m, "init_qpos"), [0, 0, 0.55, 1, 0, 0, 0, 0, 1, 0, -1, 0, -1, 0, 1]
    )


def test_ant_reset_pose_and_observation_layout():
    env = E.AntVelEnv(task=1.0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(env.data.qpos, env.init_qpos, atol=0.05)
    assert env.init_qpos[2] == 0.55
    obs, *_ = env.step(np.zeros(8))
    d = env.data
    np.testing.assert_array_equal(obs[:15], d.qpos)
    np.testing.assert_array_equal(obs[15:29], d.qvel)
    np.testing.assert_array_equal(obs[29:113], np.clip(d.cfrc_ext, -1, 1).ravel())
    np.testing.assert_array_equal(obs[113:122], d.xmat[1])
    np.testing.assert_array_equal(obs[122:125], d.subtree_com[1])


def test_ant_reward_terms_survive_bonus_and_contact_cost():
    env = E.AntVelEnv(task=2.0)
    env.reset(seed=0)
    seen_contact = False
    rng = np.random.default_rng(0)
    for t in range(40):
        a = rng.normal(size=8) * 0.3 if t % 2 else np.full(8, 2.0)  # out of range: clipped
        _, r, term, _, info = env.step(a)
        cf = np.clip(env.data.cfrc_ext, -1, 1)
        contact = 0.0005 * np.sum(cf**2)
        ctrl = 0.005 * np.sum(np.clip(a, -1, 1) ** 2)
        v = env.data.subtree_linvel[1, 0]
        assert info["reward_contact"] == pytest.approx(-contact)
        assert info["reward_ctrl"] == pytest.approx(-ctrl)
        assert r == pytest.approx(-abs(v - 2.0) + 1.0 - ctrl - contact + 0.05)
        seen_contact |= contact > 0
        if term:
            break
    assert seen_contact, "cfrc_ext stayed zero: contact forces are not computed"
    # direction and goal-position forward terms
    env = E.AntDirEnv(task=2.0)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(8))
    assert info["reward_forward"] == pytest.approx(env.data.subtree_linvel[1, 0])
    env = E.AntGoalEnv(task=[1.0, -2.0])
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(8))
    com = env.data.subtree_com[1]
    assert info["reward_forward"] == pytest.approx(-abs(com[0] - 1.0) - abs(com[1] + 2.0) + 4.0)


def test_ant_terminates_outside_the_healthy_height_and_pays_the_survive_reward():
    env = E.AntDirEnv(task=2.0)
    env.reset(seed=0)
    env.data.qpos[2] = 3.0
    env.data.qvel[:] = 0.0
    env._forward()
    _, r, term, trunc, info = env.step(np.zeros(8))
    assert term and not trunc
    assert r == pytest.approx(info["reward_forward"] + info["reward_contact"] + 0.05)


# ---------------------------------------------------------------------------- sanity anchors (spec 4.3)
def test_anchor_point_zero_action_return():
    np.random.seed(1)
    goals = E.sample_tasks("maml_tf/PointGoal-v0", 40, np.random)
    envs = E.make_vector_env("maml_tf/PointGoal-v0", goals)
    envs.reset(seed=0)
    total = np.zeros(40)
    for _ in range(100):
        _, r, _, _, _ = envs.step(np.zeros((40, 2)))
        total += r
    np.testing.assert_allclose(total, -100 * np.linalg.norm(goals, axis=1))
    assert -42 < total.mean() < -34  # E||g|| ~ 0.383 -> ~ -38; MAML pre-update -40.4


def test_anchor_cheetah_and_ant_standing_still():
    for g in [0.5, 1.5]:
        env = gym.make("maml_tf/HalfCheetahVel-v0")
        _, rewards = rollout(env, [np.zeros(6)] * 200, seed=0, options={"task": g})
        assert len(rewards) == 200 and rewards.sum() == pytest.approx(-200 * g, abs=10)
    env = gym.make("maml_tf/AntVel-v0")
    _, rewards = rollout(env, [np.zeros(8)] * 200, seed=0, options={"task": 1.0})
    assert len(rewards) == 200  # standing still does not fall
    assert (-1.0 + 1.05) * 200 - 5 < rewards.sum() < (-1.0 + 1.05) * 200 + 3
    env = gym.make("maml_tf/AntDir-v0")
    _, rewards = rollout(env, [np.zeros(8)] * 200, seed=0, options={"task": 2.0})
    assert 3 < rewards.sum() < 12  # ~ +10 survive reward minus contact cost (reference: 3-9)


@pytest.mark.parametrize(
    "env_id, goal_seed, reference, low, high",
    [
        ("maml_tf/HalfCheetahDir-v0", 1, -35.73, -45, -25),
        ("maml_tf/HalfCheetahVel-v0", 1, -254.83, -290, -210),
        ("maml_tf/AntDir-v0", 2, 3.11, -10, 15),
        ("maml_tf/AntVel-v0", 1, -78.64, -120, -35),
    ],
)
def test_anchor_unit_gaussian_actions_near_the_reference_random_policy(
    env_id, goal_seed, reference, low, high
):
    """One N(0, 1)-action episode per reference test goal lands near the 'random' step-0 return (spec 4.1).

    The reference's random policy is a fresh MLP with sigma = 1, so its actions are roughly unit
    Gaussians; the comparison checks scales (ctrl/contact costs, velocity term, termination), not digits.
    """
    np.random.seed(goal_seed)
    goals = E.sample_tasks(env_id, 40, np.random)
    envs = E.make_vector_env(env_id, goals)
    rng = np.random.default_rng(0)
    envs.reset(seed=0)
    returns, alive = np.zeros(40), np.ones(40, dtype=bool)
    for _ in range(200):
        _, r, term, trunc, _ = envs.step(rng.normal(size=(40, E.ENV_INFO[env_id].act_dim)))
        returns += r * alive
        alive &= ~(term | trunc)
    envs.close()
    assert low < returns.mean() < high, (returns.mean(), reference)


# ---------------------------------------------------------------------------- grid world
def test_grid_world_maps_and_rewards():
    env = gym.make("maml_tf/GridWorld4-v0")
    obs, _ = env.reset(seed=0, options={"task": 0})  # goal left of the centre
    assert obs == 4
    obs, r, term, _, _ = env.step(0)
    assert (obs, r, term) == (3, 1.0, True)
    env.reset(options={"task": 0})
    obs, r, term, _, _ = env.step(2)
    assert (obs, r, term) == (5, 0.0, True)
    for task, action in [(1, 2), (2, 3), (3, 1)]:
        env.reset(options={"task": task})
        assert env.step(action)[1:3] == (1.0, True)
    np.random.seed(1)
    expected = np.random.randint(4, size=(60,))
    np.random.seed(1)
    np.testing.assert_array_equal(E.sample_tasks("maml_tf/GridWorld4-v0", 60, np.random), expected)
    with pytest.raises(ValueError, match="map id"):
        env.reset(options={"task": 4})
    with pytest.raises(ValueError, match="action"):
        env.step(1.5)


# ---------------------------------------------------------------------------- vector envs
@pytest.mark.parametrize(
    "env_id", ["maml_tf/PointGoal-v0", "maml_tf/HalfCheetahDir-v0", "maml_tf/AntVelOracle-v0"]
)
def test_sync_vector_env_one_task_per_sub_env(env_id):
    tasks = E.sample_tasks(env_id, 3, np.random.default_rng(0))
    envs = E.make_vector_env(env_id, tasks)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (3, E.ENV_INFO[env_id].obs_dim)
    for got, want in zip(envs.get_attr("task"), tasks):
        np.testing.assert_array_equal(got, want)
    for _ in range(E.ENV_INFO[env_id].horizon + 2):  # through an autoreset: tasks persist
        obs, r, term, trunc, _ = envs.step(np.zeros((3, E.ENV_INFO[env_id].act_dim)))
    for got, want in zip(envs.get_attr("task"), tasks):
        np.testing.assert_array_equal(got, want)
    if E.ENV_INFO[env_id].oracle:
        np.testing.assert_array_equal(obs[:, -1], tasks)
    new = E.sample_tasks(env_id, 3, np.random.default_rng(1))
    E.set_tasks(envs, new)
    envs.reset()
    for got, want in zip(envs.get_attr("task"), new):
        np.testing.assert_array_equal(got, want)
    envs.call("set_task", new[0])
    assert all(np.array_equal(t, new[0]) for t in envs.get_attr("task"))
    with pytest.raises(ValueError, match="tasks"):
        E.set_tasks(envs, new[:2])
    envs.close()


def test_point_vector_env_rewards_differ_by_task():
    goals = np.array([[0.3, 0.4], [-0.5, 0.0]])
    envs = E.make_vector_env("maml_tf/PointGoal-v0", goals)
    envs.reset(seed=0)
    _, r, _, _, _ = envs.step(np.zeros((2, 2)))
    np.testing.assert_allclose(r, [-0.5, -0.5])
    _, r, _, _, _ = envs.step(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    np.testing.assert_allclose(r, [-np.hypot(0.2, 0.4), -0.4])


@pytest.mark.parametrize("env_id", ["maml_tf/PointGoalOracle-v0", "maml_tf/HalfCheetahVel-v0"])
def test_async_vector_env_one_task_per_sub_env(env_id):
    tasks = E.sample_tasks(env_id, 2, np.random.default_rng(0))
    envs = E.make_vector_env(env_id, tasks, asynchronous=True, context="spawn")
    sync = E.make_vector_env(env_id, tasks)
    try:
        obs_a, _ = envs.reset(seed=5)
        obs_s, _ = sync.reset(seed=5)
        np.testing.assert_array_equal(obs_a, obs_s)
        actions = np.random.default_rng(1).normal(size=(5, 2, E.ENV_INFO[env_id].act_dim))
        for a in actions:
            oa, ra, *_ = envs.step(a)
            os_, rs, *_ = sync.step(a)
            np.testing.assert_array_equal(oa, os_)
            np.testing.assert_array_equal(ra, rs)
        E.set_tasks(envs, tasks[::-1])
        for got, want in zip(envs.get_attr("task"), tasks[::-1]):
            np.testing.assert_array_equal(got, want)
    finally:
        envs.close()
        sync.close()


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_bad_actions_raise(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    dim = E.ENV_INFO[env_id].act_dim
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(dim + 1))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((1, dim)))
    with pytest.raises(ValueError, match="shape"):
        env.step(0.0)
    bad = np.zeros(dim)
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        env.step(bad)


@pytest.mark.parametrize("env_id", E.ENV_IDS)
def test_bad_tasks_and_options_raise(env_id):
    env = gym.make(env_id)
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"goal": 1.0})
    with pytest.raises(TypeError, match="dict"):
        env.reset(options=[1.0])
    wrong = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="task"):
        env.reset(options={"task": wrong})
    with pytest.raises(ValueError, match="task"):
        env.unwrapped.set_task(np.full(E.ENV_INFO[env_id].task_shape or (), np.nan))
    env.reset(seed=0, options={"task": default_task(env_id)})  # still usable


def test_bad_calls_raise():
    with pytest.raises(ValueError, match="unknown env id"):
        E.make_vector_env("maml_tf/Nope-v0", [1.0])
    with pytest.raises(ValueError, match="at least one task"):
        E.make_vector_env("maml_tf/PointGoal-v0", [])
    with pytest.raises(TypeError, match="rng"):
        E.sample_tasks("maml_tf/PointGoal-v0", 3, 42)
    with pytest.raises(ValueError, match="non-negative"):
        E.sample_tasks("maml_tf/PointGoal-v0", -1, np.random.default_rng())
    with pytest.raises(RuntimeError, match="reset"):
        E.AntVelEnv().step(np.zeros(8))
    with pytest.raises(RuntimeError, match="reset"):
        E.PointGoalEnv().step(np.zeros(2))
