"""MiniImagenet as the reference uses it: data/miniImagenet/{train,val,test}/<class>/*.jpg at 84x84.

The class split is the Ravi & Larochelle csv split (64 train, 16 val, 20 test classes), made
into folders by `prepare_miniimagenet`. Pixels are x/255 of the RGB image (JPEGs decoded to 3
channels, as the reference's `decode_jpeg(channels=3)`); no rotations. The number of images
per class is chosen by the caller: K+15 for meta-training (15 query images per class) and 2K
for testing, as the reference's main.py does.
"""
from __future__ import annotations

import pathlib

from maml_tf.data.images import DataError, list_subfolders
from maml_tf.data.tasks import ImageFormat

DEFAULT_DATA_DIR = "data/miniImagenet"
PREPARE_COMMAND = ("python -m maml_tf.data.prepare_miniimagenet --src DIR_WITH_IMAGES_AND_CSVS "
                   f"--out {DEFAULT_DATA_DIR}")

FORMAT = ImageFormat(name="miniimagenet", height=84, width=84, channels=3, extension=".jpg", decoder="jpeg",
                     invert=False, rotate=False)


def prepare_command(data_dir: pathlib.Path | str) -> str:
    """The command that prepares the folder `data_dir` (named as the user gave it)."""
    return f"python -m maml_tf.data.prepare_miniimagenet --src DIR_WITH_IMAGES_AND_CSVS --out {data_dir}"


def class_folders(data_dir: pathlib.Path, split: str) -> list[pathlib.Path]:
    """The class folders of `split`, sorted by name (the reference used unsorted os.listdir)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"MiniImagenet data folder {data_dir} not found; prepare it with:\n  {prepare_command(data_dir)}")
    split_dir = data_dir / split
    if not split_dir.is_dir():
        raise DataError(f"MiniImagenet split folder {split_dir} not found; prepare it with:\n  {prepare_command(data_dir)}")
    return list_subfolders(split_dir)
