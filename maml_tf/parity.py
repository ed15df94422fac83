"""`python -m maml_tf.parity FIXTURE.json [...]`: reproduce a golden fixture of the original code.

Builds the reference configuration from the fixture's flags, loads the recorded initial weights by
reference variable name, feeds the recorded batch and compares every recorded quantity (outputs,
losses, accuracies, meta-gradients first and second order, weights and Adam state after 1 and 3
meta-steps, the tf2-moments variants, the float64 rebuild) with the tolerances of the golden README.
Prints a table per fixture file (max abs / rel error, tolerance used and why), exits 1 when anything
is out of tolerance. `--dump DIR` writes what was computed, one npz per fixture file, same names and
keys; `--json FILE` writes the report.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
from absl import app, flags

from maml_tf.config import TASK_LAYOUTS
from maml_tf.errors import MamlError
from maml_tf.reference import golden
from maml_tf.reference.compute import FORWARD_KEYS, compute, replay_tf1_adam
from maml_tf.reference.golden import key

FLAGS = flags.FLAGS
flags.DEFINE_string("dump", None, "write the computed arrays to DIR (one npz per fixture file, same keys)")
flags.DEFINE_string("json", None, "write the report as JSON to this file")
flags.DEFINE_list("files", ["primary", "firstorder", "normvariants", "float64"],
                  "which fixture files to check (primary, firstorder, normvariants, float64)")
flags.DEFINE_bool("quiet", False, "print only failures and the summary")
flags.DEFINE_enum("layout", "auto", list(TASK_LAYOUTS),
                  "conv nets' per-task activation layout to check (maml_tf.main's --task_layout)")
flags.DEFINE_integer("chunks", 0, "groups of tasks for --layout=chunked (maml_tf.main's --task_chunks; 0: auto; "
                     "1 stacks a fixture's tasks into one chunk)")
flags.DEFINE_bool("fused_moments", False, "check the norm layers' hand-written moments gradient "
                  "(maml_tf.main's --fused_moments_grad; named apart from it: both modules load in one process)")

FORWARD_RTOL = 1e-5
FLOAT64_RTOL = 1e-9
CASE_METAGRAD_RTOL = {"A": 1e-4, "B": 1e-4, "C": 1e-4, "D": 3e-4, "E": 3e-2, "F": 1e-4, "G": 1e-4}
# The float32 tf2_moments meta-gradients of case C hinge on a ReLU input within 1e-7 of zero (golden
# README, "Environment sensitivity"): CPUs whose oneDNN kernels round differently (an AVX-512 Xeon
# here) land it on the other side and move them by up to 16%. 0.2 still tells the two moment formulas
# apart (they differ by 0.29-0.82 in C); the variant is pinned at 1e-9 by the float64 file.
NORMVARIANT_F32_RTOL = {"C": 0.2}
# The same README gives the tf2_moments forward values as equal to the primary's "to about 1e-5 (up to
# about 1% in D/E)"; on the AVX-512 Xeon case E's float32 outputs land at 1.35e-5 of the fixture.
NORMVARIANT_F32_FORWARD_RTOL = {"D": 1e-4, "E": 1e-4}
AFTER3_POLICY = {"A": "rel", "B": "rel", "C": "abs", "F": "abs"}  # others: chaotic in float32 (README)


@dataclasses.dataclass
class Row:
    file: str
    key: str
    shape: tuple
    max_abs: float
    max_rel: float
    tol: float
    rule: str
    ok: bool


class Checker:
    def __init__(self, fixture: golden.Fixture):
        self.fx = fixture
        self.case = str(fixture.meta.get("case", "?")).upper()[:1]
        self.rows: list[Row] = []
        self.bn_fed: frozenset[str] = frozenset()
        self.classification = bool(fixture.meta.get("classification"))

    # -- tolerances ---------------------------------------------------------------------------
    def metagrad_rtol(self, var: str) -> tuple[float, str]:
        rtol = CASE_METAGRAD_RTOL.get(self.case, 1e-4)
        if self.case == "E" and var.split("/")[-1] in ("w5", "b5"):
            return 3e-3, "E w5/b5 meta-gradients: rtol 3e-3 (README comparison policy)"
        return rtol, f"meta-gradient rtol {rtol:g} for case {self.case} (README suggested tolerances)"

    def compare(self, file: str, k: str, ours, ref, tol: float, rule: str, mode: str = "rel") -> None:
        ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
        if ours.shape != ref.shape:
            self.rows.append(Row(file, k, ref.shape, np.inf, np.inf, tol, f"shape {ours.shape} != {ref.shape}", False))
            return
        diff = np.abs(ours - ref)
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
        ok = (max_rel <= tol) if mode == "rel" else (max_abs <= tol)
        self.rows.append(Row(file, k, ref.shape, max_abs, max_rel, tol, rule, bool(ok)))

    def compare_elementwise(self, file: str, k: str, ours, ref, allowed: np.ndarray, rule: str) -> None:
        ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
        diff = np.abs(ours - ref)
        ok = bool(np.all(diff <= allowed))
        scale = float(np.abs(ref).max()) or 1.0
        self.rows.append(Row(file, k, ref.shape, float(diff.max()), float(diff.max()) / scale,
                             float(allowed.max()), rule, ok))

    # -- the checks ------------------------------------------------------------------------
    def check_forward_and_grads(self, file: str, ours: dict, ref: dict, prefix: str = "", float64: bool = False):
        for k in FORWARD_KEYS + ("meta_loss",):
            rk = prefix + k
            if rk not in ref or k not in ours:
                continue
            if k.startswith(("accuracies", "total_accurac")):
                self.compare(file, rk, ours[k], ref[rk], 1e-6, "accuracies: equal (same argmax)", "abs")
            else:
                tol = FLOAT64_RTOL if float64 else FORWARD_RTOL
                if not float64 and prefix.startswith("tf2_moments") and self.case in NORMVARIANT_F32_FORWARD_RTOL:
                    tol = NORMVARIANT_F32_FORWARD_RTOL[self.case]
                self.compare(file, rk, ours[k], ref[rk], tol, f"losses/outputs rtol {tol:g}")
        grad_keys = [k for k in ref if k.startswith(prefix + "metagrad")]
        scale = max(float(np.abs(ref[k]).max()) for k in grad_keys) if grad_keys else 0.0
        for rk in grad_keys:
            k = rk[len(prefix):]
            var = k.split("__", 1)[1].replace("__", "/")
            # tf2 moments give these biases large, non-zero second-order values (quirk 5): relative there.
            if var in self.bn_fed and ("tf2_moments" not in prefix or "firstorder" in prefix):
                base = FLOAT64_RTOL if float64 else CASE_METAGRAD_RTOL.get(self.case, 1e-4)
                tol = base * scale
                self.compare(file, rk, ours[k], ref[rk], tol,
                             f"bias feeding batch norm: true gradient 0, compared absolutely "
                             f"({base:g} x largest meta-gradient {scale:.3g})", "abs")
                continue
            if float64:
                self.compare(file, rk, ours[k], ref[rk], FLOAT64_RTOL, "float64 rebuild: rtol 1e-9")
            elif prefix.startswith("tf2_moments") and self.case in NORMVARIANT_F32_RTOL:
                rtol = NORMVARIANT_F32_RTOL[self.case]
                self.compare(file, rk, ours[k], ref[rk], rtol,
                             f"float32 tf2_moments meta-gradient, case {self.case}: rtol {rtol:g} (a ReLU input "
                             f"within 1e-7 of zero; README environment sensitivity; float64 file at 1e-9)")
            else:
                rtol, why = self.metagrad_rtol(var)
                self.compare(file, rk, ours[k], ref[rk], rtol, why)

    def check_after(self, file: str, ours: dict, ref: dict, init: dict, lr: float, names: list[str]):
        for n in names:
            g_ref = ref.get(f"metagrad_clipped__{key(n)}", ref.get(f"metagrad__{key(n)}"))
            rk = f"after1__{key(n)}"
            if rk in ref and g_ref is not None:
                if n in self.bn_fed:
                    near_zero = np.ones_like(g_ref, bool)
                else:
                    rtol, _ = self.metagrad_rtol(n)
                    near_zero = np.abs(g_ref) <= rtol * np.abs(g_ref).max()
                allowed = np.where(near_zero, 2 * lr, 5e-6)
                self.compare_elementwise(file, rk, ours[rk], ref[rk], allowed,
                                         "after 1 Adam step: 5e-6 abs, 2*meta_lr where the gradient is within "
                                         "tolerance of 0 (sign may flip)")
            for slot in ("Adam_2", "Adam_3"):
                rk = f"after1__{key(n)}__{slot}"
                if rk in ref and n not in self.bn_fed:
                    rtol, _ = self.metagrad_rtol(n)
                    t = rtol if slot == "Adam_2" else 2 * rtol
                    self.compare(file, rk, ours[rk], ref[rk], t, f"Adam slot after 1 step: from the gradient (rtol {t:g})")
        for p in ("beta1_power_1", "beta2_power_1"):
            for step in (1, 3):
                rk = f"after{step}__{p}"
                if rk in ref:
                    self.compare(file, rk, ours[rk], ref[rk], 1e-6, "Adam beta power", "rel")
        policy = AFTER3_POLICY.get(self.case)
        for n in names:
            for suffix, is_slot in ((f"{key(n)}", False), (f"{key(n)}__Adam_2", True), (f"{key(n)}__Adam_3", True)):
                rk = f"after3__{suffix}"
                if rk not in ref:
                    continue
                if policy == "rel":
                    self.compare(file, rk, ours[rk], ref[rk], 1e-4, "after 3 steps: rtol 1e-4 (cases A, B)")
                elif policy == "abs" and n not in self.bn_fed:
                    if is_slot:
                        self.compare(file, rk, ours[rk], ref[rk], 1e-2, "after 3 steps, Adam slot: rtol 1e-2 (C, F)")
                    else:
                        self.compare(file, rk, ours[rk], ref[rk], 0.5 * lr,
                                     "after 3 steps: 0.5*meta_lr abs (C, F)", "abs")

    def check_replayed_adam(self, file: str, ours: dict, init: dict, names: list[str], lr: float, clip):
        """Our own after3 against TF1 Adam replayed in numpy on our own per-step gradients."""
        replay = replay_tf1_adam(init, names, ours["_step_grads"], lr, clip)
        steps = len(ours["_step_grads"])
        for n in names:
            rk = f"after3__{key(n)}"
            if n in self.bn_fed:
                # Their gradient is rounding noise, recomputed in another graph for the replay: Adam
                # may step either way, by about meta_lr per step.
                self.compare(file + " (replayed Adam)", rk, ours[rk], replay[n], 2 * lr * steps,
                             f"bias feeding batch norm (noise gradient): 2*meta_lr*{steps} abs", "abs")
                continue
            self.compare(file + " (replayed Adam)", rk, ours[rk], replay[n], 1e-6,
                         "after 3 steps vs numpy TF1 Adam on our gradients: 1e-6 abs", "abs")


def check(path: str, which: list[str], dump: str | None = None, log=print,
          overrides: dict | None = None) -> Checker:
    """Compare the fixture at `path` with our computation; `overrides` replaces Config fields of the
    fixture's flags that must not change the numbers beyond the tolerances (task_layout, ...)."""
    fx = golden.load(path)
    chk = Checker(fx)
    base = fx.files.get("")
    if base is None:
        raise MamlError(f"fixture {path}: the primary npz is missing")
    meta = fx.meta
    cfg = fx.config(logdir="/tmp/unused").replace(**(overrides or {}))
    # The fixture harness constructs MAML(test_num_updates=...) itself; use its value, not main.py's.
    test_num_updates = int(meta["test_num_updates"])
    recorded = meta.get("num_post_update_steps_recorded")
    if recorded is not None and int(recorded) != max(test_num_updates, cfg.num_updates):
        raise MamlError(f"fixture {path}: records {recorded} post-update steps, but test_num_updates="
                        f"{test_num_updates} and num_updates={cfg.num_updates} give {max(test_num_updates, cfg.num_updates)}")
    names = [v["name"] for v in meta["variables"] if v.get("trainable")]
    init = {n: base[f"init__{key(n)}"] for n in names}
    batch = tuple(base[k] for k in ("inputa", "labela", "inputb", "labelb"))
    dumps: dict[str, dict] = {}
    lr = cfg.meta_lr

    def run(file_suffix, stop_grad, variant="exact", dtype="float32", steps=(1, 3)):
        c = cfg.replace(stop_grad=stop_grad, norm_variant=variant)
        ours, learner = compute(c, init, batch, dtype=dtype, adam_steps=steps, test_num_updates=test_num_updates)
        chk.bn_fed = learner.model.bn_fed_biases
        return ours, learner.model.reference_names

    if "primary" in which:
        ours, order = run("", False)
        f = fx.file_name("")
        chk.check_forward_and_grads(f, ours, base)
        chk.check_after(f, ours, base, init, lr, order)
        chk.check_replayed_adam(f, ours, init, order, lr, cfg.clip_value)
        dumps[f] = {**{k: v for k, v in ours.items() if not k.startswith("_")},
                    **{k: base[k] for k in base if k in ("inputa", "labela", "inputb", "labelb", "class_ids_a",
                                                        "class_ids_b", "sinusoid_amp", "sinusoid_phase")},
                    **{f"init__{key(n)}": init[n] for n in names}}
    if "firstorder" in which and "_firstorder" in fx.files:
        ref = fx.files["_firstorder"]
        ours, order = run("_firstorder", True)
        f = fx.file_name("_firstorder")
        chk.check_forward_and_grads(f, ours, ref)
        chk.check_after(f, ours, ref, init, lr, order)
        dumps[f] = {k: v for k, v in ours.items() if k in ref}
    if "normvariants" in which and "_normvariants" in fx.files:
        ref = fx.files["_normvariants"]
        f = fx.file_name("_normvariants")
        dumps[f] = {}
        for prefix, sg in (("tf2_moments__", False), ("tf2_moments_firstorder__", True)):
            ours, _ = run("_normvariants", sg, variant="tf2", steps=())
            chk.check_forward_and_grads(f, ours, ref, prefix)
            dumps[f].update({prefix + k: v for k, v in ours.items() if prefix + k in ref})
    if "float64" in which and "_float64" in fx.files:
        ref = fx.files["_float64"]
        f = fx.file_name("_float64")
        dumps[f] = {}
        variants = [("secondorder__", False, "exact"), ("firstorder__", True, "exact"),
                    ("tf2_moments_secondorder__", False, "tf2"), ("tf2_moments_firstorder__", True, "tf2")]
        for prefix, sg, variant in variants:
            if not any(k.startswith(prefix) for k in ref):
                continue
            ours, _ = run("_float64", sg, variant=variant, dtype="float64", steps=())
            chk.check_forward_and_grads(f, ours, ref, prefix, float64=True)
            dumps[f].update({prefix + k: v for k, v in ours.items() if prefix + k in ref})
    if dump:
        os.makedirs(dump, exist_ok=True)
        for fname, arrays in dumps.items():
            np.savez_compressed(os.path.join(dump, fname), **arrays)
    return chk


