"""SavedModel export: loads without maml_tf, TF's own saved_model_cli, numbers equal the training code."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from maml_tf import checkpoint as ckpt
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.export import export_saved_model, read_metadata
from maml_tf.export.saved_model import resolve_checkpoint
from maml_tf.learner import assign_weights, build, weight_tensors

REPO = pathlib.Path(__file__).resolve().parents[1]

OMNI = Config(datasource="omniglot", num_classes=5, update_batch_size=1, update_lr=0.4, num_updates=2,
              num_filters=4, meta_batch_size=2, seed=3)
SINE = Config(datasource="sinusoid", norm="None", update_batch_size=10, update_lr=0.01, num_updates=1,
              meta_batch_size=4, seed=5)

# The child process: no maml_tf anywhere (the editable install's finder is refused too).
CHILD = r"""
import importlib.abc, json, sys
import numpy as np

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "maml_tf" or name.startswith("maml_tf."):
            raise ModuleNotFoundError(f"No module named {name!r} (refused in this test)")
        return None

sys.meta_path.insert(0, Refuse())
try:
    import maml_tf  # noqa: F401
    sys.exit("maml_tf was importable in the clean process")
except ModuleNotFoundError:
    pass
import tensorflow as tf

export_dir, inputs, outputs = sys.argv[1:4]
loaded = tf.saved_model.load(export_dir)
data = np.load(inputs)
out = {}
for case in json.loads(str(data["cases"])):
    name = case["name"]
    sx, sy, qx = data[name + "/sx"], data[name + "/sy"], data[name + "/qx"]
    out[name + "/serving"] = loaded.serving_default(tf.constant(sx))["predictions"].numpy()
    out[name + "/serving_q"] = loaded.serving_default(tf.constant(qx))["predictions"].numpy()
    if case["steps"] is None:
        res = loaded.adapt_and_predict(tf.constant(sx), tf.constant(sy), tf.constant(qx))
    else:
        res = loaded.signatures["adapt_and_predict"](
            support_x=tf.constant(sx), support_y=tf.constant(sy), query_x=tf.constant(qx),
            num_steps=tf.constant(case["steps"], tf.int32), step_size=tf.constant(case["lr"], tf.float32))
    out[name + "/adapted"] = res["predictions"].numpy()
