"""Stop a long training run cleanly on SIGINT / SIGTERM: at an iteration boundary, with a checkpoint.

A Table 1 run outlasts a working session: it is stopped by Ctrl-C, `kill`, or `./run_experiments.sh`
passing a stop on. A KeyboardInterrupt in the middle of a step could leave the weights, both Adams and
the task stream at different iterations; instead the signal only raises a flag, the loop finishes the
iteration it is in, writes a checkpoint holding exactly that state and raises `TrainingStopped`, so
the resumed run continues exactly where this one stopped.
"""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """Training stopped on request after a checkpoint was written; the run resumes with the same command."""

    def __init__(self, signum: int, next_itr: int, total: int, checkpoint: str | None):
        self.signum, self.next_itr, self.total, self.checkpoint = signum, next_itr, total, checkpoint
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint written (not the writing worker)"
        super().__init__(f"stopped by {signal.Signals(signum).name} before iteration {next_itr} of {total}; "
                         f"{where}; the same command resumes it")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention for "ended by this signal"


class StopRequest:
    """Context manager: while inside, SIGINT/SIGTERM set `signum` instead of interrupting.

    Only the main thread can install signal handlers; elsewhere (a test calling `train` from a
    thread) it does nothing and signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None