def format_table(chk: Checker, quiet: bool = False) -> str:
    lines = []
    current = None
    for r in chk.rows:
        if quiet and r.ok:
            continue
        if r.file != current:
            current = r.file
            lines.append(f"\n== {r.file}")
            lines.append(f"{'status':6} {'key':48} {'shape':16} {'max_abs':>10} {'max_rel':>10} {'tol':>9}  rule")
        lines.append(f"{'ok' if r.ok else 'FAIL':6} {r.key[:48]:48} {str(list(r.shape))[:16]:16} "
                     f"{r.max_abs:10.3g} {r.max_rel:10.3g} {r.tol:9.3g}  {r.rule}")
    bad = sum(not r.ok for r in chk.rows)
    lines.append(f"\ncase {chk.case}: {len(chk.rows) - bad} ok, {bad} out of tolerance ({chk.fx.path})")
    return "\n".join(lines)


def check_outputs(dump: str | None, json_path: str | None) -> None:
    """Refuse unwritable --dump / --json before the comparison (minutes for the larger cases), not after it."""
    from maml_tf.files import writable_problem

    if dump:
        problem = writable_problem(dump)
        if problem:
            raise MamlError(f"--dump: cannot write to {dump}: {problem}")
    if json_path:
        if os.path.isdir(json_path):
            raise MamlError(f"--json: {json_path} is a folder; give a file name")
        folder = os.path.dirname(os.path.abspath(json_path))
        problem = writable_problem(folder)
        if problem:
            raise MamlError(f"--json: cannot write {json_path} (folder {folder}: {problem})")