np.savez(outputs, imported=np.array(sorted(m for m in sys.modules if m.split(".")[0] == "maml_tf")), **out)
"""


def _checkpoint(cfg: Config, folder: pathlib.Path) -> tuple[str, dict]:
    """A maml-tf checkpoint of a freshly initialised model, with non-trivial norm offsets."""
    learner = build(cfg)
    rs = np.random.RandomState(7)
    for name, var in weight_tensors(learner).items():
        if name.endswith("/beta"):
            var.assign(rs.normal(0, 0.1, var.shape).astype(np.float32))
    prefix = str(folder / cfg.exp_string / "model10")
    ckpt.save(prefix, weight_tensors(learner))
    return prefix, {k: v.numpy() for k, v in weight_tensors(learner).items()}


def _task(cfg: Config, rs, tasks: int, ways: int, shots: int, queries: int):
    if cfg.classification:
        sy = np.eye(ways, dtype=np.float32)[np.tile(np.arange(ways), shots)][None].repeat(tasks, 0)
        qy = np.eye(ways, dtype=np.float32)[rs.randint(0, ways, (tasks, queries))]
    else:
        sy = rs.normal(size=(tasks, shots, 1)).astype(np.float32)
        qy = rs.normal(size=(tasks, queries, 1)).astype(np.float32)
    sx = rs.rand(tasks, sy.shape[1], cfg.dim_input).astype(np.float32)
    qx = rs.rand(tasks, queries, cfg.dim_input).astype(np.float32)
    return sx, sy, qx, qy


def training_code_predictions(cfg: Config, weights: dict, batch, ways: int, shots: int, steps: int, lr: float,
                              dtype: str = "float32"):
    """What the training code (MetaLearner.evaluate) predicts for the same tasks after `steps` steps."""
    test_cfg = cfg.replace(num_classes=ways, update_batch_size=shots, update_lr=lr, num_updates=steps) \
        if cfg.classification else cfg.replace(update_batch_size=shots, update_lr=lr, num_updates=steps)
    learner = build(test_cfg, dtype=dtype, meta_batch_size=batch[0].shape[0], test_num_updates=steps)
    tensors = dict(weights)
    if cfg.classification and ways < cfg.num_classes:  # the export uses the head's first N' units
        head_w, head_b = learner.model.reference_names[-2:]
        tensors[head_w], tensors[head_b] = weights[head_w][:, :ways], weights[head_b][:ways]
    assign_weights(learner, tensors, "test weights")
    res = learner.evaluate(tuple(np.asarray(b, dtype) for b in batch))
    return res["outputas"].numpy(), res["outputbs"][steps - 1].numpy()


def assert_same_numbers(got, expected, recompute64, name: str) -> None:
    """Equal to 1e-5; or, where float32 itself is that noisy, as close to float64 as the training code.

    Batch norm over a handful of examples amplifies rounding differences (summation order of
    another matmul/conv kernel) through the inner steps; the training code's own float32 error
    against a float64 run of the same computation bounds what "equal" can mean there.
    """
    if np.allclose(got, expected, rtol=1e-5, atol=1e-5):
        return
    exact = recompute64()
    err_export = np.abs(got - exact).max()
    err_train = np.abs(expected - exact).max()
    assert err_export <= 10 * err_train + 1e-5, (
        f"{name}: export differs from float64 by {err_export:.3g}, the training code (float32) by {err_train:.3g}")


def run_clean_child(export_dir: str, cases: dict, tmp: pathlib.Path) -> dict:
    inputs, outputs = tmp / "inputs.npz", tmp / "outputs.npz"
    meta = [{"name": n, "steps": c["steps"], "lr": c["lr"]} for n, c in cases.items()]
    arrays = {"cases": np.array(json.dumps(meta))}
    for n, c in cases.items():
        arrays.update({f"{n}/sx": c["sx"], f"{n}/sy": c["sy"], f"{n}/qx": c["qx"]})
    np.savez(inputs, **arrays)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    proc = subprocess.run([sys.executable, "-I", "-c", CHILD, export_dir, str(inputs), str(outputs)],
                          cwd=str(tmp), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(outputs) as data:
        out = {k: data[k] for k in data.files}
    assert list(out.pop("imported")) == []
    return out


@pytest.fixture(scope="module")
def omniglot_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("omni")
    prefix, weights = _checkpoint(OMNI, tmp / "logs")
    return export_saved_model(OMNI, prefix, str(tmp / "export")), weights, tmp


@pytest.fixture(scope="module")
def sinusoid_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sine")
    prefix, weights = _checkpoint(SINE, tmp / "logs")
    return export_saved_model(SINE, prefix, str(tmp / "export")), weights, tmp


@pytest.mark.parametrize("cfg,fixture,shapes", [
    # (tasks, ways, shots, queries, steps, lr); steps None: the signature's defaults (training values)
    pytest.param(OMNI, "omniglot_export", [(2, 5, 1, 5, None, None), (3, 5, 2, 7, 3, 0.1), (1, 3, 1, 4, 1, 0.4)],
                 marks=pytest.mark.slow),
    (SINE, "sinusoid_export", [(4, 1, 10, 10, None, None), (2, 1, 5, 3, 4, 0.02)]),
], ids=["omniglot-conv-bn", "sinusoid-fc"])
def test_saved_model_matches_training_code_in_clean_process(cfg, fixture, shapes, request, tmp_path):
    export_dir, weights, _ = request.getfixturevalue(fixture)
    check_export(cfg, export_dir, weights, shapes, tmp_path)


def check_export(cfg: Config, export_dir: str, weights: dict, shapes: list, tmp_path: pathlib.Path) -> None:
    """Load `export_dir` in a process without maml_tf and compare with the training code per shape."""
    meta = read_metadata(export_dir)
    assert meta["flags"] == cfg.to_dict()
    assert [v["name"] for v in meta["variables"]] == list(weights)
    rs = np.random.RandomState(0)
    cases = {}
    for i, (tasks, ways, shots, queries, steps, lr) in enumerate(shapes):
        sx, sy, qx, qy = _task(cfg, rs, tasks, ways, shots, queries)
        cases[f"c{i}"] = dict(sx=sx, sy=sy, qx=qx, qy=qy, ways=ways, shots=shots, steps=steps, lr=lr)
    got = run_clean_child(export_dir, cases, tmp_path)
    for name, c in cases.items():
        steps = cfg.num_updates if c["steps"] is None else c["steps"]
        lr = cfg.update_lr if c["lr"] is None else c["lr"]
        outa, outb = training_code_predictions(cfg, weights, (c["sx"], c["sy"], c["qx"], c["qy"]),
                                               c["ways"], c["shots"], steps, lr)
        assert got[f"{name}/adapted"].shape == outb.shape
        batch = (c["sx"], c["sy"], c["qx"], c["qy"])
        assert_same_numbers(got[f"{name}/adapted"], outb, lambda: training_code_predictions(
            cfg, weights, batch, c["ways"], c["shots"], steps, lr, dtype="float64")[1], name)
        if c["ways"] == cfg.dim_output:
            # serving_default is the pre-update model (the training code's outputas) ...
            np.testing.assert_allclose(got[f"{name}/serving"], outa, rtol=1e-5, atol=1e-5, err_msg=name)
            # ... and adaptation moved the query predictions away from it
            assert np.abs(got[f"{name}/adapted"] - got[f"{name}/serving_q"]).max() > 1e-4, name


def _saved_model_cli() -> str:
    path = pathlib.Path(sys.executable).parent / "saved_model_cli"
    if not path.exists():
        pytest.fail(f"saved_model_cli not found next to {sys.executable}")
    return str(path)


@pytest.mark.slow
def test_saved_model_cli_show_and_run(omniglot_export):
    export_dir, weights, tmp = omniglot_export
    cli = _saved_model_cli()
    show = subprocess.run([cli, "show", "--dir", export_dir, "--all"], capture_output=True, text=True, timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['adapt_and_predict']", "support_x",
                 "support_y", "query_x", "num_steps", "step_size", "predictions", "(-1, -1, 784)"):
        assert text in show.stdout, text
    rs = np.random.RandomState(1)
    sx, sy, qx, qy = _task(OMNI, rs, 2, 4, 2, 6)
    files = {"support_x": sx, "support_y": sy, "query_x": qx, "num_steps": np.int32(3), "step_size": np.float32(0.2)}
    for name, value in files.items():
        np.save(tmp / f"{name}.npy", value)
    outdir = tmp / "cli_out"
    run = subprocess.run([cli, "run", "--dir", export_dir, "--tag_set", "serve", "--signature_def",
                          "adapt_and_predict", "--inputs", ";".join(f"{n}={tmp / n}.npy" for n in files),
                          "--outdir", str(outdir)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = np.load(outdir / "predictions.npy")
    _, expected = training_code_predictions(OMNI, weights, (sx, sy, qx, qy), 4, 2, 3, 0.2)
    assert_same_numbers(got, expected, lambda: training_code_predictions(
        OMNI, weights, (sx, sy, qx, qy), 4, 2, 3, 0.2, dtype="float64")[1], "saved_model_cli run")


def test_export_refuses_existing_dir_and_overwrites_atomically(omniglot_export):
    export_dir, weights, tmp = omniglot_export
    prefix = str(tmp / "logs" / OMNI.exp_string / "model10")
    before = sorted(os.listdir(tmp))
    with pytest.raises(MamlError, match="already exists.*--overwrite"):
        export_saved_model(OMNI, prefix, export_dir)
    # a checkpoint that does not fit: nothing written, the message names the variable
    with pytest.raises(MamlError, match=r"model/conv1 has shape \[3, 3, 1, 4\].*expects \[3, 3, 1, 8\]"):
        export_saved_model(OMNI.replace(num_filters=8), prefix, str(tmp / "other"))
    assert sorted(os.listdir(tmp)) == before  # no temp folders, no half-written export
    marker = pathlib.Path(export_dir) / "stale.txt"
    marker.write_text("old export")
    export_saved_model(OMNI, prefix, export_dir, overwrite=True)
    assert not marker.exists() and (pathlib.Path(export_dir) / "saved_model.pb").is_file()
    assert sorted(os.listdir(tmp)) == before


@pytest.mark.slow
def test_export_cli_from_experiment_folder(tmp_path):
    prefix, _ = _checkpoint(SINE, tmp_path / "logs")
    flags = ["--datasource=sinusoid", "--norm=None", "--update_batch_size=10", "--update_lr=0.01",
             "--meta_batch_size=4", f"--logdir={tmp_path / 'logs'}", f"--export_dir={tmp_path / 'sm'}"]
    cmd = [sys.executable, "-m", "maml_tf.export", *flags]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert prefix in first.stdout
    meta = json.loads((tmp_path / "sm" / "assets" / "maml_tf_export.json").read_text())
    assert meta["checkpoint"] == prefix and meta["exp_string"] == SINE.exp_string
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr
    assert resolve_checkpoint(SINE.replace(logdir=str(tmp_path / "logs")), None) == prefix
    with pytest.raises(MamlError, match="no checkpoint in .*numstep3.*--checkpoint=PREFIX"):
        resolve_checkpoint(SINE.replace(logdir=str(tmp_path / "logs"), num_updates=3), None)


@pytest.mark.slow
def test_reference_miniimagenet_checkpoint_export_matches_training_code(reference_checkpoint, tmp_path):
    """The original code's MiniImagenet checkpoint, exported directly, against MetaLearner.evaluate."""
    prefix = reference_checkpoint
    cfg = Config(datasource="miniimagenet", num_filters=32, max_pool=True, update_lr=0.01, num_updates=5,
                 meta_batch_size=4, update_batch_size=1)
    export_dir = export_saved_model(cfg, prefix, str(tmp_path / "export"))
    weights = ckpt.load(prefix)
    check_export(cfg, export_dir, {n: weights[n] for n in build(cfg).model.reference_names},
                 [(2, 5, 1, 3, None, None), (1, 5, 2, 4, 2, 0.02)], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("changes", [dict(conv=False), dict(norm="layer_norm")], ids=["omniglot-fc-bn", "conv-layernorm"])
def test_other_omniglot_networks_export(changes, tmp_path):
    cfg = OMNI.replace(**changes)
    prefix, weights = _checkpoint(cfg, tmp_path / "logs")
    export_dir = export_saved_model(cfg, prefix, str(tmp_path / "export"))
    check_export(cfg, export_dir, weights, [(2, 5, 1, 5, None, None), (2, 4, 3, 2, 2, 0.3)], tmp_path)
