"""Supervised MAML meta-iterations/s on the paper configurations, against the original code in the same run.

    scripts/venv.sh python bench/bench_supervised.py                 # all five workloads, defaults
    scripts/venv.sh python bench/bench_supervised.py --workloads omniglot5,omniglot20 --rounds 3
    scripts/venv.sh python bench/bench_supervised.py --json out.json

Each workload runs in its own child process, so that its peak memory (ru_maxrss) is its own and
thread settings (fixed when TensorFlow starts) can differ per run. Data are synthetic batches of the
right shapes (the data pipeline is not what is measured: maml-tf's streams are numpy/tf.data and
keep up by a wide margin). What is timed is `MetaLearner.meta_train_step`, the training step of
main.py (meta-gradient + Adam update), after warm-up calls that trace and compile it.

The original cbfinn/maml graph's metatrain_op is timed in the same run (`original.py`, from
`../shared/refbench`), interleaved with ours round by round, at both of its pool settings (TensorFlow's
default and intra 1 / inter 2); each row gives both ratios. Without refbench that column is skipped,
saying so. FLOPs per meta-iteration come from TensorFlow's profiler on the traced step graph
(registered statistics of Conv2D, its two backprop kernels, MatMul and BatchMatMul: the ops that
matter here); the fraction of hardware is meta-iterations/s * FLOPs over a dense float32 matmul rate
measured around the workload.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import original  # noqa: E402 - same folder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@dataclasses.dataclass(frozen=True)
class Workload:
    description: str
    flags: dict
    second_order: bool


WORKLOADS = {
    "sinusoid": Workload("sinusoid, mb 25, K=10, 1 step (5 evaluated), SO",
                         dict(datasource="sinusoid", norm="None", meta_batch_size=25, update_batch_size=10,
                              update_lr=0.001, num_updates=1), True),
    "omniglot5": Workload("Omniglot 5-way 1-shot, mb 32, 1 step, SO",
                          dict(datasource="omniglot", num_classes=5, meta_batch_size=32, update_batch_size=1,
                               update_lr=0.4, num_updates=1), True),
    "omniglot5_fo": Workload("Omniglot 5-way 1-shot, mb 32, 1 step, FO",
                             dict(datasource="omniglot", num_classes=5, meta_batch_size=32, update_batch_size=1,
                                  update_lr=0.4, num_updates=1, stop_grad=True), False),
    "omniglot5_5shot": Workload("Omniglot 5-way 5-shot, mb 32, 1 step, SO (refbench has no 5-shot configuration)",
                                dict(datasource="omniglot", num_classes=5, meta_batch_size=32, update_batch_size=5,
                                     update_lr=0.4, num_updates=1), True),
    "omniglot20": Workload("Omniglot 20-way 1-shot, mb 16, 5 steps, SO",
                           dict(datasource="omniglot", num_classes=20, meta_batch_size=16, update_batch_size=1,
                                update_lr=0.1, num_updates=5), True),
    "miniimagenet": Workload("MiniImagenet 5-way 1-shot, mb 4, 5 steps, 15 query/class, SO",
                             dict(datasource="miniimagenet", num_classes=5, meta_batch_size=4, update_batch_size=1,
                                  update_lr=0.01, num_updates=5, num_filters=32, max_pool=True), True),
}
# the issue-8 workloads (the original has a configuration for each); the rest on request
DEFAULT_WORKLOADS = ("sinusoid", "omniglot5", "omniglot5_fo", "omniglot20", "miniimagenet")


# --- child: one workload in this process -------------------------------------------------------
def _configure_tf(args, cfg):
    """The thread pools maml_tf.main would use for `cfg` (--thread_pools), or --intra_op/--inter_op."""
    import tensorflow as tf

    from maml_tf.run import set_threads
    args.intra_op, args.inter_op = set_threads(cfg.replace(intra_op_threads=args.intra_op,
                                                           inter_op_threads=args.inter_op,
                                                           thread_pools=args.thread_pools))
    return tf


def synthetic_batch(cfg, rng):
    """(inputa, labela, inputb, labelb) of the shapes main.py feeds for `cfg`, float32."""
    import numpy as np
    n = cfg.num_classes_in_task
    support, query = n * cfg.update_batch_size, n * (cfg.samples_per_class - cfg.update_batch_size)
    mb = cfg.meta_batch_size

    def labels(count):
        if not cfg.classification:
            return rng.normal(size=(mb, count, 1)).astype(np.float32)
        return np.eye(n, dtype=np.float32)[np.tile(np.arange(n), count // n)][None].repeat(mb, 0)

    if cfg.classification:
        xa = rng.uniform(0, 1, (mb, support, cfg.dim_input)).astype(np.float32)
        xb = rng.uniform(0, 1, (mb, query, cfg.dim_input)).astype(np.float32)
    else:
        xa = rng.uniform(-5, 5, (mb, support, 1)).astype(np.float32)
        xb = rng.uniform(-5, 5, (mb, query, 1)).astype(np.float32)
    return xa, labels(support), xb, labels(query)


def graph_flops(concrete) -> float | None:
    """Float operations of one call of a traced tf.function, by TF's profiler (None if unavailable)."""
    import tensorflow as tf
    try:
        opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        prof = tf.compat.v1.profiler.profile(graph=concrete.graph, options=opts)
        return float(prof.total_float_ops) or None
    except Exception:  # noqa: BLE001 - profiler internals vary; FLOPs are then reported as unknown
        return None


