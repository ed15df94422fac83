"""Turn the official Omniglot zips into the reference layout: <out>/<alphabet>/<character>/*.png, 28x28.

    python -m maml_tf.data.prepare_omniglot --src DIR_WITH_ZIPS --out data/omniglot_resized

DIR_WITH_ZIPS holds `images_background.zip` and/or `images_evaluation.zip` (github.com/brendenlake/
omniglot); both zips' alphabets go into one folder, as the reference's 1623-character list expects.
Each image is resized exactly as the reference's resize script does,
`Image.open(f).resize((28, 28), resample=Image.LANCZOS)`, and saved as PNG under its own name.
Note the reference quirk this reproduces: the Omniglot PNGs are 1-bit (mode "1") and Pillow
resizes mode "1" images with NEAREST whatever filter is asked for, so the result is a binary
28x28 image, not an antialiased one.

Safe to interrupt and re-run:
* the zips are checked against a SHA256SUMS file beside them when there is one, and zipfile checks
  every member's CRC; a corrupt image stops the run with an error naming zip and member;
* each image is written to a hidden temp file and renamed into place, inside a staging folder
  `<out parent>/.<out name>.partial/<alphabet>`; only a complete alphabet is renamed into `<out>`,
  so `<out>` never holds a half-prepared alphabet;
* a re-run skips alphabets already in `<out>` (after checking they hold the expected files) and
  reuses the images already staged for an interrupted alphabet.
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import shutil
import sys
import time
import zipfile
from typing import Callable

from PIL import Image

from maml_tf.data.images import DataError, open_image, remove_temp_files, save_image_atomic, verify_checksums

ZIP_NAMES = ("images_background.zip", "images_evaluation.zip")
SIZE = (28, 28)


@dataclasses.dataclass
class Summary:
    """What a run did (returned for tests and printed as the last progress line)."""
    alphabets: int = 0
    characters: int = 0
    images: int = 0
    written: int = 0          # images resized and written by this run
    reused: int = 0           # images found already staged by an interrupted run
    skipped_alphabets: int = 0
    seconds: float = 0.0


@dataclasses.dataclass
class _Alphabet:
    name: str
    zip_path: pathlib.Path
    characters: dict[str, list[str]]   # character -> zip member names (sorted)

    @property
    def num_images(self) -> int:
        return sum(len(m) for m in self.characters.values())


def staging_dir(out: pathlib.Path) -> pathlib.Path:
    """Where unfinished alphabets are built: beside `out` (same filesystem, outside the data tree)."""
    return out.parent / f".{out.name}.partial"


def resize_like_reference(image: Image.Image) -> Image.Image:
    """The reference's resize, verbatim in effect (mode "1" images fall back to NEAREST in Pillow)."""
    return image.resize(SIZE, resample=Image.LANCZOS)


def find_zips(src: pathlib.Path) -> list[pathlib.Path]:
    if not src.is_dir():
        raise DataError(f"--src {src} is not a folder (it should hold {' and/or '.join(ZIP_NAMES)})")
    zips = [src / name for name in ZIP_NAMES if (src / name).is_file()]
    if not zips:
        raise DataError(f"no Omniglot zip in {src}: expected {' and/or '.join(ZIP_NAMES)} "
                        "(from github.com/brendenlake/omniglot/tree/master/python)")
    return zips


def index_zip(zip_path: pathlib.Path) -> dict[str, _Alphabet]:
    """Alphabets of one zip from its member list `<top>/<alphabet>/<character>/<file>.png`."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as e:
        raise DataError(f"{zip_path} is not a readable zip file: {e}") from e
    alphabets: dict[str, _Alphabet] = {}
    with archive:
        for member in archive.namelist():
            parts = member.split("/")
            if member.endswith("/") or not parts[-1].lower().endswith(".png") or parts[-1].startswith("."):
                continue
            if len(parts) != 4 or "__MACOSX" in parts:
                raise DataError(f"{zip_path}: unexpected member {member!r}, expected "
                                "<top folder>/<alphabet>/<character>/<image>.png")
            _, alphabet, character, _ = parts
            entry = alphabets.setdefault(alphabet, _Alphabet(alphabet, zip_path, {}))
            entry.characters.setdefault(character, []).append(member)
    if not alphabets:
        raise DataError(f"{zip_path} holds no <alphabet>/<character>/*.png images")
    for entry in alphabets.values():
        for members in entry.characters.values():
            members.sort()
    return alphabets


def _expected_files(alphabet: _Alphabet) -> dict[str, set[str]]:
    return {c: {m.rsplit("/", 1)[1] for m in members} for c, members in alphabet.characters.items()}


def _check_finished(dest: pathlib.Path, alphabet: _Alphabet) -> None:
    """A finished alphabet must hold exactly the source's characters and file names."""
    expected = _expected_files(alphabet)
    found = {c.name: {f.name for f in c.iterdir() if f.is_file() and not f.name.startswith(".")}
             for c in dest.iterdir() if c.is_dir() and not c.name.startswith(".")}
    if found != expected:
        missing = sorted(set(expected) - set(found)) or sorted(
            c for c in expected if expected[c] != found.get(c))
        raise DataError(f"{dest} exists but does not match {alphabet.zip_path.name} "
                        f"(first differing characters: {missing[:3]}); delete it and run again")


