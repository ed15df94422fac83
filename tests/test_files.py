"""maml_tf.files: result and checkpoint files are complete or absent, never half-written."""
import os
import threading

import pytest

from maml_tf import files


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    files.atomic_write_text(str(path), "old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        files.atomic_write_text(str(path), "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["record.json"]


def test_threads_writing_one_file_never_collide(tmp_path):
    """Threads of one process (run_experiments --jobs) may rewrite the same file: each gets its own temp."""
    path = str(tmp_path / "README.md")
    texts = [f"writer {i}\n" * 2000 for i in range(8)]
    errors = []

    def write(text):
        try:
            for _ in range(20):
                files.atomic_write_text(path, text)
        except Exception as e:  # noqa: BLE001 - any failure is the test's finding
            errors.append(e)
    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert open(path).read() in texts
    assert os.listdir(tmp_path) == ["README.md"]


def test_files_are_ordinary_permissions(tmp_path):
    path = tmp_path / "a.csv"
    files.atomic_write_bytes(str(path), b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask


def test_writable_problem_names_the_reason(tmp_path):
    assert files.writable_problem(str(tmp_path / "new" / "folder")) is None
    assert (tmp_path / "new" / "folder").is_dir()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "Not a directory" in files.writable_problem(str(blocker / "sub")) or \
        "File exists" in files.writable_problem(str(blocker / "sub"))


def test_figures_are_written_whole(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    files.atomic_savefig(fig, str(tmp_path / "fig.png"), dpi=50)
    plt.close(fig)
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["fig.png"]
