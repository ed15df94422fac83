"""The public API (`maml_tf.MAML` over standard Keras layers) is the faithful algorithm: on golden
cases A (sinusoid) and C (Omniglot conv + batch norm) its float64 losses and meta-gradients, second
and first order, equal the reference's float64 rebuild to 1e-9 (maml_tf.parity's float64 rules), and
the faithful path, which tests/test_parity.py holds to the same fixtures at the same tolerance."""
import os
import pathlib

import numpy as np
import pytest

from maml_tf import parity
from maml_tf.reference import golden
from maml_tf.reference.golden import key

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MAML_TF_SHARED", REPO.parent / "shared"))
# Where golden fixtures may live: the repository's copy first, then ../shared/golden.
GOLDEN_DIRS = (REPO / "tests" / "fixtures" / "golden", SHARED / "golden")


def fixture_path(case: str) -> str:
    for folder in GOLDEN_DIRS:
        if (folder / f"case_{case}.json").is_file():
            return str(folder / f"case_{case}.json")
    pytest.skip(f"golden case {case} not found in {', '.join(map(str, GOLDEN_DIRS))}")


def api_quantities(fx: golden.Fixture, first_order: bool, dtype: str = "float64", keras_bn: bool = False,
                   task_axis: str = "loop"):
    """total_loss1, total_losses2 (every recorded step) and meta-gradients, through the public API.

    keras_bn: the conv net with Keras' own BatchNormalization (tf.nn.moments) instead of the exact one."""
    import tensorflow as tf

    from maml_tf.api import MAML, losses, reference_nets

    cfg = fx.config(logdir="/tmp/unused")
    base = fx.files[""]
    if cfg.datasource == "sinusoid":
        model, loss = reference_nets.sinusoid_net(dtype), losses.reference_regression
    else:
        model = reference_nets.omniglot_conv_net(cfg.num_classes, cfg.num_filters, dtype, keras_bn=keras_bn)
        loss = losses.reference_classification(cfg.update_batch_size)
    names = reference_nets.reference_names(model)
    reference_nets.assign_by_reference_name(model, {n: base[f"init__{key(n)}"] for n in names})
    maml = MAML(model, loss, cfg.update_lr, cfg.num_updates, first_order=first_order, task_axis=task_axis)
    sx, sy, qx, qy = (tf.constant(np.asarray(base[k], dtype)) for k in ("inputa", "labela", "inputb", "labelb"))
    meta_loss, grads = maml.meta_gradients((sx, sy, qx, qy))
    tasks = range(sx.shape[0])
    params = maml.params()
    out = {"total_loss1": sum(maml.task_loss(params, sx[t], sy[t]) for t in tasks) / len(tasks)}
    steps = max(int(fx.meta["test_num_updates"]), cfg.num_updates)
    fast, totals = [params for _ in tasks], []
    for _ in range(steps):
        fast = [maml.inner_step(fast[t], sx[t], sy[t]) for t in tasks]
        totals.append(sum(maml.task_loss(fast[t], qx[t], qy[t]) for t in tasks) / len(tasks))
    out["total_losses2"] = np.array(totals)
    out["meta_loss"] = meta_loss
    for n, g in zip(names, grads):
        out[f"metagrad__{key(n)}"] = g
    out = {k: np.asarray(v) for k, v in out.items()}
    return out, reference_nets.bn_fed_biases(model), cfg


@pytest.mark.parametrize("case", ["A", "C"])
@pytest.mark.parametrize("order", ["secondorder", pytest.param("firstorder", marks=pytest.mark.slow)])
def test_public_api_equals_the_reference_float64(case, order):
    fx = golden.load(fixture_path(case))
    ours, bn_fed, cfg = api_quantities(fx, first_order=order == "firstorder")
    ref = fx.files["_float64"]
    chk = parity.Checker(fx)
    chk.bn_fed = bn_fed
    chk.check_forward_and_grads(f"case_{case}_float64.npz", ours, ref, prefix=f"{order}__", float64=True)
    keys = {r.key for r in chk.rows}
    assert f"{order}__total_losses2" in keys and f"{order}__metagrad__model__Variable" in keys
    assert len([k for k in keys if "metagrad" in k]) == len([k for k in ref if k.startswith(f"{order}__metagrad")])
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
    assert ours["meta_loss"] == pytest.approx(float(ref[f"{order}__total_losses2"][cfg.num_updates - 1]), rel=1e-9)
    if case == "C":
        assert bn_fed == {"model/Variable", "model/Variable_1", "model/Variable_2", "model/Variable_3"}


def test_keras_batch_norm_is_the_tf2_moments_variant_and_is_named_in_a_warning():
    """Keras' BatchNormalization gives exactly the reference's tf.nn.moments variant (second order),
    not the reference: what the warning says, shown on case C."""
    from maml_tf.api import InexactMomentsWarning

    fx = golden.load(fixture_path("C"))
    with pytest.warns(InexactMomentsWarning, match="'norm_0', 'norm_1', 'norm_2', 'norm_3'.*ExactBatchNormalization"):
        ours, bn_fed, _ = api_quantities(fx, first_order=False, keras_bn=True)
    ref = fx.files["_float64"]
    chk = parity.Checker(fx)
    chk.bn_fed = bn_fed
    chk.check_forward_and_grads("case_C_float64.npz", ours, ref, prefix="tf2_moments_secondorder__", float64=True)
    assert not [r for r in chk.rows if not r.ok], parity.format_table(chk, quiet=True)
    exact = parity.Checker(fx)
    exact.bn_fed = bn_fed
    exact.check_forward_and_grads("case_C_float64.npz", ours, ref, prefix="secondorder__", float64=True)
    assert {r.key for r in exact.rows if not r.ok} >= {"secondorder__metagrad__model__conv1"}


@pytest.mark.slow
def test_vectorized_map_task_axis_gives_the_same_meta_gradients():
    fx = golden.load(fixture_path("C"))
    ours, bn_fed, _ = api_quantities(fx, first_order=False, task_axis="vectorized_map")
    chk = parity.Checker(fx)
    chk.bn_fed = bn_fed
    chk.check_forward_and_grads("case_C_float64.npz", ours, fx.files["_float64"], prefix="secondorder__", float64=True)
    assert chk.rows and not [r for r in chk.rows if not r.ok], parity.format_table(chk, quiet=True)
