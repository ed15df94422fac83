"""The reference's test protocol: 600 tasks, meta-batch 1, mean/std/ci95 after 0..test_num_updates steps.

Tasks are drawn exactly as test() draws them (seeded with 1) but evaluated `chunk` at a time: tasks
are independent (batch-norm statistics are per task), so this changes nothing but speed. Writes the
reference's csv (test_ubs{K}_stepsize{alpha}.csv) and pkl, plus a json with everything.
"""
from __future__ import annotations

import json
import pickle
import time

import numpy as np

from maml_tf import files
from maml_tf.config import Config
from maml_tf.meta.step import MetaLearner


def run_test(cfg: Config, learner: MetaLearner, stream, log=print) -> np.ndarray:
    """[num_test_tasks, 1 + num_steps]: pre-update and post-update loss (regression) or accuracy."""
    rows = []
    n = cfg.num_test_tasks
    done = 0
    while done < n:
        batch = stream.next_batch()
        take = min(len(batch[0]), n - done)
        batch = tuple(b[:take] for b in batch)
        res = learner.evaluate(batch)
        if cfg.classification:
            pre, post = np.asarray(res["accuraciesa"]), np.asarray(res["accuraciesb"])
        else:
            pre, post = np.asarray(res["lossesa"]), np.asarray(res["lossesb"])
        rows.append(np.concatenate([pre[:, None], post.T], 1))
        done += take
    return np.concatenate(rows, 0)


def summarize(values: np.ndarray) -> dict[str, list[float]]:
    means = values.mean(0)
    stds = values.std(0)
    ci95 = 1.96 * stds / np.sqrt(len(values))
    return {"means": means.tolist(), "stds": stds.tolist(), "ci95": ci95.tolist()}


def write_results(cfg: Config, folder: str, values: np.ndarray, extra: dict) -> dict[str, str]:
    """The csv and pkl of the reference, and test_ubs{K}_stepsize{alpha}.json (machine-readable)."""
    stats = summarize(values)
    stem = f"{folder}/test_ubs{cfg.update_batch_size}_stepsize{float(cfg.update_lr)}"
    header = ",".join(f"update{i}" for i in range(values.shape[1]))
    lines = [header] + [",".join(repr(float(x)) for x in stats[k]) for k in ("means", "stds", "ci95")]
    files.atomic_write_text(stem + ".csv", "\n".join(lines) + "\n")
    files.atomic_write_bytes(stem + ".pkl", pickle.dumps({"mses": values}))
    record = {"metric": "accuracy" if cfg.classification else "mse", "num_tasks": int(len(values)),
              **stats, "config": cfg.to_dict(), "exp_string": cfg.exp_string,
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
    files.atomic_write_text(stem + ".json", json.dumps(record, indent=1) + "\n")
    return {"csv": stem + ".csv", "pkl": stem + ".pkl", "json": stem + ".json"}
