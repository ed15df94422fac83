"""The benchmark scripts still run (their figures are measured by hand; here only that they work)."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_bench_supervised_runs_and_reports(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench_supervised.py"), "--workloads",
                           "sinusoid", "--repeats", "1", "--seconds", "0.2", "--warmup", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert "error" not in row, row
    assert row["workload"] == "sinusoid" and row["its_per_s_median"] > 0 and row["gflop_per_it"] > 0
    # the original code timed in the same run, at both of its pool settings, when ../shared/refbench is there
    import importlib.util
    spec = importlib.util.spec_from_file_location("original", os.path.join(REPO, "bench", "original.py"))
    original = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(original)
    if original.refbench_dir() is not None:
        for key, pools in (("tf", "%d/%d" % original.default_pools()), ("12", "1/2")):
            assert row[f"original_{key}_its_per_s"] > 0 and row[f"original_{key}_pools"] == pools, row
            assert row[f"ratio_to_original_{key}"] == row["its_per_s_median"] / row[f"original_{key}_its_per_s"]
    else:
        assert "ratio_to_original_tf" not in row and "refbench" in proc.stdout + proc.stderr
    # maml_tf.main's automatic pools (one op per core on a CPU; TensorFlow's own with a GPU); the matmul
    # yardstick from its own process
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    assert row["device"] == ("GPU" if gpu else "CPU")
    assert (row["intra_op"], row["inter_op"]) == ((0, 0) if gpu else (1, len(os.sched_getaffinity(0))))
    assert row["matmul_gflops"] > 0 and row["fraction_of_hardware"] > 0


@pytest.mark.slow
def test_bench_data_runs_and_reports(tmp_path):
    out = tmp_path / "data.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench_data.py"), "--workloads", "omniglot5",
                           "--seconds", "0.3", "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["stream_batches_per_s"] > 0 and row["step_fed_by_stream_its_per_s"] > 0
    assert row["fed_over_fixed"] == row["step_fed_by_stream_its_per_s"] / row["step_fixed_batch_its_per_s"]


def _bench_ops():
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import bench_ops
    return bench_ops


def test_bench_ops_attributes_self_time_by_op_type():
    """Kernels nested in the executor's Process events, a ParallelFor inside a kernel, a second thread."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    ops = _bench_ops()
    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    names = {1: "ExecutorState::Process", 2: "model/conv1/Conv2D:_MklNativeConv2D", 3: "ParallelFor",
             4: "model/mul:Mul", 5: "ExecutorDoneCallback"}
    for i, n in names.items():
        plane.event_metadata[i].id, plane.event_metadata[i].name = i, n
    line = plane.lines.add(name="tf_Compute/1")
    for mid, start, dur in [(1, 0, 100), (2, 10, 50), (3, 20, 10), (4, 70, 20), (5, 120, 5)]:
        line.events.add(metadata_id=mid, offset_ps=start, duration_ps=dur)
    other = plane.lines.add(name="tf_Compute/2")
    other.events.add(metadata_id=2, offset_ps=0, duration_ps=40)
    plane.lines.add(name="python").events.add(metadata_id=4, offset_ps=0, duration_ps=1000)  # not a compute thread
    seconds, counts, threads = ops.kernel_seconds(space.SerializeToString())
    assert threads == 2
    assert {k: round(v * 1e12) for k, v in seconds.items()} == {"Conv2D": 90, "Mul": 20, ops.EXECUTOR: 30}
    assert counts == {"Conv2D": 2, "Mul": 1, ops.EXECUTOR: 1}


def test_bench_ops_runs_and_reports(tmp_path):
    """bench_ops reads the CPU plane of the profiler trace: run on the CPU (any GPU hidden)."""
    out = tmp_path / "ops.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench_ops.py"), "--workloads", "sinusoid",
                           "--steps", "2", "--no_matmul", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    kinds = {o["op"]: o for o in row["ops"]}
    assert "BatchMatMulV2" in kinds and kinds["BatchMatMulV2"]["calls_per_step"] > 0  # the FC net's layers
    assert abs(sum(o["share"] for o in row["ops"]) - 1) < 1e-6
    assert row["compute_threads"] >= 1 and 0 < row["kernel_busy_fraction"]
    assert "compute threads busy" in proc.stdout
