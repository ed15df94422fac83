"""The paper's figures from the run records (matplotlib: the optional `plots` extra, imported lazily).

* Fig. 2: sinusoid fits after 0, 1 and 10 gradient steps, MAML vs pretrained (K=5 and K=10), computed
  from the trained checkpoints on one seeded task;
* Fig. 3: sinusoid MSE vs gradient steps at test time (K=5/10/20), from the test-protocol results;
* classification accuracy vs gradient steps (Table 1 experiments);
* Fig. 5: RL average return vs gradient steps, ours (95% band) and the reference curves (spec 4.1);
* training curves from each run's kept curve.csv (results/runs/<name>/), else its TensorBoard event
  files (supervised) or progress.csv (RL).

Each function returns True when it drew something; `make_all` writes the PNGs next to the README.
"""
from __future__ import annotations

import csv
import glob
import os
from typing import Callable

import numpy as np

from maml_tf.experiments.registry import RL_ENVS, RL_METHODS
from maml_tf.files import atomic_savefig


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _done(records: dict[str, dict], name: str) -> dict | None:
    rec = records.get(name)
    return rec if rec is not None and rec["status"] == "done" and rec["results"] else None


def _train_flags(rec: dict) -> dict:
    return next(c["flags"] for c in rec["commands"] if c["role"] == "train")


# ------------------------------------------------------------------------------------------------ Fig. 2
def sinusoid_predictions(flags: dict, k: int, seed: int, grid: np.ndarray, steps=(1, 10),
                         shipped: str | None = None) -> dict:
    """One seeded task: support points, truth on `grid`, and predictions after 0 and `steps` steps.

    The weights come from the run's checkpoint folder under its logdir or, when that is gone (logs/ is
    not kept), from the shipped ``pretrained/<experiment>/`` folder, which holds the same TF1 checkpoint.
    """
    import tensorflow as tf

    from maml_tf import checkpoint as ckpt
    from maml_tf.config import Config
    from maml_tf.learner import assign_weights, build
    from maml_tf.meta.adapt import adapt_and_evaluate, forward

    cfg = Config.from_dict({**flags, "train": False, "update_batch_size": k,
                            "train_update_batch_size": flags["update_batch_size"], "test_after_train": False})
    folders = [os.path.join(cfg.logdir, cfg.exp_string)]
    if shipped:
        folders.append(os.path.join(shipped, cfg.exp_string))
    prefix = None
    for folder in folders:
        prefix = ckpt.find(folder) if os.path.isdir(folder) else None
        if prefix:
            break
    if prefix is None:
        raise FileNotFoundError("no checkpoint in " + " or ".join(folders))
    learner = build(cfg, meta_batch_size=1, test_num_updates=max(steps))
    assign_weights(learner, ckpt.load(prefix), prefix)
    rng = np.random.RandomState(seed)  # the sinusoid task distribution (spec "Data")
    amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0, np.pi)
    xs = rng.uniform(-5, 5, (1, k, 1))
    f32 = lambda a: tf.constant(a, tf.float32)  # noqa: E731
    ys, gy = amp * np.sin(xs - phase), amp * np.sin(grid - phase)
    params = [v.value for v in learner.variables]
    res = adapt_and_evaluate(learner.model, params, f32(xs), f32(ys), f32(grid[None, :, None]),
                             f32(gy[None, :, None]), loop=learner.config.loop)
    out = {"xs": xs.ravel(), "ys": ys.ravel(), "truth": gy, 0: forward(learner.model, params, f32(grid[:, None])).numpy().ravel()}
    for s in steps:
        out[s] = res["outputbs"][s - 1].numpy().ravel()
    return out


def sinusoid_fits(records: dict[str, dict], path: str, seed: int = 3) -> bool:
    methods = [(m, r) for m in ("sinusoid", "sinusoid_pretrained") if (r := _done(records, m))]
    if not methods:
        return False
    plt = _plt()
    grid = np.linspace(-5, 5, 200)
    shots = (5, 10)
    fig, axes = plt.subplots(len(methods), len(shots), figsize=(4.2 * len(shots), 3.2 * len(methods)), squeeze=False)
    for row, (name, rec) in enumerate(methods):
        for col, k in enumerate(shots):
            p = sinusoid_predictions(_train_flags(rec), k, seed + col, grid, shipped=rec.get("pretrained"))
            ax = axes[row][col]
            ax.plot(grid, p["truth"], "r-", lw=2, label="ground truth")
            ax.plot(grid, p[0], ":", color="C2", label="pre-update")
            ax.plot(grid, p[1], "--", color="C0", label="1 grad step")
            ax.plot(grid, p[10], "-", color="C1", label="10 grad steps")
            ax.plot(p["xs"], p["ys"], "^", color="purple", label=f"{k} points used for gradient")
            title = "MAML" if name == "sinusoid" else "pretrained"
            ax.set_title(f"{title}, K={k}" + (" (quick)" if rec["quick"] else ""))
            ax.set_ylim(-6, 6)
            if row == 0 and col == 0:
                ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------ Fig. 3
