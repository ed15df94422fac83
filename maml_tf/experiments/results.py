"""Assemble `README.md` of a results folder from the run records: one table per paper table.

Every cell comes from a record written by the runner (`runs/<name>.json`); an experiment with no
record shows "not run", a failed one its failure. Paper numbers come from the registry (supervised)
and from `maml_tf.rl.evaluate.REFERENCE` (RL, spec 4.1), each written once in the project.
"""
from __future__ import annotations

import os

import ast
import functools

from maml_tf.experiments.registry import (EXPERIMENTS, PAPER_EVAL_STEPS, RL_ENVS, RL_METHODS, SINUSOID_PAPER,
                                         TABLE1, Experiment)
from maml_tf.files import atomic_write_text

NOT_RUN = "not run"


def _pm(mean: float, ci: float, scale: float = 1.0, digits: int = 2) -> str:
    mean, ci = mean * scale, ci * scale
    if abs(mean) >= 1e5:  # a diverged run: fixed point would print a wall of digits
        return f"{mean:.3g} ± {ci:.3g}"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def _wall(s: float | None) -> str:
    if s is None:
        return ""
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def _meta_cells(rec: dict | None) -> list[str]:
    """Command, date, wall time, hardware of a record (or blanks)."""
    if rec is None:
        return ["", "", "", ""]
    wall = _wall(rec.get("wall_s"))
    segments = rec.get("segments") or []
    if len(segments) > 1:  # a run resumed across sessions: this invocation, then the whole training
        wall += f" (training {_wall(rec.get('train_wall_s'))} in {len(segments)} parts)"
    return [f"`{rec['command']}`", rec["date"], wall, rec["hardware"]]


def _status(rec: dict | None) -> str | None:
    """None when the record has numbers; otherwise what to show instead."""
    if rec is None:
        return NOT_RUN
    if rec["status"] != "done" or not rec["results"]:
        return rec["status"] if rec["status"] != "done" else NOT_RUN
    return None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


META = ["command", "date", "wall", "hardware"]


def table1(records: dict[str, dict]) -> list[str]:
    rows = []
    for exp in _of("table1"):
        s = exp.spec
        paper = TABLE1.get((s["source"], s["ways"], s["shots"], s["net"], s["order"]))
        rec = records.get(exp.name)
        status = _status(rec)
        if status is None:
            ours = _table1_cell(rec["results"][0], PAPER_EVAL_STEPS.get((s["source"], s["ways"])))
        else:
            ours = status
        rows.append([exp.title, exp.name, "" if paper is None else f"{paper[0]} ± {paper[1]}", ours]
                    + _meta_cells(rec))
    return _table(["setting", "experiment", "paper (%)", "ours (%, 95% interval)"] + META, rows)


def _table1_cell(r: dict, paper_steps: int | None) -> str:
    """The last step's accuracy, then after 1 step and after the paper's evaluation steps (appendix A.1)."""
    last = len(r["means"]) - 1
    cell = f"{_pm(r['means'][last], r['ci95'][last], 100)} ({last} steps)"
    others = []
    for k in sorted({1, paper_steps or 1}):
        if 0 < k < last:
            what = " (the paper's evaluation)" if k == paper_steps else ""
            others.append(f"{k} step{'s' if k > 1 else ''}{what}: {_pm(r['means'][k], r['ci95'][k], 100)}")
    return cell + ("; " + "; ".join(others) if others else "")


