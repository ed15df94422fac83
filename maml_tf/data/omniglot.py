"""Omniglot as the reference uses it: 1623 characters (alphabet/character folders of 28x28 PNGs).

The split follows cbfinn/maml's DataGenerator: list every character folder, shuffle the list with
`random.seed(1); random.shuffle(...)`, then the first 1100 are meta-training, the next 100
validation and the remaining 423 test. Two deliberate differences:

* the listing is sorted (alphabet, then character) before the shuffle. The reference shuffled the
  unsorted `os.listdir` order, so its split depended on the filesystem; sorting makes ours the same
  on every machine (it cannot be made equal to any particular run of the reference);
* a folder with a number of characters other than 1623 (a small test folder, a partial download)
  is split in the same proportions, 1100/1623 train and 100/1623 validation (rounded), rest test.
  The reference's fixed counts would leave validation and test empty below 1100 characters.
  With all 1623 characters this gives exactly 1100/100/423.

Images are inverted (1 - x/255) and each sampled class is rotated by a random multiple of 90
degrees per task (see tasks.py).
"""
from __future__ import annotations

import pathlib
import random

from maml_tf.data.images import DataError, list_subfolders
from maml_tf.data.tasks import ImageFormat

DEFAULT_DATA_DIR = "data/omniglot_resized"
PREPARE_COMMAND = ("python -m maml_tf.data.prepare_omniglot --src DIR_WITH_ZIPS "
                   f"--out {DEFAULT_DATA_DIR}")
REFERENCE_NUM_CHARACTERS = 1623
REFERENCE_NUM_TRAIN = 1100
REFERENCE_NUM_VAL = 100
SPLIT_SEED = 1

FORMAT = ImageFormat(name="omniglot", height=28, width=28, channels=1, extension=".png", decoder="png",
                     invert=True, rotate=True)


def split_sizes(num_characters: int) -> tuple[int, int, int]:
    """(train, val, test) counts: 1100/100/423 for the full 1623, the same proportions otherwise."""
    train = round(num_characters * REFERENCE_NUM_TRAIN / REFERENCE_NUM_CHARACTERS)
    val = round(num_characters * REFERENCE_NUM_VAL / REFERENCE_NUM_CHARACTERS)
    return train, val, num_characters - train - val


def character_folders(data_dir: pathlib.Path) -> list[pathlib.Path]:
    """All alphabet/character folders, sorted, then shuffled exactly as `random.seed(1); random.shuffle`."""
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"Omniglot data folder {data_dir} not found; prepare it with:\n  {PREPARE_COMMAND}")
    if (data_dir / "omniglot_resized").is_dir():
        raise DataError(f"{data_dir} holds an omniglot_resized folder: pass {data_dir / 'omniglot_resized'} "
                        "as the Omniglot data folder")
    folders = [character for alphabet in list_subfolders(data_dir) for character in list_subfolders(alphabet)]
    if not folders:
        raise DataError(f"Omniglot data folder {data_dir} has no <alphabet>/<character> folders; "
                        f"prepare it with:\n  {PREPARE_COMMAND}")
    # random.Random(1).shuffle draws the same permutation as random.seed(1); random.shuffle,
    # without touching the global random state.
    random.Random(SPLIT_SEED).shuffle(folders)
    return folders


def class_folders(data_dir: pathlib.Path, split: str) -> list[pathlib.Path]:
    """The character folders of `split` ("train", "val" or "test")."""
    folders = character_folders(data_dir)
    train, val, _ = split_sizes(len(folders))
    if split == "train":
        return folders[:train]
    if split == "val":
        return folders[train:train + val]
    if split == "test":
        return folders[train + val:]
    raise ValueError(f"split must be train, val or test, got {split!r}")
