"""Ship a finished run as `pretrained/<experiment>/`: the trained meta-initialisation or policy, ready to load.

A supervised run:

    pretrained/<experiment>/
      saved_model/                 TF SavedModel: serving_default(x), adapt_and_predict(...) (maml_tf.export)
      <experiment folder>/model<itr>.{index,data-*}, checkpoint
                                   TF1-format weights under the reference's variable names: restorable by
                                   cbfinn/maml's Saver and by `maml_tf.main --train=False --logdir=pretrained/<experiment>`
      meta.json                    flags, iteration, test numbers (mean, 95% interval, tasks, steps), commit

An RL run (maml, pretrained, oracle), from the snapshot it was evaluated with:

    pretrained/rl_<env>_<method>/
      saved_model/                 TF SavedModel: serving_default(obs) -> dist_info, adapt_and_predict(...)
                                   (maml_tf.export.rl_policy)
      params.npz                   float32 arrays under the policy's names (W0, b0, ..., log_std) and `theta`,
                                   the same numbers flattened in that order: no maml_tf needed to read them
      itr_<N>.npz                  the maml_tf.rl checkpoint itself (no resume state): what `test_command` evaluates
      meta.json                    flags, evaluated iteration, evaluation numbers (mean, s.e., 95% interval per
                                   gradient step, goals), test_command, commit

Only float32 weights are shipped (no optimizer or sampler state: the run is finished), so the repo stays
light. Everything is built in a temporary folder beside the target and renamed into place.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
from typing import Callable

import numpy as np

from maml_tf.files import atomic_write_text

META = "meta.json"
README = "README.md"


def commit_of(repo: str) -> str:
    """The commit the code came from, `-dirty` when its tracked files have uncommitted changes; '' outside git.

    `results/` and `pretrained/` are left out: runs write them while they train (snapshots, records, figures),
    so they are always "changed" during a run without the code being so.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results", ":(exclude)pretrained"], cwd=repo,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("-dirty" if head and dirty else "")


# Flags that say where a run lived or what it did next, not what was trained.
_NOT_TRAINING = ("logdir", "data_dir", "train", "test_after_train", "resume", "test_iter", "test_set", "num_test_tasks",
                 "test_chunk", "log", "save_interval", "print_interval", "summary_interval", "val_interval")


