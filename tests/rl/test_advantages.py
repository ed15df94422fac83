"""Returns, the linear feature baseline and per-task advantage processing."""
import numpy as np
import pytest

from maml_tf.rl import advantages as adv


def _path(rng, length, obs_dim=3):
    return adv.Path(rng.normal(size=(length, obs_dim)) * 4, rng.normal(size=(length, 2)),
                    rng.normal(size=length), np.zeros((length, 4)))


def test_discount_cumsum():
    np.testing.assert_allclose(adv.discount_cumsum(np.array([1.0, 2.0, 3.0]), 0.5), [1 + 1 + 0.75, 2 + 1.5, 3])


def test_features_are_the_reference_ones():
    obs = np.array([[20.0, -1.0], [0.5, -30.0]])
    f = adv.baseline_features(obs)
    np.testing.assert_allclose(f[1], [0.5, -10, 0.25, 100, 0.01, 1e-4, 1e-6, 1.0])
    np.testing.assert_allclose(f[0], [10, -1, 100, 1, 0, 0, 0, 1])


def test_linear_baseline_matches_numpy_least_squares():
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=(n, 3)) for n in (30, 17, 25)]
    rets = [rng.normal(size=len(o)) for o in obs]
    b = adv.LinearFeatureBaseline()
    b.fit(obs, rets)
    x = np.concatenate([adv.baseline_features(o) for o in obs])
    y = np.concatenate(rets)
    ridge = np.linalg.solve(x.T @ x + 1e-5 * np.eye(x.shape[1]), x.T @ y)
    np.testing.assert_allclose(b.coeffs, ridge, rtol=1e-6, atol=1e-8)
    # the same ridge problem as an augmented least-squares solve [X; sqrt(lam) I] c = [y; 0]
    aug_x = np.vstack([x, np.sqrt(1e-5) * np.eye(x.shape[1])])
    aug_y = np.concatenate([y, np.zeros(x.shape[1])])
    lsq = np.linalg.lstsq(aug_x, aug_y, rcond=None)[0]
    np.testing.assert_allclose(b.predict(obs[0]), adv.baseline_features(obs[0]) @ lsq, rtol=1e-5, atol=1e-6)


def test_process_task_is_standardised_return_minus_in_sample_baseline():
    rng = np.random.default_rng(1)
    paths = [_path(rng, n) for n in (10, 7, 12)]
    p = adv.process_task(paths, discount=0.99)
    rets = [adv.discount_cumsum(q.rewards, 0.99) for q in paths]
    b = adv.LinearFeatureBaseline()
    b.fit([q.observations for q in paths], rets)
    raw = np.concatenate([r - b.predict(q.observations) for r, q in zip(rets, paths)])  # GAE lambda=1
    np.testing.assert_allclose(p.advantages, (raw - raw.mean()) / (raw.std() + 1e-8), rtol=1e-6, atol=1e-8)
    assert abs(p.advantages.mean()) < 1e-9 and abs(p.advantages.std() - 1) < 1e-6
    np.testing.assert_allclose(p.path_returns, [q.rewards.sum() for q in paths])


def test_pack_pads_and_masks():
    rng = np.random.default_rng(2)
    tasks = [adv.process_task([_path(rng, 5)]), adv.process_task([_path(rng, 3), _path(rng, 4)])]
    tb = adv.pack(tasks)
    assert tb.obs.shape == (2, 7, 3) and tb.mask.sum(1).tolist() == [5, 7]
    assert np.all(tb.advantages[0, 5:] == 0)


def test_empty_task_is_a_clear_error():
    with pytest.raises(ValueError, match="no completed paths"):
        adv.process_task([])
