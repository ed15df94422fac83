"""MAML-RL checkpoints (`latest.npz`, `best.npz`, `itr_<n>.npz`): plain arrays and json, no pickle.

The supervised runs keep TF bundles (`maml_tf/checkpoint.py`); an RL run's state is one flat
parameter vector plus a little bookkeeping, so it is one numpy .npz, written atomically:

* `format`: the string below (what wrote the file);
* `theta` (float), `itr` (int64): the policy parameters after iteration `itr`'s update (`best.npz`:
  those that earned the best training return, so `itr` is that iteration minus one; -1: the initial ones);
* `policy`, `config`: json (the policy's `describe()`, the run's RLConfig);
* `state`: json of what a resume needs besides theta (best return, both random streams' positions,
  the sampler's reset count, the envs' kept goals), and `state__<name>` arrays for the parts that
  are arrays (the Mersenne-Twister key, the pretrain baseline's Adam slots).

Loading never unpickles: a file that is not such a checkpoint (a text file, a truncated copy, one
written by maml_tf before this format, whose `extra` field was a pickle) is refused with a message
naming the file.
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from maml_tf.errors import MamlError
from maml_tf.files import atomic_write_bytes

FORMAT = "maml_tf.rl checkpoint, version 2 (npz of arrays and json, no pickle)"
_ARRAY = "state__"


class RLCheckpointError(MamlError, ValueError):
    """A missing, corrupt or foreign RL checkpoint; the message names the file."""


def save(path: str, theta: np.ndarray, policy: dict, config_json: str, itr: int, state: dict | None = None) -> None:
    """Write the checkpoint `path` atomically (a crash never leaves a half-written file in its place)."""
    arrays, plain = _split_arrays(state or {})
    buf = io.BytesIO()
    np.savez(buf, format=np.array(FORMAT), theta=np.asarray(theta), itr=np.int64(itr),
             policy=np.array(json.dumps(policy)), config=np.array(config_json),
             state=np.array(json.dumps(plain)), **{_ARRAY + k: v for k, v in arrays.items()})
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise RLCheckpointError(f"could not write checkpoint {path}: {e.strerror or e} (is the disk full, or over a "
                                "quota?); the file already there, if any, is intact") from None


def load(path: str) -> dict:
    """{"theta", "itr", "policy" (dict), "config" (json str), "state" (dict)} of the checkpoint `path`."""
    if not os.path.isfile(path):
        raise RLCheckpointError(f"checkpoint {path} does not exist" if not os.path.exists(path)
                                else f"checkpoint {path} is not a file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # numpy would call any other file "pickled data" and suggest unpickling it
            raise RLCheckpointError(f"checkpoint {path} is corrupt or not a maml_tf.rl checkpoint (not an .npz "
                                    "archive; use a .npz written by maml_tf.rl.main)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if "format" not in keys and "extra" in keys:
                raise RLCheckpointError(
                    f"checkpoint {path} was written by an older maml_tf.rl, whose bookkeeping was a Python pickle; "
                    "it is not read (unpickling a file can run any code). Train again with this version (no such "
                    "checkpoint was ever shipped with maml-tf)")
            missing = {"format", "theta", "itr", "policy", "config", "state"} - keys
            if missing:
                raise RLCheckpointError(f"checkpoint {path} is not a maml_tf.rl checkpoint (no "
                                        f"{', '.join(sorted(missing))} in it)")
            arrays = {k[len(_ARRAY):]: z[k] for k in keys if k.startswith(_ARRAY)}
            return {"theta": z["theta"], "itr": int(z["itr"]), "policy": json.loads(str(z["policy"])),
                    "config": str(z["config"]), "state": _join_arrays(json.loads(str(z["state"])), arrays)}
    except RLCheckpointError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise RLCheckpointError(f"checkpoint {path} is corrupt or not a maml_tf.rl checkpoint (.npz written by "
                                f"maml_tf.rl.main): {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


# The resume state holds a few arrays (a RandomState key, Adam slots) among json values: they are
# stored as npz arrays and replaced in the json by a reference to them.
def _split_arrays(state: dict) -> tuple[dict[str, np.ndarray], dict]:
    arrays: dict[str, np.ndarray] = {}

    def walk(value, name):
        if isinstance(value, np.ndarray):
            arrays[name] = value
            return {"__array__": name}
        if isinstance(value, dict):
            return {k: walk(v, f"{name}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{name}.{i}") for i, v in enumerate(value)]
        if isinstance(value, np.generic):
            return value.item()
        return value

    return arrays, {k: walk(v, k) for k, v in state.items()}


def _join_arrays(state: dict, arrays: dict[str, np.ndarray]) -> dict:
    def walk(value):
        if isinstance(value, dict):
            if set(value) == {"__array__"}:
                return arrays[value["__array__"]]
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return {k: walk(v) for k, v in state.items()}