def sinusoid_error_vs_steps(records: dict[str, dict], path: str) -> bool:
    """MAML and pretrained curves (log scale); the oracle, which needs no adaptation, as its 0-step line.

    A mean that is not finite or far above the pre-update error (a task whose inner SGD diverged)
    is left off the axis and named in the legend, so one diverging task cannot hide the curves.
    """
    recs = [(n, r) for n in ("sinusoid", "sinusoid_pretrained", "sinusoid_oracle") if (r := _done(records, n))]
    if not recs:
        return False
    plt = _plt()
    shots = sorted({res["K"] for _, r in recs for res in r["results"]})
    fig, axes = plt.subplots(1, len(shots), figsize=(4 * len(shots), 3.4), squeeze=False)
    names = {"sinusoid": "MAML", "sinusoid_pretrained": "pretrained", "sinusoid_oracle": "oracle (0 steps)"}
    for ax, k in zip(axes[0], shots):
        ceiling = 1.0
        for i, (name, rec) in enumerate(recs):
            res = next((x for x in rec["results"] if x["K"] == k), None)
            if res is None:
                continue
            m, c = np.asarray(res["means"], dtype=float), np.asarray(res["ci95"], dtype=float)
            x = np.arange(len(m))
            if name == "sinusoid_oracle":
                ax.axhline(m[0], color=f"C{i}", ls="--", label=names[name])
                continue
            ceiling = max(ceiling, 3 * m[0])
            bad = ~np.isfinite(m) | (m > 10 * m[0])
            label = names[name] + (f" (diverged on some task: steps {', '.join(map(str, x[bad]))})" if bad.any() else "")
            mm = np.where(bad, np.nan, m)
            ax.plot(x, mm, "-o", ms=3, color=f"C{i}", label=label)
            ax.fill_between(x, np.maximum(mm - c, 1e-3), mm + c, color=f"C{i}", alpha=0.2)
        ax.set_yscale("log")
        ax.set_ylim(top=ceiling)
        ax.set_title(f"K={k}")
        ax.set_xlabel("number of gradient steps")
        ax.set_ylabel("mean squared error")
        ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------ Table 1
def accuracy_vs_steps(records: dict[str, dict], path: str) -> bool:
    by_source: dict[str, list] = {}
    for name, rec in records.items():
        if rec.get("table") == "table1" and _done(records, name):
            by_source.setdefault(rec["spec"]["source"], []).append(rec)
    if not by_source:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(by_source), figsize=(5.5 * len(by_source), 3.6), squeeze=False)
    for ax, (source, recs) in zip(axes[0], sorted(by_source.items())):
        for i, rec in enumerate(recs):
            res = rec["results"][0]
            m, c = 100 * np.asarray(res["means"]), 100 * np.asarray(res["ci95"])
            x = np.arange(len(m))
            ax.plot(x, m, "-o", ms=3, color=f"C{i % 10}", label=rec["name"])
            ax.fill_between(x, m - c, m + c, color=f"C{i % 10}", alpha=0.15)
        ax.set_title(source)
        ax.set_xlabel("number of gradient steps")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------ Fig. 5
def rl_returns(records: dict[str, dict], path: str) -> bool:
    from maml_tf.experiments.results import rl_reference

    reference = rl_reference()
    envs = [e for e in RL_ENVS if any(_done(records, f"rl_{e}_{m}") for m in RL_METHODS)]
    if not envs:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        n = max(len(v) for v in reference[env].values())
        for i, (method, (_, eval_method)) in enumerate(RL_METHODS.items()):
            ref = reference[env][eval_method]
            ref = ref * n if len(ref) == 1 else ref
            ax.plot(range(len(ref)), ref, "--", color=f"C{i}", alpha=0.6, label=f"{method} (paper)")
            rec = _done(records, f"rl_{env}_{method}")
            if rec is None:
                continue
            res = rec["results"][0]
            m, c = np.asarray(res["means"]), np.asarray(res["ci95"])
            if len(m) == 1:
                m, c = np.repeat(m, n), np.repeat(c, n)
            x = np.arange(len(m))
            ax.plot(x, m, "-o", ms=3, color=f"C{i}", label=f"{method} (ours)")
            ax.fill_between(x, m - c, m + c, color=f"C{i}", alpha=0.2)
        ax.set_title(RL_ENVS[env][0])
        ax.set_xlabel("number of gradient steps")
        ax.set_ylabel("average return")
        ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------ training
