"""Experiment configuration: the reference main.py's flags -> one validated, immutable config.

Every flag of cbfinn/maml's main.py keeps its name, default and meaning; the few additions
(data_dir, seed, ...) are marked. All bad-flag messages live here.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from maml_tf.errors import MamlError

DATASOURCES = ("sinusoid", "omniglot", "miniimagenet")
NORMS = ("batch_norm", "layer_norm", "None")
BASELINES = (None, "oracle")
DISTRIBUTE = ("none", "mirrored", "multi_worker")
THREAD_POOLS = ("auto", "tf")


@dataclasses.dataclass(frozen=True)
class Config:
    # --- reference flags (main.py), same names and defaults ---
    datasource: str = "sinusoid"
    num_classes: int = 5
    baseline: str | None = None
    pretrain_iterations: int = 0
    metatrain_iterations: int = 15000
    meta_batch_size: int = 25
    meta_lr: float = 0.001
    update_batch_size: int = 5
    update_lr: float = 1e-3
    num_updates: int = 1
    norm: str = "batch_norm"
    num_filters: int = 64
    conv: bool = True
    max_pool: bool = False
    stop_grad: bool = False
    log: bool = True
    logdir: str = "/tmp/data"
    resume: bool = True
    train: bool = True
    test_iter: int = -1
    test_set: bool = False
    train_update_batch_size: int = -1
    train_update_lr: float = -1.0
    # --- maml-tf additions ---
    data_dir: str = "data"
    seed: int = 1
    num_test_tasks: int = 600
    test_chunk: int = 50
    test_after_train: bool = False
    jit_compile: bool = False
    recompute_inner: bool = False  # backward recomputes inner steps (memory for time; same numbers)
    distribute: str = "none"  # meta-batch over this host's devices / TF_CONFIG's hosts (same numbers up to rounding)
    intra_op_threads: int = 0  # TF's thread pools (0: see thread_pools); speed only, set before TF starts
    inter_op_threads: int = 0
    thread_pools: str = "auto"  # "auto": 1 intra-op thread, one op per core, on CPU-only small-op workloads; "tf"
    save_interval: int = 1000
    print_interval: int = 0  # 0: the reference's (1000 sinusoid, 100 otherwise)
    summary_interval: int = 100
    val_interval: int = 500
    norm_variant: str = "exact"

    # ---------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MamlError(f"unknown setting(s): {', '.join(unknown)}")
        values = dict(values)
        if values.get("baseline") in ("None", ""):
            values["baseline"] = None
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes) -> "Config":
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def bad(flag, why):
            raise MamlError(f"--{flag}={getattr(self, flag)!r}: {why}")

        if self.datasource not in DATASOURCES:
            bad("datasource", f"unknown datasource; expected one of {', '.join(DATASOURCES)}")
        if self.norm not in NORMS:
            bad("norm", f"unknown norm; expected one of {', '.join(NORMS)}")
        if self.baseline not in BASELINES:
            bad("baseline", "unknown baseline; the only baseline is 'oracle' (or leave it unset)")
        if self.baseline == "oracle" and self.datasource != "sinusoid":
            raise MamlError(f"--baseline=oracle needs --datasource=sinusoid (got --datasource={self.datasource}): "
                            "the oracle appends the sinusoid's amplitude and phase to the input")
        for flag in ("num_classes", "meta_batch_size", "update_batch_size", "num_updates", "num_filters",
                     "num_test_tasks", "test_chunk", "save_interval", "summary_interval", "val_interval"):
            if getattr(self, flag) <= 0:
                bad(flag, "must be a positive integer")
        for flag in ("pretrain_iterations", "metatrain_iterations", "print_interval", "intra_op_threads",
                     "inter_op_threads"):
            if getattr(self, flag) < 0:
                bad(flag, "must be >= 0")
        # NaN passes every comparison, so step sizes are checked for finiteness first.
        if not math.isfinite(self.meta_lr) or self.meta_lr <= 0:
            bad("meta_lr", "must be a finite number > 0")
        if not math.isfinite(self.update_lr) or self.update_lr < 0:
            bad("update_lr", "must be a finite number >= 0")
        if not math.isfinite(self.train_update_lr):
            bad("train_update_lr", "must be -1 (same as --update_lr) or a finite number >= 0")
        if not 0 <= self.seed < 2 ** 31 - 6:  # numpy seeds are unsigned; validation uses --seed + 6
            bad("seed", f"must be an integer in [0, {2 ** 31 - 7}]")
        if self.test_iter != -1 and self.test_iter <= 0:
            bad("test_iter", "must be -1 (latest checkpoint) or a positive iteration")
        if self.train_update_batch_size != -1 and self.train_update_batch_size <= 0:
            bad("train_update_batch_size", "must be -1 (same as --update_batch_size) or positive")
        if self.train_update_lr != -1 and self.train_update_lr < 0:
            bad("train_update_lr", "must be -1 (same as --update_lr) or >= 0")
        if self.thread_pools not in THREAD_POOLS:
            bad("thread_pools", f"expected one of {', '.join(THREAD_POOLS)}")
        if self.distribute not in DISTRIBUTE:
            bad("distribute", f"expected one of {', '.join(DISTRIBUTE)}")
        if self.jit_compile and self.distribute != "none":
            bad("jit_compile", "is not available with --distribute: the replicas' step runs uncompiled "
                "(and on a CPU XLA was slower, bench/README.md); drop one of the two flags")
        if self.norm_variant not in ("exact", "tf2"):
            bad("norm_variant", "expected 'exact' or 'tf2'")
        if self.datasource == "miniimagenet" and not self.conv:
            bad("conv", "the MiniImagenet network is the conv net (the reference's FC net is Omniglot-only)")
        if self.datasource == "miniimagenet" and not self.max_pool:
            bad("max_pool", "the MiniImagenet head (w5 of 32*5*5 inputs) assumes --max_pool=True, as the reference")

    # --- derived quantities, as main.py computes them --------------------------------------
    @property
    def classification(self) -> bool:
        return self.datasource != "sinusoid"

    @property
    def effective_pretrain_iterations(self) -> int:
        """The oracle baseline trains as pretraining: main.py moves metatrain iterations there."""
        if self.baseline == "oracle":
            return self.pretrain_iterations + self.metatrain_iterations
        return self.pretrain_iterations

    @property
    def effective_metatrain_iterations(self) -> int:
        return 0 if self.baseline == "oracle" else self.metatrain_iterations

    @property
    def total_iterations(self) -> int:
        return self.effective_pretrain_iterations + self.effective_metatrain_iterations

    @property
    def test_num_updates(self) -> int:
        if self.datasource == "miniimagenet" and self.train:
            return 1
        if self.datasource == "sinusoid" and self.train:
            return 5
        return 10

    @property
    def num_steps(self) -> int:
        """Inner steps built and evaluated: max(test_num_updates, num_updates)."""
        return max(self.test_num_updates, self.num_updates)

    @property
    def num_classes_in_task(self) -> int:
        """Classes per task as the data generator sees them (1 for sinusoid regression)."""
        return 1 if self.datasource == "sinusoid" else self.num_classes

    @property
    def samples_per_class(self) -> int:
        """Support + query samples per class: 2K, or K+15 when training on MiniImagenet."""
        if self.datasource == "miniimagenet" and self.train:
            return self.update_batch_size + 15
        return 2 * self.update_batch_size

    @property
    def dim_input(self) -> int:
        if self.datasource == "sinusoid":
            return 3 if self.baseline == "oracle" else 1
        return 784 if self.datasource == "omniglot" else 84 * 84 * 3

    @property
    def dim_output(self) -> int:
        return 1 if self.datasource == "sinusoid" else self.num_classes

    @property
    def clip_value(self) -> float | None:
        return 10.0 if self.datasource == "miniimagenet" else None

    @property
    def resolved_train_update_batch_size(self) -> int:
        return self.update_batch_size if self.train_update_batch_size == -1 else self.train_update_batch_size

    @property
    def resolved_train_update_lr(self) -> float:
        return self.update_lr if self.train_update_lr == -1 else self.train_update_lr

    @property
    def print_every(self) -> int:
        if self.print_interval:
            return self.print_interval
        return 1000 if self.datasource == "sinusoid" else 100

    @property
    def exp_string(self) -> str:
        """The reference's experiment folder name (main.py), used for resume and test."""
        s = (f"cls_{self.num_classes}.mbs_{self.meta_batch_size}.ubs_{self.resolved_train_update_batch_size}"
             f".numstep{self.num_updates}.updatelr{_pystr(self.resolved_train_update_lr)}")
        if self.num_filters != 64:
            s += f"hidden{self.num_filters}"
        if self.max_pool:
            s += "maxpool"
        if self.stop_grad:
            s += "stopgrad"
        if self.baseline:
            s += self.baseline
        s += {"batch_norm": "batchnorm", "layer_norm": "layernorm", "None": "nonorm"}[self.norm]
        return s


def _pystr(x: float) -> str:
    """str() of the value as the reference's Python float would print it (1e-3 -> '0.001')."""
    return str(float(x))
