"""bench/bench_api.py still runs and checks what it times (figures are measured by hand: bench/README.md)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_api_runs_and_times_the_same_computation(tmp_path):
    out = tmp_path / "api.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_api.py"), "--workload", "omniglot5_fo",
                           "--meta_batch_size", "2", "--rounds", "1", "--seconds", "0.2", "--warmup", "0",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert set(r["rates"]) == {"faithful", "api_loop", "api_vectorized_map"}
    assert set(r["ratio_to_faithful"]) == {"api_loop", "api_vectorized_map"}
    assert all(d < 1e-4 for d in r["metagrad_max_rel_diff_vs_faithful"].values())
    assert "api_loop" in proc.stdout and "vs faithful" in proc.stdout
