"""examples/omniglot_keras_maml.py runs end to end at a tiny size on a synthetic Omniglot folder
in the prepared layout (<alphabet>/<character>/*.png, 28x28); with --export_dir (slow set) it also
writes a loadable SavedModel."""
import importlib.util
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def synthetic_omniglot(root: pathlib.Path, alphabets: int = 3, characters: int = 10, images: int = 3) -> pathlib.Path:
    """Each character is a fixed random 7x7 binary glyph scaled to 28x28, plus a little pixel noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for a in range(alphabets):
        for c in range(characters):
            folder = root / f"alphabet_{a}" / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            glyph = np.kron(rng.random((7, 7)) < 0.5, np.ones((4, 4), bool))
            for i in range(images):
                noisy = glyph ^ (rng.random((28, 28)) < 0.02)
                Image.fromarray(np.where(noisy, 0, 255).astype(np.uint8)).save(folder / f"{c:04d}_{i:02d}.png")
    from maml_tf.data.omniglot import mark_subset

    mark_subset(root)  # not the 1623 real characters, on purpose: split in the reference's proportions
    return root


def run_example(tmp_path, *extra):
    data = synthetic_omniglot(tmp_path / "omniglot_resized")
    spec = importlib.util.spec_from_file_location("omniglot_keras_maml", REPO / "examples" / "omniglot_keras_maml.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example.main(["--data_dir", str(data), "--iterations", "2", "--meta_batch_size", "2", "--filters", "4",
                         "--eval_tasks", "2", *extra])


def test_example_trains_and_evaluates(tmp_path, capsys):
    result = run_example(tmp_path)
    out = capsys.readouterr().out
    assert "iteration    0  meta-loss" in out and "iteration    1  meta-loss" in out
    assert "test accuracy over 2 5-way 1-shot tasks: before adaptation" in out
    assert 0.0 <= result["before"] <= 1.0 and 0.0 <= result["after"] <= 1.0 and np.isfinite(result["final_loss"])


@pytest.mark.slow
def test_example_exports(tmp_path):
    import tensorflow as tf

    run_example(tmp_path, "--export_dir", str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    x = tf.zeros([1, 5, 28, 28, 1])
    y = tf.one_hot(tf.range(5)[None], 5)
    assert loaded.adapt_and_predict(x, y, x)["predictions"].shape == (1, 5, 5)