def table1_distance(records: dict[str, dict]) -> list[str]:
    """One line per finished Table 1 row: where ours sits against the paper's interval, in points.

    Computed from the records at the paper's evaluation step count (appendix A.1), so the comparison
    the issue asks for ("within its interval?") is read off the script's numbers, never typed in.
    """
    lines = []
    for exp in _of("table1"):
        s = exp.spec
        paper = TABLE1.get((s["source"], s["ways"], s["shots"], s["net"], s["order"]))
        rec = records.get(exp.name)
        if paper is None or _status(rec) is not None:
            continue
        r = rec["results"][0]
        k = min(PAPER_EVAL_STEPS.get((s["source"], s["ways"]), len(r["means"]) - 1), len(r["means"]) - 1)
        mean, ci = 100 * r["means"][k], 100 * r["ci95"][k]
        lo, hi = paper[0] - paper[1], paper[0] + paper[1]
        if lo <= mean <= hi:
            where = "inside the paper's interval"
        else:
            gap = mean - hi if mean > hi else lo - mean
            where = f"{'above' if mean > hi else 'below'} the paper's interval by {gap:.2f} points"
        overlap = "overlap" if mean - ci <= hi and mean + ci >= lo else "do not overlap"
        lines.append(f"- `{exp.name}`: {_pm(mean, ci)} after {k} step{'s' if k != 1 else ''} vs the paper's "
                     f"{paper[0]} ± {paper[1]}: {where} ({mean - paper[0]:+.2f} points from its mean; "
                     f"the intervals {overlap}).")
    return lines


def sinusoid_table(records: dict[str, dict]) -> list[str]:
    rows = []
    for exp in _of("sinusoid"):
        method = exp.spec["method"]
        rec = records.get(exp.name)
        status = _status(rec)
        by_k = {r["K"]: r for r in rec["results"]} if status is None else {}
        for k in sorted(t["update_batch_size"] for t in exp.tests):
            paper = SINUSOID_PAPER.get((method, k), {})
            r = by_k.get(k)
            cells = []
            for step in (0, 1, 5, 10):
                ours = _pm(r["means"][step], r["ci95"][step], digits=3) if r and step < len(r["means"]) else \
                    (status or NOT_RUN)
                cells += ([f"{paper[step]}" if step in paper else ""] if step else []) + [ours]
            rows.append([method, exp.name, str(k)] + cells + _meta_cells(rec))
    header = ["method", "experiment", "K", "ours 0 steps", "paper 1 step", "ours 1 step", "paper 5 steps",
              "ours 5 steps", "paper 10 steps", "ours 10 steps"]
    return _table(header + META, rows)


