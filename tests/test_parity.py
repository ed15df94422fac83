"""Golden parity: maml-tf reproduces the original TF1 code's numbers (cases A and B here)."""
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
def test_golden_parity_every_file(shared_dir, case):
    chk = parity.check(str(shared_dir / "golden" / f"case_{case}.json"),
                       ["primary", "firstorder", "normvariants", "float64"])
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
    files = {r.file for r in chk.rows}
    assert {f"case_{case}.npz", f"case_{case}_firstorder.npz", f"case_{case}_float64.npz"} <= files
    keys = {r.key for r in chk.rows}
    assert {"outputbs", "lossesb", "total_losses2", "metagrad__model__Variable_4", "after1__model__Variable_2",
            "after3__model__Variable_2__Adam_3", "secondorder__metagrad__model__Variable_2"} <= keys


def test_parity_cli_dump_and_report(shared_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "maml_tf.parity", str(shared_dir / "golden" / "case_A.json"),
                          "--dump", str(tmp_path / "dump"), "--json", str(tmp_path / "report.json"), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "case A:" in out.stdout and "0 out of tolerance" in out.stdout
    golden = np.load(shared_dir / "golden" / "case_A.npz")
    dumped = np.load(tmp_path / "dump" / "case_A.npz")
    assert set(golden.files) == set(dumped.files)
    assert set(np.load(tmp_path / "dump" / "case_A_float64.npz").files) == \
        set(np.load(shared_dir / "golden" / "case_A_float64.npz").files)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report[0]["case"] == "A" and all(r["ok"] for r in report[0]["rows"])


def test_parity_fails_loudly_when_numbers_differ(shared_dir, tmp_path):
    """A fixture whose recorded meta-gradient is perturbed must fail: the check can fail."""
    for name in os.listdir(shared_dir / "golden"):
        if name.startswith("case_A"):
            shutil.copy(shared_dir / "golden" / name, tmp_path / name)
    data = dict(np.load(tmp_path / "case_A.npz"))
    data["metagrad__model__Variable_2"] = data["metagrad__model__Variable_2"] * 1.01
    np.savez_compressed(tmp_path / "case_A.npz", **data)
    chk = parity.check(str(tmp_path / "case_A.json"), ["primary"])
    bad = {r.key for r in chk.rows if not r.ok}
    assert "metagrad__model__Variable_2" in bad


def test_missing_fixture_file_is_a_clear_error(shared_dir, tmp_path):
    shutil.copy(shared_dir / "golden" / "case_A.json", tmp_path / "case_A.json")
    shutil.copy(shared_dir / "golden" / "case_A.npz", tmp_path / "case_A.npz")
    with pytest.raises(MamlError, match="case_A_firstorder.npz is missing"):
        parity.check(str(tmp_path / "case_A.json"), ["primary"])
    out = subprocess.run([sys.executable, "-m", "maml_tf.parity", str(tmp_path / "case_A.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "case_A_firstorder.npz is missing" in out.stderr
    assert "Traceback" not in out.stderr


def test_fixture_missing_arrays_is_a_clear_error(shared_dir, tmp_path):
    for name in os.listdir(shared_dir / "golden"):
        if name.startswith("case_B"):
            shutil.copy(shared_dir / "golden" / name, tmp_path / name)
    data = dict(np.load(tmp_path / "case_B_firstorder.npz"))
    del data["lossesb"]
    np.savez_compressed(tmp_path / "case_B_firstorder.npz", **data)
    with pytest.raises(MamlError, match="arrays missing: lossesb"):
        parity.check(str(tmp_path / "case_B.json"), ["primary"])


def test_golden_parity_case_C_omniglot_conv_batch_norm(shared_dir):
    chk = parity.check(str(shared_dir / "golden" / "case_C.json"), ["primary", "firstorder", "normvariants", "float64"])
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
    assert {r.file for r in chk.rows} >= {"case_C.npz", "case_C_firstorder.npz", "case_C_normvariants.npz",
                                          "case_C_float64.npz"}


@pytest.mark.slow
def test_golden_parity_case_E_miniimagenet_from_the_reference_checkpoint(shared_dir):
    chk = parity.check(str(shared_dir / "golden" / "case_E.json"), ["primary", "firstorder", "normvariants", "float64"])
    bad = [r for r in chk.rows if not r.ok]
    assert not bad, parity.format_table(chk, quiet=True)
