"""prepare_omniglot on small zips cut from real Omniglot images (tests/fixtures/omniglot)."""
import hashlib
import io
import pathlib
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from maml_tf.data import prepare_omniglot as prep
from maml_tf.data.images import DataError

BACKGROUND = ["Ojibwe_(Canadian_Aboriginal_Syllabics)", "Blackfoot_(Canadian_Aboriginal_Syllabics)"]
EVALUATION = ["Tagalog"]   # taken from the background zip too, filed under images_evaluation/


def _members(real_zip: zipfile.ZipFile, alphabets):
    return sorted(n for n in real_zip.namelist()
                  if n.endswith(".png") and n.split("/")[1] in alphabets)


def _write_zip(path: pathlib.Path, top: str, items, stored=False):
    """Write a zip with members `top/<alphabet>/<character>/<file>` from (source name, bytes)."""
    compression = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in items:
            z.writestr(top + "/" + name.split("/", 1)[1], data)


def _write_sums(folder: pathlib.Path):
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(folder.glob("*.zip"))]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """{member name: bytes} for the chosen alphabets, plus a src folder with both zips and sums."""
    from conftest import SMALL_OMNIGLOT_ZIP

    with zipfile.ZipFile(SMALL_OMNIGLOT_ZIP) as real:
        data = {n: real.read(n) for n in _members(real, BACKGROUND + EVALUATION)}
    src = tmp_path_factory.mktemp("omniglot_src")
    background = [(n, d) for n, d in data.items() if n.split("/")[1] in BACKGROUND]
    evaluation = [(n, d) for n, d in data.items() if n.split("/")[1] in EVALUATION]
    _write_zip(src / "images_background.zip", "images_background", background)
    _write_zip(src / "images_evaluation.zip", "images_evaluation", evaluation)
    _write_sums(src)
    return src, data


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    src, data = source
    out = tmp_path_factory.mktemp("prepared") / "omniglot_resized"
    logs = []
    summary = prep.prepare_omniglot(src, out, log=logs.append)
    return out, summary, logs