def matmul_rate(tf, n: int = 1536, repeats: int = 5) -> float:
    """Dense float32 matmul FLOP/s on this device (best of `repeats`), the hardware yardstick."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    mm = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(tf.matmul(a, b), b)))
    mm(a, b).numpy()
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, b).numpy()
        best = max(best, 2 * 2 * n ** 3 / (time.perf_counter() - t))
    return best


def peak_memory_mb(tf) -> tuple[float, str]:
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        info = tf.config.experimental.get_memory_info(gpus[0].name)
        return info["peak"] / 2 ** 20, "GPU peak allocated"
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS"


def _setting(text: str) -> tuple[str, Any]:
    """'NAME' (a boolean Config flag, set true) or 'NAME=VALUE' (any Config flag, VALUE read as its type)."""
    from maml_tf.config import Config

    name, sep, value = text.partition("=")
    field = {f.name: f for f in dataclasses.fields(Config)}.get(name)
    if field is None:
        raise SystemExit(f"--set/--ab {text!r}: maml_tf has no Config flag {name!r}")
    kind = type(field.default)
    if kind is bool:
        if value.lower() not in ("", "1", "true", "0", "false"):
            raise SystemExit(f"--set/--ab {text!r}: {name} is boolean (NAME or NAME=true/false)")
        return name, value.lower() in ("", "1", "true")
    if not sep:
        raise SystemExit(f"--set/--ab {text!r}: {name} needs a value (NAME=VALUE)")
    try:
        return name, kind(value)
    except ValueError:
        raise SystemExit(f"--set/--ab {text!r}: {name} takes a value of type {kind.__name__}") from None


def run_child(args) -> dict:
    from maml_tf.config import Config

    wl = WORKLOADS[args.workloads]
    cfg = Config(**wl.flags, jit_compile=args.jit, **dict(_setting(s) for s in args.set))
    tf = _configure_tf(args, cfg)
    import numpy as np

    from maml_tf.learner import build

    rss_before = peak_memory_mb(tf)[0]
    learner = build(cfg)
    batch = tuple(tf.constant(b) for b in synthetic_batch(cfg, np.random.default_rng(0)))
    # Training iterations without a summary (99 of 100) run the lean step, as the original's session
    # runs only metatrain_op then; that is what is timed.
    step = learner.evaluate if args.mode == "forward" else (lambda b: learner.meta_train_step(b, summaries=False))
    t0 = time.perf_counter()
    out = step(batch)
    compile_s = time.perf_counter() - t0
    _block(out)
    for _ in range(max(0, args.warmup - 1)):
        _block(step(batch))
    # Calls per repeat: enough for ~args.seconds per repeat, judged from one timed call.
    t0 = time.perf_counter()
    _block(step(batch))
    one = time.perf_counter() - t0
    calls = max(1, int(args.seconds / max(one, 1e-6)))
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = step(batch)
        _block(out)
        rates.append(calls / (time.perf_counter() - t0))
    fn = learner._eval if args.mode == "forward" else learner._train
    fn_args = (batch,) if args.mode == "forward" else (batch, False)
    flops = graph_flops(fn.get_concrete_function(*fn_args)) if not args.jit else None
    if flops is None and args.jit:  # the same graph without XLA has the same FLOPs
        flops = graph_flops(tf.function(fn.python_function).get_concrete_function(*fn_args))
    peak, peak_kind = peak_memory_mb(tf)
    med = statistics.median(rates)
    return {
        "workload": args.workloads + "".join(f"+{s}" for s in args.set), "description": wl.description,
        "mode": args.mode, "settings": args.set,
        "jit_compile": args.jit,
        "intra_op": args.intra_op, "inter_op": args.inter_op,
        "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
        "its_per_s_median": med, "its_per_s_min": min(rates), "its_per_s_max": max(rates),
        "rates": rates, "calls_per_repeat": calls, "first_call_s": compile_s,
        "peak_memory_mb": peak, "memory_before_build_mb": rss_before, "peak_memory_kind": peak_kind,
        "gflop_per_it": flops / 1e9 if flops else None,
    }


def add_hardware_figures(r: dict, mm: float | None) -> dict:
    """Fraction of hardware from the matmul rate `mm` (FLOP/s), measured in its own process with
    TensorFlow's default pools (all cores) right before and after the workload."""
    flops = r["gflop_per_it"] * 1e9 if r.get("gflop_per_it") else None
    r["matmul_gflops"] = mm / 1e9 if mm else None
    r["fraction_of_hardware"] = r["its_per_s_median"] * flops / mm if (flops and mm) else None
    return r


