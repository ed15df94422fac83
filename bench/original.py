"""The original cbfinn/maml meta-train op, timed in the same run as ours (`../shared/refbench`).

Machines here are shared and the same command swings 2x between minutes, so a speed claim is a
ratio measured side by side: `bench_supervised.py` interleaves our training step with the original
graph's `metatrain_op` (built by refbench's harness under TF 2.x compat.v1) at both of the original's
thread-pool settings, TensorFlow's default (2/2 on this machine) and intra 1 / inter 2, its best on
the small-convolution workloads. The original code is called, never copied: it stays in
`../shared/refbench` (or `$MAML_TF_REFBENCH`), and without it the comparison is skipped with a note.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# our workload -> (refbench configuration, first order)
REFBENCH_NAME = {"sinusoid": ("sinusoid", False), "omniglot5": ("omni5w1s", False), "omniglot5_fo": ("omni5w1s", True),
                 "omniglot20": ("omni20w1s", False), "miniimagenet": ("mini5w1s", False)}
# the original's pool settings: name -> (intra, inter); "tf" is TensorFlow's default on this machine
POOLS = {"tf": None, "1/2": (1, 2)}


def refbench_dir() -> str | None:
    """Where the original code's benchmark harness is, or None."""
    path = os.environ.get("MAML_TF_REFBENCH") or os.path.join(os.path.dirname(ROOT), "shared", "refbench")
    return path if os.path.isfile(os.path.join(path, "bench_ref.py")) else None


def default_pools() -> tuple[int, int]:
    """TensorFlow's default intra/inter pools here (both follow the usable cores)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return n, n


def time_original(workload: str, seconds: float, pools: str, timeout: float = 1800) -> dict:
    """Median meta-iterations/s of the original's metatrain_op for `workload` (5 repeats of seconds/5).

    Returns {"its_per_s": ..., "rates": [...], "intra_op", "inter_op"} or {"error": ...}.
    """
    where = refbench_dir()
    if where is None:
        return {"error": "no ../shared/refbench"}
    name, first_order = REFBENCH_NAME[workload]
    intra, inter = POOLS[pools] or default_pools()
    env = dict(os.environ, REF_INTRA=str(intra), REF_INTER=str(inter), TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "bench_ref.py", name, str(seconds)] + (["fo"] if first_order else [])
    try:
        proc = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the original's {name} took over {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        return {"error": f"the original's {name} failed: {' | '.join(tail)}"}
    rec = json.loads(lines[-1])
    return {"its_per_s": rec["median"], "rates": rec["rates"], "first_call_s": rec.get("first_call_s"),
            "intra_op": intra, "inter_op": inter}
