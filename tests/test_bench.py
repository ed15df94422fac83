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


@pytest.mark.slow  # profiles a traced step: ~5 s; kept out of the 5-minute default set
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


# --- bench_ops --original / --static and bench_main: their logic, nothing timed ---------------------------
def _bench_module(name):
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import importlib
    return importlib.import_module(name)


def test_bench_ops_diff_orders_by_time_then_calls():
    ops = _bench_ops()
    rows = ops.diff_ops({"Conv2D": (10.0, 100), "Mul": (2.0, 50), "Tile": (0.8, 10)},
                        {"Conv2D": (9.0, 100), "Mul": (4.5, 800), "Stack": (0.5, 30)})
    assert [r["op"] for r in rows] == ["Mul", "Conv2D", "Tile", "Stack"]
    mul = rows[0]
    assert (mul["diff"], mul["ours_calls"], mul["original_calls"], mul["diff_calls"]) == (-2.5, 50, 800, -750)
    assert rows[3] == {"op": "Stack", "ours": 0.0, "original": 0.5, "diff": -0.5, "ours_calls": 0.0,
                       "original_calls": 30, "diff_calls": -30}

    def report(ops_ms):
        return {"description": "w", "intra_op": 1, "inter_op": 2, "wall_s_per_step": 0.5, "kernel_s_per_step": 0.9,
                "kernel_busy_fraction": 0.9, "compute_threads": 2, "executor_share": 0.02, "conv_share": 0.6,
                "ops": [{"op": k, "ms_per_step": v, "calls_per_step": c} for k, (v, c) in ops_ms.items()]}
    text = ops.format_compare(report({"Conv2D": (10.0, 100), "Tile": (1.0, 10)}),
                              report({"Conv2D": (9.0, 100), "Stack": (0.5, 30)}), top=5)
    assert "ours vs the original" in text and "differs most in calls/step" in text
    assert ops.format_compare(report({}), {"error": "no refbench"}, 5) == "original: not profiled: no refbench"


def test_bench_ops_static_counts_v1_loop_bodies_per_iteration_and_function_bodies_per_call():
    from tensorflow.core.framework import graph_pb2
    ops = _bench_ops()
    g = graph_pb2.GraphDef()
    for name, op, inputs in [("x", "Placeholder", []), ("map/while/Enter", "Enter", ["x"]),
                             ("map/while/Merge", "Merge", ["map/while/Enter", "map/while/NextIteration"]),
                             ("map/while/mul", "Mul", ["map/while/Merge"]),
                             ("map/while/c", "Const", ["^map/while/mul"]),
                             ("map/while/NextIteration", "NextIteration", ["map/while/mul"]),
                             ("map/while/Exit", "Exit", ["map/while/Merge:0"]), ("relu", "Relu", ["map/while/Exit"]),
                             ("gradients/map/while/f_acc", "StackV2", []),  # named in the loop, made outside it
                             ("push", "StackPushV2", ["gradients/map/while/f_acc", "map/while/mul"]),
                             ("call", "PartitionedCall", ["relu"])]:
        g.node.add(name=name, op=op, input=inputs)
    g.node[-1].attr["f"].func.name = "fn"
    fn = g.library.function.add()
    fn.signature.name = "fn"
    fn.node_def.add(name="conv", op="Conv2D")
    fn.node_def.add(name="r", op="Relu")
    assert ops.graph_op_counts(g, loop_multiplier=4) == {
        "Placeholder": 1, "Enter": 1, "Merge": 4, "Mul": 4, "Const": 4, "NextIteration": 4, "Exit": 1, "Relu": 2,
        "StackV2": 1, "StackPushV2": 4, "PartitionedCall": 1, "Conv2D": 1}
    assert ops.graph_op_counts(g)["Mul"] == 1  # ours: no v1 loops, nothing multiplied
    text = ops.format_static({"description": "w", "meta_batch_size": 4, "op_counts": {"Mul": 1, "Conv2D": 1}},
                             {"op_counts": {"Mul": 4, "Conv2D": 1}}, top=5)
    assert "Mul" in text and "-3" in text and "same count: Conv2D 1" in text


def test_bench_ops_skips_the_original_without_refbench(tmp_path, monkeypatch):
    monkeypatch.setenv("MAML_TF_REFBENCH", str(tmp_path))  # no bench_ref.py there
    ops = _bench_ops()
    r = ops.original_child("omniglot20", 1, 1, 2, False, 10, dict(os.environ))
    assert "refbench" in r["error"]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "original_ops.py"), "omniglot20",
                           "--intra_op", "1", "--inter_op", "2"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MAML_TF_REFBENCH=str(tmp_path)))
    assert proc.returncode == 2 and "refbench" in json.loads(proc.stdout)["error"]


