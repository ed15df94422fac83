"""Where a meta-iteration's time goes: kernel time per op type, from TensorFlow's profiler.

    scripts/venv.sh python bench/bench_ops.py                          # the five workloads, top 12 op types
    scripts/venv.sh python bench/bench_ops.py --workloads omniglot5 --top 20 --steps 5
    scripts/venv.sh python bench/bench_ops.py --json ops.json
    scripts/venv.sh python bench/bench_ops.py --workloads omniglot20 --original --steps 5 --top 25
    scripts/venv.sh python bench/bench_ops.py --workloads omniglot20 --static --top 40   # counts only, no timing

bench_supervised.py says how fast a workload runs; this says why. It times the same lean training
step (same synthetic batch, same thread pools as maml_tf.main) under `tf.profiler.experimental`,
reads the trace it writes (an XSpace protobuf) and sums the durations of the kernel events on
TensorFlow's compute threads by op type. Two figures frame the table: the share of the step's
wall-clock x threads that kernels were busy (low means waiting and scheduling, not compute), and the
convolution kernels' achieved GFLOP/s against a dense matmul's (low means the kernels themselves are
inefficient on these shapes, which no scheduling fixes). Each workload runs in its own process, as in
bench_supervised.py, because thread pools are fixed when TensorFlow starts.

`--original` profiles the original cbfinn/maml graph's `metatrain_op` the same way, right after ours:
`original_ops.py` (a child process) builds it with refbench's harness (`../shared/refbench` or
$MAML_TF_REFBENCH, imported, never copied; without it the original is skipped with a note) under TF 2.x
compat.v1, runs `sess.run(metatrain_op)` on refbench's synthetic batch with the pools our step ran with
(auto resolved: intra 1 / inter 2 on Omniglot here), and profiles it with the same
`tf.profiler.experimental` trace and the same `kernel_seconds`. One profiler for both sides because it
does capture Session runs: the kernel events come from TensorFlow's executor, which runs a Session's
graph and a tf.function's alike, on the same "tf_Compute" threads (checked: a compat.v1 sinusoid
metatrain_op gives MatMul, ApplyAdam, TensorArray... events on two tf_Compute threads), so compat.v1
RunMetadata / FULL_TRACE step_stats were not used. In both, inexpensive kernels (Identity, Const, the
v1 loop's Enter/Merge/Switch/NextIteration, StackPush/Pop) run inline without events (host tracer level
2, the default, and 3 alike); their cost is in the executor's own share. Both reports are printed side
by side (ms/step and calls/step per op type, busy fraction, executor share), then the op types whose
time, and whose calls, differ most.

`--static` runs nothing: op counts per type of our traced lean step (with the functions it calls)
against the original's metatrain_op subgraph (the ops it depends on), the original's map_fn loop bodies
counted once per task. Both graphs are pre-Grappler (no pruning, constant folding, fusions or oneDNN
rewrites), so the profile's calls/step are what actually ran; the static view says what the code builds.
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
import original  # noqa: E402 - same folder: where the original code is

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


def profile(run_step, steps: int, tf) -> tuple[float, dict[str, float], dict[str, int], int]:
    """Wall seconds per step, and kernel_seconds() of `steps` calls of run_step() (which must block
    until its step is done) under `tf.profiler.experimental`: the same code profiles our tf.function
    and the original's compat.v1 Session.run (TF2's profiler traces both: the executor's kernel events
    are the same whichever front end scheduled them)."""
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        t0 = time.perf_counter()
        for _ in range(steps):
            run_step()
        wall = (time.perf_counter() - t0) / steps
        tf.profiler.experimental.stop()
        traces = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not traces:
            raise RuntimeError(f"the profiler wrote no trace under {logdir}")
        with open(traces[0], "rb") as f:
            seconds, counts, threads = kernel_seconds(f.read())
    return wall, seconds, counts, threads


def summarize(workload: str, description: str, steps: int, intra_op: int, inter_op: int, wall: float,
              seconds: dict[str, float], counts: dict[str, int], threads: int, flops: float | None) -> dict:
    """The per-step report of one profiled graph (ours or the original's)."""
    per_step = {k: v / steps for k, v in seconds.items()}
    busy = sum(per_step.values())  # kernels and the executor around them
    conv_s = sum(v for k, v in per_step.items() if k in CONV_TYPES)
    rows = sorted(per_step.items(), key=lambda kv: -kv[1])
    return {
        "workload": workload, "description": description, "steps": steps,
        "intra_op": intra_op, "inter_op": inter_op, "compute_threads": threads,
        "wall_s_per_step": wall, "kernel_s_per_step": busy,
        # kernels' busy time over what the threads could have given (threads seen in the trace)
        "kernel_busy_fraction": busy / (wall * max(threads, 1)),
        "conv_share": conv_s / busy if busy else 0.0,
        "conv_gflops": (flops / conv_s / 1e9) if flops and conv_s else None,
        "gflop_per_it": flops / 1e9 if flops else None,
        "executor_share": per_step.get(EXECUTOR, 0.0) / busy if busy else 0.0,
        "ops": [{"op": k, "ms_per_step": 1e3 * v, "share": v / busy, "calls_per_step": counts[k] / steps}
                for k, v in rows],
    }


LOOP_ENTER = ("Enter", "RefEnter")
LOOP_EXIT = ("Exit", "RefExit")


def v1_loop_nodes(nodes) -> set[str]:
    """Names of the nodes that run once per iteration of a v1 `while_loop` (the original's map_fn over tasks
    and its gradient loop): everything reachable from an Enter's outputs (data or control edges) before an
    Exit. Enter and Exit themselves run once per loop; so do the stacks and TensorArrays created outside
    it, which the loop body only pushes to and pops from."""
    consumers: dict[str, list[str]] = collections.defaultdict(list)
    for node in nodes:
        for inp in node.input:
            consumers[inp.lstrip("^").split(":")[0]].append(node.name)
    kind = {node.name: node.op for node in nodes}
    seen: set[str] = set()
    todo = [c for node in nodes if node.op in LOOP_ENTER for c in consumers[node.name]]
    while todo:
        name = todo.pop()
        if name in seen or kind.get(name) in LOOP_EXIT + LOOP_ENTER:
            continue
        seen.add(name)
        todo.extend(consumers[name])
    return seen


def graph_op_counts(graph_def, loop_multiplier: int = 1) -> dict[str, int]:
    """Op count per type of a GraphDef, as executed once: the bodies of functions it calls are counted
    at each call site (recursively; the call op itself too; a v2 While body once); a node inside a v1
    `while_loop` frame (v1_loop_nodes) counts `loop_multiplier` times, the loop's iterations (Merge,
    Switch and LoopCond run once more, which is not counted). Pre-Grappler graphs: no constant folding,
    fusions or oneDNN rewrites (the profile's counts show those)."""
    library = {f.signature.name: f for f in graph_def.library.function}
    counts: dict[str, int] = collections.defaultdict(int)

    def visit(nodes, weight):
        in_loop = v1_loop_nodes(nodes) if loop_multiplier != 1 else set()
        for node in nodes:
            w = weight * (loop_multiplier if node.name in in_loop else 1)
            counts[node.op] += w
            called = [node.op] if node.op in library else []
            for key in ("f", "then_branch", "else_branch", "body", "cond"):
                if key in node.attr and node.attr[key].func.name in library:
                    called.append(node.attr[key].func.name)
            for name in called:
                visit(library[name].node_def, w)

    visit(graph_def.node, 1)
    return dict(counts)


def _ours(args):
    """(cfg, learner, batch, tf) of args.workloads in this process, pools set as maml_tf.main would."""
    import numpy as np

    from maml_tf.config import Config
    from maml_tf.learner import build

    wl = bs.WORKLOADS[args.workloads]
    cfg = Config(**wl.flags)
    pools = argparse.Namespace(intra_op=args.intra_op, inter_op=args.inter_op, thread_pools=args.thread_pools)
    tf = bs._configure_tf(pools, cfg)
    learner = build(cfg)
    batch = tuple(tf.constant(b) for b in bs.synthetic_batch(cfg, np.random.default_rng(0)))
    return cfg, learner, batch, tf, pools


def run_child(args) -> dict:
    cfg, learner, batch, tf, pools = _ours(args)
    wl = bs.WORKLOADS[args.workloads]
    if args.static:  # the traced step's graph, no run
        graph_def = learner._train.get_concrete_function(batch, False).graph.as_graph_def()
        return {"workload": args.workloads, "description": wl.description, "side": "ours",
                "meta_batch_size": cfg.meta_batch_size, "op_counts": graph_op_counts(graph_def)}

    def step():
        bs._block(learner.meta_train_step(batch, summaries=False))

    for _ in range(2):  # trace and warm up outside the profile
        step()
    flops = bs.graph_flops(learner._train.get_concrete_function(batch, False))
    wall, seconds, counts, threads = profile(step, args.steps, tf)
    return summarize(args.workloads, wl.description, args.steps, pools.intra_op, pools.inter_op, wall, seconds,
                     counts, threads, flops)


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


def diff_ops(ours: dict[str, tuple[float, float]], orig: dict[str, tuple[float, float]]) -> list[dict]:
    """Per op type in either graph, {op: (value, count)} of each side -> rows with both sides and
    their differences (ours - original), sorted by the largest absolute value difference first."""
    rows = []
    for op in set(ours) | set(orig):
        (v1, c1), (v2, c2) = ours.get(op, (0.0, 0.0)), orig.get(op, (0.0, 0.0))
        rows.append({"op": op, "ours": v1, "original": v2, "diff": v1 - v2,
                     "ours_calls": c1, "original_calls": c2, "diff_calls": c1 - c2})
    return sorted(rows, key=lambda r: (-abs(r["diff"]), -abs(r["diff_calls"]), r["op"]))


def compare(ours: dict, orig: dict) -> list[dict]:
    """diff_ops() of two profile reports, in ms/step and calls/step."""
    def table(r):
        return {o["op"]: (o["ms_per_step"], o["calls_per_step"]) for o in r["ops"]}
    return diff_ops(table(ours), table(orig))


def _fmt_pools(r: dict) -> str:
    return f"{r['intra_op'] or 'tf'}/{r['inter_op'] or 'tf'}"


def format_compare(ours: dict, orig: dict, top: int) -> str:
    """Ours and the original side by side (ms/step, calls/step per op type), then what differs most."""
    if "error" in orig:
        return f"original: not profiled: {orig['error']}"
    lines = [f"== {ours['description']}: ours vs the original's metatrain_op (pools {_fmt_pools(ours)} vs "
             f"{_fmt_pools(orig)}) =="]
    for label, r in (("ours", ours), ("original", orig)):
        lines.append(f"{label:9s} wall {1e3 * r['wall_s_per_step']:8.1f} ms/step; threads busy "
                     f"{1e3 * r['kernel_s_per_step']:8.1f} ms/step ({r['kernel_busy_fraction']:.2f} of wall x "
                     f"{r['compute_threads']} threads); executor's own {r['executor_share']:.0%}; "
                     f"convolutions {r['conv_share']:.0%}")
    lines.append(f"wall ratio ours/original {ours['wall_s_per_step'] / orig['wall_s_per_step']:.3f} "
                 "(>1: ours slower; the two ran back to back)")
    rows = compare(ours, orig)
    by_time = sorted(rows, key=lambda r: -max(r["ours"], r["original"]))[:top]
    lines.append(f"{'op type':28s} {'ours ms':>9s} {'orig ms':>9s} {'diff ms':>9s} {'ours calls':>10s} "
                 f"{'orig calls':>10s}")
    for r in by_time:
        lines.append(f"{r['op']:28s} {r['ours']:9.2f} {r['original']:9.2f} {r['diff']:+9.2f} "
                     f"{r['ours_calls']:10.0f} {r['original_calls']:10.0f}")
    lines.append("-- differs most in time (ours - original, ms/step) --")
    for r in rows[:top]:
        lines.append(f"{r['op']:28s} {r['diff']:+9.2f} ms   calls {r['ours_calls']:.0f} vs {r['original_calls']:.0f}")
    counted = sorted((r for r in rows if r["diff_calls"]), key=lambda r: (-abs(r["diff_calls"]), r["op"]))
    lines.append("-- differs most in calls/step (ours vs original) --")
    for r in counted[:top]:
        lines.append(f"{r['op']:28s} {r['ours_calls']:10.0f} vs {r['original_calls']:10.0f} "
                     f"({r['diff_calls']:+.0f}; {r['diff']:+.2f} ms)")
    return "\n".join(lines)


def format_static(ours: dict, orig: dict | None, top: int) -> str:
    """Op counts per type of the two graphs (per executed step), largest count differences first."""
    lines = [f"== {ours['description']}: static op counts per step (ours: the traced lean step and the functions "
             f"it calls; original: the metatrain_op subgraph, map_fn loop bodies x {ours['meta_batch_size']} tasks) =="]
    mine = ours["op_counts"]
    if orig is None or "error" in orig:
        lines.append(f"original: not built: {(orig or {}).get('error', 'no ../shared/refbench')}")
        for op, n in sorted(mine.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"{op:28s} {n:8d}")
        return "\n".join(lines)
    theirs = orig["op_counts"]
    lines.append(f"total ops: ours {sum(mine.values())}, original {sum(theirs.values())}")
    rows = diff_ops({k: (v, v) for k, v in mine.items()}, {k: (v, v) for k, v in theirs.items()})
    lines.append(f"{'op type':28s} {'ours':>8s} {'original':>8s} {'diff':>8s}")
    for r in [r for r in rows if r["diff"]][:top]:
        lines.append(f"{r['op']:28s} {r['ours']:8.0f} {r['original']:8.0f} {r['diff']:+8.0f}")
    same = sorted((r for r in rows if not r["diff"]), key=lambda r: -r["ours"])
    lines.append("same count: " + ", ".join(f"{r['op']} {r['ours']:.0f}" for r in same[:top]))
    return "\n".join(lines)


def original_child(workload: str, steps: int, intra_op: int, inter_op: int, static: bool, timeout: float,
                   env: dict) -> dict:
    """The original's profile (or static counts) from original_ops.py, or {"error": ...} (no refbench: no run)."""
    where = original.refbench_dir()
    if where is None:
        return {"workload": workload, "error": "../shared/refbench (or $MAML_TF_REFBENCH) not found"}
    cmd = [sys.executable, os.path.join(HERE, "original_ops.py"), workload, "--steps", str(steps),
           "--intra_op", str(intra_op), "--inter_op", str(inter_op)] + (["--static"] if static else [])
    return _json_child(cmd, workload, timeout, dict(env, TF_CPP_MIN_LOG_LEVEL="3"), cwd=where)


def _json_child(cmd, workload, timeout, env, cwd=ROOT) -> dict:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {"workload": workload, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"workload": workload, "error": (p.stderr or p.stdout).strip()[-1500:]}
    return json.loads(lines[-1])


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
    p.add_argument("--original", action="store_true",
                   help="also profile the original cbfinn/maml graph's metatrain_op (../shared/refbench) the same "
                        "way, at the same pools as ours, and print both side by side with what differs most")
    p.add_argument("--static", action="store_true",
                   help="no timing: op counts per type of our traced step vs the original's metatrain_op graph")
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
    if (args.original or args.static) and original.refbench_dir() is None:
        print("note: ../shared/refbench (or $MAML_TF_REFBENCH) not found: the original graph is not profiled",
              flush=True)
    matmul = bs.matmul_in_child(env) if args.matmul and not args.static else None
    results = []
    for name in args.workloads.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--workloads", name, "--steps", str(args.steps),
               "--intra_op", str(args.intra_op), "--inter_op", str(args.inter_op), "--thread_pools", args.thread_pools]
        r = _json_child(cmd + (["--static"] if args.static else []), name, args.timeout, env)
        if args.static:
            orig = None
            if "error" not in r:
                pools = (args.intra_op or 1, args.inter_op or 1)  # no run: pools do not matter
                orig = original_child(name, args.steps, *pools, True, args.timeout, env)
            results.append({"workload": name, "ours": r, "original": orig})
            print(f"{name}: error: {r['error']}" if "error" in r else format_static(r, orig, args.top), flush=True)
            continue
        r["matmul_gflops"] = matmul / 1e9 if matmul else None
        print(format_report(r, args.top), flush=True)
        if args.original and "error" not in r:
            # the original at the pools ours ran with (auto resolved in our child), right after ours
            orig = original_child(name, args.steps, r["intra_op"], r["inter_op"], False, args.timeout, env)
            r = {"workload": name, "ours": r, "original": orig,
                 "diff": compare(r, orig) if "error" not in orig else None}
            print(format_compare(r["ours"], orig, args.top), flush=True)
        results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)

    def failed(r):
        return "error" in r or "error" in r.get("ours", {})
    return 0 if not any(failed(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
