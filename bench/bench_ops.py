"""Where a meta-iteration's time goes: kernel time per op type, from TensorFlow's profiler.

    scripts/venv.sh python bench/bench_ops.py                          # the five workloads, top 12 op types
    scripts/venv.sh python bench/bench_ops.py --workloads omniglot5 --top 20 --steps 5
    scripts/venv.sh python bench/bench_ops.py --json ops.json

bench_supervised.py says how fast a workload runs; this says why. It times the same lean training
step (same synthetic batch, same thread pools as maml_tf.main) under `tf.profiler.experimental`,
reads the trace it writes (an XSpace protobuf) and sums the durations of the kernel events on
TensorFlow's compute threads by op type. Two figures frame the table: the share of the step's
wall-clock x threads that kernels were busy (low means waiting and scheduling, not compute), and the
convolution kernels' achieved GFLOP/s against a dense matmul's (low means the kernels themselves are
inefficient on these shapes, which no scheduling fixes). Each workload runs in its own process, as in
bench_supervised.py, because thread pools are fixed when TensorFlow starts.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import bench_supervised as bs  # noqa: E402 - same folder: the workloads, their batches and pools

CONV_TYPES = ("Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput", "DepthwiseConv2dNative")


def op_type(event_name: str) -> str:
    """'name:_MklNativeConv2DBackpropFilter' -> 'Conv2DBackpropFilter' (oneDNN's prefixes removed)."""
    kind = event_name.rsplit(":", 1)[-1]
    for prefix in ("_MklNative", "_Mkl"):
        if kind.startswith(prefix):
            return kind[len(prefix):]
    return kind


EXECUTOR = "(executor: Process)"  # the executor's own time around the kernels it schedules


def kernel_seconds(xspace_bytes: bytes) -> tuple[dict[str, float], dict[str, int], int]:
    """(seconds, count) per op type on TF's compute threads, and the number of those threads.

    Kernel events ("name:Type") count their self time (nested kernel events, e.g. inside a called
    function, are counted on their own); the executor's "ExecutorState::Process" events count what
    is left of them after the kernels they wrap, under EXECUTOR. Other nested events (ParallelFor
    inside a kernel) stay part of their kernel.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(xspace_bytes)
    seconds: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    threads = 0

    def close(node):  # an event whose end has passed: add its self time
        if node[1] is not None:
            seconds[node[1]] += (node[2] - node[3]) * 1e-12
            counts[node[1]] += 1

    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # executor threads run the kernels
                continue
            threads += 1
            stack: list[list] = []  # open events: [end_ps, kind or None, duration_ps, counted child ps]
            for ev in sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps)):
                while stack and stack[-1][0] <= ev.offset_ps:
                    close(stack.pop())
                name = plane.event_metadata[ev.metadata_id].name
                if name.endswith("::Process"):  # ExecutorState::Process
                    kind = EXECUTOR
                elif ":" in name and "::" not in name:  # a kernel: "node/name:OpType"
                    kind = op_type(name)
                else:  # ParallelFor, ExecutorDoneCallback, ...: part of what encloses them
                    kind = None
                if kind is not None and stack:
                    stack[-1][3] += ev.duration_ps
                stack.append([ev.offset_ps + ev.duration_ps, kind, ev.duration_ps, 0])
            while stack:
                close(stack.pop())
    return dict(seconds), dict(counts), threads


def run_child(args) -> dict:
    import numpy as np

    from maml_tf.config import Config
    from maml_tf.learner import build

    wl = bs.WORKLOADS[args.workloads]
    cfg = Config(**wl.flags)
    pools = argparse.Namespace(intra_op=args.intra_op, inter_op=args.inter_op, thread_pools=args.thread_pools)
    tf = bs._configure_tf(pools, cfg)
    learner = build(cfg)
    batch = tuple(tf.constant(b) for b in bs.synthetic_batch(cfg, np.random.default_rng(0)))

    def step():
        return learner.meta_train_step(batch, summaries=False)

    for _ in range(2):  # trace and warm up outside the profile
        bs._block(step())
    flops = bs.graph_flops(learner._train.get_concrete_function(batch, False))
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            out = step()
        bs._block(out)
        wall = (time.perf_counter() - t0) / args.steps
        tf.profiler.experimental.stop()
        traces = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not traces:
            raise RuntimeError(f"the profiler wrote no trace under {logdir}")
        with open(traces[0], "rb") as f:
            seconds, counts, threads = kernel_seconds(f.read())
    per_step = {k: v / args.steps for k, v in seconds.items()}
    busy = sum(per_step.values())  # kernels and the executor around them
    conv_s = sum(v for k, v in per_step.items() if k in CONV_TYPES)
    rows = sorted(per_step.items(), key=lambda kv: -kv[1])
    return {
        "workload": args.workloads, "description": wl.description, "steps": args.steps,
        "intra_op": pools.intra_op, "inter_op": pools.inter_op, "compute_threads": threads,
        "wall_s_per_step": wall, "kernel_s_per_step": busy,
        # kernels' busy time over what the threads could have given (threads seen in the trace)
        "kernel_busy_fraction": busy / (wall * max(threads, 1)),
        "conv_share": conv_s / busy if busy else 0.0,
        "conv_gflops": (flops / conv_s / 1e9) if flops and conv_s else None,
        "gflop_per_it": flops / 1e9 if flops else None,
        "executor_share": per_step.get(EXECUTOR, 0.0) / busy if busy else 0.0,
        "ops": [{"op": k, "ms_per_step": 1e3 * v, "share": v / busy, "calls_per_step": counts[k] / args.steps}
                for k, v in rows],
    }


def format_report(r: dict, top: int) -> str:
    if "error" in r:
        return f"{r['workload']}: error: {r['error']}"
    matmul = r.get("matmul_gflops")
    conv = f"{r['conv_gflops']:.0f} GFLOP/s" if r["conv_gflops"] else "?"
    if r["conv_gflops"] and matmul:
        conv += f" ({r['conv_gflops'] / matmul:.2f} of a {matmul:.0f} GFLOP/s matmul)"
    lines = [f"== {r['description']} (pools {r['intra_op'] or 'tf'}/{r['inter_op'] or 'tf'}, "
             f"{r['compute_threads']} compute threads seen) ==",
             f"wall {1e3 * r['wall_s_per_step']:.1f} ms/step; compute threads busy {1e3 * r['kernel_s_per_step']:.1f} "
             f"ms/step ({r['kernel_busy_fraction']:.2f} of wall x threads), {r['executor_share']:.0%} of it the "
             f"executor's own; " + (f"convolutions {r['conv_share']:.0%} at {conv}" if r["conv_share"] else
                                    "no convolutions"),
             f"{'op type':28s} {'ms/step':>9s} {'share':>6s} {'calls/step':>10s}"]
    for o in r["ops"][:top]:
        lines.append(f"{o['op']:28s} {o['ms_per_step']:9.2f} {o['share']:6.1%} {o['calls_per_step']:10.0f}")
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=",".join(bs.WORKLOADS), help="comma-separated: " + ", ".join(bs.WORKLOADS))
    p.add_argument("--steps", type=int, default=3, help="profiled training steps per workload")
    p.add_argument("--top", type=int, default=12, help="op types shown per workload")
    p.add_argument("--intra_op", type=int, default=0, help="intra-op threads (0: as --thread_pools says)")
    p.add_argument("--inter_op", type=int, default=0, help="inter-op threads (0: as --thread_pools says)")
    p.add_argument("--thread_pools", default="auto", choices=["auto", "tf"], help="as maml_tf.main's flag")
    p.add_argument("--no_matmul", dest="matmul", action="store_false", help="skip the matmul-rate yardstick")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per workload")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.workloads.split(",")) - set(bs.WORKLOADS)
    if unknown:
        p.error(f"--workloads: unknown {sorted(unknown)}; expected some of {', '.join(bs.WORKLOADS)}")
    if args.steps < 1:
        p.error("--steps must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    matmul = bs.matmul_in_child(env) if args.matmul else None
    results = []
    for name in args.workloads.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--workloads", name, "--steps", str(args.steps),
               "--intra_op", str(args.intra_op), "--inter_op", str(args.inter_op), "--thread_pools", args.thread_pools]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout, cwd=ROOT)
            r = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else \
                {"workload": name, "error": (p.stderr or p.stdout).strip()[-1500:]}
        except subprocess.TimeoutExpired:
            r = {"workload": name, "error": f"timed out after {args.timeout:.0f} s"}
        r["matmul_gflops"] = matmul / 1e9 if matmul else None
        results.append(r)
        print(format_report(r, args.top), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
