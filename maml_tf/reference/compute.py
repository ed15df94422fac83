"""Compute, with maml-tf, every quantity a golden fixture records, under the fixture's key names.

Used by the parity command (to compare) and by `maml_tf.reference dump` (to produce the maml-tf
side of a comparison for any batch and weights).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from maml_tf.config import Config
from maml_tf.learner import assign_weights, build
from maml_tf.reference.golden import key

FORWARD_KEYS = ("outputas", "outputbs", "lossesa", "lossesb", "total_loss1", "total_losses2",
                "accuraciesa", "accuraciesb", "total_accuracy1", "total_accuracies2")


def compute(cfg: Config, init: Mapping[str, np.ndarray], batch, dtype: str = "float32",
            adam_steps: tuple[int, ...] = (1, 3), test_num_updates: int | None = None,
            ) -> tuple[dict[str, np.ndarray], object]:
    """Forward results, meta-gradients, and weights/Adam state after `adam_steps` meta-steps.

    `init` maps reference names to initial values; `batch` = (inputa, labela, inputb, labelb).
    Returns (arrays under fixture keys, the learner, for its variable names).
    """
    learner = build(cfg, dtype=dtype, test_num_updates=test_num_updates)
    assign_weights(learner, init, "initial weights")
    batch = tuple(np.asarray(b, dtype=dtype) for b in batch)
    names = learner.model.reference_names
    grads, res = learner.meta_gradients(batch)
    out: dict[str, np.ndarray] = {}
    for k in FORWARD_KEYS:
        if k in res:
            out[k] = np.asarray(res[k])
    out["meta_loss"] = np.asarray(res["total_losses2"][cfg.num_updates - 1])
    for n, g in zip(names, grads):
        out[f"metagrad__{key(n)}"] = np.asarray(g)
        if cfg.clip_value is not None:
            out[f"metagrad_clipped__{key(n)}"] = np.clip(np.asarray(g), -cfg.clip_value, cfg.clip_value)
    out["_step_grads"] = []
    step = 0
    for target in sorted(adam_steps):
        while step < target:
            g, _ = learner.meta_gradients(batch)
            out["_step_grads"].append([np.asarray(x) for x in g])
            learner.meta_train_step(batch)
            step += 1
        state = learner.meta_optimizer.state(names, ("Adam_2", "Adam_3"), "_1")
        for n, v in zip(names, learner.variables):
            out[f"after{target}__{key(n)}"] = np.asarray(v.numpy())
        for n, v in state.items():
            out[f"after{target}__{key(n)}"] = np.asarray(v.numpy())
    return out, learner


def replay_tf1_adam(init: Mapping[str, np.ndarray], names: list[str], step_grads: list[list[np.ndarray]],
                    lr: float, clip: float | None, dtype=np.float32) -> dict[str, np.ndarray]:
    """TF1 AdamOptimizer in numpy on given per-step gradients: the optimiser check of the golden README."""
    one, b1, b2, eps = dtype(1), dtype(0.9), dtype(0.999), dtype(1e-8)
    w = {n: np.asarray(init[n], dtype) for n in names}
    m = {n: np.zeros_like(w[n]) for n in names}
    v = {n: np.zeros_like(w[n]) for n in names}
    p1, p2 = dtype(0.9), dtype(0.999)
    for grads in step_grads:
        alpha = dtype(lr) * np.sqrt(one - p2) / (one - p1)
        for n, g in zip(names, grads):
            g = np.asarray(g, dtype)
            if clip is not None:
                g = np.clip(g, -clip, clip)
            m[n] = m[n] + (g - m[n]) * (one - b1)
            v[n] = v[n] + (np.square(g) - v[n]) * (one - b2)
            w[n] = w[n] - (m[n] * alpha) / (np.sqrt(v[n]) + eps)
        p1, p2 = p1 * b1, p2 * b2
    return w