def _tree(root: pathlib.Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_layout_and_pixels_match_the_reference_resize(source, prepared):
    _, data = source
    out, summary, logs = prepared
    assert sorted(p.name for p in out.iterdir()) == sorted(BACKGROUND + EVALUATION)
    expected = sorted(n.split("/", 1)[1] for n in data)
    assert _tree(out) == expected
    assert summary.images == len(data) == summary.written and summary.characters == 45
    assert not prep.staging_dir(out).exists()
    assert any("sha256 ok" in line for line in logs) and "1623" not in logs[-1]
    assert any("3/3 alphabets, 45/45 characters, 900/900 images" in line for line in logs)
    for name in expected[::97]:
        image = Image.open(out / name)
        assert image.size == (28, 28)
        reference = Image.open(io.BytesIO(data["images_background/" + name])).resize(
            (28, 28), resample=Image.LANCZOS)
        np.testing.assert_array_equal(np.asarray(image), np.asarray(reference))


def test_both_zips_go_into_one_folder(prepared):
    out, _, _ = prepared
    assert (out / "Tagalog").is_dir() and (out / BACKGROUND[0]).is_dir()


def test_rerun_is_idempotent(source, prepared):
    src, _ = source
    out, _, _ = prepared
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    logs = []
    summary = prep.prepare_omniglot(src, out, log=logs.append)
    assert summary.written == 0 and summary.skipped_alphabets == 3 and summary.images == 900
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
    assert "already done" in logs[-2]


def test_checksum_mismatch_is_an_error(source, tmp_path):
    src, data = source
    bad = tmp_path / "src"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    sums = (bad / "SHA256SUMS").read_text().replace("images_background.zip", "x.zip", 1)
    (bad / "SHA256SUMS").write_text(f"{'0' * 64}  images_background.zip\n" + sums)
    with pytest.raises(DataError, match="checksum mismatch for .*images_background.zip"):
        prep.prepare_omniglot(bad, tmp_path / "out", log=lambda s: None)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_corrupt_image_names_it_and_resume_finishes(source, prepared, tmp_path):
    src, data = source
    clean_out, _, _ = prepared
    # a corrupt image in the middle of the second alphabet (alphabets are processed in sorted order)
    second = sorted(BACKGROUND)[1]
    victim = [n for n in sorted(data) if n.split("/")[1] == second][150]
    broken = dict(data)
    broken[victim] = b"\x89PNG\r\n\x1a\n this is not a png"
    bad_src = tmp_path / "bad_src"
    bad_src.mkdir()
    _write_zip(bad_src / "images_background.zip", "images_background",
               [(n, d) for n, d in broken.items() if n.split("/")[1] in BACKGROUND])
    out = tmp_path / "omniglot_resized"
    with pytest.raises(DataError, match="corrupt or unreadable image " + re.escape("images_background.zip:" + victim)):
        prep.prepare_omniglot(bad_src, out, log=lambda s: None)
    # <out> holds only the complete first alphabet; the staged part of the second has no temp files
    assert [p.name for p in out.iterdir()] == [sorted(BACKGROUND)[0]]
    staged = prep.staging_dir(out) / second
    staged_files = [p for p in staged.rglob("*") if p.is_file()]
    assert 0 < len(staged_files) == 150 and all(not p.name.startswith(".") for p in staged_files)
    (staged / "stale").mkdir()
    (staged / "stale" / ".0001_01.png.tmp-123").write_bytes(b"half")   # as a killed run would leave
    # the fixed download: the run resumes, reusing what was staged
    good_src = tmp_path / "good_src"
    good_src.mkdir()
    _write_zip(good_src / "images_background.zip", "images_background",
               [(n, d) for n, d in data.items() if n.split("/")[1] in BACKGROUND])
    logs = []
    summary = prep.prepare_omniglot(good_src, out, log=logs.append)
    assert any("removed 1 temp file" in line for line in logs)
    assert summary.reused == 150 and summary.skipped_alphabets == 1
    assert summary.written == len([n for n in data if n.split("/")[1] == second]) - 150
    assert not prep.staging_dir(out).exists()
    tree = [p for p in _tree(out) if "stale" not in p]
    assert tree == [p for p in _tree(clean_out) if p.split("/")[0] in BACKGROUND]
    for rel in tree[::50]:
        assert (out / rel).read_bytes() == (clean_out / rel).read_bytes()


def test_zip_crc_error_names_the_member(source, tmp_path):
    _, data = source
    name = sorted(data)[3]
    src = tmp_path / "src"
    src.mkdir()
    _write_zip(src / "images_background.zip", "images_background", [(name, data[name])], stored=True)
    raw = bytearray((src / "images_background.zip").read_bytes())
    at = raw.find(data[name]) + len(data[name]) // 2
    raw[at] ^= 0xFF
    (src / "images_background.zip").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=re.escape("images_background.zip:" + name)):
        prep.prepare_omniglot(src, tmp_path / "out", log=lambda s: None)
    assert not any((tmp_path / "out").iterdir())


def test_modified_finished_alphabet_is_reported(source, tmp_path):
    src, _ = source
    out = tmp_path / "out"
    prep.prepare_omniglot(src, out, log=lambda s: None)
    victim = next((out / "Tagalog").iterdir())
    next(victim.iterdir()).unlink()
    with pytest.raises(DataError, match="Tagalog exists but does not match images_evaluation.zip"):
        prep.prepare_omniglot(src, out, log=lambda s: None)


def test_missing_source_errors(tmp_path, capsys):
    with pytest.raises(DataError, match="not a folder"):
        prep.prepare_omniglot(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(DataError, match="no Omniglot zip in .*images_background.zip"):
        prep.prepare_omniglot(tmp_path, tmp_path / "out")
    (tmp_path / "images_background.zip").write_bytes(b"not a zip")
    assert prep.main(["--src", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "not a readable zip file" in capsys.readouterr().err


def test_cli_runs_and_reports(source, tmp_path, capsys):
    src, _ = source
    out = tmp_path / "omniglot_resized"
    assert prep.main(["--src", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "done: 3 alphabets, 45 characters, 900 images" in printed and "900 written" in printed
    assert prep.main(["--src", str(src), "--out", str(out)]) == 0
    assert "0 written, 0 reused, 3 alphabets already done" in capsys.readouterr().out
