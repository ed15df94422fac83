"""prepare_miniimagenet on a synthetic Ravi & Larochelle style download (images/ + three csvs)."""
import io
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

from maml_tf.data import prepare_miniimagenet as prep
from maml_tf.data.images import DataError

CLASSES = {"train": ["n01000001", "n01000002", "n01000003"], "val": ["n02000001", "n02000002"],
           "test": ["n03000001", "n03000002"]}
PER_CLASS = 4


def _make_source(root: pathlib.Path) -> dict[str, dict[str, list[str]]]:
    """images/<class><index>.jpg of assorted sizes and modes, and train/val/test.csv."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    layout = {}
    for split, classes in CLASSES.items():
        rows = ["filename,label"]
        layout[split] = {}
        for c, label in enumerate(classes):
            layout[split][label] = []
            for i in range(PER_CLASS):
                name = f"{label}{i:08d}.jpg"
                size = (100 + 7 * i, 90 + 5 * c)
                if i == 1:   # a grayscale image, kept grayscale as proc_images.py would
                    image = Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8), "L")
                else:
                    image = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8), "RGB")
                image.save(root / "images" / name, quality=95)
                rows.append(f"{name},{label}")
                layout[split][label].append(name)
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return layout


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini_src")
    return root, _make_source(root)


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    src, _ = source
    out = tmp_path_factory.mktemp("data") / "miniImagenet"
    logs = []
    summary = prep.prepare_miniimagenet(src, out, log=logs.append)
    return out, summary, logs


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_layout_and_bytes_match_proc_images(source, prepared):
    src, layout = source
    out, summary, logs = prepared
    expected = sorted(f"{split}/{label}/{name}" for split, classes in layout.items()
                      for label, names in classes.items() for name in names)
    assert _tree(out) == expected
    assert summary.images == summary.written == len(expected) and summary.classes == 7
    assert not prep.staging_dir(out).exists()
    assert any("7/7 classes, 28/28 images" in line for line in logs)
    for rel in expected:
        image = Image.open(out / rel)
        assert image.size == (84, 84) and image.format == "JPEG"
        # what proc_images.py writes: open, resize((84, 84), LANCZOS), save as .jpg (default quality)
        buffer = io.BytesIO()
        Image.open(src / "images" / rel.rsplit("/", 1)[1]).resize((84, 84), resample=Image.LANCZOS).save(
            buffer, format="JPEG")
        assert (out / rel).read_bytes() == buffer.getvalue()


def test_source_images_untouched(source, prepared):
    src, _ = source
    for path in (src / "images").iterdir():
        assert Image.open(path).size != (84, 84)


def test_rerun_is_idempotent(source, prepared):
    src, _ = source
    out, _, _ = prepared
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    summary = prep.prepare_miniimagenet(src, out, log=lambda s: None)
    assert summary.written == 0 and summary.skipped_classes == 7
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == before


def test_images_beside_the_csvs_also_work(source, tmp_path):
    src, layout = source
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in list((src / "images").iterdir()) + list(src.glob("*.csv")):
        (flat / f.name).write_bytes(f.read_bytes())
    summary = prep.prepare_miniimagenet(flat, tmp_path / "out", log=lambda s: None)
    assert summary.images == 28


def test_corrupt_image_named_then_resume(source, prepared, tmp_path):
    src, layout = source
    clean_out, _, _ = prepared
    work = tmp_path / "src"
    (work / "images").mkdir(parents=True)
    for f in (src / "images").iterdir():
        (work / "images" / f.name).write_bytes(f.read_bytes())
    for f in src.glob("*.csv"):
        (work / f.name).write_bytes(f.read_bytes())
    victim = work / "images" / layout["train"]["n01000002"][2]
    good_bytes = victim.read_bytes()
    victim.write_bytes(good_bytes[: len(good_bytes) // 3])       # a truncated download
    out = tmp_path / "miniImagenet"
    with pytest.raises(DataError, match=f"corrupt or unreadable image {re.escape(str(victim))}"):
        prep.prepare_miniimagenet(work, out, log=lambda s: None)
    assert [p.name for p in (out / "train").iterdir()] == ["n01000001"]   # only complete classes
    staged = prep.staging_dir(out) / "train" / "n01000002"
    assert sorted(p.name for p in staged.iterdir()) == sorted(layout["train"]["n01000002"][:2])
    victim.write_bytes(good_bytes)
    summary = prep.prepare_miniimagenet(work, out, log=lambda s: None)
    assert summary.reused == 2 and summary.skipped_classes == 1 and summary.written == 28 - 4 - 2
    assert _tree(out) == _tree(clean_out)
    assert not prep.staging_dir(out).exists()
    for rel in _tree(out):
        assert (out / rel).read_bytes() == (clean_out / rel).read_bytes()


def _copy_source(src: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    (dest / "images").mkdir(parents=True)
    for f in (src / "images").iterdir():
        (dest / "images" / f.name).write_bytes(f.read_bytes())
    for f in src.glob("*.csv"):
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / "val.csv").unlink(), "val.csv not found"),
    (lambda d: (d / "test.csv").write_text("name,class\nx.jpg,n1\n"), "header 'filename,label'"),
    (lambda d: (d / "images" / "n0300000200000001.jpg").unlink(), "1 image.* not in .*n0300000200000001.jpg"),
    (lambda d: (d / "val.csv").write_text((d / "val.csv").read_text() + "n0100000100000000.jpg,n02000001\n"),
     "image n0100000100000000.jpg is listed twice"),
    (lambda d: (d / "test.csv").write_text((d / "test.csv").read_text() + "n01000001x.jpg,n01000001\n"),
     "class n01000001 is in both train.csv and test.csv"),
    (lambda d: (d / "train.csv").write_text("filename,label\na.jpg\n"), "train.csv:2: expected 'filename,label'"),
])
def test_bad_csvs(source, tmp_path, edit, message):
    src, _ = source
    work = _copy_source(src, tmp_path / "src")
    edit(work)
    with pytest.raises(DataError, match=message):
        prep.prepare_miniimagenet(work, tmp_path / "out", log=lambda s: None)
    assert not (tmp_path / "out").exists()


def test_cli_reports_errors(tmp_path, capsys):
    assert prep.main(["--src", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 1
    assert "is not a folder" in capsys.readouterr().err
