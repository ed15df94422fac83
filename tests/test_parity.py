"""Golden parity: maml-tf reproduces the original TF1 code's numbers.

Cases A, B and C are in the repository (tests/fixtures/golden); the integration set checks every
fixture of the project's full set in ../shared/golden, MiniImagenet case E included.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from maml_tf import parity
from maml_tf.errors import MamlError


@pytest.mark.parametrize("case", ["A", "B"])
def test_golden_parity_every_file(golden_dir, case):
    chk = parity.check(str(golden_dir / f"case_{case}.json"),
                       ["primary", "firstorder", "normvariants", "float64"])
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
    files = {r.file for r in chk.rows}
    assert {f"case_{case}.npz", f"case_{case}_firstorder.npz", f"case_{case}_float64.npz"} <= files
    keys = {r.key for r in chk.rows}
    assert {"outputbs", "lossesb", "total_losses2", "metagrad__model__Variable_4", "after1__model__Variable_2",
            "after3__model__Variable_2__Adam_3", "secondorder__metagrad__model__Variable_2"} <= keys


def test_parity_cli_dump_and_report(golden_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "maml_tf.parity", str(golden_dir / "case_A.json"),
                          "--dump", str(tmp_path / "dump"), "--json", str(tmp_path / "report.json"), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "case A:" in out.stdout and "0 out of tolerance" in out.stdout
    golden = np.load(golden_dir / "case_A.npz")
    dumped = np.load(tmp_path / "dump" / "case_A.npz")
    assert set(golden.files) == set(dumped.files)
    assert set(np.load(tmp_path / "dump" / "case_A_float64.npz").files) == \
        set(np.load(golden_dir / "case_A_float64.npz").files)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report[0]["case"] == "A" and all(r["ok"] for r in report[0]["rows"])


def test_parity_fails_loudly_when_numbers_differ(golden_dir, tmp_path):
    """A fixture whose recorded meta-gradient is perturbed must fail: the check can fail."""
    for name in os.listdir(golden_dir):
        if name.startswith("case_A"):
            shutil.copy(golden_dir / name, tmp_path / name)
    data = dict(np.load(tmp_path / "case_A.npz"))
    data["metagrad__model__Variable_2"] = data["metagrad__model__Variable_2"] * 1.01
    np.savez_compressed(tmp_path / "case_A.npz", **data)
    chk = parity.check(str(tmp_path / "case_A.json"), ["primary"])
    bad = {r.key for r in chk.rows if not r.ok}
    assert "metagrad__model__Variable_2" in bad


def test_missing_fixture_file_is_a_clear_error(golden_dir, tmp_path):
    shutil.copy(golden_dir / "case_A.json", tmp_path / "case_A.json")
    shutil.copy(golden_dir / "case_A.npz", tmp_path / "case_A.npz")
    with pytest.raises(MamlError, match="case_A_firstorder.npz is missing"):
        parity.check(str(tmp_path / "case_A.json"), ["primary"])
    out = subprocess.run([sys.executable, "-m", "maml_tf.parity", str(tmp_path / "case_A.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "case_A_firstorder.npz is missing" in out.stderr
    assert "Traceback" not in out.stderr


def test_fixture_missing_arrays_is_a_clear_error(golden_dir, tmp_path):
    for name in os.listdir(golden_dir):
        if name.startswith("case_B"):
            shutil.copy(golden_dir / name, tmp_path / name)
    data = dict(np.load(tmp_path / "case_B_firstorder.npz"))
    del data["lossesb"]
    np.savez_compressed(tmp_path / "case_B_firstorder.npz", **data)
    with pytest.raises(MamlError, match="arrays missing: lossesb"):
        parity.check(str(tmp_path / "case_B.json"), ["primary"])


@pytest.mark.parametrize("variants", [["primary", "firstorder"], ["normvariants", "float64"]],
                         ids=["second_and_first_order", "tf2_moments_and_float64"])
def test_golden_parity_case_C_omniglot_conv_batch_norm(golden_dir, variants):
    chk = parity.check(str(golden_dir / "case_C.json"), variants)
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
    suffix = {"primary": "", "firstorder": "_firstorder", "normvariants": "_normvariants", "float64": "_float64"}
    assert {r.file.split(" ")[0] for r in chk.rows} == {f"case_C{suffix[v]}.npz" for v in variants}


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [dict(fused_moments_grad=True), dict(task_layout="chunked", task_chunks=1)],
                         ids=["fused_moments_gradient", "chunked_layout"])
def test_golden_parity_case_C_on_a_faster_formulation(golden_dir, overrides):
    """--fused_moments_grad and --task_layout=chunked (here the fixture's 2 tasks in one chunk) group
    float32 additions differently: the float64 rebuild at 1e-9 and the float32 outputs, losses,
    accuracies and meta-gradients must hold; the Adam-step trajectories (after1/after3 and their
    replay) are rounding-chaotic by construction, so issue 14's policy lets them go (they are still
    reported by `python -m maml_tf.parity --fused_moments` / `--layout=chunked --chunks=1`)."""
    chk = parity.check(str(golden_dir / "case_C.json"), ["primary", "firstorder", "float64"], overrides=overrides)
    chaotic = lambda r: r.key.startswith(("after1__", "after3__"))  # noqa: E731
    bad = [r for r in chk.rows if not r.ok and not chaotic(r)]
    assert not bad, parity.format_table(chk, quiet=True)
    checked = {r.key.split("__")[0] for r in chk.rows if not chaotic(r)}
    assert {"outputbs", "metagrad", "secondorder", "firstorder"} <= checked, checked


def _shared_cases() -> list[str]:
    """The cases of ../shared/golden at collection time (A, B, C, E there; held-out ones if added)."""
    from conftest import SHARED

    found = sorted(p.stem[len("case_"):] for p in (SHARED / "golden").glob("case_*.json"))
    return found or ["E"]  # without ../shared: one test, which skips (fails under CI) saying what is missing


@pytest.mark.integration
@pytest.mark.parametrize("case", _shared_cases())
def test_golden_parity_every_shared_fixture(shared_golden_dir, case):
    """Every fixture file of the full set, MiniImagenet case E (from the reference checkpoint) included."""
    chk = parity.check(str(shared_golden_dir / f"case_{case}.json"),
                       ["primary", "firstorder", "normvariants", "float64"])
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
    assert f"case_{case}.npz" in {r.file for r in chk.rows}


def test_repository_fixtures_are_the_published_ones(golden_dir):
    """tests/fixtures/golden holds unedited copies: every file's sha256 is the fixture index's."""
    import hashlib

    index = json.loads((golden_dir / "index.json").read_text())
    present = sorted(p.name for p in golden_dir.iterdir() if p.suffix in (".json", ".npz") and p.name != "index.json")
    assert sorted(index) == present
    for name, entry in index.items():
        data = (golden_dir / name).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"], name


def test_case_C_tf2_moments_tolerance_still_tells_the_moment_formulas_apart(golden_dir):
    """The float32 tf2_moments meta-gradients of case C are held at NORMVARIANT_F32_RTOL (environment
    sensitivity): that bound must still reject the exact formula's second-order meta-gradients."""
    primary, tf2 = np.load(golden_dir / "case_C.npz"), np.load(golden_dir / "case_C_normvariants.npz")
    rtol = parity.NORMVARIANT_F32_RTOL["C"]
    for v in ("conv1", "conv2", "conv3", "conv4"):
        ref = tf2[f"tf2_moments__metagrad__model__{v}"]
        rel = np.abs(primary[f"metagrad__model__{v}"] - ref).max() / np.abs(ref).max()
        assert rel > rtol, (v, rel)
