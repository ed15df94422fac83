"""Peak memory and time of one meta-gradient, with and without `--recompute_inner`.

    scripts/venv.sh python bench/bench_memory.py                       # the paper-size workloads
    scripts/venv.sh python bench/bench_memory.py --small               # a check of a few minutes
    scripts/venv.sh python bench/bench_memory.py --workloads mini10 --meta_batch_size 2 --num_filters 16

Why: under the outer tape every unrolled inner step keeps its activations and inner-gradient graph,
so the meta-gradient's memory grows with num_updates x activations; recomputation keeps only the
fast weights between steps. Each (workload, recompute) pair runs in its own child process, so its
figures are its own. Two memory figures:
* tensors: TensorFlow's allocator peak during the timed meta-gradients (get_memory_info of CPU:0,
  or GPU:0 on a GPU; reset after the untimed first call, so it is the computation's peak, not
  tracing's). On CPU it counts allocations of 256 KiB and more, which TensorFlow's oneDNN
  allocator serves from its pool; smaller ones go to malloc, uncounted (they matter only for tiny
  sizes).
* maxRSS: the process's peak resident memory (resource.getrusage ru_maxrss), which also holds
  TensorFlow itself, the traced graphs and what the allocator keeps.
What is measured is the training step's meta-gradient (`MetaLearner._gradients` with the lean
train loop: every unrolled step, one query pass after the last) on synthetic batches of main.py's
shapes. The children also save their gradients: the last column is the largest difference
between the two paths' gradients, relative to the largest entry (float32 rounding, amplified by
the unrolled steps).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@dataclasses.dataclass(frozen=True)
class Workload:
    description: str
    flags: dict


MINI = dict(datasource="miniimagenet", num_classes=5, meta_batch_size=4, update_batch_size=1, update_lr=0.01,
            num_filters=32, max_pool=True)
WORKLOADS = {
    "mini5": Workload("MiniImagenet 5-way 1-shot 84x84x3, mb 4, 5 steps, SO", dict(MINI, num_updates=5)),
    "mini10": Workload("MiniImagenet 5-way 1-shot 84x84x3, mb 4, 10 steps, SO", dict(MINI, num_updates=10)),
    "omniglot20": Workload("Omniglot 20-way 1-shot 28x28, mb 16, 5 steps, SO",
                           dict(datasource="omniglot", num_classes=20, meta_batch_size=16, update_batch_size=1,
                                update_lr=0.1, num_updates=5, num_filters=64)),
}
SMALL = dict(meta_batch_size=2, num_filters=16)  # --small: the same graphs, a fraction of the work


# --- child: one workload, one setting, in this process ---------------------------------------------
def run_child(args) -> dict:
    import resource

    import numpy as np
    import tensorflow as tf

    from bench_supervised import synthetic_batch
    from maml_tf.config import Config
    from maml_tf.learner import build

    cfg = Config(**json.loads(args.flags), recompute_inner=args.recompute)
    learner = build(cfg)
    batch = tuple(tf.constant(b) for b in synthetic_batch(cfg, np.random.default_rng(0)))
    grads_fn = tf.function(lambda b: learner._gradients(b, "meta", learner.lean_train_loop)[0])
    t0 = time.perf_counter()
    grads_fn.get_concrete_function(batch)
    trace_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    grads = [g.numpy() for g in grads_fn(batch)]  # the first call also optimises the graph: not timed
    first_s = time.perf_counter() - t0
    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    tf.config.experimental.reset_memory_stats(device)  # from here: the peak of computing, not building
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        grads = [g.numpy() for g in grads_fn(batch)]
        times.append(time.perf_counter() - t0)
    np.savez(args.save, *grads)
    return {"recompute": args.recompute, "device": device,
            "tensor_peak_mb": tf.config.experimental.get_memory_info(device)["peak"] / 2 ** 20,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "trace_s": trace_s, "first_call_s": first_s, "s_per_metagrad": statistics.median(times)}


# --- parent: two children per workload, a table ----------------------------------------------------
def measure(args, flags: dict, recompute: bool, save: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--flags", json.dumps(flags),
           "--repeats", str(args.repeats), "--save", save] + (["--recompute"] if recompute else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within --timeout={args.timeout:g} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def grad_difference(path_a: str, path_b: str) -> float:
    """Largest |a - b| over all gradient arrays, relative to the largest |a| of them all.

    One scale for all: the conv biases that feed batch norm have a true gradient of zero, so their
    own largest entry is rounding noise and a per-array ratio would compare noise with noise.
    """
    import numpy as np
    a, b = np.load(path_a), np.load(path_b)
    scale = max(float(np.max(np.abs(a[k]))) for k in a.files)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files) / max(scale, 1e-30)


def run(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads.split(","):
            if name not in WORKLOADS:
                raise SystemExit(f"unknown workload {name!r}; expected some of {', '.join(WORKLOADS)}")
            flags = dict(WORKLOADS[name].flags, **(SMALL if args.small else {}))
            flags.update({k: getattr(args, k) for k in ("meta_batch_size", "num_filters", "num_updates")
                          if getattr(args, k)})
            row = {"workload": name, "description": WORKLOADS[name].description, "flags": flags}
            saves = {r: os.path.join(tmp, f"{name}_{r}.npz") for r in (False, True)}
            row["default"] = measure(args, flags, False, saves[False])
            row["recompute"] = measure(args, flags, True, saves[True])
            if "error" not in row["default"] and "error" not in row["recompute"]:
                row["grad_rel_diff"] = grad_difference(saves[False], saves[True])
            rows.append(row)
            if not args.quiet:
                print(format_row(row), flush=True)
    return rows


HEADER = (f"{'workload':<11} {'mb':>3} {'filt':>4} {'steps':>5} | {'tensors MB':>10} {'+recomp':>8} {'saved':>6} | "
          f"{'maxRSS MB':>9} {'+recomp':>8} | {'s/grad':>7} {'+recomp':>7} {'ratio':>6} | {'grad diff':>9}")


def format_row(r: dict) -> str:
    """tensors: TensorFlow's allocator peak during the timed meta-gradients; maxRSS: the process's."""
    f = r["flags"]
    head = f"{r['workload']:<11} {f['meta_batch_size']:>3} {f['num_filters']:>4} {f['num_updates']:>5} |"
    for which in ("default", "recompute"):
        if "error" in r[which]:
            return f"{head} {which}: ERROR {r[which]['error']}"
    a, b = r["default"], r["recompute"]
    saved = format(1 - b["tensor_peak_mb"] / a["tensor_peak_mb"], ".0%") if a["tensor_peak_mb"] else "n/a"
    return (f"{head} {a['tensor_peak_mb']:>10.0f} {b['tensor_peak_mb']:>8.0f} {saved:>6} | "
            f"{a['max_rss_mb']:>9.0f} {b['max_rss_mb']:>8.0f} | {a['s_per_metagrad']:>7.3g} {b['s_per_metagrad']:>7.3g} "
            f"{b['s_per_metagrad'] / a['s_per_metagrad']:>5.2f}x | {r.get('grad_rel_diff', float('nan')):>9.2g}")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: " + ", ".join(WORKLOADS))
    p.add_argument("--small", action="store_true", help=f"override {SMALL} (a quick check that it works)")
    p.add_argument("--meta_batch_size", type=int, default=0, help="override the workloads' meta-batch")
    p.add_argument("--num_filters", type=int, default=0, help="override the workloads' conv filters")
    p.add_argument("--num_updates", type=int, default=0, help="override the workloads' inner steps")
    p.add_argument("--repeats", type=int, default=2, help="timed meta-gradients per child (after one untimed)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per child")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--flags", help=argparse.SUPPRESS)
    p.add_argument("--recompute", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    if not args.quiet:
        print(HEADER, flush=True)
    rows = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all("error" not in r["default"] and "error" not in r["recompute"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
