"""Child of bench_ops.py: profile the ORIGINAL cbfinn/maml graph's metatrain_op as bench_ops profiles ours.

    python bench/original_ops.py WORKLOAD --steps N --intra_op I --inter_op J [--static]

WORKLOAD is one of bench_supervised.py's names (sinusoid, omniglot5, omniglot5_fo, omniglot20,
miniimagenet), mapped to refbench's configuration by `original.REFBENCH_NAME`. The original code and
refbench's harness are imported from `../shared/refbench` (or $MAML_TF_REFBENCH) through sys.path, never
copied: `run_case` builds the graph (TF1 code under TF 2.x compat.v1, v1 control flow) exactly as
refbench's `bench_ref.py` does, and the configurations (flags, test_num_updates, synthetic data) are
`bench_ref.py`'s own `CONF` table, read from its source (that file is a script: importing it would run
its timing loop). Prints one JSON line: bench_ops.summarize()'s report, or with --static the op counts
of the metatrain_op subgraph (bench_ops.graph_op_counts, loop bodies times the meta-batch).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import original  # noqa: E402 - same folder


def refbench_conf(where: str) -> dict:
    """bench_ref.py's CONF table ({name: (argv, test_num_updates, data)}), evaluated from its source alone."""
    path = os.path.join(where, "bench_ref.py")
    tree = ast.parse(open(path).read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CONF" for t in node.targets):
            return eval(compile(ast.Expression(node.value), path, "eval"), {"os": os})  # noqa: S307 - its literal
    raise RuntimeError(f"no CONF table in {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=sorted(original.REFBENCH_NAME))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--intra_op", type=int, required=True)
    p.add_argument("--inter_op", type=int, required=True)
    p.add_argument("--static", action="store_true", help="op counts of the metatrain_op subgraph, no run")
    args = p.parse_args(argv)
    where = original.refbench_dir()
    if where is None:
        print(json.dumps({"workload": args.workload, "error": "no ../shared/refbench (or $MAML_TF_REFBENCH)"}))
        return 2
    # The profiler's trace format and bench_ops (which reads it) before refbench's shim replaces the
    # `tensorflow` module with its compat.v1 facade.
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: F401

    import bench_ops
    import bench_supervised as bs

    name, first_order = original.REFBENCH_NAME[args.workload]
    conf_argv, test_num_updates, data = refbench_conf(where)[name]
    sys.path.insert(0, where)
    import run_case as rc  # refbench's harness: installs the shim, imports the original code

    tf, realtf = rc.tf, rc.realtf
    rc.CASES["bench_ops"] = dict(argv=conf_argv, test_num_updates=test_num_updates, data=data)
    rc.parse_flags("bench_ops")
    batch, dim_input, dim_output, _ = rc.make_data("bench_ops")
    rc.DIMS = (dim_input, dim_output)
    rc.session_config = lambda: tf.ConfigProto(intra_op_parallelism_threads=args.intra_op,
                                               inter_op_parallelism_threads=args.inter_op)
    built = rc.build("bench_ops", stop_grad=first_order, norm_value=rc.FLAGS.norm)
    op = built.model.metatrain_op
    description = bs.WORKLOADS[args.workload].description
    if args.static:
        from tensorflow.python.framework import graph_util

        sub = graph_util.extract_sub_graph(built.graph.as_graph_def(), [op.name])
        counts = bench_ops.graph_op_counts(sub, loop_multiplier=rc.FLAGS.meta_batch_size)
        print(json.dumps({"workload": args.workload, "description": description, "side": "original",
                          "refbench_name": name, "meta_batch_size": rc.FLAGS.meta_batch_size, "op_counts": counts}))
        return 0
    built.sess.run(built.init_op)
    feed = rc.feed_of(built, batch)
    t0 = time.perf_counter()
    built.sess.run(op, feed)
    first = time.perf_counter() - t0
    built.sess.run(op, feed)  # warm up outside the profile, as bench_ops does for ours
    wall, seconds, counts, threads = bench_ops.profile(lambda: built.sess.run(op, feed), args.steps, realtf)
    report = bench_ops.summarize(args.workload, description, args.steps, args.intra_op, args.inter_op, wall,
                                 seconds, counts, threads, None)
    report.update(side="original", refbench_name=name, first_call_s=first)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
