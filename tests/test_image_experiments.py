"""The image experiments end to end, on real Omniglot characters and synthetic MiniImagenet folders."""
import json
import os

import pytest

from maml_tf.config import Config
from maml_tf.data.omniglot import mark_subset
from maml_tf.data.prepare_omniglot import prepare_omniglot
from maml_tf.errors import MamlError
from maml_tf.run import run

QUIET = dict(log=False, print_interval=2, summary_interval=1, save_interval=2, val_interval=2, num_test_tasks=4,
             test_chunk=2)


@pytest.fixture(scope="module")
def data_dir(small_omniglot_src, synthetic_miniimagenet, tmp_path_factory):
    """A data/ folder with a few real Omniglot alphabets prepared by our tool, and synthetic MiniImagenet."""
    root = tmp_path_factory.mktemp("data")
    prepare_omniglot(small_omniglot_src, root / "omniglot_resized", log=lambda s: None)
    mark_subset(root / "omniglot_resized")  # 103 of the 1623 characters, on purpose
    (root / "miniImagenet").symlink_to(synthetic_miniimagenet / "miniImagenet")
    return root


def _result(cfg):
    folder = os.path.join(cfg.logdir, cfg.exp_string)
    return json.load(open(os.path.join(folder, f"test_ubs{cfg.update_batch_size}_stepsize{float(cfg.update_lr)}.json")))


@pytest.mark.parametrize("extra", [dict(), dict(conv=False), dict(stop_grad=True, norm="layer_norm")])
def test_omniglot_trains_validates_and_tests(data_dir, tmp_path, extra):
    cfg = Config.from_dict(dict(datasource="omniglot", data_dir=str(data_dir), logdir=str(tmp_path),
                                metatrain_iterations=4, meta_batch_size=2, update_batch_size=1, update_lr=0.4, num_filters=8,
                                **QUIET, **extra))
    logs = []
    run(cfg, log=logs.append)
    assert any("Validation results" in str(l) for l in logs)
    test = cfg.replace(train=False, test_set=True)
    run(test, log=logs.append)
    res = _result(test)
    assert res["metric"] == "accuracy" and res["num_tasks"] == 4 and len(res["means"]) == 11
    assert all(0.0 <= m <= 1.0 for m in res["means"])


def test_miniimagenet_trains_with_15_queries_and_tests(data_dir, tmp_path):
    cfg = Config.from_dict(dict(datasource="miniimagenet", data_dir=str(data_dir), logdir=str(tmp_path),
                                metatrain_iterations=2, meta_batch_size=2, update_batch_size=1, update_lr=0.01,
                                num_updates=1, num_filters=8, max_pool=True, **QUIET))
    run(cfg, log=lambda *a: None)
    test = cfg.replace(train=False, test_set=True, num_test_tasks=2)
    run(test, log=lambda *a: None)
    assert len(_result(test)["means"]) == 11


def test_missing_data_folder_says_how_to_prepare(tmp_path):
    cfg = Config.from_dict(dict(datasource="omniglot", data_dir=str(tmp_path), logdir=str(tmp_path / "logs")))
    with pytest.raises(MamlError, match="prepare_omniglot"):
        run(cfg, log=lambda *a: None)


def test_more_classes_than_the_split_has(data_dir, tmp_path):
    cfg = Config.from_dict(dict(datasource="miniimagenet", data_dir=str(data_dir), logdir=str(tmp_path),
                                num_classes=7, max_pool=True, num_filters=8, metatrain_iterations=1))
    with pytest.raises(MamlError, match="7"):
        run(cfg, log=lambda *a: None)


@pytest.mark.slow
def test_training_does_not_retrace_between_iterations(data_dir, tmp_path):
    """Every iteration feeds new batches; the compiled steps are traced once per signature only."""
    from maml_tf.learner import build
    from maml_tf.train import loop, streams

    cfg = Config.from_dict(dict(datasource="omniglot", data_dir=str(data_dir), logdir=str(tmp_path),
                                metatrain_iterations=12, meta_batch_size=2, update_batch_size=1, update_lr=0.4,
                                num_filters=8, **dict(QUIET, summary_interval=3, print_interval=6, val_interval=4)))
    learner = build(cfg)
    loop.train(cfg, learner, str(tmp_path), streams.training_stream(cfg), streams.validation_stream(cfg),
               log=lambda *a: None, write=False)
    # the train step with and without summaries (2 signatures), one evaluation graph
    assert learner._train.experimental_get_tracing_count() == 2
    assert learner._eval.experimental_get_tracing_count() == 1
