"""The learner of a Config: its network and `MetaLearner`, and their state under the reference's TF1 names.

What every driver needs from a Config (training, test protocol, export, the reference toolkit, benches):
`build` assembles the model and meta-learner; `state_tensors` / `assign_state` read and write the
weights and both Adams by reference variable name, for checkpoints in either direction.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf

from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.meta.adapt import InnerLoop
from maml_tf.meta.step import MetaConfig, MetaLearner
from maml_tf.models.nets import NetSpec, build_model


def net_spec(cfg: Config, dtype: str = "float32") -> NetSpec:
    """The reference architecture for these flags (maml.py's construct_*_weights / forward_*)."""
    if cfg.datasource == "sinusoid":
        return NetSpec("fc", cfg.dim_input, cfg.dim_output, norm=cfg.norm, hidden=(40, 40),
                       norm_variant=cfg.norm_variant, fused_moments_grad=cfg.fused_moments_grad, dtype=dtype)
    if not cfg.conv:
        return NetSpec("fc", cfg.dim_input, cfg.dim_output, norm=cfg.norm, hidden=(256, 128, 64, 64),
                       norm_variant=cfg.norm_variant, fused_moments_grad=cfg.fused_moments_grad, dtype=dtype)
    mini = cfg.datasource == "miniimagenet"
    return NetSpec("conv", cfg.dim_input, cfg.dim_output, norm=cfg.norm, num_filters=cfg.num_filters,
                   channels=3 if mini else 1, max_pool=cfg.max_pool, w5_init="glorot" if mini else "normal",
                   norm_variant=cfg.norm_variant, fused_moments_grad=cfg.fused_moments_grad, dtype=dtype,
                   task_layout=task_layout(cfg), task_chunks=task_chunks(cfg))


def task_layout(cfg: Config) -> str:
    """--task_layout, with auto resolved: per-task lists pay off only where ops run side by side on a CPU.

    Measured (bench/README.md, "task layout"): under one thread per op and one op per core, the list
    layout is 1.1-1.3x faster on Omniglot; where the pools run one op at a time (MiniImagenet's auto
    pools) the stacked tensor's larger ops use both threads and win. A GPU is not measured: there the
    fewer, larger ops of the stacked layout are the safer default. auto never picks "chunked": it holds
    18-26% less memory than the list, but its speed was within this machine's noise of it (0.94-1.10x).
    """
    if cfg.task_layout != "auto":
        return cfg.task_layout
    import tensorflow as tf

    from maml_tf.run import thread_plan

    if tf.config.list_physical_devices("GPU"):
        return "stacked"
    return "stacked" if thread_plan(cfg)[1] == 1 else "list"


CHUNKS_PER_CONCURRENT_OP = 4


def task_chunks(cfg: Config) -> int:
    """Groups of tasks in the chunked layout (--task_chunks, or auto).

    auto: 4 per op the pools run at once (inter-op threads, or the cores under TensorFlow's default
    pools). Measured on 2 cores (bench/README.md, "chunked layout"): 8 chunks ran faster than 2 on
    Omniglot 5-way 1-shot (1.06x), 20-way (1.13x) and 5-way 5-shot (1.15x; there 2 chunks of 16 tasks x
    25 images were 0.86x the per-task list), at a little more memory than 2.
    """
    from maml_tf.run import cpu_count, thread_plan

    if cfg.task_chunks:
        return cfg.task_chunks
    inter = thread_plan(cfg)[1]
    return CHUNKS_PER_CONCURRENT_OP * max(1, inter if inter > 0 else cpu_count())


def inner_loop(cfg: Config, test_num_updates: int | None = None) -> InnerLoop:
    """The inner loop of `cfg`; `test_num_updates` overrides main.py's choice (golden fixtures set their own)."""
    steps = cfg.num_steps if test_num_updates is None else max(test_num_updates, cfg.num_updates)
    return InnerLoop(update_lr=cfg.update_lr, num_updates=cfg.num_updates, num_steps=steps,
                     stop_grad=cfg.stop_grad, classification=cfg.classification,
                     update_batch_size=cfg.update_batch_size, recompute=cfg.recompute_inner)


def build(cfg: Config, dtype: str = "float32", meta_batch_size: int | None = None,
          test_num_updates: int | None = None) -> MetaLearner:
    """Model + MetaLearner for `cfg` (the totals' divisor defaults to --meta_batch_size)."""
    model = build_model(net_spec(cfg, dtype), seed=cfg.seed)
    mc = MetaConfig(loop=inner_loop(cfg, test_num_updates), meta_lr=cfg.meta_lr,
                    meta_batch_size=meta_batch_size or cfg.meta_batch_size,
                    clip_value=cfg.clip_value, jit_compile=cfg.jit_compile)
    return MetaLearner(model, mc)


def weight_tensors(learner: MetaLearner) -> dict:
    return dict(zip(learner.model.reference_names, learner.variables))


def state_tensors(learner: MetaLearner) -> dict:
    """Weights and both Adams under the names the reference graph gives them."""
    names = learner.model.reference_names
    out = weight_tensors(learner)
    out.update(learner.pretrain_optimizer.state(names, ("Adam", "Adam_1"), ""))
    out.update(learner.meta_optimizer.state(names, ("Adam_2", "Adam_3"), "_1"))
    return out


def assign_weights(learner: MetaLearner, tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Load weights by reference name, naming any variable that is missing or does not fit."""
    for name, var in weight_tensors(learner).items():
        if name not in tensors:
            present = ", ".join(sorted(k for k in tensors if k.startswith("model/"))[:12])
            raise MamlError(f"{source}: variable {name} is missing (this model needs it; the checkpoint has: "
                            f"{present}...). Was it written with other flags (--datasource/--conv/--norm/...)?")
        value = np.asarray(tensors[name])
        if tuple(value.shape) != tuple(var.shape):
            raise MamlError(f"{source}: variable {name} has shape {list(value.shape)} but this model expects "
                            f"{list(var.shape)} (checkpoint from another architecture: check --num_classes, "
                            f"--num_filters, --datasource, --max_pool, --conv)")
    for name, var in weight_tensors(learner).items():
        var.assign(np.asarray(tensors[name]).astype(tf.as_dtype(var.dtype).as_numpy_dtype))


def assign_state(learner: MetaLearner, tensors: Mapping[str, np.ndarray], source: str) -> bool:
    """Weights, then optimizer state when the checkpoint has it. Returns True if Adam state was restored."""
    assign_weights(learner, tensors, source)
    state = state_tensors(learner)
    opt_names = [n for n in state if n not in weight_tensors(learner)]
    if not all(n in tensors for n in opt_names):
        return False
    for n in opt_names:
        value = np.asarray(tensors[n])
        if tuple(value.shape) != tuple(state[n].shape):
            raise MamlError(f"{source}: optimizer slot {n} has shape {list(value.shape)}, expected {list(state[n].shape)}")
        state[n].assign(value.astype(tf.as_dtype(state[n].dtype).as_numpy_dtype))
    return True
