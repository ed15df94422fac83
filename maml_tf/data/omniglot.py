"""Omniglot as the reference uses it: 1623 characters (alphabet/character folders of 28x28 PNGs).

The split follows cbfinn/maml's DataGenerator: list every character folder, shuffle the list with
`random.seed(1); random.shuffle(...)`, then the first 1100 are meta-training, the next 100
validation and the remaining 423 test. The reference shuffled the unsorted `os.listdir` order, so
its split depended on the filesystem; ours shuffles the sorted listing, so it is the same on every
machine (it cannot be made equal to any particular run of the reference).

That split is written once, by character name, in `omniglot_split.json` beside this module, and
read from there: it never depends on what the data folder holds. A shuffle of whatever is listed
would move test characters into training as soon as one character folder is missing (a partial
download, an interrupted `prepare_omniglot`), silently. So a data folder must hold exactly the
1623 characters; an incomplete one is refused with the command that completes it.

Small folders for tests and benchmarks (a few alphabets, synthetic characters) say so with a
`SUBSET` file (`mark_subset`): they are split as the reference would split that listing, in the
same proportions (1100/1623 train, 100/1623 validation, rest test), and are not Omniglot results.

Images are inverted (1 - x/255) and each sampled class is rotated by a random multiple of 90
degrees per task (see tasks.py).
"""
from __future__ import annotations

import functools
import json
import pathlib
import random

from maml_tf.data.images import DataError, list_subfolders
from maml_tf.data.tasks import ImageFormat

DEFAULT_DATA_DIR = "data/omniglot_resized"
REFERENCE_NUM_CHARACTERS = 1623
REFERENCE_NUM_TRAIN = 1100
REFERENCE_NUM_VAL = 100
SPLIT_SEED = 1
SPLIT_FILE = pathlib.Path(__file__).with_name("omniglot_split.json")
SUBSET_MARK = "SUBSET"

FORMAT = ImageFormat(name="omniglot", height=28, width=28, channels=1, extension=".png", decoder="png",
                     invert=True, rotate=True)


def prepare_command(data_dir: pathlib.Path | str) -> str:
    """The command that prepares (or completes: it skips finished alphabets) the folder `data_dir`."""
    return f"python -m maml_tf.data.prepare_omniglot --src DIR_WITH_ZIPS --out {data_dir}"


@functools.lru_cache(maxsize=1)
def reference_split() -> dict[str, tuple[str, ...]]:
    """{"train"|"val"|"test": ("alphabet/character", ...)} in the order the tasks index them."""
    with open(SPLIT_FILE) as f:
        splits = json.load(f)["splits"]
    return {name: tuple(splits[name]) for name in ("train", "val", "test")}


def split_sizes(num_characters: int) -> tuple[int, int, int]:
    """(train, val, test) counts: 1100/100/423 for the full 1623, the same proportions for a subset."""
    train = round(num_characters * REFERENCE_NUM_TRAIN / REFERENCE_NUM_CHARACTERS)
    val = round(num_characters * REFERENCE_NUM_VAL / REFERENCE_NUM_CHARACTERS)
    return train, val, num_characters - train - val


def mark_subset(data_dir: pathlib.Path | str) -> None:
    """Declare `data_dir` a deliberate subset of Omniglot (tests, benchmarks): it is then split in proportion."""
    (pathlib.Path(data_dir) / SUBSET_MARK).write_text(
        "This folder holds a subset of Omniglot on purpose (tests, benchmarks). maml_tf splits it in the "
        "reference's proportions; its results are not Omniglot results. Delete this file to have the folder "
        "checked for all 1623 characters.\n")


def _listing(data_dir: pathlib.Path) -> list[pathlib.Path]:
    if not data_dir.is_dir():
        raise DataError(f"Omniglot data folder {data_dir} not found; prepare it with:\n  {prepare_command(data_dir)}")
    if (data_dir / "omniglot_resized").is_dir():
        raise DataError(f"{data_dir} holds an omniglot_resized folder: pass {data_dir / 'omniglot_resized'} "
                        "as the Omniglot data folder")
    folders = [character for alphabet in list_subfolders(data_dir) for character in list_subfolders(alphabet)]
    if not folders:
        raise DataError(f"Omniglot data folder {data_dir} has no <alphabet>/<character> folders; "
                        f"prepare it with:\n  {prepare_command(data_dir)}")
    return folders


def _name(folder: pathlib.Path) -> str:
    return f"{folder.parent.name}/{folder.name}"


def character_folders(data_dir: pathlib.Path) -> list[pathlib.Path]:
    """All 1623 character folders in the split's order: train, then validation, then test.

    That order is the sorted listing shuffled with `random.seed(1); random.shuffle`. Raises
    DataError for a folder that does not hold exactly the reference's characters (unless it is
    marked as a subset, see `mark_subset`).
    """
    data_dir = pathlib.Path(data_dir)
    folders = _listing(data_dir)
    if (data_dir / SUBSET_MARK).is_file():
        # random.Random(1).shuffle draws the same permutation as random.seed(1); random.shuffle,
        # without touching the global random state.
        random.Random(SPLIT_SEED).shuffle(folders)
        return folders
    split = reference_split()
    order = [name for part in ("train", "val", "test") for name in split[part]]
    present = {_name(f) for f in folders}
    missing = [name for name in order if name not in present]
    extra = sorted(present - set(order))
    if extra:
        raise DataError(f"Omniglot data folder {data_dir} holds {len(extra)} character folder(s) that are not "
                        f"Omniglot's ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); prepare the "
                        f"folder from the official zips:\n  {prepare_command(data_dir)}\n(a deliberate subset for "
                        f"tests says so with a {SUBSET_MARK} file: maml_tf.data.omniglot.mark_subset)")
    if missing:
        alphabets = sorted({name.split("/")[0] for name in missing})
        raise DataError(f"Omniglot data folder {data_dir} is incomplete: {len(present)} of "
                        f"{REFERENCE_NUM_CHARACTERS} characters ({len(missing)} missing, from "
                        f"{', '.join(alphabets[:4])}{', ...' if len(alphabets) > 4 else ''}); the split is fixed "
                        f"by character name, and training on part of it is refused. Complete it with (it keeps "
                        f"the alphabets already done):\n  {prepare_command(data_dir)}")
    return [data_dir / name for name in order]


def class_folders(data_dir: pathlib.Path, split: str) -> list[pathlib.Path]:
    """The character folders of `split` ("train", "val" or "test")."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    folders = character_folders(data_dir)
    train, val, _ = split_sizes(len(folders))
    if split == "train":
        return folders[:train]
    if split == "val":
        return folders[train:train + val]
    return folders[train + val:]
