"""Does the image task pipeline keep up with the meta-step? Meta-batches/s of the training stream,
and the training step fed by it vs fed one fixed batch, in one process as `maml_tf.main` runs it.

    scripts/venv.sh python bench/bench_data.py                       # omniglot5, omniglot20, miniimagenet
    scripts/venv.sh python bench/bench_data.py --workloads omniglot5 --seconds 5 --json out.json

Data are synthetic folders in the real layouts (Omniglot: <alphabet>/<character>/*.png 28x28;
MiniImagenet: train/<class>/*.jpg 84x84), written to a temporary folder first: what is timed is the
stream (`maml_tf.train.streams.ImageStream`: images decoded once into an in-memory table, then per
meta-batch a numpy plan, a TF gather and the reference's scaling in a prefetched tf.data map), not
the decoding. `fed / fixed` near 1 means the step never waits for data. The thread pools are those
`maml_tf.main` would use (--thread_pools=auto), set before TensorFlow starts; each workload runs in
its own process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_supervised import WORKLOADS  # noqa: E402 - same folder

IMAGE_WORKLOADS = ("omniglot5", "omniglot20", "miniimagenet")


def write_synthetic(root: str, datasource: str, classes: int, per_class: int) -> str:
    """A --data_dir holding `classes` synthetic classes of `datasource` in the reference's layout."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    if datasource == "omniglot":
        base = os.path.join(root, "omniglot_resized")
        for c in range(classes):
            folder = os.path.join(base, f"alphabet{c // 20:02d}", f"character{c % 20:02d}")
            os.makedirs(folder)
            for i in range(per_class):
                Image.fromarray((rng.random((28, 28)) > 0.5).astype(np.uint8) * 255).save(
                    os.path.join(folder, f"{i:02d}.png"))
        from maml_tf.data.omniglot import mark_subset

        mark_subset(base)  # synthetic characters, not Omniglot's
    else:
        for split, count in {"train": classes, "val": 16, "test": 16}.items():
            for c in range(count):
                folder = os.path.join(root, "miniImagenet", split, f"n{split}{c:04d}")
                os.makedirs(folder)
                for i in range(per_class):
                    img = Image.fromarray(rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)).resize((84, 84))
                    img.save(os.path.join(folder, f"n{c:04d}{i:04d}.jpg"))
    return root


def rate(fn, seconds: float) -> float:
    """Calls per second of fn() over about `seconds` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def run_child(name: str, seconds: float) -> dict:
    from maml_tf.config import Config
    from maml_tf.run import set_threads

    wl = WORKLOADS[name]
    with tempfile.TemporaryDirectory() as tmp:
        datasource = wl.flags["datasource"]
        # Omniglot: 1100 of 1623 characters train; 20 per class. MiniImagenet: 64 train classes of 600.
        classes, per_class = (170, 20) if datasource == "omniglot" else (16, 60)
        cfg = Config(**wl.flags, data_dir=write_synthetic(tmp, datasource, classes, per_class))
        pools = set_threads(cfg)
        import tensorflow as tf

        from maml_tf.learner import build
        from maml_tf.train import streams

        stream = streams.training_stream(cfg)
        load_start = time.perf_counter()
        fixed = tuple(tf.constant(b) for b in stream.next_batch())  # decodes the images once
        load_s = time.perf_counter() - load_start
        stream_rate = rate(stream.next_batch, seconds)
        learner = build(cfg)

        def step(batch):
            tf.nest.map_structure(lambda t: t.numpy(), learner.meta_train_step(batch, summaries=False))

        fixed_rate = rate(lambda: step(fixed), seconds)
        fed_rate = rate(lambda: step(stream.next_batch()), seconds)
    return {"workload": name, "description": wl.description, "pools": list(pools), "first_batch_s": load_s,
            "stream_batches_per_s": stream_rate, "step_fixed_batch_its_per_s": fixed_rate,
            "step_fed_by_stream_its_per_s": fed_rate, "fed_over_fixed": fed_rate / fixed_rate}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=",".join(IMAGE_WORKLOADS), help="comma-separated: " + ", ".join(IMAGE_WORKLOADS))
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--json", default=None, help="write the rows to this file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.seconds)))
        return 0
    rows = []
    print(f"{'workload':<13} {'pools':<6} {'stream batches/s':>16} {'step, fixed batch':>17} {'step, fed':>10} "
          f"{'fed/fixed':>9}", flush=True)
    for name in args.workloads.split(","):
        if name not in IMAGE_WORKLOADS:
            raise SystemExit(f"unknown workload {name!r}; expected some of {', '.join(IMAGE_WORKLOADS)}")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name, "--seconds",
                               str(args.seconds)], capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            rows.append({"workload": name, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]})
            print(f"{name:<13} ERROR {rows[-1]['error']}", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        pools = "/".join(str(x or "tf") for x in r["pools"])
        print(f"{name:<13} {pools:<6} {r['stream_batches_per_s']:>16.1f} {r['step_fixed_batch_its_per_s']:>17.2f} "
              f"{r['step_fed_by_stream_its_per_s']:>10.2f} {r['fed_over_fixed']:>9.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
