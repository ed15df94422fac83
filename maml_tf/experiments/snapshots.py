"""A run in progress, kept in the repo: its latest checkpoint, wall-time segments and training curve.

Table 1 runs take hours to days here, longer than a working session and the machine it ran on, and
`logs/` is not kept. So while a supervised experiment trains (at most every `EVERY_S` seconds, and
when it stops or finishes) the runner copies the latest complete checkpoint of its experiment folder
(weights, both Adams, the task stream's position, the flags: everything an exact resume needs) to
`<results>/in_progress/<experiment>/<experiment folder>/`, latest only, with `status.json`. The next
`./run_experiments.sh NAME`, on any machine, seeds an empty (or older) experiment folder from it and
continues exactly. A finished run's snapshot is removed: finished runs ship weights only
(`pretrained.py`).

The training curve (TensorBoard scalars) is kept in the same way as `<results>/runs/<name>/curve.csv`,
merged across the run's segments, so the figures do not depend on `logs/` either.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import shutil
import tempfile

from maml_tf import checkpoint as ckpt
from maml_tf.files import atomic_write_text

EVERY_S = 300.0
STATUS = "status.json"
CURVE = "curve.csv"


def folder(results_dir: str, name: str) -> str:
    return os.path.join(results_dir, "in_progress", name)


def read_status(results_dir: str, name: str) -> dict | None:
    path = os.path.join(folder(results_dir, name), STATUS)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _bundle_files(prefix: str) -> list[str]:
    return sorted(glob.glob(prefix + ".data-*")) + [prefix + ".index"]


def take(results_dir: str, name: str, train_dir: str, status: dict) -> dict | None:
    """Copy the latest checkpoint of `train_dir` into the snapshot (replacing the older one) and write
    `status` with its iteration; None (and nothing written) when `train_dir` holds no checkpoint.

    The new snapshot is assembled in a temporary folder and swapped in, so an interruption at any point
    leaves either the previous snapshot or the new one, never a mixture.
    """
    its = ckpt.list_iterations(train_dir)
    if not its:
        return None
    itr = its[-1]
    exp_folder = os.path.basename(os.path.normpath(train_dir))
    status = {**status, "experiment": name, "exp_folder": exp_folder, "checkpoint": f"model{itr}",
              "next_iteration": itr + 1}
    dest = folder(results_dir, name)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=parent)
    try:
        inner = os.path.join(tmp, "new", exp_folder)
        os.makedirs(inner)
        for path in _bundle_files(os.path.join(train_dir, f"model{itr}")):
            shutil.copy2(path, inner)
        ckpt.write_state(inner, f"model{itr}", [f"model{itr}"])
        with open(os.path.join(tmp, "new", STATUS), "w") as f:
            json.dump(status, f, indent=1)
        if os.path.exists(dest):
            os.replace(dest, os.path.join(tmp, "old"))
        os.replace(os.path.join(tmp, "new"), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return status


def seed(results_dir: str, name: str, train_dir: str) -> str | None:
    """Copy the snapshot's checkpoint into `train_dir` if it is newer than what `train_dir` holds.

    Returns a line saying what was done, or None when there was nothing to do.
    """
    status = read_status(results_dir, name)
    if status is None:
        return None
    src = os.path.join(folder(results_dir, name), status["exp_folder"])
    if status["exp_folder"] != os.path.basename(os.path.normpath(train_dir)):
        return (f"note: {src} is for another experiment folder than {train_dir} (other flags?); "
                "left alone")
    its = ckpt.list_iterations(src)
    if not its:
        return f"note: {src} holds no complete checkpoint; left alone"
    itr = its[-1]
    have = ckpt.list_iterations(train_dir) if os.path.isdir(train_dir) else []
    if have and have[-1] >= itr:
        return None
    os.makedirs(train_dir, exist_ok=True)
    for path in _bundle_files(os.path.join(src, f"model{itr}")):
        tmp = os.path.join(train_dir, f".tmp-seed-{os.path.basename(path)}")
        shutil.copy2(path, tmp)
        os.replace(tmp, os.path.join(train_dir, os.path.basename(path)))
    ckpt.write_state(train_dir, f"model{itr}", [f"model{i}" for i in ckpt.list_iterations(train_dir)])
    return f"seeded {train_dir} with {src}/model{itr} (the run in progress kept in the repo)"


def remove(results_dir: str, name: str) -> None:
    dest = folder(results_dir, name)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    parent = os.path.dirname(dest)
    if os.path.isdir(parent) and not os.listdir(parent):
        os.rmdir(parent)


# ------------------------------------------------------------------------------------------------
# Training curves: TensorBoard scalars -> one wide csv (step, one column per tag), merged over segments.
def read_curve(path: str) -> dict[str, dict[int, float]]:
    """tag -> {step: value} from a curve csv (empty if there is none)."""
    if not os.path.isfile(path):
        return {}
    out: dict[str, dict[int, float]] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            step = int(row.pop("step"))
            for tag, value in row.items():
                if value != "":
                    out.setdefault(tag, {})[step] = float(value)
    return out


def update_curve(out_dir: str, train_dir: str) -> str | None:
    """Merge `train_dir`'s TensorBoard scalars into `out_dir/curve.csv` (newer values win); its path."""
    from maml_tf.experiments.plots import read_scalars  # TensorFlow: only when there is a curve to read

    path = os.path.join(out_dir, CURVE)
    merged = read_curve(path)
    for tag, (steps, values) in read_scalars(train_dir).items():
        merged.setdefault(tag, {}).update({int(s): float(v) for s, v in zip(steps, values)})
    if not merged:
        return None
    tags = sorted(merged)
    steps = sorted({s for series in merged.values() for s in series})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step"] + tags)
    for s in steps:
        w.writerow([s] + [_num(merged[t].get(s)) for t in tags])
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(path, buf.getvalue())
    return path


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return repr(x) if math.isfinite(x) else str(x)


def latest_validation(curve: dict[str, dict[int, float]], num_updates: int, last: int = 5) -> dict | None:
    """Mean of the last `last` meta-validation checks after `num_updates` steps (each check is one
    meta-batch of validation tasks, so single checks are noisy), with the iteration of the newest."""
    for metric in ("accuracy", "loss"):
        series = curve.get(f"metaval_Post-update {metric}, step {num_updates}")
        if series:
            steps = sorted(series)[-last:]
            return {"metric": metric, "iteration": steps[-1], "checks": len(steps),
                    "mean": sum(series[s] for s in steps) / len(steps)}
    return None
