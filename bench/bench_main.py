"""The real training command's speed next to the bench step's: `python -m maml_tf.main` vs bench_supervised.

    python bench/bench_main.py                                   # Omniglot 5-way and 20-way 1-shot
    python bench/bench_main.py --workloads omniglot20 --iterations 1000 --rounds 2
    python bench/bench_main.py --data_dir data                   # real data (data/omniglot_resized)

bench_supervised.py times the lean training step alone on one fixed synthetic batch. Training is more:
the task stream (sampling, decoding, tf.data), a step with summaries every --summary_interval (and
every print interval), the TensorBoard and csv writes, meta-validation every --val_interval, a
checkpoint every --save_interval. This runs the real command, `python -m maml_tf.main` with the
workload's flags (the experiments registry's Table 1 flags: the same as bench_supervised's workload) and
its normal intervals, for --iterations iterations on a synthetic Omniglot folder in the real layout
(<alphabet>/<character>/*.png, 28x28, marked as a SUBSET so maml_tf splits it in the reference's
proportions; 340 characters, so the validation split holds 20) or on --data_dir, and reads its own
figures: the `iterations_per_second` scalars it writes to TensorBoard at every summary iteration give
the time of each summary iteration since its start, and its last line ("Training done: N iterations in
X s") the end. Its rate is taken from the second summary iteration (the first interval holds the
tf.function traces of both steps) to the end (the final checkpoint included, standing in for the one
every --save_interval).

Interleaved with it, in child processes one after the other (never side by side), the bench step of
the same workload (bench_supervised.py's child: lean step, fixed batch, same auto pools as main) is
timed before and after each training run; the ratio is main's rate over the mean of the two. Near 1
(the issue asks for within 10%) means the step is what training runs at.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_supervised as bs  # noqa: E402 - same folder: the workloads and the bench step's child

WORKLOADS = ("omniglot5", "omniglot5_fo", "omniglot20")
DEFAULT_ITERATIONS = {"omniglot5": 1000, "omniglot5_fo": 1000, "omniglot20": 500}
RATE_TAG = "iterations_per_second"  # maml_tf.progress.RATE_TAG (not imported: no TensorFlow in this process)
DONE = re.compile(r"Training done: (\d+) iterations in ([0-9.]+) s")
SYNTHETIC_CHARACTERS, SYNTHETIC_PER_CHARACTER = 340, 20


# --- maml_tf.main's own figures -----------------------------------------------------------------
def read_records(path: str):
    """The records of a TFRecord file (TensorBoard's event files), without TensorFlow (CRCs not checked)."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                return
            (length,) = struct.unpack("<Q", head[:8])
            data = f.read(length)
            f.read(4)
            if len(data) < length:
                return
            yield data


def rate_scalars(folder: str) -> list[tuple[int, float]]:
    """(step, value) of every `iterations_per_second` scalar in the event files under `folder`."""
    from tensorboard.compat.proto import event_pb2

    out = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if "tfevents" not in name:
                continue
            for record in read_records(os.path.join(root, name)):
                event = event_pb2.Event.FromString(record)
                for value in event.summary.value:
                    if value.tag != RATE_TAG:
                        continue
                    if value.HasField("tensor"):
                        t = value.tensor
                        v = t.float_val[0] if t.float_val else struct.unpack("<f", t.tensor_content[:4])[0]
                    else:
                        v = value.simple_value
                    out.append((int(event.step), float(v)))
    return sorted(out)


def main_rate(records: list[tuple[int, float]], total: int, elapsed_s: float, skip: int = 1) -> dict:
    """maml_tf.main's iterations/s after its first `skip` summary intervals, from its own figures.

    `records` are its (iteration, iterations/s since the previous record) scalars: the first is 1 over
    the seconds from the run's start to the end of iteration 0, each next one (this itr - previous itr)
    over the seconds between them, so they give each summary iteration's time since the start. With
    `elapsed_s` for all `total` iterations (the "Training done" line: the same clock, the final
    checkpoint included), the rate of the iterations after record `skip` is
    (total - 1 - itr[skip]) / (elapsed_s - t[skip]).
    """
    if len(records) <= skip:
        raise ValueError(f"{len(records)} summary iteration(s) recorded: need more than {skip} (run longer, or "
                         "a smaller --summary_interval)")
    times, t, prev = [], 0.0, -1
    for itr, rate in records:
        t += (itr - prev) / rate
        times.append(t)
        prev = itr
    start_itr, start_t = records[skip][0], times[skip]
    its = total - 1 - start_itr
    seconds = elapsed_s - start_t
    intervals = [rate for _, rate in records[skip + 1:]]
    return {"its_per_s": its / seconds if its > 0 and seconds > 0 else math.nan, "window_iterations": its,
            "window_s": seconds, "from_iteration": start_itr, "interval_rates": intervals,
            "interval_rate_median": statistics.median(intervals) if intervals else None,
            "end_to_end_its_per_s": total / elapsed_s if elapsed_s > 0 else math.nan}


def parse_done(stdout: str) -> tuple[int, float]:
    """(iterations, seconds) of main's "Training done: N iterations in X s" line."""
    found = DONE.findall(stdout)
    if not found:
        raise ValueError("no 'Training done' line in maml_tf.main's output")
    n, s = found[-1]
    return int(n), float(s)


# --- the two runs -----------------------------------------------------------------------------
def main_command(workload: str, iterations: int, logdir: str, data_dir: str, extra: list[str]) -> list[str]:
    """`python -m maml_tf.main` for `workload` with its normal intervals, `iterations`+1 iterations (so
    iteration `iterations` is the last)."""
    flags = dict(bs.WORKLOADS[workload].flags, metatrain_iterations=iterations + 1, logdir=logdir, data_dir=data_dir)
    return [sys.executable, "-m", "maml_tf.main"] + [f"--{k}={v}" for k, v in flags.items()] + extra


def write_data(root: str) -> str:
    from bench_data import write_synthetic  # noqa: E402 - same folder

    return write_synthetic(root, "omniglot", SYNTHETIC_CHARACTERS, SYNTHETIC_PER_CHARACTER)


def _env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
                PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_main(workload: str, iterations: int, data_dir: str, extra: list[str], timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as logdir:
        cmd = main_command(workload, iterations, logdir, data_dir, extra)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"error": f"maml_tf.main took over {timeout:.0f} s"}
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            return {"error": " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])}
        try:
            total, elapsed = parse_done(p.stdout)
            r = main_rate(rate_scalars(logdir), total, elapsed)
        except ValueError as e:
            return {"error": str(e)}
    r.update(iterations=total, training_s=elapsed, process_s=wall, command=" ".join(shlex.quote(c) for c in cmd))
    return r


def run_bench_step(workload: str, seconds: float, repeats: int, timeout: float) -> dict:
    ns = argparse.Namespace(mode="train", repeats=repeats, warmup=2, seconds=seconds, intra_op=0, inter_op=0,
                            thread_pools="auto", jit=False)
    try:
        p = subprocess.run(bs.child_command(ns, workload), capture_output=True, text=True, env=_env(),
                           timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"the bench step took over {timeout:.0f} s"}
    if p.returncode != 0:
        return {"error": " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])}
    return json.loads(p.stdout.strip().splitlines()[-1])


def ratio_row(workload: str, main: dict, before: dict, after: dict) -> dict:
    bench = [b["its_per_s_median"] for b in (before, after) if "its_per_s_median" in b]
    row = {"workload": workload, "main": main, "bench_before": before, "bench_after": after}
    if "error" in main or not bench:
        row["error"] = main.get("error") or before.get("error") or after.get("error")
        return row
    row["bench_its_per_s"] = sum(bench) / len(bench)
    row["main_its_per_s"] = main["its_per_s"]
    row["ratio"] = main["its_per_s"] / row["bench_its_per_s"]
    return row


HEADER = (f"{'workload':<13} {'main it/s':>9} {'[interval median]':>17} {'bench step it/s':>15} "
          f"{'(before/after)':>15} {'main/bench':>10} {'window':>16} {'end-to-end it/s':>15}")


def format_row(r: dict) -> str:
    if "error" in r:
        return f"{r['workload']:<13} ERROR {r['error']}"
    m = r["main"]
    med = m["interval_rate_median"]
    ba = f"{r['bench_before'].get('its_per_s_median', math.nan):.3g}/{r['bench_after'].get('its_per_s_median', math.nan):.3g}"
    window = f"itr {m['from_iteration']}+{m['window_iterations']}"
    return (f"{r['workload']:<13} {r['main_its_per_s']:>9.3g} {('[' + format(med, '.3g') + ']') if med else '':>17} "
            f"{r['bench_its_per_s']:>15.3g} {ba:>15} {r['ratio']:>10.3f} {window:>16} "
            f"{m['end_to_end_its_per_s']:>15.3g}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="omniglot5,omniglot20", help="comma-separated: " + ", ".join(WORKLOADS))
    p.add_argument("--iterations", type=int, default=0,
                   help="training iterations after iteration 0 (0: " +
                        ", ".join(f"{k} {v}" for k, v in DEFAULT_ITERATIONS.items()) + ")")
    p.add_argument("--rounds", type=int, default=1, help="training runs per workload, each between two bench steps")
    p.add_argument("--bench_seconds", type=float, default=3.0, help="seconds per bench-step repeat")
    p.add_argument("--bench_repeats", type=int, default=3, help="bench-step repeats (median)")
    p.add_argument("--data_dir", default=None,
                   help="folder holding omniglot_resized/ (default: a synthetic one in the real layout)")
    p.add_argument("--main_args", default="",
                   help="more flags for maml_tf.main, e.g. '--summary_interval=10 --val_interval=20' (short checks)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per child")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    names = args.workloads.split(",")
    unknown = set(names) - set(WORKLOADS)
    if unknown:
        p.error(f"--workloads: unknown {sorted(unknown)}; expected some of {', '.join(WORKLOADS)}")
    extra = shlex.split(args.main_args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or write_data(tmp)
        print(("data: " + data_dir) if args.data_dir else
              f"data: synthetic Omniglot, {SYNTHETIC_CHARACTERS} characters x {SYNTHETIC_PER_CHARACTER} (SUBSET)")
        print(HEADER, flush=True)
        for name in names:
            iterations = args.iterations or DEFAULT_ITERATIONS[name]
            before = run_bench_step(name, args.bench_seconds, args.bench_repeats, args.timeout)
            for _ in range(args.rounds):
                main_r = run_main(name, iterations, data_dir, extra, args.timeout)
                after = run_bench_step(name, args.bench_seconds, args.bench_repeats, args.timeout)
                rows.append(ratio_row(name, main_r, before, after))
                print(format_row(rows[-1]), flush=True)
                before = after
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
