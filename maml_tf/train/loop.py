"""The training loop of main.py: pretrain/meta-train iterations, summaries, printing, checkpoints.

Intervals follow the reference (summaries every 100, print every 1000 for sinusoid else 100,
checkpoint every 1000 and at the end, validation every 500 for image datasets). Unlike the
reference, checkpoints also hold both Adams' state and the task stream's position, and resume
starts *after* the saved iteration, so an interrupted run continues exactly.

Under ``--distribute`` the steps go through a `DistributedMetaLearner` (`trainer`) while `learner`
(its wrapped, mirrored MetaLearner) serves validation and checkpoints; workers other than the chief
pass ``write=False`` and leave the experiment folder alone.
"""
from __future__ import annotations

import json
import os

import numpy as np

from maml_tf import checkpoint as ckpt
from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.learner import state_tensors
from maml_tf.meta.step import MetaLearner
from maml_tf.progress import RunLog
from maml_tf.train.stop import StopRequest, TrainingStopped

# progress.csv: the training metric (MSE, or accuracy for classification) before and after the
# num_updates inner steps, each time the summaries are recorded
CSV_FIELDS = ["itr", "phase", "pre_update", "post_update"]

NEXT_ITR = "maml_tf/next_itr"
STREAM_STATE = "maml_tf/stream_state"
CONFIG = "maml_tf/config"
DATA = "maml_tf/data"  # what the training split held (streams.ImageStream.fingerprint); image datasets only


def checkpoint_tensors(cfg: Config, learner: MetaLearner, next_itr: int, stream) -> dict:
    """Everything a resume needs; refuses (MamlError) weights or Adam state that are not finite."""
    tensors = dict(state_tensors(learner))
    bad = [name for name, v in tensors.items() if not np.all(np.isfinite(np.asarray(v)))]
    if bad:
        raise MamlError(f"after iteration {next_itr - 1} the weights or optimizer state are not finite "
                        f"({', '.join(sorted(bad)[:4])}{', ...' if len(bad) > 4 else ''}): training diverged; "
                        f"stopped without saving them{_step_sizes(cfg)}")
    tensors[NEXT_ITR] = np.int64(next_itr)
    tensors[STREAM_STATE] = stream.get_state()
    tensors[CONFIG] = cfg.to_json()
    data = stream.fingerprint()
    if data:
        tensors[DATA] = data
    return tensors


def _step_sizes(cfg: Config) -> str:
    return (f" (step sizes --meta_lr={cfg.meta_lr}, --update_lr={cfg.update_lr}; the checkpoints written before "
            "are kept)")


def check_finite(cfg: Config, result, itr: int) -> None:
    """Stop at the first iteration whose pre- or post-update loss is NaN or infinite."""
    losses = np.concatenate([np.ravel(np.asarray(result["total_loss1"])), np.ravel(np.asarray(result["total_losses2"]))])
    if not np.all(np.isfinite(losses)):
        raise MamlError(f"iteration {itr}: the training loss is {losses[~np.isfinite(losses)][0]} (not finite): "
                        f"training diverged; stopped without saving{_step_sizes(cfg)}")


def _scalar(x) -> float:
    return float(np.asarray(x))


def train(cfg: Config, learner: MetaLearner, folder: str, stream, val_stream=None, start_itr: int = 0,
          log=print, trainer=None, write: bool = True) -> int:
    """Run iterations start_itr .. total-1; returns the last iteration run (or start_itr-1).

    `trainer` (default `learner`) takes the training steps; with write=False nothing is written.
    In a one-process run SIGINT/SIGTERM stop it between iterations with a checkpoint of exactly that
    state (`TrainingStopped`); under --distribute (`trainer` given) signals keep their usual effect,
    since every worker would have to stop at the same iteration.
    """
    if trainer is not None:
        return _train(cfg, learner, folder, stream, val_stream, start_itr, log, trainer, write, None)
    with StopRequest() as stop:
        return _train(cfg, learner, folder, stream, val_stream, start_itr, log, learner, write, stop)


