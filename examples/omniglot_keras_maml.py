"""Meta-train your own small Keras CNN on Omniglot 5-way 1-shot with `maml_tf.MAML`, in minutes.

    python -m maml_tf.data.prepare_omniglot --src DIR_WITH_ZIPS --out data/omniglot_resized
    PYTHONPATH=. python examples/omniglot_keras_maml.py --data_dir data/omniglot_resized

It builds an ordinary `keras.Sequential` CNN, wraps it with `maml_tf.MAML` (inner step size, number
of inner steps, first or second order), meta-trains it with a Keras Adam for a few hundred
iterations on tasks drawn from the training characters, then prints the accuracy on unseen test
characters before and after adapting to each task's single example per class. `--export_dir`
also writes a SavedModel with the `serving_default` and `adapt_and_predict` signatures.
"""
from __future__ import annotations

import argparse
import time


def build_cnn(ways: int, filters: int):
    """Any Keras model works; batch norm uses ExactBatchNormalization (exact second derivatives)."""
    import keras

    from maml_tf import ExactBatchNormalization

    blocks = []
    for _ in range(4):
        blocks += [keras.layers.Conv2D(filters, 3, strides=2, padding="same"),
                   ExactBatchNormalization(), keras.layers.ReLU()]
    return keras.Sequential([keras.Input((28, 28, 1)), *blocks, keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(ways)], name="my_cnn")


def split_tasks(x, y, ways: int, shots: int):
    """The task stream's [tasks, N*2K, 784] images and one-hot labels -> support and query sets
    (the first N*K rows are the support set: one image of each class per shot)."""
    x = x.reshape(x.shape[0], x.shape[1], 28, 28, 1)
    s = ways * shots
    return x[:, :s], y[:, :s], x[:, s:], y[:, s:]


def accuracy(logits, labels) -> float:
    import numpy as np

    return float(np.mean(np.argmax(logits, -1) == np.argmax(labels, -1)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default="data/omniglot_resized", help="prepared Omniglot (prepare_omniglot --out)")
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--meta_batch_size", type=int, default=16)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--inner_lr", type=float, default=2.0,
                   help="inner SGD step size on the mean cross-entropy (the paper's 0.4 on its sum over 5 examples)")
    p.add_argument("--inner_steps", type=int, default=1)
    p.add_argument("--first_order", action="store_true")
    p.add_argument("--meta_lr", type=float, default=3e-3)
    p.add_argument("--eval_tasks", type=int, default=160, help="test tasks (a multiple of --meta_batch_size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export_dir", default=None, help="also write a SavedModel here")
    args = p.parse_args(argv)

    import keras
    import numpy as np

    import maml_tf
    from maml_tf.data.tasks import make_dataset

    t0 = time.time()
    keras.utils.set_random_seed(args.seed)
    train = make_dataset("omniglot", args.data_dir, "train", args.ways, 2 * args.shots, args.seed)
    test = make_dataset("omniglot", args.data_dir, "test", args.ways, 2 * args.shots, args.seed)

    train.load(), test.load()  # decode the images once (tens of seconds for the full training split)
    print(f"{len(train.class_folders)} training and {len(test.class_folders)} test characters "
          f"({time.time() - t0:.0f} s); the first meta-update also traces and compiles the step", flush=True)
    model = build_cnn(args.ways, args.filters)
    maml = maml_tf.MAML(model, keras.losses.CategoricalCrossentropy(from_logits=True), inner_lr=args.inner_lr,
                        num_inner_steps=args.inner_steps, first_order=args.first_order)
    optimizer = keras.optimizers.Adam(args.meta_lr)

    def evaluate(steps: int) -> float:
        # in meta-batch-sized chunks: the compiled prediction function is traced once for that size
        hits = []
        for first in range(0, args.eval_tasks, args.meta_batch_size):
            sx, sy, qx, qy = split_tasks(*test.batch(first, args.meta_batch_size), args.ways, args.shots)
            hits.append(accuracy(maml.adapt_and_predict(sx, sy, qx, num_steps=steps), qy))
        return float(np.mean(hits))

    start = time.time()
    for it in range(args.iterations):
        tasks = split_tasks(*train.batch(it * args.meta_batch_size, args.meta_batch_size), args.ways, args.shots)
        loss = maml.meta_update(tasks, optimizer)
        if it % 50 == 0 or it == args.iterations - 1:
            print(f"iteration {it:4d}  meta-loss {float(loss):.3f}  ({time.time() - start:.0f} s)", flush=True)
    before, after = evaluate(0), evaluate(args.inner_steps)
    tasks = len(range(0, args.eval_tasks, args.meta_batch_size)) * args.meta_batch_size
    print(f"test accuracy over {tasks} {args.ways}-way {args.shots}-shot tasks: "
          f"before adaptation {before:.1%}, after {args.inner_steps} step(s) {after:.1%}")
    if args.export_dir:
        print("exported to", maml_tf.export_maml(maml, args.export_dir, overwrite=True))
    return {"before": before, "after": after, "final_loss": float(loss), "seconds": time.time() - start}


if __name__ == "__main__":
    main()
