"""Write a meta-learned initialisation as a self-contained TF SavedModel, atomically.

The SavedModel is built in a temporary folder beside the target and renamed into place, so a
crash never leaves a half-written export; an existing target is refused unless `overwrite`.
`assets/maml_tf_export.json` says what the SavedModel is: the experiment's flags, the source
checkpoint, every variable's reference name and shape, and the signatures with their defaults.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Collection

import tensorflow as tf

from maml_tf import checkpoint as ckpt
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.export.module import MetaInitModule
from maml_tf.learner import assign_weights, inner_loop, net_spec
from maml_tf.models.nets import build_model

ASSET_NAME = "maml_tf_export.json"


def describe(cfg: Config, module: MetaInitModule, model, checkpoint_prefix: str | None) -> dict:
    """The JSON stored with the SavedModel."""
    return {
        "format": "maml_tf meta-initialisation SavedModel, version 1",
        "flags": cfg.to_dict(),
        "exp_string": cfg.exp_string,
        "checkpoint": os.path.abspath(checkpoint_prefix) if checkpoint_prefix else None,
        "task": "classification" if cfg.classification else "regression",
        "dim_input": cfg.dim_input,
        "dim_output": cfg.dim_output,
        "variables": [{"name": n, "shape": list(v.shape), "dtype": str(v.dtype), "adapted_in_inner_loop": a}
                      for n, v, a in zip(model.reference_names, model.trainable_variables, model.adaptable)],
        "signatures": {
            "serving_default": {"inputs": {"x": "[T, B, dim_input]"},
                                "outputs": {"predictions": "[T, B, dim_output] (logits for classification)"}},
            "adapt_and_predict": {
                "inputs": {"support_x": "[T, N*K, dim_input]", "support_y": "[T, N*K, N] (one-hot for classification)",
                           "query_x": "[T, Q, dim_input]", "num_steps": "int32 scalar, < 0: training value",
                           "step_size": "float scalar, < 0: training value"},
                "outputs": {"predictions": "[T, Q, N] after num_steps inner SGD steps"},
                "defaults": {"num_steps": int(module._loop.num_updates), "step_size": float(module._loop.update_lr)}},
        },
        "normalisation": "statistics of the current call per task (group of examples), as in training",
        "tensorflow_version": tf.__version__,
    }


def build_module(cfg: Config, tensors: dict, source: str) -> tuple[MetaInitModule, object]:
    """The model of `cfg` with the weights `tensors` (reference names), wrapped for export."""
    model = build_model(net_spec(cfg), seed=cfg.seed)

    class _Holder:  # assign_weights wants a learner-like object; only `.model`/`.variables` are read
        pass

    holder = _Holder()
    holder.model, holder.variables = model, list(model.trainable_variables)
    assign_weights(holder, tensors, source)
    loop = inner_loop(cfg)
    return MetaInitModule(model, loop, cfg.dim_input, cfg.dim_output), model


def resolve_checkpoint(cfg: Config, checkpoint: str | None) -> str:
    """The checkpoint to export: `checkpoint`, else model{--test_iter} (-1: latest) of the experiment folder."""
    if checkpoint:
        return checkpoint
    folder = os.path.join(cfg.logdir, cfg.exp_string)
    prefix = ckpt.find(folder, cfg.test_iter) if os.path.isdir(folder) else None
    if prefix is None:
        raise MamlError(f"no checkpoint in {folder} (the experiment folder of these flags); pass the flags the "
                        "run was trained with, or --checkpoint=PREFIX")
    return prefix


def export_saved_model(cfg: Config, checkpoint_prefix: str, export_dir: str, overwrite: bool = False,
                       explicit: Collection[str] | None = None) -> str:
    """Export the weights of `checkpoint_prefix` (maml-tf or reference TF1) under `cfg` to `export_dir`.

    A maml-tf checkpoint records the flags it was trained with; those are what the SavedModel bakes
    in (default step size and step count) and records. `explicit` names the flags the user gave:
    one that differs from the checkpoint's is refused; the others take the checkpoint's value
    (None: every flag of `cfg` counts as given, so any difference is refused).
    """
    target = os.path.abspath(export_dir)
    _check_target(target, overwrite)
    tensors = ckpt.load(checkpoint_prefix)
    cfg = training_config(cfg, tensors, checkpoint_prefix, explicit)
    module, model = build_module(cfg, tensors, checkpoint_prefix)
    meta = describe(cfg, module, model, checkpoint_prefix)

    return save_module(module, meta, target, overwrite, module.signatures)


def training_config(cfg: Config, tensors: dict, source: str, explicit: Collection[str] | None = None) -> Config:
    """`cfg` with the training flags recorded in a maml-tf checkpoint (unchanged for a reference checkpoint)."""
    from maml_tf.run import RESUMABLE_CHANGES
    from maml_tf.train.loop import CONFIG

    saved = tensors.get(CONFIG)
    if saved is None:
        return cfg
    saved = json.loads(saved.decode() if isinstance(saved, bytes) else saved)
    now = cfg.to_dict()
    differ = {k: saved[k] for k in now if k in saved and k not in RESUMABLE_CHANGES and saved[k] != now[k]}
    given = [k for k in sorted(differ) if explicit is None or k in explicit]
    if given:
        detail = ", ".join(f"--{k}={now[k]!r} given, {saved[k]!r} in training" for k in given)
        raise MamlError(f"{source} was trained with other flags ({detail}); the export records and bakes in the "
                        "training values, so drop those flags (adapt_and_predict takes num_steps and step_size "
                        "at run time)")
    return cfg.replace(**differ) if differ else cfg


def save_module(module: tf.Module, meta: dict, target: str, overwrite: bool, signatures) -> str:
    """tf.saved_model.save into a temporary folder beside `target`, with `meta` as an asset, then rename.

    `signatures()` traces the signature functions (called inside, so tracing failures leave nothing).
    """
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(target)}-", dir=parent)
    try:
        staging = os.path.join(tmp, "saved_model")
        asset_src = os.path.join(tmp, ASSET_NAME)
        with open(asset_src, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        module.metadata = tf.saved_model.Asset(asset_src)
        sigs = signatures()
        tf.saved_model.save(module, staging, signatures=sigs)
        _check_target(target, overwrite)  # it may have appeared meanwhile
        if os.path.exists(target):
            os.replace(target, os.path.join(tmp, "previous"))  # removed with tmp below
        os.replace(staging, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_target(target: str, overwrite: bool) -> None:
    """Refuse an existing target, unless `overwrite` and it is a previous export (its asset json present):
    --overwrite pointed at a training folder or any other folder must not delete it."""
    if not os.path.exists(target):
        return
    if not overwrite:
        raise MamlError(f"--export_dir {target} already exists; choose another folder or pass --overwrite "
                        "to replace it")
    if not os.path.isdir(target):
        raise MamlError(f"--export_dir {target} exists and is not a folder; refusing to replace it")
    if not os.path.isfile(os.path.join(target, "assets", ASSET_NAME)):
        raise MamlError(f"--export_dir {target} exists and is not a maml_tf export (no assets/{ASSET_NAME}); "
                        "--overwrite replaces only a previous export, never another folder: choose another "
                        "--export_dir")


def read_metadata(export_dir: str) -> dict:
    """The JSON an export carries (no maml_tf needed for this: it is a plain file under assets/)."""
    path = os.path.join(export_dir, "assets", ASSET_NAME)
    if not os.path.isfile(path):
        raise MamlError(f"{export_dir}: not a maml_tf export ({path} is missing)")
    with open(path) as f:
        return json.load(f)


__all__ = ["export_saved_model", "read_metadata", "build_module", "ASSET_NAME"]
