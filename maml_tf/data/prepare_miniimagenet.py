"""Turn the Ravi & Larochelle MiniImagenet download into <out>/{train,val,test}/<class>/*.jpg at 84x84.

    python -m maml_tf.data.prepare_miniimagenet --src DIR --out data/miniImagenet

DIR holds `train.csv`, `val.csv`, `test.csv` (header `filename,label`, one row per image) and the
images, either in `DIR/images/` or directly in DIR. This does what the reference's
`proc_images.py` does: every image listed in a csv is opened, resized to 84x84 with
`resize((84, 84), resample=Image.LANCZOS)`, saved as JPEG (Pillow's default quality, 75) under its
own name, and filed under `<split>/<label>/`. Unlike proc_images.py it leaves the source images
untouched (it writes new files), and images whose mode JPEG cannot store (e.g. RGBA, P) are
converted to RGB instead of failing.

Safe to interrupt and re-run:
* every csv row is checked before any work (header, duplicates, the image exists);
* a corrupt image stops the run with an error naming it;
* each image is written to a hidden temp file and renamed into place, inside a staging folder
  `<out parent>/.<out name>.partial/<split>/<class>`; only a complete class folder is renamed into
  `<out>`, so `<out>` never holds a half-prepared class;
* a re-run skips classes already in `<out>` (after checking they hold the expected files) and
  reuses the images already staged for an interrupted class.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import pathlib
import shutil
import sys
import time
from typing import Callable

from PIL import Image

from maml_tf.data.images import DataError, open_image, remove_temp_files, save_image_atomic

SPLITS = ("train", "val", "test")
SIZE = (84, 84)
JPEG_MODES = ("L", "RGB", "CMYK")


@dataclasses.dataclass
class Summary:
    """What a run did (returned for tests and printed as the last progress line)."""
    classes: int = 0
    images: int = 0
    written: int = 0          # images resized and written by this run
    reused: int = 0           # images found already staged by an interrupted run
    skipped_classes: int = 0
    seconds: float = 0.0


def staging_dir(out: pathlib.Path) -> pathlib.Path:
    """Where unfinished classes are built: beside `out` (same filesystem, outside the data tree)."""
    return out.parent / f".{out.name}.partial"


def resize_like_reference(image: Image.Image) -> Image.Image:
    """proc_images.py: `im.resize((84, 84), resample=Image.LANCZOS)`; then a JPEG-storable mode."""
    image = image.resize(SIZE, resample=Image.LANCZOS)
    return image if image.mode in JPEG_MODES else image.convert("RGB")


def find_images_dir(src: pathlib.Path) -> pathlib.Path:
    if not src.is_dir():
        raise DataError(f"--src {src} is not a folder (it should hold images/ and train.csv, val.csv, test.csv)")
    return src / "images" if (src / "images").is_dir() else src


def read_split_csv(path: pathlib.Path) -> dict[str, list[str]]:
    """label -> image file names, in csv order; the header must be `filename,label`."""
    if not path.is_file():
        raise DataError(f"{path} not found: MiniImagenet needs train.csv, val.csv and test.csv "
                        "(Ravi & Larochelle split) in --src")
    classes: dict[str, list[str]] = {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise DataError(f"{path}: first line must be the header 'filename,label', got {rows[0] if rows else 'nothing'}")
    for lineno, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{path}:{lineno}: expected 'filename,label', got {row}")
        filename, label = row[0].strip(), row[1].strip()
        if "/" in filename or "/" in label or label.startswith("."):
            raise DataError(f"{path}:{lineno}: bad file or label name {row}")
        classes.setdefault(label, []).append(filename)
    if not classes:
        raise DataError(f"{path} lists no images")
    return classes


def read_splits(src: pathlib.Path, images_dir: pathlib.Path) -> dict[str, dict[str, list[str]]]:
    """All three csvs, checked: no image twice, no class in two splits, every image present."""
    splits = {split: read_split_csv(src / f"{split}.csv") for split in SPLITS}
    seen_files: dict[str, str] = {}
    seen_classes: dict[str, str] = {}
    for split, classes in splits.items():
        for label, files in classes.items():
            if label in seen_classes:
                raise DataError(f"class {label} is in both {seen_classes[label]}.csv and {split}.csv")
            seen_classes[label] = split
            for name in files:
                if name in seen_files:
                    raise DataError(f"image {name} is listed twice ({seen_files[name]}.csv and {split}.csv)")
                seen_files[name] = split
    missing = [name for name in seen_files if not (images_dir / name).is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) listed in the csvs are not in {images_dir}, "
                        f"e.g. {', '.join(missing[:3])}")
    return splits


def _check_finished(dest: pathlib.Path, files: list[str]) -> None:
    found = {f.name for f in dest.iterdir() if f.is_file() and not f.name.startswith(".")}
    if found != set(files):
        raise DataError(f"{dest} exists but holds {len(found)} images where the csv lists {len(files)} "
                        f"(or other names); delete it and run again")


def _stage_class(images_dir: pathlib.Path, files: list[str], stage: pathlib.Path) -> tuple[int, int]:
    """Resize the images of one class into `stage`; returns (written, reused)."""
    stage.mkdir(parents=True, exist_ok=True)
    written = reused = 0
    for name in files:
        dest = stage / name
        if dest.is_file():
            reused += 1
            continue
        source = images_dir / name
        image = resize_like_reference(open_image(source, str(source)))
        save_image_atomic(image, dest, "JPEG")
        written += 1
    return written, reused


def prepare_miniimagenet(src: pathlib.Path, out: pathlib.Path,
                         log: Callable[[str], None] = print) -> Summary:
    """Prepare (or finish preparing) `out` from the images and csvs in `src`; see the module docstring."""
    start = time.perf_counter()
    src, out = pathlib.Path(src), pathlib.Path(out)
    images_dir = find_images_dir(src)
    splits = read_splits(src, images_dir)
    total_classes = sum(len(c) for c in splits.values())
    total_images = sum(len(f) for c in splits.values() for f in c.values())
    log("[prepare_miniimagenet] csvs ok: " + ", ".join(
        f"{split} {len(c)} classes / {sum(len(f) for f in c.values())} images" for split, c in splits.items()))

    staging = staging_dir(out)
    stale = remove_temp_files(staging)
    if stale:
        log(f"[prepare_miniimagenet] removed {stale} temp file(s) left by an interrupted run")
    summary = Summary()
    for split, classes in splits.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for label in sorted(classes):
            files = classes[label]
            dest = out / split / label
            if dest.exists():
                _check_finished(dest, files)
                summary.skipped_classes += 1
                status = "already done"
            else:
                stage = staging / split / label
                written, reused = _stage_class(images_dir, files, stage)
                stage.rename(dest)   # atomic: the class appears in <out> only when complete
                summary.written += written
                summary.reused += reused
                status = f"{written} written" + (f", {reused} reused" if reused else "")
            summary.classes += 1
            summary.images += len(files)
            log(f"[prepare_miniimagenet] {summary.classes}/{total_classes} classes, {summary.images}/"
                f"{total_images} images ({split}/{label}: {status}) {time.perf_counter() - start:.1f}s")
    if staging.is_dir():
        shutil.rmtree(staging)
    summary.seconds = time.perf_counter() - start
    log(f"[prepare_miniimagenet] done: {summary.classes} classes, {summary.images} images in {out} "
        f"({summary.written} written, {summary.reused} reused, {summary.skipped_classes} classes already done) "
        f"in {summary.seconds:.1f}s")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maml_tf.data.prepare_miniimagenet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, type=pathlib.Path,
                        help="folder with train.csv, val.csv, test.csv and the images (in images/ or beside)")
    parser.add_argument("--out", default=pathlib.Path("data/miniImagenet"), type=pathlib.Path,
                        help="output folder (default: data/miniImagenet)")
    args = parser.parse_args(argv)
    try:
        prepare_miniimagenet(args.src, args.out)
    except DataError as e:
        print(f"prepare_miniimagenet: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
