"""Export faults (issue 16): --overwrite never deletes what is not an export; the training flags come from the checkpoint."""
import os
import subprocess
import sys

import pytest

from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.export import export_saved_model, read_metadata
from maml_tf.run import run

TRAINED = Config(datasource="sinusoid", norm="None", update_batch_size=5, update_lr=0.01, num_updates=2,
                 meta_batch_size=2, metatrain_iterations=2, log=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("logs")
    cfg = TRAINED.replace(logdir=str(logdir))
    run(cfg, log=lambda *a: None)
    return cfg, os.path.join(cfg.logdir, cfg.exp_string, "model1")


def test_overwrite_refuses_a_folder_that_is_not_an_export(trained):
    cfg, prefix = trained
    folder = os.path.dirname(prefix)  # the training folder itself
    before = sorted(os.listdir(folder))
    with pytest.raises(MamlError, match="is not a maml_tf export .*--overwrite replaces only a previous export"):
        export_saved_model(cfg, prefix, folder, overwrite=True)
    assert sorted(os.listdir(folder)) == before


def test_the_export_takes_the_training_flags_from_the_checkpoint(trained, tmp_path):
    cfg, prefix = trained
    # the command line left --update_lr and --num_updates at their defaults (1e-3, 1)
    out = export_saved_model(Config(datasource="sinusoid", norm="None"), prefix, str(tmp_path / "sm"), explicit=set())
    meta = read_metadata(out)
    assert meta["flags"]["update_lr"] == 0.01 and meta["flags"]["num_updates"] == 2
    assert meta["signatures"]["adapt_and_predict"]["defaults"] == {"num_steps": 2, "step_size": 0.01}
    again = export_saved_model(cfg, prefix, str(tmp_path / "sm"), overwrite=True)  # a previous export: replaced
    assert read_metadata(again)["flags"]["update_lr"] == 0.01


def test_a_given_flag_that_differs_from_training_is_refused(trained, tmp_path):
    cfg, prefix = trained
    with pytest.raises(MamlError, match=r"--update_lr=0\.4 given, 0\.01 in training.*drop those flags"):
        export_saved_model(cfg.replace(update_lr=0.4), prefix, str(tmp_path / "sm"), explicit={"update_lr"})
    assert not os.path.exists(tmp_path / "sm")


@pytest.mark.slow  # a subprocess or a training run: CI runs it (slow set)
def test_cli_names_the_flag_given(trained, tmp_path):
    _, prefix = trained
    out = subprocess.run([sys.executable, "-m", "maml_tf.export", "--datasource=sinusoid", "--norm=None",
                          "--num_updates=5", f"--checkpoint={prefix}", f"--export_dir={tmp_path / 'sm'}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--num_updates=5 given, 2 in training" in out.stderr
    assert "update_lr" not in out.stderr.split("trained with other flags")[1].split(";")[0]  # not given: taken
