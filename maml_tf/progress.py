"""A run's progress, written in one place for both drivers: the stdout line, the csv and TensorBoard.

The supervised loop (`maml_tf.train.loop`) and the RL trainer (`maml_tf.rl.train`) report what they
computed; `RunLog` decides how it is written:

* the progress line ``itr <i> | <the driver's figures> | <rate> it/s, eta <time>``, through the
  driver's `log`, at most every `every_s` seconds (0: every call); the rate is iterations per
  second since the run (or the resumed part of it) started;
* a csv of one row per logged iteration, with the driver's columns; on resume the rows before the
  resumed iteration are kept and the rest dropped, in one atomic rewrite, so the file never holds
  an iteration twice;
* TensorBoard scalars, each tagged as the driver names it, plus ``iterations_per_second`` over the
  iterations since the previous call, so a run's speed is plotted beside its losses.

Only the writer of a run (the chief under ``--distribute``) passes `write=True`; the others print
the line and write no file.
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from typing import Callable, Mapping, Sequence

from maml_tf.files import atomic_write_text

RATE_TAG = "iterations_per_second"


class RunLog:
    def __init__(self, total: int, start: int = 0, *, log: Callable[[str], None] = print, every_s: float = 10.0,
                 csv_path: str | None = None, csv_fields: Sequence[str] = (), tb_dir: str | None = None,
                 write: bool = True):
        self.total, self.start, self.every_s, self.log = total, start, every_s, log
        self.t0 = self._last_line = self._last_rate_t = time.perf_counter()
        self._last_rate_itr = start - 1
        self.csv_path = csv_path if write else None
        self.csv_fields = list(csv_fields)
        if self.csv_path:
            _restart_csv(self.csv_path, self.csv_fields, start)
        self._writer = None
        if write and tb_dir:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(tb_dir)

    # -- the stdout line ----------------------------------------------------------------------
    def line(self, itr: int, detail: str, force: bool = False) -> None:
        """``itr <i> | detail | rate, eta`` for iteration `itr` (0-based), if `every_s` has passed."""
        now = time.perf_counter()
        if not force and now - self._last_line < self.every_s:
            return
        self._last_line = now
        rate = self.rate(itr, now)
        left = (self.total - itr - 1) / rate if rate > 0 else math.inf
        self.log(f"itr {itr:4d} | {detail} | {rate:.3g} it/s, eta {_fmt(left)}")

    def rate(self, itr: int, now: float | None = None) -> float:
        """Iterations per second since the run (or its resumed part) started, `itr` included."""
        now = time.perf_counter() if now is None else now
        return (itr + 1 - self.start) / max(now - self.t0, 1e-9)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    # -- files --------------------------------------------------------------------------------
    def row(self, values: Mapping[str, object]) -> None:
        """Append one csv row (columns `csv_fields`; missing ones left empty)."""
        if self.csv_path:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, self.csv_fields, extrasaction="ignore").writerow(values)

    def scalars(self, itr: int, values: Mapping[str, float], rate: bool = True) -> None:
        """TensorBoard scalars at step `itr` (non-finite ones skipped); with `rate`, iterations/s
        since the previous `rate` call as RATE_TAG."""
        if self._writer is None:
            return
        import tensorflow as tf

        with self._writer.as_default(step=itr):
            for tag, value in values.items():
                if value is not None and math.isfinite(float(value)):
                    tf.summary.scalar(tag, value)
            if rate:
                now = time.perf_counter()
                if itr > self._last_rate_itr:
                    tf.summary.scalar(RATE_TAG, (itr - self._last_rate_itr) / max(now - self._last_rate_t, 1e-9))
                self._last_rate_itr, self._last_rate_t = itr, now

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _restart_csv(path: str, fields: list[str], start: int) -> None:
    """Header plus the rows of iterations before `start` (a resumed run), in one atomic rewrite."""
    rows = []
    if start > 0 and os.path.exists(path):
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("itr") not in (None, "") and int(r["itr"]) < start]
    kept = io.StringIO(newline="")
    w = csv.DictWriter(kept, fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, kept.getvalue())


def _fmt(seconds: float) -> str:
    if seconds == math.inf:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
