"""Bad input and faults in supervised runs (issue 16): nothing deleted, nothing silently wrong, one message each."""
import os
import resource
import shutil
import subprocess
import sys

import numpy as np
import pytest

from maml_tf import checkpoint as ckpt
from maml_tf.config import Config
from maml_tf.data.images import DataError
from maml_tf.errors import MamlError
from maml_tf.run import run

SIN = dict(datasource="sinusoid", norm="None", update_batch_size=5, update_lr=0.01, meta_batch_size=2,
           print_interval=100, summary_interval=100, save_interval=2, log=False)
QUIET = lambda *a: None  # noqa: E731


@pytest.mark.parametrize("flags, message", [
    (dict(meta_lr=float("nan")), "--meta_lr=nan: must be a finite number > 0"),
    (dict(meta_lr=float("inf")), "--meta_lr=inf: must be a finite number > 0"),
    (dict(update_lr=float("nan")), "--update_lr=nan: must be a finite number >= 0"),
    (dict(train_update_lr=float("nan")), "--train_update_lr=nan"),
    (dict(seed=-1), r"--seed=-1: must be an integer in \[0, "),
])
def test_step_sizes_and_seed_are_checked_at_the_flags(flags, message):
    with pytest.raises(MamlError, match=message):
        Config.from_dict({**SIN, **flags})


def test_a_diverging_run_stops_naming_the_iteration_and_saves_nothing_non_finite(tmp_path):
    cfg = Config.from_dict({**SIN, "meta_lr": 1e30, "metatrain_iterations": 6, "logdir": str(tmp_path)})
    with pytest.raises(MamlError, match=r"iteration [1-5]: the training loss is (nan|inf) \(not finite\).*--meta_lr=1e\+30"):
        run(cfg, log=QUIET)
    folder = os.path.join(str(tmp_path), cfg.exp_string)
    for itr in ckpt.list_iterations(folder):
        for name, value in ckpt.load(os.path.join(folder, f"model{itr}")).items():
            if np.asarray(value).dtype.kind == "f":
                assert np.all(np.isfinite(value)), (itr, name)


def test_non_finite_weights_are_never_saved(tmp_path):
    """A finite loss with weights already blown up (the update after it) must not reach a checkpoint."""
    from maml_tf.learner import build
    from maml_tf.train import loop, streams

    cfg = Config.from_dict({**SIN, "metatrain_iterations": 3, "logdir": str(tmp_path)})
    learner = build(cfg)
    learner.variables[0].assign(np.full(learner.variables[0].shape, np.nan, np.float32))
    with pytest.raises(MamlError, match="after iteration 4 the weights or optimizer state are not finite .*model/"):
        loop.checkpoint_tensors(cfg, learner, 5, streams.training_stream(cfg))


@pytest.mark.slow  # a subprocess or a training run: CI runs it (slow set)
def test_seed_minus_one_is_a_message_and_leaves_no_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "maml_tf.main", "--seed=-1", "--norm=None", f"--logdir={tmp_path}/logs",
                          "--metatrain_iterations=1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "maml_tf: error: --seed=-1" in out.stderr and "Traceback" not in out.stderr
    assert not os.path.exists(tmp_path / "logs")


