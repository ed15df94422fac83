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
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from maml_tf.experiments import snapshots
from maml_tf.experiments.registry import RL_TRAIN_NOTE, Command, Experiment
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


# A stop asked of the runner (SIGINT/SIGTERM, see cli.py): passed on to the running entry points as
# SIGINT, which stops training at an iteration boundary with a checkpoint (maml_tf.train.stop), and no
# further command or experiment starts.
_stop = threading.Event()
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
STOPPED = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # exit statuses of an entry point stopped on request


def request_stop() -> None:
    _stop.set()
    with _live_lock:
        for proc in list(_live):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)


def stop_requested() -> bool:
    return _stop.is_set()


def run_command(cmd: Command, log_path: str, echo: Callable[[str], None],
                on_line: Callable[[], None] | None = None) -> tuple[int, float, list[str]]:
    """Run one entry point with this interpreter; its output goes to `log_path` and through `echo`.

    `on_line` is called after every output line (the runner snapshots a run in progress from there).
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
        with _live_lock:
            _live.add(proc)
        if _stop.is_set():
            proc.send_signal(signal.SIGINT)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if any(m in line for m in RESUME_MARKERS):
                    resumes.append(line.strip())
                if not _noise(line):
                    echo("    " + line.rstrip())
                if on_line is not None:
                    on_line()
            rc = proc.wait()
        finally:
            with _live_lock:
                _live.discard(proc)
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
    """Mean, standard error and 95% interval over goals after 0..n steps (rl.evaluate's json), with the
    evaluated checkpoint and its iteration."""
    import numpy as np

    stem = f"{cmd.flags['env']}_{cmd.flags['method']}" + (f"_{cmd.flags['tag']}" if cmd.flags.get("tag") else "")
    path = os.path.join(cmd.flags["out_dir"], stem + ".json")
    with open(path) as f:
        rec = json.load(f)
    m = np.asarray(rec["task_avg_returns"], dtype=float)
    se = m.std(1) / np.sqrt(m.shape[1])
    return {"label": cmd.label, "metric": "average return", "means": m.mean(1).tolist(), "se": se.tolist(),
            "ci95": (1.96 * se).tolist(), "num_goals": int(m.shape[1]), "checkpoint": rec.get("checkpoint"),
            "checkpoint_iteration": rec.get("checkpoint_iteration"), "source": path}


class RunKeeper:
    """An experiment's training across invocations and machines: seeds its training folder from the
    snapshot kept in the repo, snapshots it while it trains, adds up the wall time of the run's
    segments and says where a stopped run stands (`snapshots.py`). Supervised runs and RL runs differ
    only in their `snapshots.TrainFolder` and in the figure their status quotes (validation accuracy /
    loss; the latest training return)."""

    def __init__(self, exp: Experiment, train: Command, results_dir: str, out_dir: str, keep: tuple[str, ...] = ()):
        self.name, self.results_dir, self.out_dir = exp.name, results_dir, out_dir
        self.family = exp.family
        self.run: snapshots.TrainFolder
        if exp.family == "supervised":
            from maml_tf.config import Config

            cfg = Config.from_dict({k: v for k, v in train.flags.items()})
            self.run = snapshots.SupervisedFolder(os.path.join(train.flags["logdir"], cfg.exp_string))
            self.total, self.num_updates = cfg.total_iterations, cfg.num_updates
        else:  # the registry always gives an RL run its n_itr
            self.run = snapshots.RLFolder(train.flags["run_dir"], keep)
            self.total, self.num_updates = int(train.flags["n_itr"]), 1
        previous = snapshots.read_status(results_dir, exp.name) or {}
        self.segments = list(previous.get("segments", []))
        self.status: dict | None = None
        self._t0 = self._last = 0.0
        self._start_itr = 0

    @property
    def train_dir(self) -> str:
        return self.run.folder

    def seed(self) -> str | None:
        return snapshots.seed(self.results_dir, self.name, self.run)

    def reached(self) -> int:
        """Iterations completed by the training folder's latest checkpoint."""
        itr = self.run.latest(self.run.folder)
        return 0 if itr is None else itr + 1

    def begin(self) -> None:
        self._start_itr = self.reached()
        self._t0 = self._last = time.time()

    def tick(self) -> None:
        if time.time() - self._last >= snapshots.EVERY_S:
            self.snapshot()

    def snapshot(self) -> dict | None:
        """Curve and latest checkpoint into the repo's folders; the status written (None: no checkpoint yet)."""
        self._last = time.time()
        curve_path = snapshots.update_curve(self.out_dir, self.run)
        curve = snapshots.read_curve(curve_path) if curve_path else {}
        segment = {"from_iteration": self._start_itr, "to_iteration": self.reached(),
                   "wall_s": round(time.time() - self._t0, 1), "date": now(), "hardware": hardware()}
        status = {"total": self.total, "segments": self.segments + [segment], "updated": now()}
        if self.family == "supervised":
            status["validation"] = snapshots.latest_validation(curve, self.num_updates)
        else:
            status["training_return"] = snapshots.latest_return(curve)
        self.status = snapshots.take(self.results_dir, self.name, self.run, status) or self.status
        return self.status

    def end(self) -> None:
        self.snapshot()
        if self.status is not None:
            self.segments = self.status["segments"]

    @property
    def train_wall_s(self) -> float:
        return round(sum(seg["wall_s"] for seg in self.segments), 1)

    def status_line(self) -> str:
        if self.status is None:
            return "stopped before its first checkpoint"
        line = f"in progress: iteration {self.status['next_iteration']:,} of {self.total:,}"
        val = self.status.get("validation")
        if val:
            value = f"{val['mean'] * 100:.1f}%" if val["metric"] == "accuracy" else f"{val['mean']:.3g}"
            line += (f"; validation {val['metric']} {value} (mean of the last {val['checks']} checks, "
                     f"to iteration {val['iteration']:,})")
        ret = self.status.get("training_return")
        if ret:
            post = "" if ret["post_return"] is None else f", post-update {ret['post_return']:.2f}"
            line += f"; training return {ret['pre_return']:.2f}{post} (iteration {ret['iteration']:,})"
        return line


def run_experiment(exp: Experiment, quick: bool, results_dir: str, logs_dir: str, data_dir: str,
                   echo: Callable[[str], None] = print, pretrained_dir: str | None = None) -> dict:
    """Run `exp` (train, then test/evaluate); returns and writes its record `runs/<name>.json`.

    A training run is kept resumable in `results_dir/in_progress/` while it trains (`RunKeeper`);
    when it finishes, its meta-initialisation (supervised) or policy (RL) is shipped to
    `pretrained_dir/<name>/` (if given).
    A stop (`request_stop`) ends training at a checkpoint and records the run as in progress.
    """
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
    cmds = exp.commands(quick, logdir, data_dir, out_dir)
    keeper = None
    if exp.family == "supervised":
        keeper = RunKeeper(exp, cmds[0], results_dir, out_dir)
    elif cmds[0].role == "train":  # RL: the evaluated snapshot travels with the run once it exists
        keeper = RunKeeper(exp, cmds[0], results_dir, out_dir, keep=(os.path.basename(cmds[-1].flags["checkpoint"]),))
    if keeper is not None and (said := keeper.seed()):
        echo(f"  [{exp.name}] {said}")
    for cmd in cmds:
        if _stop.is_set():
            record["status"] = keeper.status_line() if keeper is not None else f"stopped before its {cmd.role}"
            break
        cmd = _prepare(cmd)
        missing = _missing_snapshot(cmd)
        if missing:
            record["status"] = f"failed: {missing}"
            break
        echo(f"  [{exp.name}] {cmd.role}{' ' + cmd.label if cmd.label else ''}: {' '.join(cmd.argv())}")
        training = keeper is not None and cmd.role == "train"
        if training:
            keeper.begin()
        rc, wall, resumes = run_command(cmd, log_path, echo, keeper.tick if training else None)
        record["commands"].append({"role": cmd.role, "label": cmd.label, "argv": cmd.argv(), "flags": cmd.flags,
                                   "rc": rc, "wall_s": round(wall, 1), "resumed": resumes})
        if training:
            keeper.end()
        if rc in STOPPED and keeper is not None:
            record["status"] = keeper.status_line()
            record["in_progress"] = keeper.status
            break
        if rc != 0:
            record["status"] = f"failed: {cmd.role} exited with {rc} (log: {log_path})"
            break
        if cmd.produces_result and cmd.module == "maml_tf.main":
            record["results"].append(supervised_result(cmd))
            shutil.copy(record["results"][-1]["source"], out_dir)
        elif cmd.produces_result:
            record["results"].append(rl_result(cmd))
    record["wall_s"] = round(time.time() - t0, 1)
    if keeper is not None:
        record["train_wall_s"] = keeper.train_wall_s
        record["segments"] = keeper.segments
        if os.path.exists(os.path.join(out_dir, snapshots.CURVE)):
            record["curve"] = os.path.join(out_dir, snapshots.CURVE)
    if exp.family == "rl" and keeper is not None:
        record["train_dir"] = logdir
        record["checkpoint"] = cmds[-1].flags["checkpoint"]
        record["evaluated"] = {"checkpoint": record["checkpoint"], "label": cmds[-1].label,
                               "n_itr": keeper.total, "note": RL_TRAIN_NOTE}
    if keeper is not None and record["status"] == "done":
        if exp.family == "supervised":
            record["train_dir"] = os.path.dirname(record["results"][0]["source"])
        if pretrained_dir is not None:
            _ship(record, cmds, pretrained_dir, echo)
        snapshots.remove(results_dir, exp.name)  # finished: the weights ship, the resume state goes
    write_record(results_dir, record)
    return record


def _missing_snapshot(cmd: Command) -> str | None:
    """Why an RL evaluation cannot start: its itr_<N>.npz was never written (None: it exists, or not RL).

    A run folder trained past N before snapshots were numbered as the reference's (itr_24, itr_49, ...)
    lacks it; the message says so rather than letting rl.evaluate fail on a missing file.
    """
    if cmd.module != "maml_tf.rl.evaluate" or "checkpoint" not in cmd.flags or os.path.exists(cmd.flags["checkpoint"]):
        return None
    path = cmd.flags["checkpoint"]
    return (f"{path} was not written: the run in {os.path.dirname(path)} did not save that iteration (trained past "
            "it with an older maml_tf, which numbered snapshots itr_24, itr_49, ...?); train it again in an empty "
            "folder, or evaluate another checkpoint with python -m maml_tf.rl.evaluate")


def _ship(record: dict, cmds: list[Command], pretrained_dir: str, echo: Callable[[str], None]) -> None:
    """`pretrained/<name>/` of a finished run (`pretrained.py`), named in the record."""
    from maml_tf.experiments import pretrained

    if record["table"].startswith("rl_"):
        shipped = pretrained.ship_rl(record, cmds[-1], pretrained_dir)
        what = "policy"
    else:
        shipped = pretrained.ship(record, cmds[0].flags, pretrained_dir)
        what = "meta-initialisation"
    here = os.getcwd()
    record["pretrained"] = os.path.relpath(shipped, here) if shipped.startswith(here + os.sep) else shipped
    echo(f"  [{record['name']}] shipped the {what} to {record['pretrained']}")


def evaluate_latest(exp: Experiment, quick: bool, results_dir: str, logs_dir: str,
                    echo: Callable[[str], None] = print) -> dict:
    """Evaluate the latest iteration an RL run reached (its latest.npz; seeded from `in_progress/` when the
    logs are elsewhere) without training on; recorded in its record as `latest_evaluation`, labelled
    `itr_<X>`, with outputs `<env>_<method>_itr_<X>.*` beside those of the reference's snapshot.

    Returns the record; raises ExperimentError when there is no such run.
    """
    logdir = os.path.join(logs_dir, exp.name)
    out_dir = os.path.join(results_dir, "runs", exp.name)
    cmds = exp.commands(quick, logdir, "", out_dir)
    if exp.family != "rl" or cmds[0].role != "train":
        raise ExperimentError(f"--latest evaluates an RL training run in progress; {exp.name} is not one")
    keeper = RunKeeper(exp, cmds[0], results_dir, out_dir)
    if said := keeper.seed():
        echo(f"  [{exp.name}] {said}")
    itr = keeper.run.latest(logdir)
    if itr is None:
        raise ExperimentError(f"{exp.name}: no run to evaluate (neither {logdir}/latest.npz nor "
                              f"{snapshots.folder(results_dir, exp.name)})")
    ev = cmds[-1]
    label = f"itr_{itr}, the latest of a run in progress (iteration {itr + 1:,} of {keeper.total:,})"
    ev = dataclasses.replace(ev, label=label, flags={**ev.flags, "checkpoint": os.path.join(logdir, "latest.npz"),
                                                     "tag": f"itr_{itr}"})
    os.makedirs(out_dir, exist_ok=True)
    echo(f"  [{exp.name}] eval {label}: {' '.join(ev.argv())}")
    rc, wall, _ = run_command(ev, os.path.join(logdir, "run_experiments.log"), echo)
    if rc != 0:
        raise ExperimentError(f"{exp.name}: the evaluation of {logdir}/latest.npz exited with {rc}")
    record = load_records(results_dir).get(exp.name) or {
        "name": exp.name, "title": exp.title, "paper_ref": exp.paper_ref, "table": exp.table, "spec": exp.spec,
        "quick": quick, "status": f"in progress: iteration {itr + 1:,} of {keeper.total:,}", "date": now(),
        "hardware": hardware(), "command": f"./run_experiments.sh {'--quick ' if quick else ''}{exp.name}",
        "commands": [], "results": [], "wall_s": None}
    record["latest_evaluation"] = {**rl_result(ev), "argv": ev.argv(), "date": now(), "wall_s": round(wall, 1),
                                   "hardware": hardware()}
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
