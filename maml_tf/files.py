"""Writing result and checkpoint files so that a crash never leaves one half-written.

TensorFlow-free on purpose: the experiment runner (a subprocess orchestrator) uses it too.
"""
from __future__ import annotations

import io
import os
import tempfile


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it over `path` (never half-written).

    mkstemp gives every writer its own temporary name, so threads of one process (run_experiments
    --jobs) writing the same file cannot collide; the last rename wins with a complete file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def writable_problem(folder: str) -> str | None:
    """Why files cannot be written in `folder` (created if missing), or None if they can.

    Checked before a long run starts, so a typo'd or read-only folder fails in a second, not after
    hours of training; callers word the error for their flag.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        return str(e.strerror or e)
    return None


def atomic_savefig(fig, path: str, **savefig_args) -> None:
    """matplotlib's `fig.savefig(path)`, rendered in memory and written atomically (format from the extension)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=os.path.splitext(path)[1][1:] or "png", **savefig_args)
    atomic_write_bytes(path, buf.getvalue())