def _train(cfg: Config, learner: MetaLearner, folder: str, stream, val_stream, start_itr: int, log, trainer,
           write: bool, stop: StopRequest | None) -> int:
    manager = ckpt.CheckpointManager(folder) if write else None
    total = cfg.total_iterations
    pretrain = cfg.effective_pretrain_iterations
    post_index = cfg.num_updates - 1
    metric = "total_accuracy1" if cfg.classification else "total_loss1"
    metric2 = "total_accuracies2" if cfg.classification else "total_losses2"
    prelosses, postlosses = [], []
    itr = start_itr - 1
    if start_itr >= total:
        if start_itr == 0:
            log("Nothing to train: --metatrain_iterations=0 and --pretrain_iterations=0.")
        else:
            log(f"Nothing to train: the checkpoint is already at iteration {start_itr} of {total}.")
        return itr
    # Summaries (TensorBoard events beside the checkpoints, as the reference, and progress.csv) unless --log=False.
    progress = RunLog(total, start_itr, log=log, csv_fields=CSV_FIELDS, write=write and cfg.log,
                      csv_path=os.path.join(folder, "progress.csv"), tb_dir=folder)
    log(f"Done initializing, starting training at iteration {start_itr} of {total} ({folder}).")
    for itr in range(start_itr, total):
        if stop is not None and stop.requested:
            _stop(cfg, learner, folder, stream, manager, progress, itr, total, stop.signum, log)
        batch = stream.next_batch()
        step = trainer.pretrain_step if itr < pretrain else trainer.meta_train_step
        record = itr % cfg.summary_interval == 0 or itr % cfg.print_every == 0
        result = step(batch, summaries=record)
        check_finite(cfg, result, itr)
        if record:
            pre = _scalar(result[metric])
            post = _scalar(result[metric2][post_index])
            prelosses.append(pre)
            postlosses.append(post)
            progress.scalars(itr, _summaries(cfg, "metatrain_", result))
            progress.row({"itr": itr, "phase": "pretrain" if itr < pretrain else "metatrain", "pre_update": pre,
                          "post_update": post})
        if itr != 0 and itr % cfg.print_every == 0:
            head = f"Pretrain Iteration {itr}" if itr < pretrain else f"Iteration {itr - pretrain}"
            log(f"{head}: {np.mean(prelosses)}, {np.mean(postlosses)}")
            prelosses, postlosses = [], []
        if manager is not None and itr != 0 and itr % cfg.save_interval == 0:
            manager.save(itr, checkpoint_tensors(cfg, learner, itr + 1, stream))
        if val_stream is not None and itr != 0 and itr % cfg.val_interval == 0:
            val = learner.evaluate(val_stream.next_batch())
            a1 = _scalar(val[metric])
            a2 = _scalar(val[metric2][post_index])
            log(f"Validation results: {a1}, {a2}")
            progress.scalars(itr, _summaries(cfg, "metaval_", val), rate=False)
        progress.line(itr, f"pre {_scalar(result[metric]):.4g} post {_scalar(result[metric2][-1]):.4g}")
    if manager is not None:
        manager.save(itr, checkpoint_tensors(cfg, learner, itr + 1, stream))
    progress.close()
    where = f"checkpoint {folder}/model{itr}" if write else "the chief wrote the checkpoint"
    log(f"Training done: {total - start_itr} iterations in {progress.elapsed:.1f} s; {where}")
    return itr


def _stop(cfg: Config, learner: MetaLearner, folder: str, stream, manager, progress, next_itr: int, total: int,
          signum: int, log) -> None:
    """Checkpoint the state before iteration `next_itr` (iterations 0..next_itr-1 done) and raise."""
    prefix = None
    if manager is not None and next_itr > 0:
        prefix = manager.save(next_itr - 1, checkpoint_tensors(cfg, learner, next_itr, stream))
    progress.close()
    err = TrainingStopped(signum, next_itr, total, prefix)
    log(f"Training {err}")
    raise err


def _summaries(cfg: Config, prefix: str, result) -> dict[str, float]:
    """The reference's TensorBoard scalars of one step's totals (tags as main.py names them)."""
    out = {prefix + "Pre-update loss": _scalar(result["total_loss1"])}
    for j in range(cfg.num_updates):
        out[f"{prefix}Post-update loss, step {j + 1}"] = _scalar(result["total_losses2"][j])
    if cfg.classification:
        out[prefix + "Pre-update accuracy"] = _scalar(result["total_accuracy1"])
        for j in range(cfg.num_updates):
            out[f"{prefix}Post-update accuracy, step {j + 1}"] = _scalar(result["total_accuracies2"][j])
    return out


def read_resume_info(tensors: dict) -> tuple[int | None, str | None, dict | None]:
    """(next iteration, stream state, saved config) from a maml-tf checkpoint; Nones for a reference one."""
    nxt = int(tensors[NEXT_ITR]) if NEXT_ITR in tensors else None
    state = tensors.get(STREAM_STATE)
    if isinstance(state, bytes):
        state = state.decode()
    conf = tensors.get(CONFIG)
    if isinstance(conf, bytes):
        conf = json.loads(conf.decode())
    return nxt, state if state is not None else None, conf


def iteration_of(prefix: str) -> int:
    return int(os.path.basename(prefix)[len("model"):])