def _stage_alphabet(alphabet: _Alphabet, stage: pathlib.Path) -> tuple[int, int]:
    """Resize every image of `alphabet` into `stage`; returns (written, reused)."""
    written = reused = 0
    with zipfile.ZipFile(alphabet.zip_path) as archive:
        for character, members in sorted(alphabet.characters.items()):
            folder = stage / character
            folder.mkdir(parents=True, exist_ok=True)
            for member in members:
                dest = folder / member.rsplit("/", 1)[1]
                if dest.is_file():
                    reused += 1
                    continue
                name = f"{alphabet.zip_path.name}:{member}"
                try:
                    data = archive.read(member)
                except (zipfile.BadZipFile, OSError) as e:   # zipfile verifies each member's CRC
                    raise DataError(f"corrupt zip member {name}: {e}") from e
                image = resize_like_reference(open_image(data, name))
                save_image_atomic(image, dest, "PNG")
                written += 1
    return written, reused


def prepare_omniglot(src: pathlib.Path, out: pathlib.Path,
                     log: Callable[[str], None] = print) -> Summary:
    """Prepare (or finish preparing) `out` from the zips in `src`; see the module docstring."""
    start = time.perf_counter()
    src, out = pathlib.Path(src), pathlib.Path(out)
    zips = find_zips(src)
    for note in verify_checksums(zips):
        log(f"[prepare_omniglot] {note}")
    if len(zips) < len(ZIP_NAMES):
        log(f"[prepare_omniglot] note: only {zips[0].name} found; the reference split uses all 1623 "
            "characters of both zips")
    alphabets: dict[str, _Alphabet] = {}
    for zip_path in zips:
        for name, entry in index_zip(zip_path).items():
            if name in alphabets:
                raise DataError(f"alphabet {name!r} is in both {alphabets[name].zip_path.name} and {zip_path.name}")
            alphabets[name] = entry

    out.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out)
    stale = remove_temp_files(staging)
    if stale:
        log(f"[prepare_omniglot] removed {stale} temp file(s) left by an interrupted run")
    summary = Summary()
    total_chars = sum(len(a.characters) for a in alphabets.values())
    total_images = sum(a.num_images for a in alphabets.values())
    for i, name in enumerate(sorted(alphabets), 1):
        alphabet = alphabets[name]
        dest = out / name
        if dest.exists():
            _check_finished(dest, alphabet)
            summary.skipped_alphabets += 1
            status = "already done"
        else:
            stage = staging / name
            written, reused = _stage_alphabet(alphabet, stage)
            stage.rename(dest)   # atomic: the alphabet appears in <out> only when complete
            summary.written += written
            summary.reused += reused
            status = f"{written} written" + (f", {reused} reused" if reused else "")
        summary.alphabets += 1
        summary.characters += len(alphabet.characters)
        summary.images += alphabet.num_images
        log(f"[prepare_omniglot] {i}/{len(alphabets)} alphabets, {summary.characters}/{total_chars} "
            f"characters, {summary.images}/{total_images} images ({name}: {status}) "
            f"{time.perf_counter() - start:.1f}s")
    if staging.is_dir():
        shutil.rmtree(staging)
    summary.seconds = time.perf_counter() - start
    log(f"[prepare_omniglot] done: {summary.alphabets} alphabets, {summary.characters} characters, "
        f"{summary.images} images in {out} ({summary.written} written, {summary.reused} reused, "
        f"{summary.skipped_alphabets} alphabets already done) in {summary.seconds:.1f}s")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maml_tf.data.prepare_omniglot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, type=pathlib.Path,
                        help="folder with images_background.zip and/or images_evaluation.zip")
    parser.add_argument("--out", default=pathlib.Path("data/omniglot_resized"), type=pathlib.Path,
                        help="output folder (default: data/omniglot_resized)")
    args = parser.parse_args(argv)
    try:
        prepare_omniglot(args.src, args.out)
    except DataError as e:
        print(f"prepare_omniglot: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