def add_original(r: dict, originals: dict[str, list[dict]]) -> dict:
    """The original's rates (median over rounds, per pool setting) and our ratio to each."""
    for pools, runs in originals.items():
        key = "tf" if pools == "tf" else "12"
        rates = [o["its_per_s"] for o in runs if "its_per_s" in o]
        errors = [o["error"] for o in runs if "error" in o]
        ok = [o for o in runs if "its_per_s" in o]
        r[f"original_{key}_its_per_s"] = statistics.median(rates) if rates else None
        r[f"original_{key}_pools"] = f"{ok[0]['intra_op']}/{ok[0]['inter_op']}" if ok else None
        r[f"ratio_to_original_{key}"] = r["its_per_s_median"] / statistics.median(rates) if rates else None
        if errors:
            r[f"original_{key}_error"] = errors[0]
    return r


def _block(out):
    import tensorflow as tf
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)


# --- parent: one child per workload, a table ----------------------------------------------------
def child_command(args, workload: str, extra: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--workloads", workload,
           "--mode", args.mode, "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--seconds", str(args.seconds),
           "--intra_op", str(args.intra_op), "--inter_op", str(args.inter_op), "--thread_pools", args.thread_pools]
    cmd += ["--jit"] if args.jit else []
    for setting in list(args.set) + list(extra):
        cmd += ["--set", setting]
    return cmd


def matmul_in_child(env) -> float | None:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--matmul_child"], capture_output=True,
                          text=True, env=env, timeout=300)
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None


def run_ours(args, name: str, env, extra: tuple[str, ...] = ()) -> tuple[dict | None, str | None]:
    """One child: (its result with the hardware figures, None) or (None, the error)."""
    before = matmul_in_child(env) if args.matmul else None
    proc = subprocess.run(child_command(args, name, extra), capture_output=True, text=True, env=env,
                          timeout=args.timeout)
    if proc.returncode != 0:
        return None, " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
    after = matmul_in_child(env) if args.matmul else None
    mm = (before + after) / 2 if (before and after) else None
    return add_hardware_figures(json.loads(proc.stdout.strip().splitlines()[-1]), mm), None


