"""Experiment configuration: the reference main.py's flags -> one validated, immutable config.

Every flag of cbfinn/maml's main.py keeps its name, default and meaning; the few additions
(data_dir, seed, ...) are marked. Each flag is declared once, as a `Config` field (`maml_tf.flagspec`):
main.py's absl flags, their help and the list of what a resume may change derive from it. All
bad-flag messages live here.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from maml_tf.errors import MamlError
from maml_tf.flagspec import setting

DATASOURCES = ("sinusoid", "omniglot", "miniimagenet")
NORMS = ("batch_norm", "layer_norm", "None")
BASELINES = (None, "oracle")
DISTRIBUTE = ("none", "mirrored", "multi_worker")
THREAD_POOLS = ("auto", "tf")
TASK_LAYOUTS = ("auto", "list", "stacked", "chunked")


@dataclasses.dataclass(frozen=True)
class Config:
    """Every flag of `python -m maml_tf.main`, declared once: default here, help and role in `setting`.

    `resumable=True`: a resumed run may change it (how long it runs and how it logs, not what it
    computes; see `maml_tf.run.check_same_run`).
    """
    # --- reference flags (main.py), same names, defaults and help ---
    datasource: str = setting("sinusoid", "sinusoid or omniglot or miniimagenet")
    num_classes: int = setting(5, "number of classes used in classification (e.g. 5-way classification).")
    baseline: str | None = setting(None, "oracle, or None")
    pretrain_iterations: int = setting(0, "number of pre-training iterations.")
    metatrain_iterations: int = setting(15000, "number of metatraining iterations.", resumable=True)
    meta_batch_size: int = setting(25, "number of tasks sampled per meta-update")
    meta_lr: float = setting(0.001, "the base learning rate of the generator")
    update_batch_size: int = setting(5, "number of examples used for inner gradient update (K for K-shot learning).")
    update_lr: float = setting(1e-3, "step size alpha for inner gradient update.")
    num_updates: int = setting(1, "number of inner gradient updates during training.")
    norm: str = setting("batch_norm", "batch_norm, layer_norm, or None")
    num_filters: int = setting(64, "number of filters for conv nets -- 32 for miniimagenet, 64 for omiglot.")
    conv: bool = setting(True, "whether or not to use a convolutional network, only applicable in some cases")
    max_pool: bool = setting(False, "Whether or not to use max pooling rather than strided convolutions")
    stop_grad: bool = setting(False, "if True, do not use second derivatives in meta-optimization (for speed)")
    log: bool = setting(True, "if false, do not log summaries, for debugging code.", resumable=True)
    logdir: str = setting("/tmp/data", "directory for summaries and checkpoints.", resumable=True)
    resume: bool = setting(True, "resume training if there is a model available", resumable=True)
    train: bool = setting(True, "True to train, False to test.", resumable=True)
    test_iter: int = setting(-1, "iteration to load model (-1 for latest model)", resumable=True)
    test_set: bool = setting(False, "Set to true to test on the the test set, False for the validation set.",
                             resumable=True)
    train_update_batch_size: int = setting(
        -1, "number of examples used for gradient update during training (use if you want to test with a "
        "different number).", resumable=True)
    train_update_lr: float = setting(
        -1.0, "value of inner gradient step step during training. (use if you want to test with a different value)",
        resumable=True)
    # --- maml-tf additions ---
    data_dir: str = setting("data", "folder holding omniglot_resized/ and miniImagenet/ (the reference used ./data)",
                            addition=True, resumable=True)
    seed: int = setting(1, "seed of the initial weights and of the training task stream", addition=True)
    num_test_tasks: int = setting(600, "tasks in the test protocol (the reference's NUM_TEST_POINTS)",
                                  addition=True, resumable=True)
    test_chunk: int = setting(50, "test tasks evaluated together (speed only; results are per task)",
                              addition=True, resumable=True)
    test_after_train: bool = setting(False, "after training, run the test protocol on the final weights",
                                     addition=True, resumable=True)
    jit_compile: bool = setting(False, "compile the meta-step with XLA", addition=True, resumable=True)
    recompute_inner: bool = setting(
        False, "recompute each inner step in the meta-gradient's backward pass instead of storing its activations: "
        "less memory on long inner loops, more time, same numbers", addition=True, resumable=True)
    distribute: str = setting(
        "none", "none; mirrored (this host's GPUs, or its CPUs if it has none); or multi_worker (the hosts of "
        "TF_CONFIG, one process each): the meta-batch is split over the replicas and their meta-gradients summed "
        "(same numbers up to float rounding; --meta_batch_size must be a multiple of the replica count; only "
        "worker 0 writes)", addition=True, resumable=True)
    intra_op_threads: int = setting(0, "threads inside one op (0: as --thread_pools says)", addition=True,
                                    resumable=True)
    inter_op_threads: int = setting(0, "ops run at the same time (0: as --thread_pools says)", addition=True,
                                    resumable=True)
    thread_pools: str = setting(
        "auto", "TensorFlow's thread pools when --intra/inter_op_threads are unset: auto = on a CPU-only machine "
        "without --distribute, nets without max-pool (sinusoid, Omniglot) run one thread per op and one op per "
        "core (their per-task ops are small; 1.2-2.1x faster here, bench/README.md), nets with max-pool "
        "(MiniImagenet) one op at a time (on that net oneDNN gives run-to-run different meta-gradients when ops "
        "run concurrently); tf = always TensorFlow's default", addition=True, resumable=True, choices=THREAD_POOLS)
    task_layout: str = setting(
        "auto", "conv nets: how the per-task activations between convolutions are held: list = one tensor per "
        "task (the tasks' ops run side by side; 1.1-1.3x faster on Omniglot here), stacked = one [tasks, ...] "
        "tensor (fewer, larger ops), chunked = a few stacked groups of tasks (--task_chunks; 18-26% less peak "
        "memory than list here, speed within noise of it); auto = list on a CPU where ops run concurrently, "
        "stacked where they run one at a time (MiniImagenet's auto pools) or on a GPU. Speed and memory only: "
        "the same numbers up to float32 rounding", addition=True, resumable=True, choices=TASK_LAYOUTS)
    task_chunks: int = setting(
        0, "--task_layout=chunked: groups of tasks between the convolutions (0: auto = 4 per op the thread "
        "pools run at once, 8 on 2 cores; fewer chunks hold less memory, bench/README.md)", addition=True,
        resumable=True)
    fused_moments_grad: bool = setting(
        False, "batch/layer norm: one hand-written gradient for the moments' two sums (sum x, sum x^2) instead "
        "of autodiff's full-size broadcasts of each (Tile); the same values and exact second derivatives, float32 "
        "additions grouped differently (golden parity holds except the rounding-chaotic Adam replays; "
        "bench/README.md). Memory (12-23% lower peak here) and speed only", addition=True, resumable=True)
    save_interval: int = setting(1000, "checkpoint every N iterations (reference: 1000)", addition=True,
                                 resumable=True)
    print_interval: int = setting(0, "print every N iterations (0: reference's 1000 sinusoid / 100 images)",
                                  addition=True, resumable=True)
    summary_interval: int = setting(100, "TensorBoard summaries every N iterations", addition=True, resumable=True)
    val_interval: int = setting(500, "meta-validation every N iterations (image datasets)", addition=True,
                                resumable=True)
    # --- no flag: golden fixtures' tf2-moments variants only ---
    norm_variant: str = setting("exact", flag=False)

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
        if self.task_layout not in TASK_LAYOUTS:
            bad("task_layout", f"expected one of {', '.join(TASK_LAYOUTS)}")
        if self.task_chunks < 0:
            bad("task_chunks", "must be >= 0 (0: auto)")
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
