"""Task streams: what the training loop and the test protocol draw meta-batches from.

A stream yields (inputa, labela, inputb, labelb) numpy batches and can save/restore its position,
so a resumed run draws exactly the tasks an uninterrupted run would have drawn.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np

from maml_tf.config import Config
from maml_tf.data.sinusoid import SinusoidTasks
from maml_tf.errors import MamlError


def split(inputs: np.ndarray, labels: np.ndarray, support: int):
    """main.py's slicing: the first N*K rows of each task are the support set, the rest the query set."""
    return inputs[:, :support], labels[:, :support], inputs[:, support:], labels[:, support:]


class SinusoidStream:
    def __init__(self, cfg: Config, seed: int, meta_batch_size: int):
        self.tasks = SinusoidTasks(cfg.samples_per_class, seed=seed, oracle=cfg.baseline == "oracle")
        self.mb = meta_batch_size
        self.support = cfg.update_batch_size  # num_classes is 1 for regression

    def next_batch(self):
        return self.tasks.split_batch(self.mb, self.support)

    def get_state(self) -> str:
        return self.tasks.get_state()

    def set_state(self, state: str) -> None:
        self.tasks.set_state(state)

    def fingerprint(self) -> str:
        """Sinusoid tasks are generated, not read: nothing to compare on resume."""
        return ""

    def check_data(self) -> None:
        """Nothing to read ahead."""


def data_folder(cfg: Config) -> str:
    """Where the reference reads each dataset from, under --data_dir (default ./data)."""
    sub = {"omniglot": "omniglot_resized", "miniimagenet": "miniImagenet"}[cfg.datasource]
    return os.path.join(cfg.data_dir, sub)


class ImageStream:
    """Meta-batches of image tasks number first_index, first_index+1, ... of a deterministic stream."""

    def __init__(self, cfg: Config, split_name: str, seed: int, meta_batch_size: int, prefetch: bool = True):
        from maml_tf.data.tasks import make_dataset  # the image pipeline (imported lazily: TF data deps)

        self.folder = data_folder(cfg)
        self.dataset = make_dataset(cfg.datasource, self.folder, split_name, cfg.num_classes,
                                    cfg.samples_per_class, seed)
        self.mb = meta_batch_size
        self.support = cfg.num_classes * cfg.update_batch_size
        self.index = 0
        self.prefetch = prefetch
        self._iter = None

    def next_batch(self):
        if self.prefetch:
            if self._iter is None:
                self._iter = iter(self.dataset.dataset(self.index, self.mb))
            inputs, labels = next(self._iter)
            inputs, labels = np.asarray(inputs), np.asarray(labels)
        else:
            inputs, labels = self.dataset.batch(self.index, self.mb)
        self.index += self.mb
        return split(inputs, labels, self.support)

    def get_state(self) -> str:
        return json.dumps({"index": self.index})

    def set_state(self, state: str) -> None:
        self.index = int(json.loads(state)["index"])
        self._iter = None

    def check_data(self) -> None:
        """Decode every image of the split now (it is kept for sampling), so a bad file stops the run
        before training starts, not at the first validation or test, hours in."""
        self.dataset.load()

    def fingerprint(self) -> str:
        """What this split holds: its class folders (relative to the data folder) and image file names.

        Stored in checkpoints, so a resume on other data (a moved --data_dir holding other or fewer
        classes) is refused rather than silently training on a different split.
        """
        root = pathlib.Path(self.folder)
        digest = hashlib.sha256()
        for folder, files in zip(self.dataset.class_folders, self.dataset.files):
            rel = folder.relative_to(root) if folder.is_relative_to(root) else folder
            digest.update(f"{rel.as_posix()}:{','.join(f.name for f in files)}\n".encode())
        images = sum(len(f) for f in self.dataset.files)
        return json.dumps({"split": self.dataset.split, "folder": str(root), "classes": len(self.dataset.files),
                           "images": images, "sha256": digest.hexdigest()}, sort_keys=True)


def training_stream(cfg: Config):
    if cfg.datasource == "sinusoid":
        return SinusoidStream(cfg, cfg.seed, cfg.meta_batch_size)
    return ImageStream(cfg, "train", cfg.seed, cfg.meta_batch_size)


def validation_stream(cfg: Config):
    """Meta-validation batches (image datasets only; sinusoid has infinite data, as the reference says)."""
    if cfg.datasource == "sinusoid":
        return None
    return ImageStream(cfg, "val", cfg.seed + 6, cfg.meta_batch_size, prefetch=False)


def test_stream(cfg: Config, chunk: int):
    """The test protocol's tasks (seed 1, as test() seeds np.random and random), `chunk` at a time."""
    if cfg.datasource == "sinusoid":
        return _SequentialSinusoid(cfg, chunk)
    split_name = "test" if cfg.test_set else "val"
    return ImageStream(cfg, split_name, 1, chunk, prefetch=False)


class _SequentialSinusoid(SinusoidStream):
    """Tasks drawn one at a time (the reference tests with meta-batch 1), then stacked."""

    def __init__(self, cfg: Config, chunk: int):
        super().__init__(cfg, 1, 1)
        self.chunk = chunk

    def next_batch(self):
        parts = [self.tasks.split_batch(1, self.support) for _ in range(self.chunk)]
        return tuple(np.concatenate(p, 0) for p in zip(*parts))


def check_classes(cfg: Config) -> None:
    if cfg.classification and cfg.num_classes < 2:
        raise MamlError(f"--num_classes={cfg.num_classes}: classification needs at least 2 classes")
