"""What main.py does once the flags are parsed: train (with resume) and/or the test protocol.

``--distribute`` trains through a `DistributedMetaLearner`: every worker builds the same weights and
draws the same global batches from the same seeded stream (or restores the same checkpoint), each
replica takes its slice; only the chief writes the experiment folder and runs the test protocol.
"""
from __future__ import annotations

import json
import os
import time
import zlib

import numpy as np

from maml_tf import checkpoint as ckpt
from maml_tf import flagspec
from maml_tf import strategy as distribute
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.files import writable_problem
from maml_tf.learner import assign_state, assign_weights, build, state_tensors
from maml_tf.meta.distributed import DistributedMetaLearner
from maml_tf.train import loop, streams, test_protocol


def experiment_folder(cfg: Config) -> str:
    return os.path.join(cfg.logdir, cfg.exp_string)


def ensure_writable(folder: str) -> None:
    problem = writable_problem(folder)
    if problem:
        raise MamlError(f"--logdir: cannot write to {folder}: {problem}")


# Flags a resumed run may change: how long it runs and how it logs, not what it computes.
RESUMABLE_CHANGES = frozenset(flagspec.names(Config, flagspec.RESUMABLE))


def check_same_run(cfg: Config, saved: dict | None, prefix: str) -> None:
    """Refuse to resume a checkpoint written with other flags (the folder name does not hold them all:
    a pretraining baseline and MAML with the same K land in the same reference folder)."""
    if not saved:
        return
    now = cfg.to_dict()
    diff = [k for k in sorted(now) if k in saved and k not in RESUMABLE_CHANGES and saved[k] != now[k]]
    if diff:
        detail = ", ".join(f"--{k}={saved[k]!r} there, {now[k]!r} now" for k in diff)
        raise MamlError(f"{prefix} was written by a run with other flags ({detail}); use another --logdir, "
                        f"or move the old checkpoints away")


def check_same_data(stream, saved: str | bytes | None, prefix: str) -> None:
    """Refuse to resume on a training split other than the checkpoint's (--data_dir may move, not change)."""
    if not saved:
        return
    saved = json.loads(saved.decode() if isinstance(saved, bytes) else saved)
    now = json.loads(stream.fingerprint())
    if saved["sha256"] != now["sha256"]:
        raise MamlError(f"{prefix} was trained on other data: its {saved['split']} split held {saved['classes']} "
                        f"classes, {saved['images']} images (in {saved['folder']}); --data_dir now gives "
                        f"{now['classes']} classes, {now['images']} images (in {now['folder']}), not the same files. "
                        "Point --data_dir at the data the run started with, or use another --logdir")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_plan(cfg: Config) -> tuple[int, int]:
    """(intra-op, inter-op) threads for this run; 0 leaves TensorFlow's default.

    Explicit --intra_op_threads/--inter_op_threads win. Otherwise, with --thread_pools=auto in a
    one-process run (no --distribute) on a machine without a GPU (measured in bench/README.md):
    * nets with max-pool (MiniImagenet): one op at a time. oneDNN's kernels on that net give
      run-to-run different meta-gradients when ops run concurrently (TensorFlow's default pools
      here); one at a time they are bitwise reproducible, at about the same speed;
    * the others (sinusoid, Omniglot, whose per-task ops act on 5-20 examples): one thread per op
      and one op per core, so the tasks' independent ops run side by side: 1.2-2.1x faster.
    """
    if cfg.intra_op_threads or cfg.inter_op_threads:
        return cfg.intra_op_threads, cfg.inter_op_threads
    if cfg.thread_pools != "auto" or cfg.distribute != "none":
        return 0, 0
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):  # listing devices does not start the runtime
        return 0, 0
    if cfg.conv and cfg.max_pool:
        return 0, 1
    return 1, cpu_count()


