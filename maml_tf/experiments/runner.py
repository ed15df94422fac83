"""Run one experiment: check its data, run its commands as subprocesses, write its result record.

Each command is an ordinary entry-point invocation (the same line a user could type), so a run
here is exactly reproducible by hand. The entry points resume by themselves (supervised: the
latest `model{itr}` in the experiment folder; RL: `--resume` from `latest.npz`), so re-running an
interrupted experiment continues where it stopped. The record (`runs/<name>.json`) holds the
commands, per-command wall time, date, hardware and the parsed numbers; `results.py` turns the
records into the README tables.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Callable

from maml_tf.experiments.registry import Command, Experiment, RL_CHECKPOINT
from maml_tf.files import atomic_write_text, writable_problem

PREPARE = {
    "omniglot": "python -m maml_tf.data.prepare_omniglot --src DIR_WITH_OMNIGLOT_ZIPS --out {data_dir}/omniglot_resized",
    "miniimagenet": "python -m maml_tf.data.prepare_miniimagenet --src DIR_WITH_IMAGES_AND_CSVS "
                    "--out {data_dir}/miniImagenet",
}


class ExperimentError(Exception):
    """A problem the user must fix (bad name, missing data, unwritable folder): message + exit 2."""


def missing_data(exp: Experiment, data_dir: str) -> str | None:
    """Why `exp` cannot run here (with the command that fixes it), or None if its data is present."""
    if exp.data == "omniglot":
        root = os.path.join(data_dir, "omniglot_resized")
        if not (os.path.isdir(root) and any(os.path.isdir(os.path.join(root, d)) for d in os.listdir(root))):
            return (f"Omniglot not found in {root}; prepare it with: "
                    + PREPARE["omniglot"].format(data_dir=data_dir))
    if exp.data == "miniimagenet":
        root = os.path.join(data_dir, "miniImagenet")
        absent = [s for s in ("train", "val", "test") if not os.path.isdir(os.path.join(root, s))]
        if absent:
            return (f"MiniImagenet split folder(s) {', '.join(absent)} not found in {root}; prepare it with: "
                    + PREPARE["miniimagenet"].format(data_dir=data_dir))
    if exp.data == "mujoco":
        import importlib.util

        if importlib.util.find_spec("mujoco") is None:
            return "the mujoco package is not installed (it comes with the project's dependencies: scripts/venv.sh)"
    return None


def ensure_writable(folder: str, what: str) -> None:
    problem = writable_problem(folder)
    if problem:
        raise ExperimentError(f"{what} folder {folder} is not writable: {problem}")


def hardware() -> str:
    """CPU model, core count and any NVIDIA GPU: what the wall times were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores"
    if shutil.which("nvidia-smi"):
        try:
            gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
            if gpus:
                desc += "; " + "; ".join(line.split(" (")[0] for line in gpus.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
    return desc


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _prepare(cmd: Command) -> Command:
    """RL training resumes only when asked; ask when the run folder already holds a run."""
    if cmd.module == "maml_tf.rl.main" and os.path.exists(os.path.join(cmd.flags["run_dir"], "latest.npz")):
        return dataclasses.replace(cmd, flags={**cmd.flags, "resume": True})
    return cmd


# Lines of the entry points that say a run resumed (kept in the record: the wall time of a resumed
# run is only its last part, and a run whose training was already complete trained nothing now).
RESUME_MARKERS = ("Restoring model weights from", "Nothing to train", "resumed from")


def run_command(cmd: Command, log_path: str, echo: Callable[[str], None]) -> tuple[int, float, list[str]]:
    """Run one entry point with this interpreter; its output goes to `log_path` and through `echo`.

    Returns (exit status, wall seconds, the output lines that report a resume).
    """
    argv = [sys.executable] + cmd.argv()[1:]
    t0 = time.time()
    resumes = []
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd.argv())}   # {now()}\n")
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # progress lines as they happen, not at exit
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if any(m in line for m in RESUME_MARKERS):
                resumes.append(line.strip())
            if not _noise(line):
                echo("    " + line.rstrip())
        rc = proc.wait()
    return rc, time.time() - t0, resumes


def _noise(line: str) -> bool:
    """TensorFlow's start-up chatter, kept in the log file but not echoed."""
    return any(s in line for s in ("oneDNN", "cudart_stub", "absl::InitializeLog", "cuda drivers", "port.cc",
                                   "TF-TRT", "computation placer", "cpu_feature_guard", "rebuild TensorFlow",
                                   "This TensorFlow binary", "To enable the following", "cuInit", "cuda_platform"))