@functools.lru_cache(maxsize=1)
def rl_reference() -> dict[str, dict[str, list[float]]]:
    """`maml_tf.rl.evaluate.REFERENCE` (spec 4.1), read from its source as a literal.

    Importing that module starts TensorFlow (tens of seconds on a busy 2-core machine) just to
    read a table of constants, so the report reads the literal instead of importing it.
    """
    import importlib.util

    spec = importlib.util.find_spec("maml_tf.rl.evaluate")
    with open(spec.origin) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        target = getattr(node, "target", None) or (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "REFERENCE":
            return ast.literal_eval(node.value)
    raise LookupError(f"REFERENCE not found in {spec.origin}")


def _rl_evaluated(rec: dict | None, result: dict | None) -> str:
    """Which policy the numbers are of: the evaluated snapshot's label ("itr_100, as the reference"); records
    written before snapshots were labelled name their checkpoint file (best.npz)."""
    if rec is None or result is None:
        return ""
    if result.get("label"):
        return result["label"]
    if result.get("checkpoint"):
        base = os.path.basename(result["checkpoint"])
        return base + (" (an older run's: after the best-returning iteration's update)" if base == "best.npz" else "")
    return "a fresh random policy" if rec["spec"].get("method") == "random" else ""


def rl_table(env: str, records: dict[str, dict]) -> list[str]:
    """One row per method; a run in progress shows its status, and the numbers of its latest iteration
    when that was evaluated (`./run_experiments.sh --latest`), labelled with that iteration."""
    reference = rl_reference()
    n_steps = max(len(v) for v in reference[env].values())
    rows = []
    for method, (_, eval_method) in RL_METHODS.items():
        name = f"rl_{env}_{method}"
        rec = records.get(name)
        status = _status(rec)
        ref = reference[env][eval_method]
        r = rec["results"][0] if status is None else (rec or {}).get("latest_evaluation")
        evaluated = _rl_evaluated(rec, r)
        if status is not None and r is not None:
            evaluated = f"{evaluated}; {status}"
        cells = []
        for k in range(n_steps):
            paper = f"{ref[k]:.2f}" if k < len(ref) else ""
            if r is not None:
                ours = _pm(r["means"][k], r["ci95"][k]) if k < len(r["means"]) else ""
            else:
                ours = status if k == 0 else ""
            cells += [paper, ours]
        rows.append([method, name, evaluated] + cells + _meta_cells(rec))
    header = ["method", "experiment", "evaluated"]
    for k in range(n_steps):
        header += [f"paper {k} steps", f"ours {k} steps"]
    return _table(header + META, rows)


def _of(table: str) -> list[Experiment]:
    return [e for e in EXPERIMENTS.values() if e.table == table]


def assemble(results_dir: str, records: dict[str, dict], quick: bool, figures: dict[str, str],
             skipped: dict[str, str]) -> str:
    """Write `results_dir/README.md`; returns its path. `figures` maps caption -> png file name."""
    lines = ["# Results" + (" — QUICK wiring check (tiny sizes, NOT paper results)" if quick else ""), ""]
    if quick:
        lines += ["These numbers come from `./run_experiments.sh --quick`: a few iterations, a meta-batch of 2 and",
                  "a handful of test tasks. They only show that every experiment runs end to end.", ""]
    lines += ["Generated by `./run_experiments.sh` from the run records in `runs/` (one json per experiment, with",
              "the exact entry-point commands it ran and the raw test outputs). Supervised numbers: mean over the",
              "test tasks ± 95% interval (1.96·std/√n, the reference's ci95). RL numbers: mean AverageReturn over",
              "the test goals ± 95% interval (1.96·s.e.); the paper column is the mean of the reference's",
              "`icml/*.pkl` (spec 4.1); \"evaluated\" names our snapshot (`itr_N`: the parameters after iteration",
              "N's update, the reference's `itr_N.pkl`). \"wall\" is the wall time of the invocation that wrote the",
              "record; a run trained in several parts (sessions, machines) also gives its total training time.",
              "\"in progress\": a run stopped at a checkpoint that `in_progress/<name>/` keeps (latest only), so the",
              "same command continues it exactly on any machine. \"not run\": no record.", ""]
    sections = [("Table 1: few-shot classification (Omniglot, MiniImagenet)", table1(records)),
                ("Sinusoid regression (MSE; K-shot tests of the K=10 models)", sinusoid_table(records))]
    for env, (title, _) in RL_ENVS.items():
        sections.append((f"RL: {title} (`{env}`), average return after 0..n gradient steps (paper Fig. 5)",
                         rl_table(env, records)))
    for title, table in sections:
        lines += [f"## {title}", ""] + table + [""]
        distance = table1_distance(records) if title.startswith("Table 1") else []
        if distance:
            lines += ["Distance from the paper at its evaluation step count (why, where a row falls outside: "
                      "the main README's \"Pretrained meta-initialisations\"):", ""] + distance + [""]
    lines += ["## Figures", ""]
    if figures:
        for caption, fn in figures.items():
            lines += [f"### {caption}", "", f"![{caption}]({fn})", ""]
    else:
        lines += ["No figures (nothing to plot yet, or matplotlib missing: install the `plots` extra).", ""]
    if skipped:
        lines += ["## Skipped in the last invocation", ""] + [f"- `{n}`: {why}" for n, why in skipped.items()] + [""]
    resumed = {n: line for n, r in records.items() for c in r.get("commands", []) if c["role"] == "train"
               for line in c.get("resumed", [])[-1:]}
    if resumed:
        lines += ["## Resumed runs", "", "Training of these picked up an existing run in the experiment's folder "
                  "(same flags; the wall time above covers only the last invocation):", ""]
        lines += [f"- `{n}`: {line}" for n, line in resumed.items()] + [""]
    failed = {n: r["status"] for n, r in records.items()
              if r["status"] != "done" and not r["status"].startswith("in progress")}
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{n}`: {why}" for n, why in failed.items()] + [""]
    path = os.path.join(results_dir, "README.md")
    atomic_write_text(path, "\n".join(lines))
    return path
