"""MiniImagenet task sampler on synthetic 84x84 JPEG class folders in the prepared layout."""
import pathlib
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from maml_tf.data import miniimagenet
from maml_tf.data.images import DataError
from maml_tf.data import omniglot
from maml_tf.data.tasks import make_dataset, scale_pixels_tf

NUM_CLASSES = {"train": 6, "val": 5, "test": 5}
PER_CLASS = 17          # enough for 1-shot training tasks: K + 15 = 16 per class


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "miniImagenet"
    rng = np.random.default_rng(1)
    for split, count in NUM_CLASSES.items():
        for c in range(count):
            folder = root / split / f"n{split}{c:03d}"
            folder.mkdir(parents=True)
            for i in range(PER_CLASS):
                # a smooth image (JPEG keeps it close) with a class-specific tint
                base = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
                image = Image.fromarray(base).resize((84, 84), Image.BILINEAR)
                image.save(folder / f"n{split}{c:03d}{i:08d}.jpg")
    (root / "train" / "ntrain000" / "README").write_text("not an image")
    return root


def _decoded(path: pathlib.Path) -> np.ndarray:
    """x/255 of TF's JPEG decode (3 channels), flattened H, W, C, as the reference graph does."""
    image = tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3).numpy()
    return (image.astype(np.float32) / np.float32(255.0)).reshape(-1)


def test_training_tasks_have_15_query_images_per_class(data_dir):
    n, k = 5, 1
    ds = make_dataset("miniimagenet", str(data_dir), "train", num_classes=n, samples_per_class=k + 15, seed=0)
    assert (ds.dim_input, ds.dim_output, ds.num_classes, ds.samples_per_class) == (21168, 5, 5, 16)
    inputs, labels = ds.task(0)
    assert inputs.shape == (80, 21168) and labels.shape == (80, 5)
    assert inputs.dtype == np.float32 and labels.dtype == np.float32
    assert 0.0 <= inputs.min() and inputs.max() <= 1.0 and inputs.std() > 0.05
    assert np.all(labels.sum(1) == 1)
    for row in labels.argmax(1).reshape(16, n):
        assert sorted(row) == list(range(n))
    support, query = labels[: n * k], labels[n * k:]
    assert support.sum(0).tolist() == [1] * n and query.sum(0).tolist() == [15] * n


def test_rows_are_unrotated_images_of_their_class_scaled_by_255(data_dir):
    n, s = 5, 4
    ds = make_dataset("miniimagenet", str(data_dir), "test", num_classes=n, samples_per_class=s, seed=2)
    for index in range(3):
        inputs, labels = ds.task(index)
        folders, rotations = ds.task_classes(index)
        assert not rotations.any()
        used = {c: set() for c in range(n)}
        for row, label in zip(inputs, labels.argmax(1)):
            match = [p for p in sorted(folders[label].glob("*.jpg")) if np.array_equal(_decoded(p), row)]
            assert len(match) == 1
            used[label].add(match[0])
            pil = np.asarray(Image.open(match[0]).convert("RGB"), np.float32).reshape(-1) / 255.0
            np.testing.assert_allclose(row, pil, atol=3 / 255)   # and it is the same picture for PIL
        assert all(len(v) == s for v in used.values())


def test_determinism_and_tf_data_stream(data_dir):
    a = make_dataset("miniimagenet", str(data_dir), "val", 5, 2, seed=5)
    b = make_dataset("miniimagenet", str(data_dir), "val", 5, 2, seed=5)
    np.testing.assert_array_equal(a.task(9)[0], b.task(9)[0])
    assert not np.array_equal(a.task(9)[0], a.task(10)[0])
    assert not np.array_equal(a.task(9)[0], make_dataset("miniimagenet", str(data_dir), "val", 5, 2, 6).task(9)[0])
    stream = iter(a.dataset(first_index=4, meta_batch_size=2))
    for j in range(2):
        x, y = next(stream)
        xb, yb = a.batch(4 + 2 * j, 2)
        assert x.shape == (2, 10, 21168)
        np.testing.assert_array_equal(x.numpy(), xb)
        np.testing.assert_array_equal(y.numpy(), yb)