def test_command(cfg, folder: str) -> str:
    """The `maml_tf.main --train=False` line that tests the shipped weights (flags that differ from the defaults)."""
    from maml_tf.config import Config

    default = Config().to_dict()
    flags = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_TRAINING and v != default[k]}
    flags["baseline"] = flags.get("baseline") or None
    parts = [f"--{k}={v}" for k, v in flags.items() if v is not None]
    if cfg.classification:
        parts.append("--data_dir=data")
    return " ".join(["python -m maml_tf.main"] + parts + ["--train=False", "--test_set=True", f"--logdir={folder}"])


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _install(pretrained_dir: str, name: str, fill: Callable[[str], dict], record: dict, repo: str) -> str:
    """Build `pretrained_dir/<name>/` in a temporary folder with `fill(staging) -> meta`, complete meta.json
    (commit, date, size, ...), swap it into place and rewrite the index; returns its path."""
    import tensorflow as tf

    target = os.path.abspath(os.path.join(pretrained_dir, name))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=os.path.dirname(target))
    try:
        staging = os.path.join(tmp, name)
        os.makedirs(staging)
        meta = {"experiment": name, "title": record["title"], "paper_ref": record["paper_ref"], **fill(staging),
                "commit": commit_of(repo), "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                    "%Y-%m-%d %H:%M UTC"), "hardware": record.get("hardware"),
                "train_wall_s": record.get("train_wall_s"), "tensorflow_version": tf.__version__,
                "quick": record.get("quick", False)}
        meta["size_bytes"] = _size(staging)
        with open(os.path.join(staging, META), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.exists(target):
            os.replace(target, os.path.join(tmp, "previous"))
        os.replace(staging, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_index(pretrained_dir)
    return target


def ship(record: dict, train_flags: dict, pretrained_dir: str, repo: str = ".") -> str:
    """Write `pretrained_dir/<record name>/` from a finished supervised record; returns its path."""
    from maml_tf import checkpoint as ckpt
    from maml_tf.config import Config
    from maml_tf.export.saved_model import build_module, describe, save_module

    cfg = Config.from_dict({**train_flags, "test_after_train": False})
    train_dir = record["train_dir"]
    prefix = ckpt.find(train_dir)
    if prefix is None:
        raise FileNotFoundError(f"no checkpoint in {train_dir} to ship")
    itr = int(os.path.basename(prefix)[len("model"):])
    tensors = ckpt.load(prefix)
    module, model = build_module(cfg, tensors, prefix)
    weights = {n: np.asarray(tensors[n], dtype=np.float32) for n in model.reference_names}
    name = record["name"]

    def fill(staging: str) -> dict:
        weights_dir = os.path.join(staging, cfg.exp_string)
        ckpt.save(os.path.join(weights_dir, f"model{itr}"), weights)
        ckpt.write_state(weights_dir, f"model{itr}", [f"model{itr}"])
        rel_ckpt = f"{cfg.exp_string}/model{itr}"
        meta_export = describe(cfg, module, model, None)
        meta_export["checkpoint"] = rel_ckpt
        save_module(module, meta_export, os.path.join(staging, "saved_model"), False, module.signatures)
        return {
            "flags": {k: v for k, v in cfg.to_dict().items() if k not in _NOT_TRAINING},
            "test_command": test_command(cfg, os.path.join(os.path.basename(os.path.normpath(pretrained_dir)), name)),
            "exp_folder": cfg.exp_string, "checkpoint": rel_ckpt, "iteration": itr,
            "iterations_trained": itr + 1,
            "test": [{"K": r["K"], "metric": r["metric"], "steps": list(range(len(r["means"]))),
                      "means": r["means"], "ci95": r["ci95"], "num_tasks": r["num_tasks"]}
                     for r in record["results"]],
        }

    return _install(pretrained_dir, name, fill, record, repo)


# rl.evaluate flags that say where the outputs go, not what was evaluated.
_NOT_EVALUATION = ("checkpoint", "out_dir", "tag")


def rl_test_command(eval_flags: dict, checkpoint: str) -> str:
    """The `maml_tf.rl.evaluate` line that reproduces the shipped policy's evaluation."""
    flags = {k: v for k, v in eval_flags.items() if k not in _NOT_EVALUATION}
    parts = [f"--{k}={v}" for k, v in flags.items()] + [f"--checkpoint={checkpoint}", "--out_dir=results/rl_check"]
    return " ".join(["python -m maml_tf.rl.evaluate"] + parts)


def ship_rl(record: dict, evaluation, pretrained_dir: str, repo: str = ".") -> str:
    """Write `pretrained_dir/<record name>/` from a finished RL record and its evaluation command (whose
    --checkpoint is the snapshot that was evaluated); returns its path."""
    from maml_tf.export.rl_policy import export_rl_policy
    from maml_tf.rl.train import load_checkpoint, load_policy

    checkpoint = evaluation.flags["checkpoint"]
    ck = load_checkpoint(checkpoint)
    policy, theta = load_policy(checkpoint)
    name = record["name"]
    shipped_ckpt = os.path.basename(checkpoint)

    def fill(staging: str) -> dict:
        export_rl_policy(checkpoint, os.path.join(staging, "saved_model"))
        shutil.copy2(checkpoint, os.path.join(staging, shipped_ckpt))
        parts = np.split(np.asarray(theta, np.float32), np.cumsum(policy.param_sizes)[:-1])
        arrays = {n: p.reshape(shape) for n, p, shape in zip(policy.param_names, parts, policy.param_shapes)}
        np.savez(os.path.join(staging, "params.npz"), theta=np.asarray(theta, np.float32), **arrays)
        r = record["results"][0]
        return {
            "flags": json.loads(ck["config"].to_json()), "policy": ck["policy"],
            "params": {"file": "params.npz", "dtype": "float32",
                       "arrays": [{"name": n, "shape": list(s)} for n, s in zip(policy.param_names, policy.param_shapes)],
                       "theta": "the arrays flattened (row-major) and concatenated in this order"},
            "checkpoint": shipped_ckpt, "iteration": ck["itr"], "evaluated": r.get("label", ""),
            "iterations_trained": record.get("evaluated", {}).get("n_itr"),
            "test_command": rl_test_command(evaluation.flags, os.path.join(
                os.path.basename(os.path.normpath(pretrained_dir)), name, shipped_ckpt)),
            "test": [{"metric": r["metric"], "steps": list(range(len(r["means"]))), "means": r["means"],
                      "se": r["se"], "ci95": r["ci95"], "num_goals": r["num_goals"]}],
        }

    return _install(pretrained_dir, name, fill, record, repo)


def read_all(pretrained_dir: str) -> list[dict]:
    out = []
    if os.path.isdir(pretrained_dir):
        for name in sorted(os.listdir(pretrained_dir)):
            path = os.path.join(pretrained_dir, name, META)
            if os.path.isfile(path):
                with open(path) as f:
                    out.append(json.load(f))
    return out


def _headline(meta: dict) -> str:
    """The training K's result after the last test step (as results/README.md's Table 1 shows it); RL:
    the average return after the last gradient step."""
    t = meta["test"][0]
    last = len(t["means"]) - 1
    if "num_goals" in t:
        return f"{t['means'][last]:.2f} ± {t['ci95'][last]:.2f} average return ({last} steps, {t['num_goals']} goals)"
    scale = 100 if t["metric"] == "accuracy" else 1
    unit = "%" if scale == 100 else " MSE"
    return f"{t['means'][last] * scale:.2f} ± {t['ci95'][last] * scale:.2f}{unit} (K={t['K']}, {last} steps, " \
           f"{t['num_tasks']} tasks)"


def write_index(pretrained_dir: str) -> str | None:
    """`pretrained/README.md`: one row per shipped folder, from its meta.json."""
    metas = read_all(pretrained_dir)
    if not metas:
        return None
    lines = ["# Pretrained meta-initialisations and RL policies", "",
             "Written by `./run_experiments.sh` when a run finishes (`maml_tf/experiments/pretrained.py`); "
             "the main README says how to load them. RL folders hold the evaluated snapshot (iteration N: "
             "`itr_N.npz`, the parameters after iteration N's update).", "",
             "| experiment | setting | test result | iteration | size | commit | date |",
             "|---|---|---|---|---|---|---|"]
    for m in metas:
        lines.append(f"| `{m['experiment']}` | {m['title']} | {_headline(m)} | {m['iteration']} | "
                     f"{m['size_bytes'] / 1e6:.1f} MB | `{m['commit'][:12]}` | {m['date']} |")
    path = os.path.join(pretrained_dir, README)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
