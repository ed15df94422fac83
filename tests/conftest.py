"""Shared pytest configuration: the test sets, the data the tests need, and where it comes from.

Three sets (markers registered in setup.cfg):
* the default set (`pytest -q`): everything not marked below; needs nothing outside the repository
  (golden fixtures A/B/C, a slice of Omniglot and the reference's MiniImagenet checkpoint live under
  tests/fixtures/, each with a README saying where it comes from);
* `integration`: whole pipelines and the data that stays outside the repository (`../shared`, or
  `$MAML_TF_SHARED`: the full Omniglot zips and the MiniImagenet golden case E);
  run with `-m integration`;
* `slow`: heavy checks (multi-process clusters, learning runs); `-m slow`, or `--runslow` to add them
  to the default set.
An explicit `-m EXPR` decides by itself; without one, the integration and slow tests are deselected
(the summary says how many and how to run them). `.ci/run` runs all three sets.
"""
import os
import pathlib
import shutil
import sys

import pytest

# Helpers shared by test files (tests/_procs.py) import as top-level modules: with
# --import-mode=importlib the tests folder is not on sys.path by itself.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"                 # cases A, B, C: tests/fixtures/golden/README.md
SMALL_OMNIGLOT_ZIP = FIXTURES / "omniglot" / "images_background.zip"
REFERENCE_CHECKPOINT = FIXTURES / "reference" / "maml_miniimagenet_5way1shot" / "model59000"
SHARED = pathlib.Path(os.environ.get("MAML_TF_SHARED", REPO.parent / "shared"))

# What each piece of outside data is and where to get it (the skip reasons quote these).
OUTSIDE_DATA = {
    "golden": ("the MiniImagenet golden fixture case E and its npz files, produced by running the original "
               "cbfinn/maml code from its model59000 checkpoint: the project's full fixture set"),
    "omniglot": ("the official Omniglot archives images_background.zip and images_evaluation.zip, from "
                 "github.com/brendenlake/omniglot (python/)"),
}
_MARKED = ("integration", "slow")
_DROPPED = pytest.StashKey[dict]()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="add the tests marked slow to the default set (ignored with -m: the expression decides)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("markexpr"):  # an explicit -m decides by itself
        return
    runslow = config.getoption("--runslow") or os.environ.get("MAML_TF_RUNSLOW") == "1"
    left_out = [m for m in _MARKED if not (m == "slow" and runslow)]
    dropped = {m: 0 for m in _MARKED}
    kept, deselected = [], []
    for item in items:
        marks = [m for m in left_out if m in item.keywords]
        if marks:
            dropped[marks[0]] += 1  # integration first: a test marked both counts once
        (deselected if marks else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    config.stash[_DROPPED] = dropped


def pytest_terminal_summary(terminalreporter, config):
    dropped = config.stash.get(_DROPPED, None)
    if dropped and any(dropped.values()):
        terminalreporter.write_line(
            f"not in this run: {dropped['integration']} integration tests (-m integration, needs ../shared), "
            f"{dropped['slow']} slow tests (-m slow or --runslow)")


def _outside(kind: str, relative: str) -> pathlib.Path:
    """A path under ../shared; skips (fails under CI=true, where ../shared must be there) without it."""
    path = SHARED / relative
    if not path.exists():
        message = f"needs {path}, {OUTSIDE_DATA[kind]} (put ../shared beside the clone or set MAML_TF_SHARED)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def golden_dir() -> pathlib.Path:
    """Golden fixtures A, B and C, in the repository."""
    return GOLDEN


@pytest.fixture(scope="session")
def shared_golden_dir() -> pathlib.Path:
    """The project's whole fixture set (A, B, C and the MiniImagenet case E), outside the repository."""
    return _outside("golden", "golden/case_E.json").parent


@pytest.fixture(scope="session")
def omniglot_zips() -> pathlib.Path:
    """The folder with the full official Omniglot archives, outside the repository."""
    _outside("omniglot", "data/omniglot/images_evaluation.zip")
    return _outside("omniglot", "data/omniglot/images_background.zip").parent


@pytest.fixture(scope="session")
def reference_checkpoint() -> str:
    """The original MiniImagenet 5-way 1-shot checkpoint's prefix (model59000), in the repository."""
    return str(REFERENCE_CHECKPOINT)


# Six real Omniglot alphabets, 103 characters: enough for 5-way tasks in every split (70/6/27).
SMALL_OMNIGLOT_ALPHABETS = ("Ojibwe_(Canadian_Aboriginal_Syllabics)", "Blackfoot_(Canadian_Aboriginal_Syllabics)",
                            "Inuktitut_(Canadian_Aboriginal_Syllabics)", "Tagalog", "Alphabet_of_the_Magi", "Hebrew")


@pytest.fixture(scope="session")
def small_omniglot_src(tmp_path_factory) -> pathlib.Path:
    """A folder with an images_background.zip holding only SMALL_OMNIGLOT_ALPHABETS of the real one
    (tests/fixtures/omniglot: the official archive's members, unchanged)."""
    src = tmp_path_factory.mktemp("omniglot_src")
    shutil.copy(SMALL_OMNIGLOT_ZIP, src / "images_background.zip")
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
