"""Every benchmark in one command: supervised MAML, the public API vs the faithful path, the data pipeline,
the RL environments, the RL sampler/TRPO step.

    scripts/venv.sh python bench/run_all.py             # tables on stdout
    scripts/venv.sh python bench/run_all.py --quick     # shorter runs (fewer repeats, small RL batches)
    scripts/venv.sh python bench/run_all.py --json all.json

The supervised suite (bench_supervised.py) reports structured rows; bench_ops.py (kernel time by op type),
bench_api.py (maml_tf.MAML vs the faithful path), bench_data.py, bench_envs.py and bench_rl.py
print their own tables, which are passed through (and stored as text lines under --json). Each
suite runs in its own process, one after the other, so they do not compete for the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _run(cmd: list[str], timeout: float) -> tuple[int, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s: {' '.join(cmd)}"
    out = p.stdout if p.returncode == 0 else (p.stdout + p.stderr)
    return p.returncode, "\n".join(line for line in out.splitlines() if not _tf_noise(line))


def _tf_noise(line: str) -> bool:
    return line.startswith(("WARNING: All log", "I0000", "E0000", "W0000"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and smaller RL batches")
    ap.add_argument("--only", default="supervised,ops,api,data,envs,rl",
                    help="comma-separated suites: supervised, ops, api, data, envs, rl")
    ap.add_argument("--workloads", default=None,
                    help="supervised workloads, for the supervised and ops suites (default: all five)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per suite")
    ap.add_argument("--json", default=None, help="write every result to this file")
    args = ap.parse_args(argv)
    suites = args.only.split(",")
    report: dict = {}
    status = 0
    if "supervised" in suites:
        from bench_supervised import HEADER, format_row  # noqa: E402 - same folder
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "supervised.json")
            cmd = [sys.executable, os.path.join(HERE, "bench_supervised.py"), "--json", out, "--quiet"]
            cmd += ["--repeats", "3", "--seconds", "1"] if args.quick else []
            cmd += ["--workloads", args.workloads] if args.workloads else []
            rc, text = _run(cmd, args.timeout)
            rows = json.load(open(out)) if os.path.exists(out) else []
        from original import refbench_dir  # noqa: E402 - same folder

        print("== supervised MAML (meta-iterations/s; ratios = vs the original TF1 code timed in this run, at TF's "
              "default pools and at intra 1 / inter 2) ==")
        if refbench_dir() is None:
            print("(../shared/refbench not found: the original code was not timed, no ratios)")
        print(HEADER)
        for r in rows:
            print(format_row(r))
        if rc:
            print(text)
            status = 1
        report["supervised"] = rows
    for name, script, quick in (("ops", "bench_ops.py", ["--steps", "1", "--top", "6"]),
                                ("api", "bench_api.py", ["--rounds", "2", "--seconds", "1", "--warmup", "1"]),
                                ("data", "bench_data.py", ["--seconds", "2"]),
                                ("envs", "bench_envs.py", ["--steps", "1000", "--vector-steps", "100"]),
                                ("rl", "bench_rl.py", ["--quick"])):
        if name not in suites:
            continue
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            print(f"== {name}: {script} not found, skipped ==")
            continue
        cmd = [sys.executable, path] + (quick if args.quick else [])
        cmd += ["--workloads", args.workloads] if args.workloads and name == "ops" else []
        rc, text = _run(cmd, args.timeout)
        print(f"== {name} ({script}) ==")
        print(text)
        report[name] = {"returncode": rc, "lines": text.splitlines()}
        status = status or (1 if rc else 0)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return status


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
