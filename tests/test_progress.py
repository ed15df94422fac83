"""RunLog: the progress line, the resumable csv and the TensorBoard scalars both drivers write."""
from __future__ import annotations

import csv
import glob
import os

import numpy as np

from maml_tf.progress import RATE_TAG, RunLog


def _tags(folder) -> dict[str, list[int]]:
    import tensorflow as tf

    tags: dict[str, list[int]] = {}
    for fn in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(fn):
            for v in event.summary.value:
                tags.setdefault(v.tag, []).append(event.step)
    return tags


def test_csv_tensorboard_and_line(tmp_path):
    lines = []
    path = str(tmp_path / "progress.csv")
    log = RunLog(10, 0, log=lines.append, every_s=0, csv_path=path, csv_fields=["itr", "loss"], tb_dir=str(tmp_path))
    for itr in range(4):
        log.row({"itr": itr, "loss": 1.0 / (itr + 1)})
        log.scalars(itr, {"loss": 1.0 / (itr + 1), "nan": np.nan})
        log.line(itr, f"loss {1.0 / (itr + 1):.3g}")
    log.close()
    with open(path) as f:
        assert [int(r["itr"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]
    tags = _tags(str(tmp_path))
    assert tags["loss"] == [0, 1, 2, 3] and tags[RATE_TAG] == [0, 1, 2, 3] and "nan" not in tags
    assert lines[0].startswith("itr    0 | loss 1 | ") and "it/s, eta" in lines[0]


def test_resume_keeps_earlier_rows_only(tmp_path):
    path = str(tmp_path / "progress.csv")
    first = RunLog(10, 0, log=lambda s: None, csv_path=path, csv_fields=["itr"])
    for itr in range(6):
        first.row({"itr": itr})
    RunLog(10, 3, log=lambda s: None, csv_path=path, csv_fields=["itr"])  # resumed at iteration 3
    with open(path) as f:
        assert [int(r["itr"]) for r in csv.DictReader(f)] == [0, 1, 2]


def test_a_worker_that_does_not_write_only_prints(tmp_path):
    lines = []
    log = RunLog(2, 0, log=lines.append, every_s=0, csv_path=str(tmp_path / "p.csv"), csv_fields=["itr"],
                 tb_dir=str(tmp_path / "tb"), write=False)
    log.row({"itr": 0})
    log.scalars(0, {"x": 1.0})
    log.line(0, "x")
    log.close()
    assert len(lines) == 1 and not os.listdir(tmp_path)
