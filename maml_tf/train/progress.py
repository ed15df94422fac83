"""A progress line for long runs: iterations/s, ETA and the latest losses, at most every few seconds."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int = 0, every_s: float = 10.0, stream=sys.stdout):
        self.total, self.start, self.every_s, self.stream = total, start, every_s, stream
        self.t0 = self.last = time.time()

    def update(self, itr: int, extra: str = "", force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        done = itr + 1 - self.start
        rate = done / max(now - self.t0, 1e-9)
        left = (self.total - itr - 1) / rate if rate > 0 else float("inf")
        self.stream.write(f"[progress] itr {itr + 1}/{self.total}  {rate:.1f} it/s  "
                          f"eta {_fmt(left)}  {extra}\n")
        self.stream.flush()

    @property
    def elapsed(self) -> float:
        return time.time() - self.t0


def _fmt(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
