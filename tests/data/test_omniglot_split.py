"""The Omniglot split is fixed by character name (omniglot_split.json), whatever the folder holds.

Character folders are enough here: the split only lists folders, so these tests need no images.
"""
import pathlib
import random

import pytest

from maml_tf.data import omniglot
from maml_tf.data.images import DataError

ALL = [name for part in ("train", "val", "test") for name in omniglot.reference_split()[part]]


def _folder(root: pathlib.Path, names) -> pathlib.Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_the_written_split_is_the_seeded_shuffle_of_the_sorted_listing(tmp_path):
    """What every run used so far: sorted listing, random.seed(1) shuffle, cut at 1100 and 1200."""
    assert len(ALL) == len(set(ALL)) == 1623
    listing = sorted(ALL, key=lambda n: tuple(n.split("/")))
    random.Random(1).shuffle(listing)
    root = _folder(tmp_path / "omniglot_resized", ALL)
    got = {s: [f"{p.parent.name}/{p.name}" for p in omniglot.class_folders(root, s)] for s in ("train", "val", "test")}
    assert got == {"train": listing[:1100], "val": listing[1100:1200], "test": listing[1200:]}


def test_an_incomplete_folder_is_refused_with_the_command_that_completes_it(tmp_path):
    root = _folder(tmp_path / "my_data" / "omniglot_resized", ALL[:500] + ALL[501:])
    with pytest.raises(DataError, match=r"incomplete: 1622 of 1623 characters \(1 missing, from "
                                        + ALL[500].split("/")[0].replace("(", r"\(").replace(")", r"\)")):
        omniglot.class_folders(root, "test")
    with pytest.raises(DataError, match=f"prepare_omniglot --src DIR_WITH_ZIPS --out {root}$"):
        omniglot.class_folders(root, "train")


def test_folders_that_are_not_omniglot_characters_are_refused(tmp_path):
    root = _folder(tmp_path / "omniglot_resized", ALL + ["Klingon/character01"])
    with pytest.raises(DataError, match="1 character folder.* not Omniglot's \\(Klingon/character01\\)"):
        omniglot.class_folders(root, "train")


def test_a_marked_subset_is_split_in_proportion(tmp_path):
    names = [f"alphabet{a}/character{c:02d}" for a in range(3) for c in range(20)]
    root = _folder(tmp_path / "omniglot_resized", names)
    with pytest.raises(DataError, match="not Omniglot's"):
        omniglot.class_folders(root, "train")
    omniglot.mark_subset(root)
    sizes = [len(omniglot.class_folders(root, s)) for s in ("train", "val", "test")]
    assert sizes == list(omniglot.split_sizes(60)) == [41, 4, 15]


def test_missing_folder_hint_names_the_folder_given(tmp_path):
    where = tmp_path / "elsewhere" / "omniglot_resized"
    with pytest.raises(DataError, match=f"--out {where}$"):
        omniglot.class_folders(where, "train")
