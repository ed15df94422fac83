"""Reference (cbfinn/maml) TF1 checkpoints <-> maml-tf checkpoints, checked variable by variable.

Both are TF1-format tensor bundles keyed by the reference's variable names, so converting is about
*checking* and *selecting*, not renaming:

* import: every `model/...` tensor of the reference checkpoint must be a variable of the network
  the flags describe, with the right shape (else an error naming it); the weights are written as
  `logdir/<exp_string>/model{itr}`, where `python -m maml_tf.main --train=False` (and resume) look.
* export: only what the original main.py's `tf.train.Saver(TRAINABLE_VARIABLES)` saves and
  restores, the network's trainable variables under their reference names; verified by reading it
  back and by restoring it with a `tf.compat.v1.train.Saver` into a graph of variables of those names.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

import numpy as np
import tensorflow as tf

from maml_tf import checkpoint as ckpt
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.learner import assign_state, build, weight_tensors

IMPORTED_FROM = "maml_tf/imported_from"
_ITR_RE = re.compile(r"^model(\d+)$")
# Names a reference checkpoint may hold besides the network's weights.
_OPTIMIZER_RE = re.compile(r"^(?:.*/Adam(?:_\d+)?|beta[12]_power(?:_\d+)?)$")
_MOVING_STAT_RE = re.compile(r"^model/[^/]+/moving_(?:mean|variance)$")


def iteration_of(prefix: str) -> int | None:
    m = _ITR_RE.match(os.path.basename(prefix))
    return int(m.group(1)) if m else None


def check_fits(cfg: Config, tensors: Mapping[str, np.ndarray], source: str):
    """A learner for `cfg` holding the checkpoint's weights (and Adam state if complete).

    Raises a MamlError naming the first variable that is missing, has the wrong shape, or belongs
    to another architecture. Moving statistics of batch norm are accepted and ignored (the
    reference never uses them); optimizer slots are taken when all of them are present.
    """
    learner = build(cfg)
    expected = weight_tensors(learner)
    for name in sorted(tensors):
        if not name.startswith("model/") or name in expected:
            continue
        if _OPTIMIZER_RE.match(name) or _MOVING_STAT_RE.match(name):
            owner = name.rsplit("/", 1)[0]
            if _OPTIMIZER_RE.match(name) and owner.startswith("model/") and owner not in expected:
                raise MamlError(f"{source}: optimizer slot {name} belongs to variable {owner}, which the network of "
                                f"these flags ({cfg.exp_string}) does not have; check --datasource/--conv/--norm")
            continue
        raise MamlError(f"{source}: variable {name} {list(np.shape(tensors[name]))} is not part of the network these "
                        f"flags describe ({cfg.exp_string}: {len(expected)} variables, e.g. "
                        f"{', '.join(list(expected)[:4])}); check --datasource, --conv, --norm, --num_filters")
    restored_adam = assign_state(learner, tensors, source)
    return learner, restored_adam


def import_reference(cfg: Config, source: str, itr: int | None = None, overwrite: bool = False,
                     log=print) -> str:
    """Reference checkpoint `source` -> `cfg.logdir/cfg.exp_string/model{itr}`; returns the new prefix."""
    tensors = ckpt.load(source)
    itr = itr if itr is not None else iteration_of(source)
    if itr is None:
        raise MamlError(f"{source}: cannot tell the iteration from the name (expected model<N>); pass --itr=N")
    if itr < 0:
        raise MamlError(f"--itr={itr}: must be >= 0")
    learner, restored_adam = check_fits(cfg, tensors, source)
    folder = os.path.join(cfg.logdir, cfg.exp_string)
    dest = os.path.join(folder, f"model{itr}")
    if os.path.exists(dest + ".index") and not overwrite:
        raise MamlError(f"{dest} already exists; pass --overwrite to replace it")
    out: dict[str, object] = dict(weight_tensors(learner))
    if restored_adam:
        from maml_tf.learner import state_tensors
        out = dict(state_tensors(learner))
    out[IMPORTED_FROM] = os.path.abspath(source)
    ckpt.save(dest, out)
    kept = [f"model{i}" for i in ckpt.list_iterations(folder)]
    latest = f"model{max(ckpt.list_iterations(folder))}"
    ckpt.write_state(folder, latest, kept)
    # Read back: what was written is bitwise what the source holds.
    written = ckpt.load(dest)
    for name in weight_tensors(learner):
        if not np.array_equal(written[name], tensors[name]) or written[name].dtype != tensors[name].dtype:
            raise MamlError(f"{dest}: variable {name} did not round-trip (please report this)")
    log(f"Imported {source}: {len(weight_tensors(learner))} variables"
        f"{' and Adam state' if restored_adam else ''} -> {dest}")
    return dest


def export_reference(cfg: Config, source: str, dest: str, overwrite: bool = False, verify: bool = True,
                     log=print) -> dict[str, np.ndarray]:
    """maml-tf checkpoint `source` -> TF1 checkpoint `dest` with only the reference's trainable variables."""
    tensors = ckpt.load(source)
    learner, _ = check_fits(cfg, tensors, source)
    if os.path.exists(dest + ".index") and not overwrite:
        raise MamlError(f"{dest} already exists; pass --overwrite to replace it")
    weights = {n: v.numpy() for n, v in weight_tensors(learner).items()}
    ckpt.save(dest, weights)
    folder = os.path.dirname(os.path.abspath(dest))
    base = os.path.basename(dest)
    # The reference's main.py finds checkpoints with tf.train.latest_checkpoint: give it the state file.
    ckpt.write_state(folder, base, [base])
    if verify:
        verify_reference_checkpoint(dest, weights)
    log(f"Wrote {dest}: {len(weights)} variables under the reference's names"
        f"{' (read back and restored by a tf.compat.v1 Saver: bitwise equal)' if verify else ''}")
    return weights


def verify_reference_checkpoint(prefix: str, expected: Mapping[str, np.ndarray]) -> None:
    """Check `prefix` holds exactly `expected`, and that a TF1 Saver restores it by those names."""
    reader = tf.train.load_checkpoint(prefix)
    names = set(reader.get_variable_to_shape_map())
    if names != set(expected):
        raise MamlError(f"{prefix}: holds {sorted(names ^ set(expected))[:6]} unexpectedly or lacks them")
    for name, value in expected.items():
        if not np.array_equal(reader.get_tensor(name), value):
            raise MamlError(f"{prefix}: variable {name} reads back different values")
    restored = restore_in_tf1_graph(prefix, {n: (np.shape(v), np.asarray(v).dtype) for n, v in expected.items()})
    for name, value in expected.items():
        if not np.array_equal(restored[name], value):
            raise MamlError(f"{prefix}: variable {name} restored by tf.compat.v1.train.Saver differs")


def restore_in_tf1_graph(prefix: str, specs: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """Restore `prefix` the way the reference does: graph-mode variables of these names + a v1 Saver."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        variables = {}
        for name, (shape, dtype) in specs.items():
            variables[name] = v1.get_variable(name, shape=shape, dtype=tf.as_dtype(dtype),
                                              initializer=v1.zeros_initializer(), use_resource=False)
        saver = v1.train.Saver(list(variables.values()))
        with v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            return dict(zip(variables, sess.run(list(variables.values()))))