def supervised_result(cmd: Command) -> dict:
    """The test protocol's json (maml_tf.train.test_protocol.write_results) of one test command."""
    from maml_tf.config import Config

    cfg = Config.from_dict({**cmd.flags, "train": False})
    path = os.path.join(cfg.logdir, cfg.exp_string,
                        f"test_ubs{cfg.update_batch_size}_stepsize{float(cfg.update_lr)}.json")
    with open(path) as f:
        rec = json.load(f)
    return {"label": cmd.label, "K": cfg.update_batch_size, "metric": rec["metric"], "means": rec["means"],
            "stds": rec["stds"], "ci95": rec["ci95"], "num_tasks": rec["num_tasks"],
            "checkpoint_iteration": rec.get("checkpoint_iteration"), "source": path}


def rl_result(cmd: Command) -> dict:
    """Mean, standard error and 95% interval over goals after 0..n steps (rl.evaluate's json)."""
    import numpy as np

    path = os.path.join(cmd.flags["out_dir"], f"{cmd.flags['env']}_{cmd.flags['method']}.json")
    with open(path) as f:
        rec = json.load(f)
    m = np.asarray(rec["task_avg_returns"], dtype=float)
    se = m.std(1) / np.sqrt(m.shape[1])
    return {"label": cmd.label, "metric": "average return", "means": m.mean(1).tolist(), "se": se.tolist(),
            "ci95": (1.96 * se).tolist(), "num_goals": int(m.shape[1]), "checkpoint": rec.get("checkpoint"),
            "source": path}


def run_experiment(exp: Experiment, quick: bool, results_dir: str, logs_dir: str, data_dir: str,
                   echo: Callable[[str], None] = print) -> dict:
    """Run `exp` (train, then test/evaluate); returns and writes its record `runs/<name>.json`."""
    logdir = os.path.join(logs_dir, exp.name)
    out_dir = os.path.join(results_dir, "runs", exp.name)
    os.makedirs(logdir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(logdir, "run_experiments.log")
    record = {"name": exp.name, "title": exp.title, "paper_ref": exp.paper_ref, "table": exp.table,
              "spec": exp.spec, "quick": quick, "status": "done", "date": now(), "hardware": hardware(),
              "command": f"./run_experiments.sh {'--quick ' if quick else ''}{exp.name}", "commands": [],
              "results": [], "log": log_path}
    t0 = time.time()
    for cmd in exp.commands(quick, logdir, data_dir, out_dir):
        cmd = _prepare(cmd)
        echo(f"  [{exp.name}] {cmd.role}{' ' + cmd.label if cmd.label else ''}: {' '.join(cmd.argv())}")
        rc, wall, resumes = run_command(cmd, log_path, echo)
        record["commands"].append({"role": cmd.role, "label": cmd.label, "argv": cmd.argv(), "flags": cmd.flags,
                                   "rc": rc, "wall_s": round(wall, 1), "resumed": resumes})
        if rc != 0:
            record["status"] = f"failed: {cmd.role} exited with {rc} (log: {log_path})"
            break
        if cmd.produces_result and cmd.module == "maml_tf.main":
            record["results"].append(supervised_result(cmd))
            shutil.copy(record["results"][-1]["source"], out_dir)
        elif cmd.produces_result:
            record["results"].append(rl_result(cmd))
    record["wall_s"] = round(time.time() - t0, 1)
    if exp.family == "supervised" and record["status"] == "done":
        record["train_dir"] = os.path.dirname(record["results"][0]["source"])
    elif exp.family == "rl" and exp.spec["method"] != "random":
        record["train_dir"] = logdir
        record["checkpoint"] = os.path.join(logdir, RL_CHECKPOINT)
    write_record(results_dir, record)
    return record


def write_record(results_dir: str, record: dict) -> str:
    path = os.path.join(results_dir, "runs", f"{record['name']}.json")
    atomic_write_text(path, json.dumps(record, indent=1))
    return path


def load_records(results_dir: str) -> dict[str, dict]:
    folder = os.path.join(results_dir, "runs")
    out = {}
    if os.path.isdir(folder):
        for fn in sorted(os.listdir(folder)):
            if fn.endswith(".json"):
                with open(os.path.join(folder, fn)) as f:
                    rec = json.load(f)
                out[rec["name"]] = rec
    return out