def set_threads(cfg: Config) -> tuple[int, int]:
    """Apply `thread_plan(cfg)`; returns the pools in use (0: TensorFlow's default).

    TensorFlow fixes its thread pools when it starts, so this must come before any op. In a process
    that already ran TensorFlow (a second `run` call), explicitly asked-for pools that differ are
    refused; automatic ones are then left as they are.
    """
    import tensorflow as tf

    intra, inter = thread_plan(cfg)
    explicit = bool(cfg.intra_op_threads or cfg.inter_op_threads)
    used = []
    for value, get, put, name in (
            (intra, tf.config.threading.get_intra_op_parallelism_threads,
             tf.config.threading.set_intra_op_parallelism_threads, "intra_op_threads"),
            (inter, tf.config.threading.get_inter_op_parallelism_threads,
             tf.config.threading.set_inter_op_parallelism_threads, "inter_op_threads")):
        if value and get() != value:
            try:
                put(value)
            except RuntimeError:
                if explicit:
                    raise MamlError(f"--{name}={value}: TensorFlow already started in this process with "
                                    f"{get() or 'its default'}; set it in a fresh process") from None
        used.append(get())
    return used[0], used[1]


def run(cfg: Config, log=print) -> dict:
    """Train and/or test as the flags say; returns the test summary (if a test ran)."""
    intra, inter = set_threads(cfg)
    if intra or inter:
        log(f"TensorFlow threads: intra-op {intra or 'default'}, inter-op {inter or 'default'}"
            f"{'' if cfg.intra_op_threads or cfg.inter_op_threads else ' (--thread_pools=auto)'}")
    # The strategy first: a multi-worker strategy must precede every other TensorFlow op.
    strategy = None if cfg.distribute == "none" else distribute.flag_strategy(cfg.distribute)
    chief = strategy is None or distribute.is_chief(strategy)
    if strategy is not None and cfg.train:  # an uneven split is refused before anything is written
        distribute.shard_bounds(cfg.meta_batch_size, strategy.num_replicas_in_sync, 0)
    streams.check_classes(cfg)
    folder = experiment_folder(cfg)
    if cfg.train:
        trainer = None
        if strategy is None:
            learner = build(cfg)
        else:
            # The learner is built inside the strategy's scope; its totals divide by the global meta-batch.
            trainer = DistributedMetaLearner(strategy, lambda: build(cfg))
            learner = trainer.learner
            log(f"--distribute={cfg.distribute}: {strategy.num_replicas_in_sync} replicas, "
                f"{cfg.meta_batch_size // strategy.num_replicas_in_sync} tasks each"
                f"{'' if chief else '; not the chief, so this worker writes nothing'}")
        stream = streams.training_stream(cfg)  # lists the data: a missing folder fails before one is created
        val_stream = streams.validation_stream(cfg)
        if chief:
            ensure_writable(folder)
        start = 0
        if not cfg.resume and ckpt.list_iterations(folder):
            raise MamlError(f"--resume=False but {folder} already holds checkpoints "
                            f"({', '.join(f'model{i}' for i in ckpt.list_iterations(folder))}); they are not "
                            "overwritten: use another --logdir, or move them away")
        found = ckpt.load_latest(folder, log=log) if cfg.resume else None
        if found is not None:
            prefix, tensors = found
            nxt, state, saved = loop.read_resume_info(tensors)
            check_same_run(cfg, saved, prefix)
            check_same_data(stream, tensors.get(loop.DATA), prefix)
            restored_adam = assign_state(learner, tensors, prefix)
            # A reference checkpoint has no position: main.py resumes at the saved iteration.
            start = nxt if nxt is not None else loop.iteration_of(prefix)
            if state is not None:
                stream.set_state(state)
            log(f"Restoring model weights from {prefix} (resuming at iteration {start}"
                f"{'' if restored_adam else '; no optimizer state in it, Adam starts fresh'})")
        # Every split this run reads is decoded now: a bad image fails here, not hours in.
        test_cfg = cfg.replace(train=False) if cfg.test_after_train else None
        test_stream = streams.test_stream(test_cfg, test_cfg.test_chunk) if test_cfg and chief else None
        for s in (stream, val_stream, test_stream):
            if s is not None:
                s.check_data()
        if strategy is not None:
            check_workers_agree(strategy, cfg, learner, start, stream)
        loop.train(cfg, learner, folder, stream, val_stream, start, log=log, trainer=trainer, write=chief)
        if not cfg.test_after_train:
            return {}
        return test(test_cfg, weights_from=learner, log=log, stream=test_stream) if chief else _not_chief(log)
    return test(cfg, log=log) if chief else _not_chief(log)


