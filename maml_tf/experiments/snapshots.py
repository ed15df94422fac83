"""A run in progress, kept in the repo: its latest checkpoint, wall-time segments and training curve.

Table 1 runs and the RL locomotion runs take hours to days here, longer than a working session and
the machine it ran on, and `logs/` is not kept. So while an experiment trains (at most every
`EVERY_S` seconds, and when it stops or finishes) the runner copies the latest complete checkpoint of
its training folder (everything an exact resume needs) to `<results>/in_progress/<experiment>/<folder
name>/`, latest only, with `status.json`. The next `./run_experiments.sh NAME`, on any machine, seeds an
empty (or older) training folder from it and continues exactly. A finished run's snapshot is removed:
finished runs ship weights only (`pretrained.py`).

What a checkpoint is differs by family, and `take` / `seed` only ask a `TrainFolder`:
* `SupervisedFolder`: the TF bundle `model<itr>` of the experiment folder (weights, both Adams, the
  task stream's position, the flags) and its `checkpoint` state file;
* `RLFolder`: `latest.npz` of an RL run folder (parameters, random streams, sampler and baseline state),
  with `best.npz` and the snapshot the experiment evaluates (`itr_<N>.npz`) once they exist (~100 KB each).

The training curve is kept in the same way as `<results>/runs/<name>/curve.csv` (supervised: the
TensorBoard scalars; RL: the columns of progress.csv), merged across the run's segments, so the
figures do not depend on `logs/` either.
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
import zipfile
from typing import Protocol

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


Series = dict[str, tuple[list[int], list[float]]]  # tag -> (steps, values)


class TrainFolder(Protocol):
    """One kind of training folder, as the snapshots see it."""

    folder: str  # the training folder (its base name names the snapshot's copy)

    def latest(self, folder: str) -> int | None:
        """The last iteration completed by the latest complete checkpoint in `folder` (None: none)."""

    def files(self, folder: str, itr: int) -> list[str]:
        """The files to keep of `folder`'s checkpoint `itr`; the one a resume starts from comes last."""

    def finish(self, folder: str) -> None:
        """Make the copied files a usable checkpoint folder (e.g. write its state file)."""

    def checkpoint_name(self, itr: int) -> str:
        """How `itr`'s checkpoint is named in messages and in status.json."""

    def scalars(self) -> Series:
        """The training curve so far."""


class SupervisedFolder:
    """A supervised experiment folder of TF bundles `model<itr>` (maml_tf.checkpoint)."""

    def __init__(self, folder: str):
        self.folder = folder

    def latest(self, folder: str) -> int | None:
        from maml_tf import checkpoint as ckpt

        its = ckpt.list_iterations(folder) if os.path.isdir(folder) else []
        return its[-1] if its else None

    def files(self, folder: str, itr: int) -> list[str]:
        prefix = os.path.join(folder, f"model{itr}")
        return sorted(glob.glob(prefix + ".data-*")) + [prefix + ".index"]

    def finish(self, folder: str) -> None:
        from maml_tf import checkpoint as ckpt

        its = ckpt.list_iterations(folder)
        ckpt.write_state(folder, f"model{its[-1]}", [f"model{i}" for i in its])

    def checkpoint_name(self, itr: int) -> str:
        return f"model{itr}"

    def scalars(self) -> Series:
        from maml_tf.experiments.plots import read_scalars  # TensorFlow: only when there is a curve to read

        return {t: (list(map(int, s)), list(map(float, v))) for t, (s, v) in read_scalars(self.folder).items()}


