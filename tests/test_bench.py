"""The benchmark scripts still run (their figures are measured by hand; here only that they work)."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_supervised_runs_and_reports(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench_supervised.py"), "--workloads",
                           "sinusoid", "--repeats", "1", "--seconds", "0.2", "--warmup", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert "error" not in row, row
    assert row["workload"] == "sinusoid" and row["its_per_s_median"] > 0 and row["gflop_per_it"] > 0
    assert row["ratio_to_original"] == row["its_per_s_median"] / row["original_its_per_s"]
    # maml_tf.main's automatic pools on this CPU-only machine; the matmul yardstick from its own process
    assert (row["intra_op"], row["inter_op"]) == (1, len(os.sched_getaffinity(0)))
    assert row["matmul_gflops"] > 0 and row["fraction_of_hardware"] > 0


def test_bench_data_runs_and_reports(tmp_path):
    out = tmp_path / "data.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench_data.py"), "--workloads", "omniglot5",
                           "--seconds", "0.3", "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["stream_batches_per_s"] > 0 and row["step_fed_by_stream_its_per_s"] > 0
    assert row["fed_over_fixed"] == row["step_fed_by_stream_its_per_s"] / row["step_fixed_batch_its_per_s"]
