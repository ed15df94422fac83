"""`python -m maml_tf.reference`: reference checkpoints both ways, and fixture-format dumps."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from maml_tf import checkpoint as ckpt
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.learner import build, state_tensors, weight_tensors
from maml_tf.reference import checkpoints, cli
from maml_tf.reference.golden import key

REPO = pathlib.Path(__file__).resolve().parents[1]
REF_FLAGS = dict(datasource="miniimagenet", num_filters=32, max_pool=True, update_lr=0.01, num_updates=5,
                 meta_batch_size=4, update_batch_size=1)
OMNI = Config(datasource="omniglot", num_classes=5, update_batch_size=1, update_lr=0.4, num_updates=1,
              num_filters=4, meta_batch_size=2, seed=2)


@pytest.fixture(scope="module")
def reference_ckpt(reference_checkpoint) -> str:
    return reference_checkpoint


@pytest.mark.integration
def test_import_reference_checkpoint_equals_case_E_init(reference_ckpt, shared_golden_dir, tmp_path):
    cfg = Config(logdir=str(tmp_path), **REF_FLAGS)
    dest = checkpoints.import_reference(cfg, reference_ckpt, log=lambda *_: None)
    assert dest == str(tmp_path / "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm" / "model59000")
    assert ckpt.find(os.path.dirname(dest)) == dest  # what --train=False / resume will pick up
    assert tf.train.latest_checkpoint(os.path.dirname(dest)) == dest
    written = ckpt.load(dest)
    model_vars = sorted(k for k in written if k.startswith("model/"))
    assert len(model_vars) == 14
    with np.load(shared_golden_dir / "case_E.npz") as fixture:
        for name in model_vars:
            ours, ref = written[name], fixture[f"init__{key(name)}"]
            assert ours.dtype == ref.dtype and ours.shape == ref.shape and ours.tobytes() == ref.tobytes(), name
    with pytest.raises(MamlError, match="already exists.*--overwrite"):
        checkpoints.import_reference(cfg, reference_ckpt, log=lambda *_: None)


@pytest.mark.parametrize("changes,message", [
    (dict(num_filters=64), r"model/conv1 has shape \[3, 3, 3, 32\] but this model expects \[3, 3, 3, 64\]"),
    (dict(num_classes=20), r"model/w5 has shape \[800, 5\] but this model expects \[800, 20\]"),
    (dict(norm="None"), r"variable model/0/beta \[32\] is not part of the network"),
    (dict(norm="layer_norm"), r"variable model/0/gamma is missing"),
    (dict(datasource="omniglot", max_pool=False),
     r"model/conv1 has shape \[3, 3, 3, 32\] but this model expects \[3, 3, 1, 32\]"),
])
def test_import_names_the_variable_that_does_not_fit(reference_ckpt, tmp_path, changes, message):
    cfg = Config(logdir=str(tmp_path), **{**REF_FLAGS, **changes})
    with pytest.raises(MamlError, match=message):
        checkpoints.import_reference(cfg, reference_ckpt, log=lambda *_: None)
    assert not list(tmp_path.iterdir())  # nothing written


def test_export_ckpt_writes_only_reference_variables_a_tf1_saver_restores(tmp_path):
    learner = build(OMNI)
    learner.meta_optimizer.apply([tf.ones_like(v) for v in learner.variables])  # non-trivial Adam state
    tensors = dict(state_tensors(learner))
    tensors["maml_tf/next_itr"] = np.int64(11)
    source = str(tmp_path / "ours" / "model10")
    ckpt.save(source, tensors)
    dest = str(tmp_path / "ref" / "model10")
    weights = checkpoints.export_reference(OMNI, source, dest, log=lambda *_: None)
    expected = {n: v.numpy() for n, v in weight_tensors(learner).items()}
    reader = tf.train.load_checkpoint(dest)
    assert sorted(reader.get_variable_to_shape_map()) == sorted(expected) == sorted(weights)
    restored = checkpoints.restore_in_tf1_graph(dest, {n: (v.shape, v.dtype) for n, v in expected.items()})
    for n, v in expected.items():
        assert np.array_equal(restored[n], v), n
    assert tf.train.latest_checkpoint(str(tmp_path / "ref")) == dest
    # and back: importing the exported checkpoint gives the same weights
    back = checkpoints.import_reference(OMNI.replace(logdir=str(tmp_path / "back")), dest, log=lambda *_: None)
    loaded = ckpt.load(back)
    for n, v in expected.items():
        assert np.array_equal(loaded[n], v), n
    with pytest.raises(MamlError, match="already exists"):
        checkpoints.export_reference(OMNI, source, dest, log=lambda *_: None)
    with pytest.raises(MamlError, match=r"model/conv1 has shape \[3, 3, 1, 4\] but this model expects \[3, 3, 1, 8\]"):
        checkpoints.export_reference(OMNI.replace(num_filters=8), source, str(tmp_path / "x" / "m"), log=lambda *_: None)


def test_dump_reproduces_fixture_A_in_its_format(golden_dir, tmp_path):
    """dump on fixture A's batch and weights: the fixture's own keys, and the reference's numbers."""
    fixture_json = golden_dir / "case_A.json"
    batch = str(tmp_path / "batch.npz")
    cfg = cli.fixture_batch(str(fixture_json), batch)
    meta_in = json.loads(fixture_json.read_text())
    out = cli.dump(cfg, batch, str(tmp_path / "ours.npz"), test_num_updates=meta_in["test_num_updates"],
                   log=lambda *_: None)
    meta = json.loads((tmp_path / "ours.json").read_text())
    assert meta["flags"] == cfg.to_dict() and meta["test_num_updates"] == meta_in["test_num_updates"]
    with np.load(golden_dir / "case_A.npz") as ref, np.load(tmp_path / "ours.npz") as ours:
        expected_keys = set(ref.files) - {"sinusoid_amp", "sinusoid_phase"}
        assert set(ours.files) == expected_keys
        for k in expected_keys:
            assert ours[k].shape == ref[k].shape, k
        for k in ("outputas", "outputbs", "lossesb", "total_losses2", "meta_loss"):
            np.testing.assert_allclose(ours[k], ref[k], rtol=1e-5, atol=1e-7, err_msg=k)
        for k in (k for k in expected_keys if k.startswith("metagrad__")):
            np.testing.assert_allclose(ours[k], ref[k], rtol=1e-4, atol=1e-6 * np.abs(ref[k]).max(), err_msg=k)
    assert set(out) == expected_keys