class RLFolder:
    """An RL run folder (maml_tf.rl.main --run_dir): latest.npz resumes it; best.npz and the evaluated
    snapshot (`keep`, e.g. itr_475.npz) come along once they exist."""

    LATEST = "latest.npz"

    def __init__(self, folder: str, keep: tuple[str, ...] = ()):
        self.folder, self.keep = folder, ("best.npz",) + tuple(keep)

    def latest(self, folder: str) -> int | None:
        """The `itr` of latest.npz, read without TensorFlow (None: absent or unreadable)."""
        import numpy as np

        path = os.path.join(folder, self.LATEST)
        try:
            with np.load(path, allow_pickle=False) as z:
                return int(z["itr"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None

    def files(self, folder: str, itr: int) -> list[str]:
        extras = [os.path.join(folder, f) for f in self.keep if os.path.isfile(os.path.join(folder, f))]
        return extras + [os.path.join(folder, self.LATEST)]

    def finish(self, folder: str) -> None:
        pass

    def checkpoint_name(self, itr: int) -> str:
        return f"{self.LATEST} (after iteration {itr})"

    def scalars(self) -> Series:
        """progress.csv's columns, by iteration."""
        path = os.path.join(self.folder, "progress.csv")
        out: Series = {}
        if not os.path.isfile(path):
            return out
        with open(path) as f:
            for row in csv.DictReader(f):
                step = int(row.pop("itr"))
                for tag, value in row.items():
                    if value not in ("", None):
                        steps, values = out.setdefault(tag, ([], []))
                        steps.append(step)
                        values.append(float(value))
        return out


def take(results_dir: str, name: str, run: TrainFolder, status: dict) -> dict | None:
    """Copy the latest checkpoint of `run` into the snapshot (replacing the older one) and write
    `status` with its iteration; None (and nothing written) when `run` holds no checkpoint.

    The new snapshot is assembled in a temporary folder and swapped in, so an interruption at any point
    leaves either the previous snapshot or the new one, never a mixture.
    """
    itr = run.latest(run.folder)
    if itr is None:
        return None
    exp_folder = os.path.basename(os.path.normpath(run.folder))
    dest = folder(results_dir, name)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=parent)
    try:
        inner = os.path.join(tmp, "new", exp_folder)
        os.makedirs(inner)
        for path in run.files(run.folder, itr):
            shutil.copy2(path, inner)
        run.finish(inner)
        itr = run.latest(inner)  # what was copied (a run that goes on may have written a newer one meanwhile)
        status = {**status, "experiment": name, "exp_folder": exp_folder, "checkpoint": run.checkpoint_name(itr),
                  "next_iteration": itr + 1}
        with open(os.path.join(tmp, "new", STATUS), "w") as f:
            json.dump(status, f, indent=1)
        if os.path.exists(dest):
            os.replace(dest, os.path.join(tmp, "old"))
        os.replace(os.path.join(tmp, "new"), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return status


def seed(results_dir: str, name: str, run: TrainFolder) -> str | None:
    """Copy the snapshot's checkpoint into `run`'s folder if it is newer than what that folder holds.

    Returns a line saying what was done, or None when there was nothing to do.
    """
    status = read_status(results_dir, name)
    if status is None:
        return None
    src = os.path.join(folder(results_dir, name), status["exp_folder"])
    if status["exp_folder"] != os.path.basename(os.path.normpath(run.folder)):
        return (f"note: {src} is for another experiment folder than {run.folder} (other flags?); "
                "left alone")
    itr = run.latest(src)
    if itr is None:
        return f"note: {src} holds no complete checkpoint; left alone"
    have = run.latest(run.folder)
    if have is not None and have >= itr:
        return None
    os.makedirs(run.folder, exist_ok=True)
    for path in run.files(src, itr):  # the file a resume starts from last: an interrupted seed resumes the old
        tmp = os.path.join(run.folder, f".tmp-seed-{os.path.basename(path)}")
        shutil.copy2(path, tmp)
        os.replace(tmp, os.path.join(run.folder, os.path.basename(path)))
    run.finish(run.folder)
    return f"seeded {run.folder} with {src}/{run.checkpoint_name(itr)} (the run in progress kept in the repo)"


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


def update_curve(out_dir: str, run: TrainFolder) -> str | None:
    """Merge `run`'s curve into `out_dir/curve.csv` (newer values win); its path (None: no curve yet)."""
    path = os.path.join(out_dir, CURVE)
    merged = read_curve(path)
    for tag, (steps, values) in run.scalars().items():
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


def latest_return(curve: dict[str, dict[int, float]]) -> dict | None:
    """An RL run's training return at its newest iteration (pre- and post-update; post is NaN but for MAML)."""
    pre = curve.get("pre_return")
    if not pre:
        return None
    itr = max(pre)
    post = curve.get("post_return", {}).get(itr)
    return {"iteration": itr, "pre_return": pre[itr],
            "post_return": post if post is not None and math.isfinite(post) else None}
