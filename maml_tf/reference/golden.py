"""Reading the golden fixtures (../shared/golden): the case's flags, its npz files and their arrays."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from maml_tf.config import Config
from maml_tf.errors import MamlError

# npz file suffix -> the json section listing its arrays
FILES = {"": "arrays", "_firstorder": "firstorder_arrays", "_normvariants": "normvariant_arrays",
         "_float64": "float64_arrays"}


def key(name: str) -> str:
    """Reference variable name -> npz key suffix ('/' becomes '__')."""
    return name.replace("/", "__")


@dataclasses.dataclass
class Fixture:
    path: str
    meta: dict
    files: dict[str, dict[str, np.ndarray]]  # suffix -> arrays

    @property
    def case(self) -> str:
        return str(self.meta.get("case", os.path.basename(self.path)))

    def config(self, **changes) -> Config:
        flags = dict(self.meta["flags"])
        allowed = {f.name for f in dataclasses.fields(Config)}
        values = {k: v for k, v in flags.items() if k in allowed}
        values.update(changes)
        return Config.from_dict(values)

    def file_name(self, suffix: str) -> str:
        stem = os.path.basename(self.path)[: -len(".json")]
        return f"{stem}{suffix}.npz"


def read_npz(path: str, label: str) -> dict[str, np.ndarray]:
    """Every array of an npz; an unreadable archive is one clear error starting with `label`."""
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except Exception as e:  # noqa: BLE001 - any unreadable archive is the same user error
        raise MamlError(f"{label}: cannot be read as an npz ({e})") from None


def load(path: str) -> Fixture:
    """Read FIXTURE.json and every npz it describes, checking each listed array is there."""
    if not os.path.isfile(path):
        raise MamlError(f"fixture {path}: no such file")
    try:
        with open(path) as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise MamlError(f"fixture {path}: not valid JSON ({e})") from None
    for required in ("flags", "variables", "arrays", "test_num_updates"):
        if required not in meta:
            raise MamlError(f"fixture {path}: the json has no '{required}' entry (not a golden fixture?)")
    folder = os.path.dirname(os.path.abspath(path))
    stem = os.path.basename(path)[: -len(".json")] if path.endswith(".json") else os.path.basename(path)
    files = {}
    for suffix, section in FILES.items():
        listed = meta.get(section) or {}
        if not listed:
            continue
        npz = os.path.join(folder, f"{stem}{suffix}.npz")
        if not os.path.isfile(npz):
            raise MamlError(f"fixture {path}: {npz} is missing (the json lists {len(listed)} arrays in it)")
        arrays = read_npz(npz, f"fixture {npz}")
        missing = sorted(set(listed) - set(arrays))
        if missing:
            raise MamlError(f"fixture {npz}: arrays missing: {', '.join(missing[:8])}"
                            f"{' ...' if len(missing) > 8 else ''}")
        files[suffix] = arrays
    return Fixture(path, meta, files)