def _not_chief(log) -> dict:
    log("Not the chief worker: the chief runs the test protocol and writes its results.")
    return {}


def check_workers_agree(strategy, cfg: Config, learner, start: int, stream) -> None:
    """Every worker must start at the same iteration, with the same weights, Adam state, task stream and
    flags, else the mirrored copies drift apart silently. One collective, so all raise or none does."""
    state = b"".join(np.ascontiguousarray(v.numpy()).tobytes() for _, v in sorted(state_tensors(learner).items()))
    flags = {k: v for k, v in cfg.to_dict().items() if k not in ("logdir", "data_dir")}
    mine = [start] + [zlib.crc32(b) for b in (state, stream.get_state().encode(), repr(sorted(flags.items())).encode())]
    rows = distribute.replica_rows(strategy, mine)
    names = ("start iteration", "weights and Adam state", "task stream position", "flags")
    differ = [name for j, name in enumerate(names) if np.any(rows[:, j] != rows[0, j])]
    if differ:
        raise MamlError(f"--distribute={cfg.distribute}: the workers do not start alike (they differ in "
                        f"{', '.join(differ)}): give every worker the same flags, and to resume let each read the "
                        f"same checkpoint (a shared --logdir, or a copy of the chief's {cfg.exp_string}/)")


def test(cfg: Config, weights_from=None, log=print, stream=None) -> dict:
    """The 600-task protocol on checkpoint --test_iter (or the latest) of the experiment folder
    (`stream`: the test tasks, when the caller already built them)."""
    folder = experiment_folder(cfg)
    learner = build(cfg, meta_batch_size=1)
    if weights_from is not None:
        for dst, src in zip(learner.variables, weights_from.variables):
            dst.assign(src)
        source = "the weights just trained"
        itr = None
    else:
        prefix = ckpt.find(folder, cfg.test_iter) if os.path.isdir(folder) else None
        if prefix is None:
            raise MamlError(f"no checkpoint to test in {folder}: train first with the same flags and --train=True, "
                            f"or point --logdir at the folder that holds {cfg.exp_string}/")
        assign_weights(learner, ckpt.load(prefix), prefix)
        source, itr = prefix, loop.iteration_of(prefix)
    ensure_writable(folder)
    log(f"Testing {source} on {cfg.num_test_tasks} tasks, K={cfg.update_batch_size}, alpha={cfg.update_lr}, "
        f"{cfg.test_num_updates} steps")
    t0 = time.time()
    stream = streams.test_stream(cfg, cfg.test_chunk) if stream is None else stream
    values = test_protocol.run_test(cfg, learner, stream, log=log)
    stats = test_protocol.summarize(values)
    log("Mean validation accuracy/loss, stddev, and confidence intervals")
    log((np.array(stats["means"]), np.array(stats["stds"]), np.array(stats["ci95"])))
    what = "accuracy" if cfg.classification else "MSE"
    m, c = stats["means"], stats["ci95"]
    log(f"{what} over {len(values)} tasks (mean +/- 95% CI): pre-update {m[0]:.4g} +/- {c[0]:.2g}; "
        + "; ".join(f"after {j} step{'s' if j > 1 else ''} {m[j]:.4g} +/- {c[j]:.2g}"
                    for j in sorted({1, min(5, len(m) - 1), len(m) - 1}) if j >= 1))
    paths = test_protocol.write_results(cfg, folder, values, {"checkpoint_iteration": itr, "wall_s": time.time() - t0})
    log(f"Results written to {paths['csv']} and {paths['json']}")
    return {**stats, **paths}
