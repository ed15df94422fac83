"""Shared pytest configuration: the default run is the fast set; `--runslow` adds heavy tests."""
import os
import pathlib
import sys

import pytest

# Helpers shared by test files (tests/_procs.py) import as top-level modules: with
# --import-mode=importlib the tests folder is not on sys.path by itself.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MAML_TF_SHARED", REPO.parent / "shared"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("MAML_TF_RUNSLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED} (set MAML_TF_SHARED)")
    return SHARED


# Six real Omniglot alphabets, 103 characters: enough for 5-way tasks in every split (70/6/27).
SMALL_OMNIGLOT_ALPHABETS = ("Ojibwe_(Canadian_Aboriginal_Syllabics)", "Blackfoot_(Canadian_Aboriginal_Syllabics)",
                            "Inuktitut_(Canadian_Aboriginal_Syllabics)", "Tagalog", "Alphabet_of_the_Magi", "Hebrew")


@pytest.fixture(scope="session")
def small_omniglot_src(shared_dir, tmp_path_factory) -> pathlib.Path:
    """A folder with an images_background.zip holding only SMALL_OMNIGLOT_ALPHABETS of the real one."""
    import zipfile

    src = tmp_path_factory.mktemp("omniglot_src")
    with zipfile.ZipFile(shared_dir / "data" / "omniglot" / "images_background.zip") as real, \
            zipfile.ZipFile(src / "images_background.zip", "w") as small:
        for name in real.namelist():
            if name.endswith(".png") and name.split("/")[1] in SMALL_OMNIGLOT_ALPHABETS:
                small.writestr(name, real.read(name))
    return src


@pytest.fixture(scope="session")
def synthetic_miniimagenet(tmp_path_factory) -> pathlib.Path:
    """A folder holding `miniImagenet/{train,val,test}/<class>/*.jpg` in the real layout (84x84 JPEG).

    Random 6x6 colour blocks scaled up, 20 images per class: enough for 5-way 5-shot training
    (K + 15 queries per class) and testing (2K). There is no MiniImagenet download here.
    """
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("synthetic_mini")
    rng = np.random.default_rng(0)
    for split, count in {"train": 6, "val": 5, "test": 5}.items():
        for c in range(count):
            folder = root / "miniImagenet" / split / f"n{split}{c:03d}"
            folder.mkdir(parents=True)
            for i in range(20):
                img = Image.fromarray(rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)).resize((84, 84))
                img.save(folder / f"n{split}{c:03d}{i:08d}.jpg")
    return root
