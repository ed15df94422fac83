"""The public API's behaviour on small models: import laziness, adapt / meta-update semantics,
the batch-norm warning and drop-in, and the SavedModel export's signatures and numbers."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

import maml_tf


def test_import_maml_tf_stays_free_of_tensorflow():
    code = "import sys, maml_tf; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert maml_tf.MAML.__module__ == "maml_tf.api.maml"  # the lazy attribute
    with pytest.raises(AttributeError):
        maml_tf.NoSuchThing  # noqa: B018


def _tiny_cnn(dtype="float64", bn=None, classes=3):
    import keras

    bn = bn or maml_tf.ExactBatchNormalization
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((6, 6, 1), dtype=dtype),
        keras.layers.Conv2D(4, 3, padding="same", dtype=dtype),
        bn(name="bn", dtype=dtype),
        keras.layers.ReLU(dtype=dtype),
        keras.layers.GlobalAveragePooling2D(dtype=dtype),
        keras.layers.Dense(classes, dtype=dtype)])


def _tasks(rng, tasks=2, ways=3, shots=1, query=2, dtype=np.float64):
    sx = rng.normal(size=(tasks, ways * shots, 6, 6, 1)).astype(dtype)
    qx = rng.normal(size=(tasks, ways * query, 6, 6, 1)).astype(dtype)
    eye = np.eye(ways, dtype=dtype)
    sy = np.stack([eye[np.arange(ways * shots) % ways]] * tasks)
    qy = np.stack([eye[np.arange(ways * query) % ways]] * tasks)
    return sx, sy, qx, qy


def _maml(model, **kw):
    from maml_tf.api import losses

    return maml_tf.MAML(model, losses.reference_classification(1), kw.pop("inner_lr", 0.3), kw.pop("steps", 2), **kw)


def test_adapt_meta_loss_and_meta_update_are_consistent():
    import keras
    import tensorflow as tf

    model = _tiny_cnn()
    maml = _maml(model)
    # normalisation parameters are meta-learned, not adapted (the reference's choice)
    assert [v.path.split("/")[-2] for v, a in zip(maml.variables, maml.adaptable) if not a] == ["bn", "bn"]
    sx, sy, qx, qy = _tasks(np.random.default_rng(0))
    fast = maml.adapt(sx[0], sy[0])
    by_hand = maml.params()
    for _ in range(2):
        by_hand = maml.inner_step(by_hand, sx[0], sy[0])
    np.testing.assert_allclose(fast(qx[0]), maml.forward(by_hand, qx[0]), rtol=1e-12)
    # the BN parameters (gamma, beta) are unchanged by adaptation; every weight is changed
    for p0, p1, a in zip(maml.params(), fast.params, maml.adaptable):
        assert np.array_equal(p0, p1) != a
    loss, grads = maml.meta_gradients((sx, sy, qx, qy))
    per_task = maml.task_losses((sx, sy, qx, qy))
    assert float(loss) == pytest.approx(float(tf.reduce_mean(per_task)), rel=1e-12)
    assert float(per_task[0]) == pytest.approx(float(maml.task_loss(fast.params, qx[0], qy[0])), rel=1e-12)
    # 0 steps: predictions of the initialisation; default steps: the adapted ones (eager: the
    # compiled wrapper traces this same body, and tracing a tiny model costs more than running it)
    np.testing.assert_allclose(maml._adapt_and_predict(sx, sy, qx, 0, None)[1], model(qx[1], training=True),
                               rtol=1e-12)
    np.testing.assert_allclose(maml._adapt_and_predict(sx, sy, qx, 2, None)[0], fast(qx[0]), rtol=1e-10)
    # a tensor step count runs the steps in a tf.while_loop: the same weights
    looped = maml.adapt(sx[0], sy[0], num_steps=tf.constant(2))
    for a, b in zip(looped.params, fast.params):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    before = [v.numpy() for v in maml.variables]
    opt = keras.optimizers.SGD(0.125)  # exact in float32, the dtype of Keras' learning-rate variable
    assert float(maml.meta_update((sx, sy, qx, qy), opt)) == pytest.approx(float(loss), rel=1e-12)
    for b, v, g in zip(before, maml.variables, grads):
        np.testing.assert_allclose(v.numpy(), b - 0.125 * g.numpy(), rtol=1e-10, atol=1e-14)


def test_second_order_differs_from_first_order_and_inner_gradients_are_stopped():
    model = _tiny_cnn()
    tasks = _tasks(np.random.default_rng(1))
    # eager (the private uncompiled body): the numbers are the same and a tiny model traces slower than it runs
    _, so = _maml(model)._meta_gradients(tasks)
    _, fo = _maml(model, first_order=True)._meta_gradients(tasks)
    conv_kernel = 0
    assert not np.allclose(so[conv_kernel], fo[conv_kernel], rtol=1e-3)
    # first order: the meta-gradient is the query-loss gradient at the adapted weights
    maml = _maml(model, first_order=True, steps=1)
    sx, sy, qx, qy = tasks
    import tensorflow as tf

    _, fo1 = maml._meta_gradients(tasks)
    expected = None
    for t in range(2):
        fast = maml.adapt(sx[t], sy[t]).params
        with tf.GradientTape() as tape:
            tape.watch(fast)
            loss = maml.task_loss(fast, qx[t], qy[t]) / 2
        g = tape.gradient(loss, fast)
        expected = g if expected is None else [a + b for a, b in zip(expected, g)]
    for a, b in zip(fo1, expected):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)


def test_batch_norm_warning_names_the_layer_once_and_exact_layer_is_a_drop_in():
    import keras
    import tensorflow as tf

    from maml_tf.api import InexactMomentsWarning

    model = _tiny_cnn(bn=keras.layers.BatchNormalization)
    with pytest.warns(InexactMomentsWarning, match="'bn'"):
        _maml(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _maml(model)  # the same layer again: said once
        _maml(_tiny_cnn(bn=keras.layers.BatchNormalization), first_order=True)  # first order: no second derivative
        _maml(_tiny_cnn())
    # drop-in: same value and first derivative as Keras' layer, exact second derivative
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(5, 3)) ** 3)
    # A direction whose columns do not sum to 0: the gradient w.r.t. x of anything after batch norm
    # does (shift invariance), which hides the dropped term from sum(g**2)-like objectives.
    c = tf.constant(rng.uniform(0.5, 1.5, size=(5, 3)))
    exact, plain = maml_tf.ExactBatchNormalization(dtype="float64"), keras.layers.BatchNormalization(dtype="float64")

    def derivatives(layer):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = layer(x, training=True)
                objective = tf.reduce_sum(y ** 3)
            g = inner.gradient(objective, x)
            gg = tf.reduce_sum(g * c)
        return y, g, outer.gradient(gg, x)

    (ye, ge, he), (yp, gp, hp) = derivatives(exact), derivatives(plain)
    np.testing.assert_allclose(ye, yp, rtol=1e-10)
    np.testing.assert_allclose(ge, gp, rtol=1e-8)
    assert not np.allclose(he, hp, rtol=1e-3)
    # the exact one agrees with finite differences of the first derivative
    eps = 1e-6
    d = np.zeros(x.shape)
    d[1, 2] = eps

    def gg_at(v):
        with tf.GradientTape() as inner:
            inner.watch(v)
            objective = tf.reduce_sum(exact(v, training=True) ** 3)
        return float(tf.reduce_sum(inner.gradient(objective, v) * c))

    fd = (gg_at(x + d) - gg_at(x - d)) / (2 * eps)
    assert fd == pytest.approx(float(he[1, 2]), rel=1e-5)
    assert keras.layers.deserialize(keras.layers.serialize(exact)).__class__ is maml_tf.ExactBatchNormalization


def test_export_has_the_faithful_signatures_and_the_api_numbers(tmp_path):
    import keras
    import tensorflow as tf

    model = _tiny_cnn(dtype="float32", classes=5)
    maml = _maml(model, inner_lr=0.2, steps=1)
    sx, sy, qx, qy = (t.astype(np.float32) for t in _tasks(np.random.default_rng(3), ways=5))
    # one meta-update, eagerly (compiled meta-updates are tested above; tracing is the slow part here)
    _, grads = maml._meta_gradients((sx, sy, qx, qy))
    keras.optimizers.Adam(1e-2).apply(grads, maml.variables)
    out = maml_tf.export_maml(maml, str(tmp_path / "exp"))
    loaded = tf.saved_model.load(out)
    assert set(loaded.signatures) == {"serving_default", "adapt_and_predict"}
    sig = loaded.signatures["adapt_and_predict"]
    assert set(sig.structured_input_signature[1]) == {"support_x", "support_y", "query_x", "num_steps", "step_size"}
    assert list(loaded.signatures["serving_default"].structured_input_signature[1]) == ["x"]
    np.testing.assert_allclose(loaded.serving_default(tf.constant(qx))["predictions"],
                               maml._adapt_and_predict(sx, sy, qx, 0, None), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.adapt_and_predict(tf.constant(sx), tf.constant(sy), tf.constant(qx))["predictions"],
                               maml._adapt_and_predict(sx, sy, qx, 1, None), rtol=1e-5, atol=1e-6)
    three = sig(support_x=tf.constant(sx), support_y=tf.constant(sy), query_x=tf.constant(qx),
                num_steps=tf.constant(3), step_size=tf.constant(0.1))["predictions"]
    np.testing.assert_allclose(three, maml._adapt_and_predict(sx, sy, qx, 3, 0.1), rtol=1e-4, atol=1e-5)
    # fewer classes than trained (N'=3 of 5): outputs cut to the labels' classes, any number of tasks
    sx3, sy3, qx3, _ = (t.astype(np.float32) for t in _tasks(np.random.default_rng(4), tasks=3, ways=3))
    pred3 = loaded.adapt_and_predict(tf.constant(sx3), tf.constant(sy3), tf.constant(qx3))["predictions"]
    assert pred3.shape == (3, 6, 3)
    from maml_tf.export import read_metadata

    meta = read_metadata(out)
    assert meta["signatures"]["adapt_and_predict"]["defaults"] == {"num_steps": 1, "step_size": 0.2}
    assert [v["adapted_in_inner_loop"] for v in meta["variables"]] == maml.adaptable


def test_which_variables_adapt_and_constructor_errors():
    import keras

    model = _tiny_cnn()
    assert all(_maml(model, adapted="all").adaptable)
    dense_only = _maml(model, adapted=lambda v: "dense" in v.path).adaptable
    assert dense_only == ["dense" in v.path for v in model.trainable_variables] and sum(dense_only) == 2
    with pytest.raises(ValueError, match="built model"):
        _maml(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="task_axis"):
        _maml(model, task_axis="pmap")
    with pytest.raises(ValueError, match="adapted must be"):
        _maml(model, adapted="some")


@pytest.mark.slow
def test_export_loads_in_a_process_without_maml_tf(tmp_path):
    model = _tiny_cnn(dtype="float32", classes=3)
    maml = _maml(model, inner_lr=0.2, steps=1)
    sx, sy, qx, _ = (t.astype(np.float32) for t in _tasks(np.random.default_rng(5)))
    out = maml_tf.export_maml(maml, str(tmp_path / "exp"))
    np.savez(tmp_path / "in.npz", sx=sx, sy=sy, qx=qx)
    child = (
        "import importlib.abc, sys, numpy as np\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'maml_tf': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "import tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1]); d = np.load(sys.argv[2])\n"
        "p = m.signatures['adapt_and_predict'](support_x=tf.constant(d['sx']), support_y=tf.constant(d['sy']),\n"
        "    query_x=tf.constant(d['qx']), num_steps=tf.constant(2), step_size=tf.constant(-1.0))['predictions']\n"
        "np.save(sys.argv[3], p.numpy())\n")
    proc = subprocess.run([sys.executable, "-c", child, out, str(tmp_path / "in.npz"), str(tmp_path / "out.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), maml._adapt_and_predict(sx, sy, qx, 2, None),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_jit_compiled_meta_gradients_equal_the_eager_ones():
    model = _tiny_cnn()
    tasks = _tasks(np.random.default_rng(6))
    loss_jit, grads_jit = _maml(model, jit_compile=True).meta_gradients(tasks)
    loss, grads = _maml(model)._meta_gradients(tasks)
    assert float(loss_jit) == pytest.approx(float(loss), rel=1e-12)
    for a, b in zip(grads_jit, grads):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14)