def summarise(ours: list[dict]) -> dict:
    medians = [o["its_per_s_median"] for o in ours]
    row = dict(sorted(ours, key=lambda o: o["its_per_s_median"])[len(ours) // 2])
    row.update(round_medians=medians, rounds=len(ours), its_per_s_median=statistics.median(medians))
    return row


def run(args) -> list[dict]:
    """Per workload, `args.rounds` rounds of: ours, ours with --ab's flag (if given), the original at
    TF's pools, the original at 1/2."""
    results = []
    compare = args.original and original.refbench_dir() is not None
    if args.original and not compare and not args.quiet:
        print("note: ../shared/refbench (or $MAML_TF_REFBENCH) not found: the original code is not timed, "
              "so there are no same-run ratios", flush=True)
    for name in args.workloads.split(","):
        if name not in WORKLOADS:
            raise SystemExit(f"unknown workload {name!r}; expected some of {', '.join(WORKLOADS)}")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        ours, ab, originals, error = [], [], {p: [] for p in original.POOLS}, None
        for _ in range(args.rounds):
            r, error = run_ours(args, name, env)
            if error is not None:
                break
            ours.append(r)
            if args.ab:
                r, error = run_ours(args, name, env, (args.ab,))
                if error is not None:
                    break
                ab.append(r)
            if compare and name in original.REFBENCH_NAME:  # the same seconds of timing as ours, right after it
                for pools in original.POOLS:
                    originals[pools].append(original.time_original(name, args.seconds * args.repeats, pools,
                                                                   timeout=args.timeout))
        if error is not None:
            results.append({"workload": name, "error": error})
        else:
            rows = [summarise(ours)] + ([summarise(ab)] if ab else [])
            if ab:
                # Same-round ratios (each round's two children ran back to back under the same load).
                per_round = [b["its_per_s_median"] / a["its_per_s_median"] for a, b in zip(ours, ab)]
                rows[1].update(ab_ratio_per_round=per_round, ab_ratio_median=statistics.median(per_round))
            for row in rows:
                results.append(add_original(row, originals) if compare else row)
                if not args.quiet:
                    print(format_row(results[-1]), flush=True)
            if ab and not args.quiet:
                print(f"  {args.ab} on/off: {rows[1]['ab_ratio_median']:.3f}x (rounds: "
                      f"{', '.join(format(x, '.3f') for x in rows[1]['ab_ratio_per_round'])})", flush=True)
        if error is not None and not args.quiet:
            print(format_row(results[-1]), flush=True)
    return results


HEADER = (f"{'workload':<14} {'pools':<5} {'jit':<3} {'it/s med':>9} {'[min-max]':>17} {'orig tf':>8} {'ratio':>6} "
          f"{'orig 1/2':>8} {'ratio':>6} {'GFLOP/it':>8} {'hw frac':>7} {'peak MB':>8}")


def format_row(r: dict) -> str:
    if "error" in r:
        return f"{r['workload']:<14} ERROR {r['error']}"
    flop = f"{r['gflop_per_it']:.2f}" if r.get("gflop_per_it") else "?"
    frac = f"{r['fraction_of_hardware']:.2f}" if r.get("fraction_of_hardware") else "?"
    pools = "/".join(str(r.get(k) or "tf") for k in ("intra_op", "inter_op"))

    def orig(key: str) -> str:
        rate, ratio = r.get(f"original_{key}_its_per_s"), r.get(f"ratio_to_original_{key}")
        return f"{rate:>8.3g} {ratio:>5.2f}x" if rate else f"{'-':>8} {'-':>6}"

    return (f"{r['workload']:<14} {pools:<5} {'on' if r['jit_compile'] else 'off':<3} {r['its_per_s_median']:>9.3g} "
            f"{'[' + format(r['its_per_s_min'], '.3g') + '-' + format(r['its_per_s_max'], '.3g') + ']':>17} "
            f"{orig('tf')} {orig('12')} {flop:>8} {frac:>7} {r['peak_memory_mb']:>8.0f}")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                   help=f"comma-separated: {', '.join(WORKLOADS)} (default: {', '.join(DEFAULT_WORKLOADS)})")
    p.add_argument("--jit", action="store_true", default=None, help="XLA-compile the step (jit_compile=True)")
    p.add_argument("--nojit", dest="jit", action="store_false", help="no XLA (the default)")
    p.add_argument("--mode", default="train", choices=["train", "forward"],
                   help="train: meta_train_step; forward: evaluate only (for paths whose gradient fails)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0, help="target seconds per repeat")
    p.add_argument("--intra_op", type=int, default=0, help="intra-op threads (0: as --thread_pools says)")
    p.add_argument("--inter_op", type=int, default=0, help="inter-op threads (0: as --thread_pools says)")
    p.add_argument("--thread_pools", default="auto", choices=["auto", "tf"],
                   help="maml_tf.main's --thread_pools: auto (its default) or tf (TensorFlow's default pools)")
    p.add_argument("--no_matmul", dest="matmul", action="store_false", help="skip the matmul-rate measurement")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds of (ours, original at TF's pools, original at 1/2) per workload; medians reported")
    p.add_argument("--no_original", dest="original", action="store_false",
                   help="do not time the original code (../shared/refbench)")
    p.add_argument("--set", action="append", default=[], metavar="FLAG[=VALUE]",
                   help="a maml_tf Config flag for our step (repeatable; a bare name sets a boolean true), "
                        "e.g. --set fused_moments_grad, --set task_layout=stacked")
    p.add_argument("--ab", default=None, metavar="FLAG[=VALUE]",
                   help="A/B: each round also times our step with this Config flag set, right after the plain "
                        "one; prints the same-round ratios (e.g. --ab fused_moments_grad, --ab task_layout=stacked)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per workload")
    p.add_argument("--json", nargs="?", const="-", default=None, help="write results as JSON (to FILE, or stdout)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--matmul_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.jit is None:
        sys.path.insert(0, ROOT)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from maml_tf.config import Config
        args.jit = Config().jit_compile
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.matmul_child:
        import tensorflow as tf
        print(matmul_rate(tf))
        return 0
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    if not args.quiet and args.json != "-":
        print(HEADER, flush=True)
    results = run(args)
    if args.json == "-":
        print(json.dumps(results, indent=1))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