def test_original_ops_reads_refbench_conf_without_running_it(tmp_path, monkeypatch):
    (tmp_path / "bench_ref.py").write_text(
        "import os\nCONF = {'omni20w1s': (['--num_classes=20'], int(os.environ.get('TNU', '1')), dict(kind='images'))}\n"
        "raise SystemExit('the script ran')\n")
    monkeypatch.delenv("TNU", raising=False)
    oo = _bench_module("original_ops")
    assert oo.refbench_conf(str(tmp_path)) == {"omni20w1s": (["--num_classes=20"], 1, {"kind": "images"})}
    real = oo.original.refbench_dir()
    if real is not None:  # every workload maps to a configuration of the real harness
        conf = oo.refbench_conf(real)
        assert {name for name, _ in oo.original.REFBENCH_NAME.values()} <= set(conf)


def test_bench_main_reads_mains_own_rate():
    bm = _bench_module("bench_main")
    # iteration 0 ends 10 s after the start (traces), then 100 iterations at 5/s, 100 at 4/s; 300 in all,
    # done at 100 s: from iteration 100 (30 s) to the end, 199 iterations in 70 s
    r = bm.main_rate([(0, 0.1), (100, 5.0), (200, 4.0)], total=300, elapsed_s=100.0)
    assert r["from_iteration"] == 100 and r["window_iterations"] == 199
    assert abs(r["window_s"] - 70.0) < 1e-9 and abs(r["its_per_s"] - 199 / 70) < 1e-12
    assert r["interval_rates"] == [4.0] and abs(r["end_to_end_its_per_s"] - 3.0) < 1e-12
    with pytest.raises(ValueError, match="summary iteration"):
        bm.main_rate([(0, 0.1)], total=5, elapsed_s=2.0)
    assert bm.parse_done("itr 3 | ...\nTraining done: 501 iterations in 312.4 s; checkpoint /x/model500\n") == (501, 312.4)
    with pytest.raises(ValueError):
        bm.parse_done("maml_tf: error: ...")


def test_bench_main_reads_tensorboard_rate_scalars(tmp_path):
    import struct

    from tensorboard.compat.proto import event_pb2
    bm = _bench_module("bench_main")
    with open(tmp_path / "events.out.tfevents.1.host", "wb") as f:
        for step, value, tag in [(0, 0.5, bm.RATE_TAG), (0, 9.0, "metatrain_Pre-update loss"), (100, 4.25, bm.RATE_TAG)]:
            ev = event_pb2.Event(step=step, wall_time=1.0)
            v = ev.summary.value.add(tag=tag)
            if step:
                v.simple_value = value  # TF1-style scalar
            else:
                v.tensor.dtype, v.tensor.float_val[:] = 1, [value]  # TF2 summary: a float32 tensor
            data = ev.SerializeToString()
            f.write(struct.pack("<Q", len(data)) + b"\0" * 4 + data + b"\0" * 4)
    assert bm.rate_scalars(str(tmp_path)) == [(0, 0.5), (100, 4.25)]


def test_bench_main_runs_the_registry_training_flags():
    """The training command is Table 1's (experiments registry), the same workload as the bench step."""
    from maml_tf.config import Config
    from maml_tf.experiments.registry import EXPERIMENTS
    bm = _bench_module("bench_main")
    for workload, exp in (("omniglot5", "omniglot_5way1shot"), ("omniglot20", "omniglot_20way1shot")):
        cmd = bm.main_command(workload, 500, "/logs", "/data", ["--summary_interval=10"])
        assert cmd[1:3] == ["-m", "maml_tf.main"] and "--metatrain_iterations=501" in cmd and cmd[-1] == "--summary_interval=10"
        flags = dict(a[2:].split("=", 1) for a in cmd[3:-1])
        assert (flags["logdir"], flags["data_dir"]) == ("/logs", "/data")
        registry = {k: v for k, v in EXPERIMENTS[exp].train_flags.items() if k != "metatrain_iterations"}
        assert Config(**registry) == Config(**bm.bs.WORKLOADS[workload].flags)


def test_bench_supervised_settings_take_any_config_flag_by_its_type():
    bs = _bench_module("bench_supervised")
    assert bs._setting("fused_moments_grad") == ("fused_moments_grad", True)
    assert bs._setting("stop_grad=false") == ("stop_grad", False)
    assert bs._setting("task_layout=stacked") == ("task_layout", "stacked")
    assert bs._setting("meta_batch_size=8") == ("meta_batch_size", 8)
    for bad, why in (("no_such_flag", "no Config flag"), ("task_layout", "needs a value"),
                     ("meta_batch_size=many", "of type int"), ("stop_grad=maybe", "is boolean")):
        with pytest.raises(SystemExit, match=why):
            bs._setting(bad)
    assert set(bs.DEFAULT_WORKLOADS) < set(bs.WORKLOADS) and "omniglot5_5shot" not in bs.DEFAULT_WORKLOADS
