"""The three commands of `python -m maml_tf.reference`, as plain functions of (config, paths).

`dump` produces the maml-tf side of a comparison in the golden fixtures' format: for a batch
(inputa/labela/inputb/labelb) and initial weights, every quantity `compute()` records (outputs,
losses, accuracies, meta-gradients, weights and Adam state after 1 and 3 meta-steps), under the
fixture keys, plus the inputs and `init__<var>` arrays and a JSON describing them. Someone with the
original code feeds the same batch and weights to it and compares key by key.
"""
from __future__ import annotations

import io
import json
import os
from typing import Mapping

import numpy as np

from maml_tf import checkpoint as ckpt, files
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.reference import golden
from maml_tf.reference.compute import compute
from maml_tf.reference.golden import key, read_npz

BATCH_KEYS = ("inputa", "labela", "inputb", "labelb")


def read_batch(path: str) -> dict[str, np.ndarray]:
    """The batch file: an npz with inputa, labela, inputb, labelb (and optionally init__<var>)."""
    if not os.path.isfile(path):
        raise MamlError(f"--batch {path}: no such file")
    arrays = read_npz(path, f"--batch {path}")
    missing = [k for k in BATCH_KEYS if k not in arrays]
    if missing:
        raise MamlError(f"--batch {path}: arrays missing: {', '.join(missing)} (need {', '.join(BATCH_KEYS)}, "
                        "each [meta_batch, examples, features], as in the golden fixtures)")
    return arrays


def check_batch(cfg: Config, arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Shapes that fit the flags: [T, *, dim_input] inputs, [T, *, dim_output] labels, one T."""
    shapes = {k: np.shape(arrays[k]) for k in BATCH_KEYS}
    for k, dim in (("inputa", cfg.dim_input), ("inputb", cfg.dim_input),
                   ("labela", cfg.dim_output), ("labelb", cfg.dim_output)):
        if len(shapes[k]) != 3 or shapes[k][2] != dim:
            raise MamlError(f"{source}: {k} has shape {list(shapes[k])}, expected [meta_batch, examples, {dim}] "
                            f"for these flags ({cfg.datasource}, {cfg.dim_input} -> {cfg.dim_output})")
    tasks = {s[0] for s in shapes.values()}
    if len(tasks) != 1:
        raise MamlError(f"{source}: the arrays disagree on the number of tasks: {shapes}")
    if shapes["inputa"][1] != shapes["labela"][1] or shapes["inputb"][1] != shapes["labelb"][1]:
        raise MamlError(f"{source}: inputs and labels disagree on the number of examples: {shapes}")


def initial_weights(names: list[str], arrays: Mapping[str, np.ndarray], checkpoint: str | None,
                    source: str) -> tuple[dict[str, np.ndarray], str]:
    """Weights by reference name: from --checkpoint, else from the batch file's init__<var> arrays."""
    if checkpoint:
        return ckpt.load(checkpoint), checkpoint
    init = {n: arrays[f"init__{key(n)}"] for n in names if f"init__{key(n)}" in arrays}
    if not init:
        raise MamlError(f"{source} has no init__<var> arrays: pass --checkpoint=PREFIX (a maml-tf or reference "
                        "checkpoint) for the initial weights")
    return init, f"{source} (init__ arrays)"


def dump(cfg: Config, batch_path: str, output: str, checkpoint: str | None = None,
         test_num_updates: int | None = None, dtype: str = "float32", adam_steps=(1, 3),
         overwrite: bool = False, log=print) -> dict[str, np.ndarray]:
    """Compute the fixture quantities for the batch and weights; write OUTPUT(.npz) and OUTPUT.json."""
    npz_path = output if output.endswith(".npz") else output + ".npz"
    json_path = npz_path[: -len(".npz")] + ".json"
    if os.path.exists(npz_path) and not overwrite:
        raise MamlError(f"{npz_path} already exists; pass --overwrite to replace it")
    arrays = read_batch(batch_path)
    check_batch(cfg, arrays, batch_path)
    from maml_tf.learner import build  # the names of this network's variables
    names = build(cfg).model.reference_names
    init, source = initial_weights(names, arrays, checkpoint, batch_path)
    batch = tuple(arrays[k] for k in BATCH_KEYS)
    tnu = test_num_updates if test_num_updates is not None else cfg.test_num_updates
    ours, learner = compute(cfg, init, batch, dtype=dtype, adam_steps=tuple(adam_steps), test_num_updates=tnu)
    out = {k: v for k, v in ours.items() if not k.startswith("_")}
    for k in BATCH_KEYS:
        out[k] = np.asarray(arrays[k], dtype)
    if cfg.classification:
        out["class_ids_a"] = np.argmax(arrays["labela"], -1).astype(np.int32)
        out["class_ids_b"] = np.argmax(arrays["labelb"], -1).astype(np.int32)
    for n in names:
        out[f"init__{key(n)}"] = np.asarray(init[n], dtype)
    meta = {
        "producer": "maml_tf.reference dump",
        "weights_from": source,
        "batch": os.path.abspath(batch_path),
        "flags": cfg.to_dict(),
        "test_num_updates": tnu,
        "num_post_update_steps_recorded": max(tnu, cfg.num_updates),
        "meta_loss_index": cfg.num_updates - 1,
        "dtype": dtype,
        "adam_steps": list(adam_steps),
        "variables": [{"name": n, "key_suffix": key(n), "shape": list(np.shape(init[n]))} for n in names],
        "metagrad_variable_order": names,
        "arrays": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)} for k, v in sorted(out.items())},
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    files.atomic_write_bytes(npz_path, buf.getvalue())
    files.atomic_write_text(json_path, json.dumps(meta, indent=1, default=str) + "\n")
    log(f"Wrote {npz_path} ({len(out)} arrays) and {json_path}")
    return out


def fixture_batch(path: str, output_batch: str) -> Config:
    """A golden fixture's flags, batch and init__ arrays -> a batch file; returns the fixture's config."""
    fx = golden.load(path)  # checks every listed array is present
    primary = fx.files.get("")
    if primary is None:
        raise MamlError(f"fixture {path}: it has no primary npz")
    keep = {k: v for k, v in primary.items() if k in BATCH_KEYS or k.startswith("init__")}
    buf = io.BytesIO()
    np.savez(buf, **keep)
    files.atomic_write_bytes(output_batch, buf.getvalue())
    return fx.config()
