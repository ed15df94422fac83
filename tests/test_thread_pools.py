"""--thread_pools=auto: meta-gradients stay bitwise reproducible under the pools it picks.

With TensorFlow's default pools (ops running concurrently) oneDNN's kernels on MiniImagenet's
max-pool net make repeated meta-gradients of the same weights and batch differ (measured: up to
1e-2 absolute on the full net, and on the small one below); the automatic plan runs that net one op
at a time. The Omniglot net it runs one op per core, and there they stay identical. Thread pools are
fixed per process, so each check runs in a fresh one, with any GPU hidden (CUDA_VISIBLE_DEVICES=""):
these are the CPU plans and CPU kernels, whatever the host has.
"""
import os
import subprocess
import sys
import textwrap

import pytest

# argv: net (miniimagenet | omniglot); the meta-gradients of one batch are taken `repeats` times.
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    from maml_tf.config import Config
    from maml_tf.learner import build
    from maml_tf.run import set_threads

    nets = {  # config, pixels per image, query images per task, repeats
        "miniimagenet": (dict(datasource="miniimagenet", num_classes=5, meta_batch_size=2, update_batch_size=1,
                              update_lr=0.01, num_updates=5, num_filters=16, max_pool=True), 84 * 84 * 3, 15, 4),
        "omniglot": (dict(datasource="omniglot", num_classes=5, meta_batch_size=4, update_batch_size=1,
                          update_lr=0.4, num_updates=1, num_filters=64), 784, 1, 6),
    }
    flags, pixels, per_class, repeats = nets[sys.argv[1]]
    cfg = Config(**flags, thread_pools="auto")
    print("pools", set_threads(cfg))
    learner = build(cfg)
    rng = np.random.default_rng(0)
    mb = cfg.meta_batch_size
    eye = np.eye(5, dtype=np.float32)
    batch = (rng.random((mb, 5, pixels), dtype=np.float32), np.tile(eye, (mb, 1, 1)),
             rng.random((mb, 5 * per_class, pixels), dtype=np.float32),
             np.tile(np.repeat(eye, per_class, 0), (mb, 1, 1)))
    batch = tuple(tf.constant(b) for b in batch)
    grads = [[g.numpy() for g in learner.meta_gradients(batch)[0]] for _ in range(repeats)]
    print("identical", all(np.array_equal(a, b) for g in grads[1:] for a, b in zip(grads[0], g)))
""")


def _run(net: str) -> str:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", SCRIPT, net], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_max_pool_meta_gradients_are_reproducible_with_auto_pools():
    stdout = _run("miniimagenet")
    assert "pools (0, 1)" in stdout
    assert "identical True" in stdout, stdout


@pytest.mark.slow  # a subprocess meta-gradient pair: ~8 s; kept out of the 5-minute default set
def test_strided_conv_meta_gradients_are_reproducible_with_concurrent_ops():
    """The Omniglot net under auto pools runs its ops side by side (one thread each) and stays bitwise
    reproducible, which is what lets auto choose concurrency for it."""
    stdout = _run("omniglot")
    assert f"pools (1, {len(os.sched_getaffinity(0))})" in stdout, stdout
    assert "identical True" in stdout, stdout