def test_a_truncated_checkpoint_falls_back_to_the_intact_one_and_resumes_exactly(tmp_path):
    whole = Config.from_dict({**SIN, "metatrain_iterations": 7, "logdir": str(tmp_path / "whole")})
    run(whole, log=QUIET)
    cfg = whole.replace(metatrain_iterations=5, logdir=str(tmp_path / "cut"))
    run(cfg, log=QUIET)  # checkpoints model2, model4
    folder = os.path.join(cfg.logdir, cfg.exp_string)
    data = next(p for p in os.listdir(folder) if p.startswith("model4.data"))
    os.truncate(os.path.join(folder, data), 100)
    logs = []
    run(cfg.replace(metatrain_iterations=7), log=logs.append)
    text = "\n".join(map(str, logs))
    assert f"{os.path.join(folder, data)} cannot be read" in text and "falling back" in text
    assert "Resuming from" in text and "model2, the newest intact checkpoint" in text
    a = ckpt.load(os.path.join(whole.logdir, whole.exp_string, "model6"))
    b = ckpt.load(os.path.join(folder, "model6"))
    for name in a:
        if name.startswith("model/") or "Adam" in name:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_full_disk_during_a_save_says_what_and_where(tmp_path):
    prefix = str(tmp_path / "model5")
    ckpt.save(str(tmp_path / "model4"), {"w": np.ones(4, np.float32)})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # Python ignores SIGXFSZ: writes fail with EFBIG
    try:
        with pytest.raises(MamlError, match=f"could not write checkpoint {prefix}: .*disk full.*{tmp_path} are intact"):
            ckpt.save(prefix, {"w": np.ones(1 << 20, np.float32)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert sorted(os.listdir(tmp_path)) == ["model4.data-00000-of-00001", "model4.index"]


def test_no_iterations_and_no_checkpoint_says_so(tmp_path):
    logs = []
    run(Config.from_dict({**SIN, "metatrain_iterations": 0, "logdir": str(tmp_path)}), log=logs.append)
    assert "Nothing to train: --metatrain_iterations=0 and --pretrain_iterations=0." in logs
    assert not any("already at iteration" in str(l) for l in logs)


@pytest.fixture()
def mini_dir(synthetic_miniimagenet, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_miniimagenet, root)
    return root


MINI = dict(datasource="miniimagenet", metatrain_iterations=2, meta_batch_size=2, update_batch_size=1,
            update_lr=0.01, num_filters=4, max_pool=True, log=False, save_interval=1)


def test_a_corrupt_validation_image_stops_the_run_before_training(mini_dir, tmp_path):
    victim = sorted((mini_dir / "miniImagenet" / "val").glob("*/*.jpg"))[7]
    victim.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    cfg = Config.from_dict(dict(MINI, data_dir=str(mini_dir), logdir=str(tmp_path / "logs")))
    with pytest.raises(DataError, match=f"image {victim}"):
        run(cfg, log=QUIET)
    assert ckpt.list_iterations(os.path.join(cfg.logdir, cfg.exp_string)) == []


def test_a_corrupt_test_image_stops_a_run_that_will_test(mini_dir, tmp_path):
    victim = sorted((mini_dir / "miniImagenet" / "test").glob("*/*.jpg"))[3]
    victim.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    cfg = Config.from_dict(dict(MINI, data_dir=str(mini_dir), logdir=str(tmp_path / "logs"), test_after_train=True,
                                test_set=True, num_test_tasks=2, test_chunk=2))
    with pytest.raises(DataError, match=f"image {victim}"):
        run(cfg, log=QUIET)
    assert ckpt.list_iterations(os.path.join(cfg.logdir, cfg.exp_string)) == []


@pytest.mark.slow  # a subprocess or a training run: CI runs it (slow set)
def test_resume_on_other_data_is_refused(mini_dir, tmp_path):
    cfg = Config.from_dict(dict(MINI, data_dir=str(mini_dir), logdir=str(tmp_path / "logs")))
    run(cfg, log=QUIET)
    moved = tmp_path / "moved"
    shutil.copytree(mini_dir, moved)
    run(cfg.replace(data_dir=str(moved), metatrain_iterations=3), log=QUIET)  # same files elsewhere: fine
    shutil.rmtree(sorted((moved / "miniImagenet" / "train").iterdir())[0])
    with pytest.raises(MamlError, match=r"was trained on other data: its train split held 6 classes, 120 images .*"
                                        r"now gives 5 classes, 100 images"):
        run(cfg.replace(data_dir=str(moved), metatrain_iterations=4), log=QUIET)


@pytest.mark.slow  # a subprocess or a training run: CI runs it (slow set)
def test_cpu_only_startup_prints_no_cuinit_error():
    code = "import maml_tf, tensorflow as tf; tf.config.list_physical_devices('GPU'); print('ok')"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and "ok" in out.stdout
    assert "cuInit" not in out.stderr


@pytest.mark.slow  # a subprocess or a training run: CI runs it (slow set)
@pytest.mark.parametrize("flag, message", [("--json=/proc/nope/report.json", "--json: cannot write /proc/nope/report.json"),
                                           ("--dump=/proc/nope", "--dump: cannot write to /proc/nope")])
def test_parity_refuses_unwritable_outputs_before_comparing(golden_dir, flag, message):
    out = subprocess.run([sys.executable, "-m", "maml_tf.parity", str(golden_dir / "case_A.json"), flag],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and f"maml_tf.parity: error: {message}" in out.stderr and "Traceback" not in out.stderr
    assert "case A" not in out.stdout  # nothing was compared


def test_missing_data_leaves_no_empty_experiment_folder(tmp_path):
    cfg = Config.from_dict(dict(datasource="omniglot", data_dir=str(tmp_path / "nodata"), logdir=str(tmp_path / "logs")))
    with pytest.raises(DataError, match=f"--out {tmp_path / 'nodata' / 'omniglot_resized'}"):
        run(cfg, log=QUIET)
    assert not os.path.exists(tmp_path / "logs")
