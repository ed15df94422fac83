"""Ship a finished supervised run as `pretrained/<experiment>/`: the trained meta-initialisation, ready to load.

    pretrained/<experiment>/
      saved_model/                 TF SavedModel: serving_default(x), adapt_and_predict(...) (maml_tf.export)
      <experiment folder>/model<itr>.{index,data-*}, checkpoint
                                   TF1-format weights under the reference's variable names: restorable by
                                   cbfinn/maml's Saver and by `maml_tf.main --train=False --logdir=pretrained/<experiment>`
      meta.json                    flags, iteration, test numbers (mean, 95% interval, tasks, steps), commit

Only float32 weights are shipped (no optimizer state: the run is finished), so the repo stays light.
Everything is built in a temporary folder beside the target and renamed into place.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from maml_tf.files import atomic_write_text

META = "meta.json"
README = "README.md"


def commit_of(repo: str) -> str:
    """The commit the code came from, `-dirty` when the working tree has uncommitted changes; '' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
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


def ship(record: dict, train_flags: dict, pretrained_dir: str, repo: str = ".") -> str:
    """Write `pretrained_dir/<record name>/` from a finished supervised record; returns its path."""
    import tensorflow as tf

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
    target = os.path.abspath(os.path.join(pretrained_dir, name))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=os.path.dirname(target))
    try:
        staging = os.path.join(tmp, name)
        os.makedirs(staging)
        weights_dir = os.path.join(staging, cfg.exp_string)
        ckpt.save(os.path.join(weights_dir, f"model{itr}"), weights)
        ckpt.write_state(weights_dir, f"model{itr}", [f"model{itr}"])
        rel_ckpt = f"{cfg.exp_string}/model{itr}"
        meta_export = describe(cfg, module, model, None)
        meta_export["checkpoint"] = rel_ckpt
        save_module(module, meta_export, os.path.join(staging, "saved_model"), False, module.signatures)
        meta = {
            "experiment": name, "title": record["title"], "paper_ref": record["paper_ref"],
            "flags": {k: v for k, v in cfg.to_dict().items() if k not in _NOT_TRAINING},
            "test_command": test_command(cfg, os.path.join(os.path.basename(os.path.normpath(pretrained_dir)), name)),
            "exp_folder": cfg.exp_string, "checkpoint": rel_ckpt, "iteration": itr,
            "iterations_trained": itr + 1,
            "test": [{"K": r["K"], "metric": r["metric"], "steps": list(range(len(r["means"]))),
                      "means": r["means"], "ci95": r["ci95"], "num_tasks": r["num_tasks"]}
                     for r in record["results"]],
            "commit": commit_of(repo), "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC"), "hardware": record.get("hardware"),
            "train_wall_s": record.get("train_wall_s"), "tensorflow_version": tf.__version__,
            "quick": record.get("quick", False),
        }
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
    """The training K's result after the last test step (as results/README.md's Table 1 shows it)."""
    t = meta["test"][0]
    last = len(t["means"]) - 1
    scale = 100 if t["metric"] == "accuracy" else 1
    unit = "%" if scale == 100 else " MSE"
    return f"{t['means'][last] * scale:.2f} ± {t['ci95'][last] * scale:.2f}{unit} (K={t['K']}, {last} steps, " \
           f"{t['num_tasks']} tasks)"


def write_index(pretrained_dir: str) -> str | None:
    """`pretrained/README.md`: one row per shipped folder, from its meta.json."""
    metas = read_all(pretrained_dir)
    if not metas:
        return None
    lines = ["# Pretrained meta-initialisations", "",
             "Written by `./run_experiments.sh` when a run finishes (`maml_tf/experiments/pretrained.py`); "
             "the main README says how to load them.", "",
             "| experiment | setting | test result | iteration | size | commit | date |",
             "|---|---|---|---|---|---|---|"]
    for m in metas:
        lines.append(f"| `{m['experiment']}` | {m['title']} | {_headline(m)} | {m['iteration']} | "
                     f"{m['size_bytes'] / 1e6:.1f} MB | `{m['commit'][:12]}` | {m['date']} |")
    path = os.path.join(pretrained_dir, README)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
