"""The public API (`maml_tf.MAML` over standard Keras layers) against the faithful path, same run.

    scripts/venv.sh python bench/bench_api.py                       # Omniglot 5-way 1-shot, mb 32, SO
    scripts/venv.sh python bench/bench_api.py --workload omniglot5_fo --rounds 7 --json out.json

Both sides run the same network (the reference Omniglot conv net: `maml_tf.models.nets` for the
faithful path, `maml_tf.api.reference_nets.omniglot_conv_net`, i.e. Keras Conv2D /
ExactBatchNormalization / Dense, for the API) from the same weights on the same synthetic batch,
in one process with the thread pools maml_tf.main would use. What is timed is one meta-update:
`MetaLearner.meta_train_step(batch, summaries=False)` (meta-gradient + TF1 Adam) against
`MAML.meta_update(tasks, keras.optimizers.Adam)`, for each API task axis (`loop`,
`vectorized_map`). On a shared machine absolute rates are noisy, so the variants are interleaved:
every round times each variant for about `--seconds`, and the ratio is taken per round, then the
median over rounds. Before timing, the two meta-gradients are compared (the same numbers up to
float32 rounding), so the row times the same computation.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from bench_supervised import WORKLOADS, synthetic_batch  # noqa: E402 - same folder

API_WORKLOADS = ("omniglot5", "omniglot5_fo", "omniglot20")


def _block(x):
    import tensorflow as tf
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, x)


def build_sides(cfg, task_axes):
    """(name -> step function) for the faithful learner and one MAML per task axis, same weights."""
    import keras
    import numpy as np
    import tensorflow as tf

    from maml_tf.api import MAML, losses, reference_nets
    from maml_tf.learner import build, weight_tensors

    learner = build(cfg)
    weights = {n: v.numpy() for n, v in weight_tensors(learner).items()}
    batch = tuple(tf.constant(b) for b in synthetic_batch(cfg, np.random.default_rng(0)))
    sides = {"faithful": lambda: learner.meta_train_step(batch, summaries=False)}
    grads_faithful, _ = learner.meta_gradients(batch)
    check = {}
    for axis in task_axes:
        model = reference_nets.omniglot_conv_net(cfg.num_classes, cfg.num_filters)
        reference_nets.assign_by_reference_name(model, weights)
        maml = MAML(model, losses.reference_classification(cfg.update_batch_size), cfg.update_lr, cfg.num_updates,
                    first_order=cfg.stop_grad, task_axis=axis)
        _, grads = maml.meta_gradients(batch)
        by_name = dict(zip(reference_nets.reference_names(model), grads))
        fed = reference_nets.bn_fed_biases(model)
        scale = max(float(np.abs(g).max()) for g in grads_faithful)
        worst = 0.0
        for n, g in zip(learner.model.reference_names, grads_faithful):
            if n in fed:
                continue  # rounding noise (true gradient 0)
            worst = max(worst, float(np.abs(np.asarray(by_name[n]) - np.asarray(g)).max()) / scale)
        check[axis] = worst
        opt = keras.optimizers.Adam(cfg.meta_lr)
        sides[f"api_{axis}"] = (lambda m=maml, o=opt: m.meta_update(batch, o))
    return sides, check


def run(args) -> dict:
    from maml_tf.config import Config
    from maml_tf.run import set_threads

    wl = WORKLOADS[args.workload]
    cfg = Config(**{**wl.flags, **({"meta_batch_size": args.meta_batch_size} if args.meta_batch_size else {})})
    intra, inter = set_threads(cfg)
    sides, check = build_sides(cfg, args.task_axes.split(","))
    first = {}
    for name, step in sides.items():
        t0 = time.perf_counter()
        _block(step())
        first[name] = time.perf_counter() - t0
        for _ in range(args.warmup):
            _block(step())
    calls = {}
    for name, step in sides.items():
        t0 = time.perf_counter()
        _block(step())
        calls[name] = max(1, int(args.seconds / max(time.perf_counter() - t0, 1e-6)))
    rates = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, step in sides.items():
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                out = step()
            _block(out)
            rates[name].append(calls[name] / (time.perf_counter() - t0))
    result = {"workload": args.workload, "description": wl.description + (
                  f" (meta-batch {cfg.meta_batch_size} here)" if args.meta_batch_size else ""),
                  "intra_op": intra, "inter_op": inter,
              "rounds": args.rounds, "first_call_s": first, "rates": rates,
              "its_per_s_median": {n: statistics.median(r) for n, r in rates.items()},
              "metagrad_max_rel_diff_vs_faithful": check}
    result["ratio_to_faithful"] = {
        n: statistics.median(a / f for a, f in zip(rates[n], rates["faithful"])) for n in rates if n != "faithful"}
    return result


def format_report(r: dict) -> str:
    lines = [f"{r['description']} (pools {r['intra_op'] or 'tf'}/{r['inter_op'] or 'tf'}, {r['rounds']} interleaved rounds)",
             f"{'variant':<22} {'it/s median':>11} {'[min-max]':>15} {'vs faithful':>11} {'first call s':>12} {'grad diff':>9}"]
    for n, rs in r["rates"].items():
        ratio = r["ratio_to_faithful"].get(n)
        diff = r["metagrad_max_rel_diff_vs_faithful"].get(n[4:]) if n.startswith("api_") else None
        lines.append(f"{n:<22} {r['its_per_s_median'][n]:>11.3g} {f'[{min(rs):.3g}-{max(rs):.3g}]':>15} "
                     f"{(f'{ratio:.2f}x' if ratio else '1'):>11} {r['first_call_s'][n]:>12.1f} "
                     f"{(f'{diff:.1e}' if diff is not None else '-'):>9}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="omniglot5", choices=API_WORKLOADS)
    p.add_argument("--task_axes", default="loop,vectorized_map", help="comma-separated MAML task_axis values")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0, help="target seconds per variant per round")
    p.add_argument("--meta_batch_size", type=int, default=0, help="override the workload's (0: keep; tests use 2)")
    p.add_argument("--json", default=None, help="also write the result as JSON to this file")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run(args)
    print(format_report(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