def read_scalars(folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (steps, values) from every TensorBoard event file directly in `folder`."""
    import tensorflow as tf

    series: dict[str, dict[int, float]] = {}
    for fn in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for raw in tf.data.TFRecordDataset(fn):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for v in event.summary.value:
                value = float(tf.make_ndarray(v.tensor)) if v.HasField("tensor") else v.simple_value
                series.setdefault(v.tag, {})[event.step] = value
    return {t: (np.array(sorted(d)), np.array([d[s] for s in sorted(d)])) for t, d in series.items()}


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if len(y) < 2 * window:
        return y
    return np.convolve(y, np.ones(window) / window, mode="valid")


def _supervised_curve(rec: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The run's scalars: its committed curve.csv (kept across sessions), else its event files."""
    from maml_tf.experiments import snapshots

    path = rec.get("curve")
    if path and os.path.isfile(path):
        return {t: (np.array(sorted(v)), np.array([v[k] for k in sorted(v)]))
                for t, v in snapshots.read_curve(path).items()}
    return read_scalars(rec["train_dir"]) if rec.get("train_dir") and os.path.isdir(rec["train_dir"]) else {}


def _rl_curve(rec: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pre-/post-update training return by iteration: the run's kept curve.csv (merged over its segments,
    independent of logs/), else progress.csv in its run folder (records from before curves were kept)."""
    from maml_tf.experiments import snapshots

    keys = ("pre_return", "post_return")
    path = rec.get("curve")
    if path and os.path.isfile(path):
        curve = snapshots.read_curve(path)
        return {k: (np.array(sorted(curve[k])), np.array([curve[k][i] for i in sorted(curve[k])]))
                for k in keys if curve.get(k)}
    csv_path = os.path.join(rec["train_dir"], "progress.csv") if rec.get("train_dir") else ""
    if not os.path.isfile(csv_path):
        return {}
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: (np.array([int(r["itr"]) for r in rows]), np.array([float(r[k]) for r in rows])) for k in keys}


def training_curves(records: dict[str, dict], path: str) -> bool:
    panels = []
    for name, rec in records.items():
        in_progress = rec["status"].startswith("in progress")
        if not (rec["status"] == "done" or in_progress):
            continue
        title = name
        if in_progress and rec.get("in_progress"):
            st = rec["in_progress"]
            title += f" (in progress: {st['next_iteration']:,} of {st['total']:,})"
        if rec["table"].startswith("rl_"):
            series = _rl_curve(rec)
            if series:
                panels.append((title, "average return", series))
        else:
            scalars = _supervised_curve(rec)
            if scalars:
                metric = "accuracy" if rec["table"] == "table1" else "loss"
                keep = {t: s for t, s in scalars.items() if metric in t and ("Pre-update" in t or "step" in t)}
                panels.append((title, metric, keep))
    if not panels:
        return False
    plt = _plt()
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False)
    for ax, (name, ylabel, series) in zip(axes.ravel(), panels):
        for tag, (x, y) in sorted(series.items()):
            if np.all(np.isnan(y)):
                continue
            w = max(1, len(y) // 50)
            ax.plot(x[w - 1:] if len(y) >= 2 * w else x, _smooth(y, w), label=tag.replace("metatrain_", "train ")
                    .replace("metaval_", "val "), lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        if ylabel == "loss":
            ax.set_yscale("log")
        ax.legend(fontsize=5)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return True


FIGURES = [
    ("Fig. 2: sinusoid fits after 0, 1 and 10 gradient steps, MAML vs pretrained", "fig2_sinusoid_fits.png",
     sinusoid_fits),
    ("Fig. 3: sinusoid test MSE vs gradient steps (95% band)", "fig3_sinusoid_error_vs_steps.png",
     sinusoid_error_vs_steps),
    ("Table 1 experiments: test accuracy vs gradient steps (95% band)", "fig_table1_accuracy_vs_steps.png",
     accuracy_vs_steps),
    ("Fig. 5: RL average return vs gradient steps, ours (95% band) and the paper's (dashed)", "fig5_rl_returns.png",
     rl_returns),
    ("Training curves (TensorBoard summaries; RL progress.csv)", "fig_training_curves.png", training_curves),
]


def make_all(results_dir: str, records: dict[str, dict], echo: Callable[[str], None] = print) -> dict[str, str]:
    """Draw every figure there is data for; returns caption -> file name (relative to results_dir)."""
    try:
        _plt()
    except ImportError:
        echo("matplotlib is not installed (the `plots` extra): no figures")
        return {}
    out = {}
    for caption, fn, draw in FIGURES:
        path = os.path.join(results_dir, fn)
        try:
            drawn = draw(records, path)
        except Exception as e:  # a figure must never lose the tables: report it and go on
            echo(f"figure {fn} failed: {type(e).__name__}: {e}" + ("; the previous one is kept" if os.path.exists(path)
                                                                    else ""))
            drawn = os.path.exists(path)  # e.g. its checkpoints were in a logs/ folder that is gone
        if drawn:
            out[caption] = fn
        elif os.path.exists(path):
            os.remove(path)  # a stale figure from records that are gone
    return out
