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
    """Write `tensors` (name -> array/variable/str) as the bundle `prefix`.index/.data-*.

    A failed write (a full disk, a quota, a folder gone) raises MamlError saying where; the bundle is
    built under a temporary name first, so the checkpoints already there are untouched.
    """
    folder = os.path.dirname(os.path.abspath(prefix))
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
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=folder)
    except OSError as e:
        raise _write_error(prefix, e) from None
    try:
        tmp_prefix = os.path.join(tmp, "bundle")
        tf.raw_ops.SaveV2(prefix=tmp_prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=values)
        base = os.path.basename(prefix)
        for path in sorted(glob.glob(tmp_prefix + ".data-*")):
            os.replace(path, os.path.join(folder, base + path[len(tmp_prefix):]))
        os.replace(tmp_prefix + ".index", os.path.join(folder, base + ".index"))  # the index last
    except (tf.errors.OpError, OSError) as e:
        raise _write_error(prefix, e) from None
    finally:
        for leftover in glob.glob(os.path.join(tmp, "*")):
            os.remove(leftover)
        os.rmdir(tmp)


def _write_error(prefix: str, e: Exception) -> MamlError:
    reason = getattr(e, "message", None) or getattr(e, "strerror", None) or str(e)
    return MamlError(f"could not write checkpoint {prefix}: {reason.strip()} (is the disk full, or over a quota?); "
                     f"nothing was replaced: the checkpoints already in {os.path.dirname(os.path.abspath(prefix))} "
                     "are intact")


class CorruptCheckpoint(MamlError):
    """A checkpoint whose files exist but cannot be read back (truncated, overwritten, not a bundle)."""


def load(prefix: str) -> dict[str, np.ndarray]:
    """Read every tensor of a bundle; a clear error naming the file if it is missing or unreadable."""
    index = prefix + ".index"
    if not os.path.exists(index):
        raise MamlError(f"checkpoint {prefix}: no such checkpoint ({index} is missing)")
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
        raise CorruptCheckpoint(f"checkpoint {prefix} is corrupt or not a TF checkpoint: {index} cannot be read "
                                f"({_reason(e)})") from None
    try:
        return {name: reader.get_tensor(name) for name in shapes}
    except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
        data = ", ".join(sorted(glob.glob(glob.escape(prefix) + ".data-*"))) or f"{prefix}.data-* (missing)"
        raise CorruptCheckpoint(f"checkpoint {prefix} is corrupt (truncated or overwritten?): {data} cannot be read "
                                f"({_reason(e)})") from None


def _reason(e: Exception) -> str:
    return (getattr(e, "message", None) or str(e)).strip().splitlines()[0]


def load_latest(folder: str, log=print) -> tuple[str, dict[str, np.ndarray]] | None:
    """(prefix, tensors) of the newest checkpoint in `folder` that reads back whole; None if there is none.

    A newer checkpoint that cannot be read (a truncated copy, a disk that filled up outside our
    atomic writes) is named and skipped, and the run goes on from the one before it, saying so.
    """
    broken = []
    for itr in reversed(list_iterations(folder)):
        prefix = os.path.join(folder, f"model{itr}")
        try:
            tensors = load(prefix)
        except CorruptCheckpoint as e:
            broken.append(prefix)
            log(f"Warning: {e}; falling back to the checkpoint before it")
            continue
        if broken:
            log(f"Resuming from {prefix}, the newest intact checkpoint ({', '.join(broken)} could not be read; "
                "left as it is, for you to inspect or delete)")
        return prefix, tensors
    if broken:
        raise MamlError(f"no readable checkpoint in {folder}: {', '.join(os.path.basename(b) for b in broken)} "
                        f"{'is' if len(broken) == 1 else 'are all'} corrupt (see above); move "
                        f"{'it' if len(broken) == 1 else 'them'} away to start afresh")
    return None


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
        try:
            its = list_iterations(self.folder)
            for old in its[: max(0, len(its) - self.max_to_keep)]:
                for path in glob.glob(os.path.join(self.folder, f"model{old}.*")):
                    os.remove(path)
            kept = [f"model{i}" for i in list_iterations(self.folder)]
            write_state(self.folder, f"model{itr}", kept)
        except OSError as e:
            raise MamlError(f"checkpoint {prefix} was written, but updating {os.path.join(self.folder, STATE_FILE)} "
                            f"failed: {e.strerror or e} (is the disk full?)") from None
        return prefix