def test_dump_bad_input(golden_dir, tmp_path):
    cfg = Config(datasource="sinusoid", norm="None", update_batch_size=10, meta_batch_size=4)
    rs = np.random.RandomState(0)
    arrays = {k: rs.rand(4, 10, 1).astype(np.float32) for k in cli.BATCH_KEYS}
    np.savez(tmp_path / "partial.npz", **{k: v for k, v in arrays.items() if k != "labelb"})
    with pytest.raises(MamlError, match="arrays missing: labelb"):
        cli.dump(cfg, str(tmp_path / "partial.npz"), str(tmp_path / "o1"), log=lambda *_: None)
    np.savez(tmp_path / "wrong.npz", **{**arrays, "inputb": rs.rand(4, 10, 3).astype(np.float32)})
    with pytest.raises(MamlError, match=r"inputb has shape \[4, 10, 3\], expected \[meta_batch, examples, 1\]"):
        cli.dump(cfg, str(tmp_path / "wrong.npz"), str(tmp_path / "o2"), log=lambda *_: None)
    np.savez(tmp_path / "noinit.npz", **arrays)
    with pytest.raises(MamlError, match="no init__<var> arrays: pass --checkpoint"):
        cli.dump(cfg, str(tmp_path / "noinit.npz"), str(tmp_path / "o3"), log=lambda *_: None)
    # a fixture whose npz lacks an array the json lists
    for f in ("case_A.json", "case_A_firstorder.npz", "case_A_float64.npz"):
        shutil.copy(golden_dir / f, tmp_path / f)
    with np.load(golden_dir / "case_A.npz") as ref:
        np.savez(tmp_path / "case_A.npz", **{k: ref[k] for k in ref.files if k != "outputbs"})
    with pytest.raises(MamlError, match="arrays missing: outputbs"):
        cli.fixture_batch(str(tmp_path / "case_A.json"), str(tmp_path / "b.npz"))
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "maml_tf.reference", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_cli_reports_bad_input(reference_ckpt, tmp_path):
    flags = [f"--{k}={v}" for k, v in {**REF_FLAGS, "num_filters": 64}.items()] + [f"--logdir={tmp_path}"]
    res = _cli("import-ckpt", f"--checkpoint={reference_ckpt}", *flags)
    assert res.returncode == 2 and "maml_tf.reference: error:" in res.stderr and "model/conv1" in res.stderr
    usage = _cli("convert")
    assert usage.returncode != 0 and "import-ckpt|export-ckpt|dump" in usage.stderr


@pytest.mark.slow
def test_cli_import_then_main_tests_it_on_synthetic_miniimagenet(reference_ckpt, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in range(5):
        folder = tmp_path / "data" / "miniImagenet" / "val" / f"nval{c:03d}"
        folder.mkdir(parents=True)
        for i in range(3):
            image = Image.fromarray(rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)).resize((84, 84))
            image.save(folder / f"nval{c:03d}{i:08d}.jpg")
    flags = [f"--{k}={v}" for k, v in REF_FLAGS.items()] + [f"--logdir={tmp_path / 'logs'}"]
    res = _cli("import-ckpt", f"--checkpoint={reference_ckpt}", *flags)
    assert res.returncode == 0, res.stderr[-2000:]
    test = subprocess.run([sys.executable, "-m", "maml_tf.main", *flags, "--train=False",
                           f"--data_dir={tmp_path / 'data'}", "--num_test_tasks=2", "--test_chunk=2"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stderr[-2000:]
    assert "model59000 on 2 tasks" in test.stdout
    results = list((tmp_path / "logs").glob("*/test_ubs1_stepsize0.01.json"))
    assert len(results) == 1