def main(argv) -> None:
    if len(argv) < 2:
        raise app.UsageError("usage: python -m maml_tf.parity FIXTURE.json [FIXTURE.json ...] [--dump DIR] [--json FILE]")
    which = list(FLAGS.files)
    unknown = set(which) - {"primary", "firstorder", "normvariants", "float64"}
    if unknown:
        raise app.UsageError(f"--files: unknown {sorted(unknown)}")
    try:
        check_outputs(FLAGS.dump, FLAGS.json)
    except MamlError as e:
        print(f"maml_tf.parity: error: {e}", file=sys.stderr)
        sys.exit(2)
    import tensorflow as tf

    # Each fixture variant builds its own learner (a new tf.function each): TF's "retracing" warning
    # describes that design, not a problem, so it is hidden here.
    tf.get_logger().setLevel("ERROR")
    failed = 0
    report = []
    try:
        for path in argv[1:]:
            dump = os.path.join(FLAGS.dump, os.path.basename(path)[:-5]) if FLAGS.dump and len(argv) > 2 else FLAGS.dump
            chk = check(path, which, dump, overrides=dict(task_layout=FLAGS.layout, task_chunks=FLAGS.chunks,
                                                          fused_moments_grad=FLAGS.fused_moments))
            print(format_table(chk, FLAGS.quiet), flush=True)
            failed += sum(not r.ok for r in chk.rows)
            report.append({"fixture": path, "case": chk.case,
                           "rows": [{**dataclasses.asdict(r), "shape": list(r.shape)} for r in chk.rows]})
    except MamlError as e:
        print(f"maml_tf.parity: error: {e}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.json:
        from maml_tf.files import atomic_write_text

        atomic_write_text(FLAGS.json, json.dumps(report, indent=1, default=float) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    app.run(main)