def test_splits_are_the_class_folders(data_dir):
    for split, count in NUM_CLASSES.items():
        folders = miniimagenet.class_folders(data_dir, split)
        assert [f.name for f in folders] == sorted(f"n{split}{c:03d}" for c in range(count))


def test_missing_folders_say_how_to_prepare(tmp_path, data_dir):
    with pytest.raises(DataError, match="not found; prepare it with:\n  python -m maml_tf.data.prepare_miniimagenet"):
        make_dataset("miniimagenet", str(tmp_path / "miniImagenet"), "train", 5, 2, 0)
    (tmp_path / "mini" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape(f"split folder {tmp_path / 'mini' / 'val'} not found")):
        make_dataset("miniimagenet", str(tmp_path / "mini"), "val", 5, 2, 0)


def test_too_many_classes_and_too_few_images(data_dir):
    with pytest.raises(DataError, match="6-way tasks need at least 6 classes, but the test split .* has 5"):
        make_dataset("miniimagenet", str(data_dir), "test", 6, 2, 0)
    with pytest.raises(DataError, match="has 17 .jpg images, but a task needs 20 per class"):
        make_dataset("miniimagenet", str(data_dir), "train", 5, 5 + 15, 0)


@pytest.fixture()
def copy_dir(data_dir, tmp_path):
    target = tmp_path / "miniImagenet"
    shutil.copytree(data_dir, target)
    return target


def test_wrong_size_image_is_named(copy_dir):
    victim = sorted((copy_dir / "val" / "nval002").glob("*.jpg"))[5]
    Image.new("RGB", (80, 84)).save(victim)
    ds = make_dataset("miniimagenet", str(copy_dir), "val", 5, 2, 0)
    with pytest.raises(DataError, match=f"image {re.escape(str(victim))} is 80x84"):
        ds.dataset(0, 2)


def test_corrupt_image_is_named(copy_dir):
    victim = sorted((copy_dir / "val" / "nval001").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    ds = make_dataset("miniimagenet", str(copy_dir), "val", 5, 2, 0)
    with pytest.raises(DataError, match=f"image {re.escape(str(victim))}"):
        ds.task(0)


def test_classes_with_different_image_counts(copy_dir):
    """Sampling without replacement stays inside each class, also for a class smaller than the rest."""
    small = copy_dir / "val" / "nval003"
    for path in sorted(small.glob("*.jpg"))[5:]:
        path.unlink()
    ds = make_dataset("miniimagenet", str(copy_dir), "val", 5, 5, seed=0)
    flat = [p for files in ds.files for p in files]
    small_rows = 0
    for index in range(20):
        rows, labels = ds.plan(index)
        folders, _ = ds.task_classes(index)
        images = [flat[r % len(flat)] for r in rows]
        for image, label in zip(images, labels):
            assert image.parent == folders[label]
        for c in range(5):
            assert len({img for img, lab in zip(images, labels) if lab == c}) == 5
        small_rows += sum(img.parent == small for img in images)
    assert small_rows == 20 * 5          # 5-way out of 5 classes: the small class is in every task


@pytest.mark.parametrize("image_format", [miniimagenet.FORMAT, omniglot.FORMAT], ids=["x/255", "1-x/255"])
def test_tf_and_numpy_scaling_agree_bitwise(image_format):
    values = np.arange(256, dtype=np.uint8)
    with tf.device("/CPU:0"):
        in_graph = tf.data.Dataset.from_tensors(values).map(
            lambda v: scale_pixels_tf(v, image_format.invert)).get_single_element().numpy()
    lut = image_format.pixel_lut()
    assert lut.dtype == np.float32 and in_graph.dtype == np.float32
    np.testing.assert_array_equal(in_graph.view(np.uint32), lut.view(np.uint32))
    expected = values.astype(np.float32) / np.float32(255.0)
    np.testing.assert_array_equal(lut, np.float32(1.0) - expected if image_format.invert else expected)
