"""--thread_pools=auto: MiniImagenet's max-pool net gets bitwise reproducible meta-gradients.

With TensorFlow's default pools (ops running concurrently) oneDNN's kernels on this net make repeated
meta-gradients of the same weights and batch differ (measured: up to 1e-2 absolute on the full
MiniImagenet net, and on the small one below); the automatic plan runs one op at a time. Thread
pools are fixed per process, so each check runs in a fresh one.
"""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    from maml_tf.config import Config
    from maml_tf.experiment import build
    from maml_tf.run import set_threads

    cfg = Config(datasource="miniimagenet", num_classes=5, meta_batch_size=2, update_batch_size=1,
                 update_lr=0.01, num_updates=5, num_filters=16, max_pool=True, thread_pools=sys.argv[1])
    print("pools", set_threads(cfg))
    learner = build(cfg)
    rng = np.random.default_rng(0)
    n, q = 5, 5 * 15
    batch = (rng.random((2, n, 84 * 84 * 3), dtype=np.float32), np.tile(np.eye(5, dtype=np.float32), (2, 1, 1)),
             rng.random((2, q, 84 * 84 * 3), dtype=np.float32),
             np.tile(np.repeat(np.eye(5, dtype=np.float32), 15, 0), (2, 1, 1)))
    batch = tuple(tf.constant(b) for b in batch)
    grads = [[g.numpy() for g in learner.meta_gradients(batch)[0]] for _ in range(4)]
    print("identical", all(np.array_equal(a, b) for g in grads[1:] for a, b in zip(grads[0], g)))
""")


def test_max_pool_meta_gradients_are_reproducible_with_auto_pools():
    out = subprocess.run([sys.executable, "-c", SCRIPT, "auto"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "pools (0, 1)" in out.stdout
    assert "identical True" in out.stdout, out.stdout


OMNIGLOT_SCRIPT = textwrap.dedent("""
    import numpy as np
    import tensorflow as tf
    from maml_tf.config import Config
    from maml_tf.experiment import build
    from maml_tf.run import set_threads

    cfg = Config(datasource="omniglot", num_classes=5, meta_batch_size=4, update_batch_size=1,
                 update_lr=0.4, num_updates=1, num_filters=64)
    print("pools", set_threads(cfg))
    learner = build(cfg)
    rng = np.random.default_rng(0)
    labels = np.tile(np.eye(5, dtype=np.float32), (4, 1, 1))
    batch = (rng.random((4, 5, 784), dtype=np.float32), labels, rng.random((4, 5, 784), dtype=np.float32), labels)
    batch = tuple(tf.constant(b) for b in batch)
    grads = [[g.numpy() for g in learner.meta_gradients(batch)[0]] for _ in range(6)]
    print("identical", all(np.array_equal(a, b) for g in grads[1:] for a, b in zip(grads[0], g)))
""")


def test_strided_conv_meta_gradients_are_reproducible_with_concurrent_ops():
    """The Omniglot net under auto pools runs its ops side by side (one thread each) and stays bitwise
    reproducible, which is what lets auto choose concurrency for it."""
    import os
    out = subprocess.run([sys.executable, "-c", OMNIGLOT_SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"pools (1, {os.cpu_count()})" in out.stdout, out.stdout
    assert "identical True" in out.stdout, out.stdout
