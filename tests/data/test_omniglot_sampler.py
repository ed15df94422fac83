"""Omniglot task sampler on real characters (6 alphabets, 103 characters: tests/fixtures/omniglot)."""
import pathlib
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from maml_tf.data import omniglot
from maml_tf.data.images import DataError
from maml_tf.data.prepare_omniglot import prepare_omniglot
from maml_tf.data.tasks import ImageTaskDataset, make_dataset

NUM_CHARACTERS = 14 + 14 + 16 + 17 + 20 + 22


@pytest.fixture(scope="module")
def data_dir(small_omniglot_src, tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "omniglot_resized"
    prepare_omniglot(small_omniglot_src, out, log=lambda s: None)
    omniglot.mark_subset(out)  # 103 of the 1623 characters, on purpose
    return out


def _pixels(path: pathlib.Path) -> np.ndarray:
    """The reference's scaling of a prepared PNG, computed independently with PIL: 1 - x/255."""
    return np.float32(1.0) - np.asarray(Image.open(path).convert("L"), np.float32) / np.float32(255.0)


def test_split_sizes_follow_the_reference():
    assert omniglot.split_sizes(1623) == (1100, 100, 423)
    assert omniglot.split_sizes(NUM_CHARACTERS) == (70, 6, 27)


def test_a_marked_subset_is_the_seeded_shuffle_of_the_sorted_listing(data_dir):
    listing = sorted(str(c) for a in data_dir.iterdir() if a.is_dir() for c in a.iterdir())
    assert len(listing) == NUM_CHARACTERS
    random.seed(1)              # exactly what the reference's DataGenerator does
    random.shuffle(listing)
    splits = {s: [str(p) for p in omniglot.class_folders(data_dir, s)] for s in ("train", "val", "test")}
    assert splits["train"] + splits["val"] + splits["test"] == listing
    assert [len(splits[s]) for s in ("train", "val", "test")] == [70, 6, 27]


def test_shapes_ranges_and_layout(data_dir):
    n, k = 5, 2
    ds = make_dataset("omniglot", str(data_dir), "train", num_classes=n, samples_per_class=2 * k, seed=3)
    assert (ds.dim_input, ds.dim_output, ds.num_classes, ds.samples_per_class) == (784, 5, 5, 4)
    inputs, labels = ds.task(0)
    assert inputs.shape == (n * 2 * k, 784) and labels.shape == (n * 2 * k, n)
    assert inputs.dtype == np.float32 and labels.dtype == np.float32
    assert set(np.unique(inputs)) <= {0.0, 1.0} and inputs.mean() < 0.5   # inverted: strokes are 1
    assert np.all(labels.sum(1) == 1) and set(np.unique(labels)) == {0.0, 1.0}
    ids = labels.argmax(1).reshape(2 * k, n)
    for row in ids:             # for each sample index k, every class once, in a shuffled order
        assert sorted(row) == list(range(n))
    assert len({tuple(r) for r in ids}) > 1 or len({tuple(ds.task(i)[1].argmax(1)) for i in range(5)}) > 1
    xb, yb = ds.batch(7, 3)
    assert xb.shape == (3, 20, 784) and yb.shape == (3, 20, 5)


def test_rows_are_rotated_images_of_their_class(data_dir):
    n, s = 5, 4
    ds = make_dataset("omniglot", str(data_dir), "val", num_classes=n, samples_per_class=s, seed=0)
    seen_rotations = set()
    for index in range(12):
        inputs, labels = ds.task(index)
        folders, rotations = ds.task_classes(index)
        assert len(set(folders)) == n and set(folders) <= set(ds.class_folders)
        seen_rotations.update(int(r) for r in rotations)
        used = {c: [] for c in range(n)}
        for row, label in zip(inputs, labels.argmax(1)):
            image = row.reshape(28, 28, 1)
            candidates = {p: np.rot90(_pixels(p), k=int(rotations[label]))
                          for p in sorted(folders[label].glob("*.png"))}
            match = [p for p, c in candidates.items() if np.array_equal(c, image[..., 0])]
            assert match, f"task {index}: a row is not its class's image rotated {rotations[label]} times"
            used[label].append(match[0])
            # the rotation is TF's rot90 (counter-clockwise), as in the reference graph
            plain = _pixels(match[0])[..., None]
            np.testing.assert_array_equal(tf.image.rot90(plain, k=int(rotations[label])).numpy(), image)
        for c in range(n):      # S distinct images per class
            assert len(set(used[c])) == s
    assert seen_rotations == {0, 1, 2, 3}


def test_determinism(data_dir):
    a = make_dataset("omniglot", str(data_dir), "train", 5, 2, seed=11)
    b = make_dataset("omniglot", str(data_dir), "train", 5, 2, seed=11)
    for index in (0, 5, 123456789):
        np.testing.assert_array_equal(a.task(index)[0], b.task(index)[0])
        np.testing.assert_array_equal(a.task(index)[1], b.task(index)[1])
    assert not np.array_equal(a.task(0)[0], a.task(1)[0])
    c = make_dataset("omniglot", str(data_dir), "train", 5, 2, seed=12)
    assert not np.array_equal(a.task(0)[0], c.task(0)[0])
    # order of calls does not matter: task 5 after task 0 equals task 5 alone
    np.testing.assert_array_equal(b.task(5)[0], make_dataset("omniglot", str(data_dir), "train", 5, 2, 11).task(5)[0])


def test_tf_data_stream_equals_batches(data_dir):
    ds = make_dataset("omniglot", str(data_dir), "train", 5, 2, seed=4)
    stream = iter(ds.dataset(first_index=10, meta_batch_size=3))
    for j in range(3):
        x, y = next(stream)
        xb, yb = ds.batch(10 + 3 * j, 3)
        assert x.dtype == tf.float32 and x.shape == (3, 10, 784) and y.shape == (3, 10, 5)
        np.testing.assert_array_equal(x.numpy(), xb)
        np.testing.assert_array_equal(y.numpy(), yb)


def test_missing_folder_says_how_to_prepare(tmp_path):
    with pytest.raises(DataError, match="not found; prepare it with:\n  python -m maml_tf.data.prepare_omniglot"):
        make_dataset("omniglot", str(tmp_path / "omniglot_resized"), "train", 5, 2, 0)
    with pytest.raises(DataError, match="no <alphabet>/<character> folders"):
        make_dataset("omniglot", str(tmp_path), "train", 5, 2, 0)


def test_parent_folder_is_recognised(data_dir):
    with pytest.raises(DataError, match="holds an omniglot_resized folder: pass .*omniglot_resized"):
        make_dataset("omniglot", str(data_dir.parent), "train", 5, 2, 0)


def test_too_many_classes(data_dir):
    with pytest.raises(DataError, match="7-way tasks need at least 7 classes, but the val split .* has 6"):
        make_dataset("omniglot", str(data_dir), "val", 7, 2, 0)


def test_too_few_images_per_class(data_dir):
    with pytest.raises(DataError, match=r"class folder .*character\d+ has 20 .png images, but a task needs 21"):
        make_dataset("omniglot", str(data_dir), "test", 5, 21, 0)


def test_bad_arguments(data_dir):
    with pytest.raises(ValueError, match="datasource"):
        make_dataset("sinusoid", str(data_dir), "train", 5, 2, 0)
    with pytest.raises(ValueError, match="split"):
        make_dataset("omniglot", str(data_dir), "validation", 5, 2, 0)
    ds = make_dataset("omniglot", str(data_dir), "val", 5, 2, 0)
    with pytest.raises(ValueError, match="index"):
        ds.task(-1)


@pytest.fixture()
def copy_dir(data_dir, tmp_path):
    target = tmp_path / "omniglot_resized"
    shutil.copytree(data_dir, target)
    return target


def _one_test_image(folder: pathlib.Path) -> pathlib.Path:
    character = omniglot.class_folders(folder, "test")[0]
    return sorted(character.glob("*.png"))[3]


def test_wrong_size_image_is_named(copy_dir):
    victim = _one_test_image(copy_dir)
    Image.new("L", (30, 28), 255).save(victim)
    ds = make_dataset("omniglot", str(copy_dir), "test", 5, 2, 0)
    with pytest.raises(DataError, match=f"image {victim} is 30x28 with 1 channel"):
        ds.task(0)


def test_corrupt_image_is_named(copy_dir):
    victim = _one_test_image(copy_dir)
    victim.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    ds = make_dataset("omniglot", str(copy_dir), "test", 5, 2, 0)
    with pytest.raises(DataError, match=f"corrupt or unreadable image {victim}"):
        ds.load()


def test_stray_files_are_ignored(copy_dir):
    character = omniglot.class_folders(copy_dir, "train")[0]
    (character / ".DS_Store").write_bytes(b"junk")
    (character / "notes.txt").write_text("junk")
    ds = make_dataset("omniglot", str(copy_dir), "train", 5, 2, 0)
    assert all(p.suffix == ".png" for files in ds.files for p in files)
    assert isinstance(ds, ImageTaskDataset) and ds.task(0)[0].shape == (10, 784)
