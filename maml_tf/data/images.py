"""Image decoding, verification and atomic-write helpers shared by the data tools and samplers.

Why one module: the preparation tools (`prepare_omniglot`, `prepare_miniimagenet`) and the task
samplers (`tasks.ImageTaskDataset`) must agree on what a valid image is and must report bad input
the same way, naming the file. Everything here raises `DataError` (a `ValueError`) with a message
meant for the person running the command.
"""
from __future__ import annotations


import hashlib
import io
import os
import pathlib
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from maml_tf.errors import MamlError

CHECKSUM_FILE = "SHA256SUMS"
TEMP_MARK = ".tmp-"


class DataError(MamlError, ValueError):
    """Bad or missing input data; the message says which file or folder and what to do."""


# ----------------------------------------------------------------------------- checksums

def sha256_of(path: pathlib.Path, chunk: int = 1 << 20) -> str:
    """Hex SHA256 of a file, read in chunks so big archives do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(path: pathlib.Path) -> dict[str, str]:
    """Parse a `sha256sum`-style file (`<hex>  <name>` per line; `*name` binary marker allowed)."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError(f"{path}:{lineno}: not a sha256sum line: {line!r}")
        sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


def verify_checksums(files: Sequence[pathlib.Path]) -> list[str]:
    """Check `files` against the SHA256SUMS file beside them, when there is one.

    Returns human-readable notes (what was checked or why not); raises DataError on a mismatch,
    because a truncated or altered download would otherwise turn into a silently smaller dataset.
    """
    notes = []
    for path in files:
        sums_path = path.parent / CHECKSUM_FILE
        if not sums_path.is_file():
            notes.append(f"{path.name}: no {CHECKSUM_FILE} beside it, checksum not verified")
            continue
        sums = read_checksums(sums_path)
        if path.name not in sums:
            notes.append(f"{path.name}: not listed in {sums_path}, checksum not verified")
            continue
        actual = sha256_of(path)
        if actual != sums[path.name]:
            raise DataError(
                f"checksum mismatch for {path}: sha256 {actual}, {sums_path} says {sums[path.name]}; "
                "the file is corrupt or not the official one (download it again)")
        notes.append(f"{path.name}: sha256 ok")
    return notes


# ----------------------------------------------------------------------------- reading

def open_image(source: bytes | pathlib.Path, name: str) -> Image.Image:
    """Open and fully decode an image, so truncated/corrupt files fail here, naming `name`."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except FileNotFoundError as e:
        raise DataError(f"image not found: {name}") from e
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise DataError(f"corrupt or unreadable image {name}: {e}") from e
    return image


def check_image(path: pathlib.Path, height: int, width: int) -> None:
    """Raise DataError naming `path` when it is not a decodable `height` x `width` image."""
    image = open_image(pathlib.Path(path), str(path))
    if image.size != (width, height):
        raise DataError(f"image {path} is {image.size[0]}x{image.size[1]}, expected {width}x{height} "
                        "(was it made by the preparation tool?)")


def list_images(folder: pathlib.Path, extension: str) -> list[pathlib.Path]:
    """Image files of one class folder, sorted by name for determinism.

    Hidden files and files with another extension (including our own temporary files) are
    ignored, so a stray `.DS_Store` or an interrupted write never becomes a training image.
    """
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() == extension)


def list_subfolders(folder: pathlib.Path) -> list[pathlib.Path]:
    """Visible sub-folders, sorted by name (the reference used unsorted os.listdir)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def decode_images(paths: Sequence[pathlib.Path], height: int, width: int, channels: int,
                  kind: str) -> np.ndarray:
    """Decode image files into one uint8 array [n, height, width, channels] with tf.data.

    Decoding runs in parallel (`num_parallel_calls=AUTOTUNE`) but in a fixed order, so row i is
    always paths[i]. `kind` is "png" (decoded with the file's own channel count, as the
    reference's `tf.image.decode_png(f)`) or "jpeg" (forced to 3 channels, as the reference's
    `decode_jpeg(f, channels=3)`). A corrupt file or one of the wrong shape raises DataError
    naming it: TF's own decode errors do not say which file failed.
    """
    import tensorflow as tf  # deferred: the preparation CLIs do not need TensorFlow

    if kind not in ("png", "jpeg"):
        raise ValueError(f"kind must be 'png' or 'jpeg', got {kind!r}")
    out = np.empty((len(paths), height, width, channels), np.uint8)
    if not paths:
        return out

    def decode(path):
        data = tf.io.read_file(path)
        if kind == "png":
            image = tf.io.decode_png(data)
        else:
            image = tf.io.decode_jpeg(data, channels=3)
        return image

    with tf.device("/CPU:0"):
        ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.prefetch(256)
        i = 0
        try:
            for image in ds.as_numpy_iterator():
                if image.shape != (height, width, channels):
                    h, w, c = image.shape
                    raise DataError(f"image {paths[i]} is {w}x{h} with {c} channel(s), expected "
                                    f"{width}x{height} with {channels} (was it made by the preparation tool?)")
                out[i] = image
                i += 1
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.DataLossError) as e:
            _raise_for_bad_file(paths[i:], height, width)
            raise DataError(f"could not decode image {paths[i]}: {e.message}") from e
    return out


def _raise_for_bad_file(candidates: Iterable[pathlib.Path], height: int, width: int) -> None:
    """Find the first file among `candidates` that PIL cannot read and raise DataError for it."""
    for path in candidates:
        check_image(pathlib.Path(path), height, width)


# ----------------------------------------------------------------------------- writing

def temp_path_for(dest: pathlib.Path) -> pathlib.Path:
    """A hidden temp name in the destination's folder (same filesystem, so os.replace is atomic)."""
    return dest.with_name(f".{dest.name}{TEMP_MARK}{os.getpid()}")


def save_image_atomic(image: Image.Image, dest: pathlib.Path, image_format: str, **save_args) -> None:
    """Save `image` to `dest` so that `dest` either does not exist or is complete.

    The bytes go to a hidden temp file beside `dest`, then `os.replace` renames it into place; a
    crash leaves at most a temp file, which `remove_temp_files` deletes on the next run.
    """
    tmp = temp_path_for(dest)
    try:
        image.save(tmp, format=image_format, **save_args)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_temp_files(root: pathlib.Path) -> int:
    """Delete temp files left by an interrupted run anywhere under `root`; returns how many."""
    count = 0
    if root.is_dir():
        for path in root.rglob(f".*{TEMP_MARK}*"):
            if path.is_file():
                path.unlink()
                count += 1
    return count
