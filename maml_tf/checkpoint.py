"""Checkpoints as TF1-format, name-keyed tensor bundles, written atomically.

Variables are stored under the reference's TF1 names (model/conv1, model/Variable, model/0/beta,
<var>/Adam_2, beta1_power_1, ...), so a maml-tf checkpoint is readable by the original code's Saver
and a reference checkpoint is readable here. maml-tf's own bookkeeping lives under `maml_tf/`.
Writes go to a temporary prefix in the same folder and are renamed into place; the `checkpoint`
state file (TF's format, so tf.train.latest_checkpoint works) is replaced last.
"""
from __future__ import annotations

import glob
import os
import re
import tempfile
from typing import Mapping

import numpy as np
import tensorflow as tf

from maml_tf.errors import MamlError
from maml_tf.files import atomic_write_text

STATE_FILE = "checkpoint"
_MODEL_RE = re.compile(r"^model(\d+)$")


def save(prefix: str, tensors: Mapping[str, object]) -> None:
    """Write `tensors` (name -> array/variable/str) as the bundle `prefix`.index/.data-*."""
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    names = sorted(tensors)
    values = []
    for n in names:
        v = tensors[n]
        if isinstance(v, str):
            values.append(tf.constant(v))
        elif hasattr(v, "read_value") or hasattr(v, "value"):
            values.append(tf.convert_to_tensor(v.numpy() if hasattr(v, "numpy") else v))
        else:
            values.append(tf.convert_to_tensor(np.asarray(v)))
    tmp = tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=folder)
    try:
        tmp_prefix = os.path.join(tmp, "bundle")
        tf.raw_ops.SaveV2(prefix=tmp_prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=values)
        base = os.path.basename(prefix)
        for path in sorted(glob.glob(tmp_prefix + ".data-*")):
            os.replace(path, os.path.join(folder, base + path[len(tmp_prefix):]))
        os.replace(tmp_prefix + ".index", os.path.join(folder, base + ".index"))  # the index last
    finally:
        for leftover in glob.glob(os.path.join(tmp, "*")):
            os.remove(leftover)
        os.rmdir(tmp)


def load(prefix: str) -> dict[str, np.ndarray]:
    """Read every tensor of a bundle; a clear error if it is missing or unreadable."""
    if not os.path.exists(prefix + ".index"):
        raise MamlError(f"checkpoint {prefix}: no such checkpoint ({prefix}.index is missing)")
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        return {name: reader.get_tensor(name) for name in shapes}
    except (tf.errors.OpError, ValueError) as e:
        raise MamlError(f"checkpoint {prefix} is corrupt or not a TF checkpoint: {e.message if hasattr(e, 'message') else e}") from None


def write_state(folder: str, latest: str, all_paths: list[str]) -> None:
    """TF's `checkpoint` file, written atomically."""
    lines = [f'model_checkpoint_path: "{latest}"'] + [f'all_model_checkpoint_paths: "{p}"' for p in all_paths]
    atomic_write_text(os.path.join(folder, STATE_FILE), "\n".join(lines) + "\n")


def list_iterations(folder: str) -> list[int]:
    """Iterations of the complete `model{itr}` bundles in `folder`, ascending."""
    its = []
    for index in glob.glob(os.path.join(folder, "model*.index")):
        m = _MODEL_RE.match(os.path.basename(index)[: -len(".index")])
        if m and glob.glob(index[: -len(".index")] + ".data-*"):
            its.append(int(m.group(1)))
    return sorted(its)


def find(folder: str, test_iter: int = -1) -> str | None:
    """The prefix of checkpoint `model{test_iter}` (or the latest) in `folder`, None if there is none."""
    its = list_iterations(folder)
    if test_iter > 0:
        if test_iter not in its:
            raise MamlError(f"--test_iter={test_iter}: no checkpoint model{test_iter} in {folder} "
                            f"(available: {', '.join(map(str, its)) or 'none'})")
        return os.path.join(folder, f"model{test_iter}")
    return os.path.join(folder, f"model{its[-1]}") if its else None


class CheckpointManager:
    """Saves `model{itr}` bundles in one experiment folder, keeping the newest `max_to_keep`."""

    def __init__(self, folder: str, max_to_keep: int = 10):
        self.folder, self.max_to_keep = folder, max_to_keep

    def save(self, itr: int, tensors: Mapping[str, object]) -> str:
        prefix = os.path.join(self.folder, f"model{itr}")
        save(prefix, tensors)
        its = list_iterations(self.folder)
        for old in its[: max(0, len(its) - self.max_to_keep)]:
            for path in glob.glob(os.path.join(self.folder, f"model{old}.*")):
                os.remove(path)
        kept = [f"model{i}" for i in list_iterations(self.folder)]
        write_state(self.folder, f"model{itr}", kept)
        return prefix
