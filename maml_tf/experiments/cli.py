"""`./run_experiments.sh`: list, run and report the paper's experiments.

    ./run_experiments.sh list                      # every experiment: paper reference, data, rough cost
    ./run_experiments.sh sinusoid 'omniglot_5way*' # run some (names or shell patterns), then report
    ./run_experiments.sh all                       # everything whose data is present; says what it skipped
    ./run_experiments.sh --quick all               # tiny sizes, into results/quick and logs/quick
    ./run_experiments.sh --jobs 4 'rl_*'           # four experiments at a time (one process each)
    ./run_experiments.sh report                    # only re-assemble results/README.md and the figures
    ./run_experiments.sh --latest rl_cheetah_dir_maml  # evaluate the latest iteration of an RL run in progress

Long runs outlive a session: Ctrl-C (or SIGTERM) stops training at the next iteration with a
checkpoint, which is also kept in results/in_progress/<name>/ (latest only, meant to be committed);
the same command later, on any machine, continues the run exactly. A finished supervised run ships
its meta-initialisation to pretrained/<name>/ (SavedModel, TF1 weights, meta.json); a finished RL
run (maml, pretrained, oracle) its evaluated policy (SavedModel, params.npz, the itr_N.npz checkpoint,
meta.json). RL runs train to the snapshot the reference evaluated (e.g. itr_475) and evaluate it.

Exit status: 0 when every requested experiment ran, 1 when one failed, 2 on bad input (unknown
name, missing data for an experiment named explicitly, unwritable folder), 130 when stopped.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import sys
import threading

from maml_tf.experiments import registry, results, runner
from maml_tf.experiments.runner import ExperimentError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_experiments.sh", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("targets", nargs="*", help="list | all | report | experiment names or patterns")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a wiring check); results/quick, logs/quick")
    p.add_argument("--results", default=None, help="results folder (default results, or results/quick)")
    p.add_argument("--logs", default=None, help="checkpoints and logs (default logs, or logs/quick)")
    p.add_argument("--data_dir", default="data", help="folder holding omniglot_resized/ and miniImagenet/")
    p.add_argument("--pretrained", default=None,
                   help="where finished runs ship their meta-initialisation or policy (default pretrained; "
                        "with --quick nothing is shipped unless this is given)")
    p.add_argument("--latest", action="store_true",
                   help="RL runs: instead of training on, evaluate the latest iteration reached (latest.npz, seeded "
                        "from results/in_progress/ if logs/ lacks it); recorded as itr_<X> beside the run's record")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="skip the PNG figures")
    p.add_argument("--jobs", type=int, default=1,
                   help="experiments run at the same time (each is its own processes; default 1)")
    return p


def _abs(path: str) -> str:
    """Paths given are relative to where the user ran the script (scripts/venv.sh moves to the repo root).

    A path inside the working directory (the repo root) is returned relative to it, so that the
    commands and paths in committed run records do not name this machine's folders.
    """
    full = os.path.abspath(os.path.join(os.environ.get("MAML_TF_CALLER_CWD", os.getcwd()), path))
    here = os.getcwd()
    return os.path.relpath(full, here) if full.startswith(here + os.sep) else full


def list_experiments(data_dir: str) -> str:
    lines = [f"{'name':34s} {'paper':34s} {'data':13s} {'rough cost here':16s} status"]
    for e in registry.EXPERIMENTS.values():
        why = runner.missing_data(e, data_dir)
        cost = _human(e.cost_s)
        lines.append(f"{e.name:34s} {e.paper_ref[:34]:34s} {e.data or '-':13s} {cost:16s} "
                     f"{'ready' if why is None else 'no data'}")
    lines.append("")
    lines.append("Costs are rough full-size estimates for the 2-core CPU (train + test); --quick runs each in "
                 "well under a minute. Names accept shell patterns, e.g. 'rl_point_*'.")
    return "\n".join(lines)


def _human(s: float) -> str:
    if s >= 86400:
        return f"~{s / 86400:.1f} days"
    if s >= 3600:
        return f"~{s / 3600:.0f} h"
    return f"~{max(1, round(s / 60))} min"


def check_mode(results_dir: str, quick: bool) -> None:
    """Quick and full results never share a folder."""
    mixed = [n for n, r in runner.load_records(results_dir).items() if r.get("quick") != quick]
    if mixed:
        raise ExperimentError(f"{results_dir} holds {'full' if quick else 'quick'} results ({', '.join(mixed[:3])}"
                              f"{'...' if len(mixed) > 3 else ''}); {'quick' if quick else 'full'} results go to "
                              "another folder (--results)")


def report(results_dir: str, quick: bool, figures: bool, skipped: dict[str, str], echo=print) -> str:
    records = runner.load_records(results_dir)
    pngs = {}
    if figures:
        from maml_tf.experiments import plots

        pngs = plots.make_all(results_dir, records, echo)
    path = results.assemble(results_dir, records, quick, pngs, skipped)
    echo(f"wrote {path}")
    return path


def run_all(todo: list[registry.Experiment], quick: bool, results_dir: str, logs_dir: str, data_dir: str,
            jobs: int = 1, pretrained_dir: str | None = None, latest: bool = False) -> list[str]:
    """Run the experiments, `jobs` at a time; returns the names of those that failed.

    Experiments share nothing (own log folder, own record file, written atomically), so they can run
    side by side; with jobs > 1 every echoed line is prefixed with its experiment's name.
    """
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            print(line, flush=True)

    def one(i: int, exp: registry.Experiment) -> dict:
        tag = f"[{i + 1}/{len(todo)}] {exp.name}"
        if runner.stop_requested():
            return {"name": exp.name, "status": "not started (stopped)"}
        say(f"{tag}: {exp.title}{' (quick)' if quick else ''}")
        echo = say if jobs == 1 else (lambda line: say(f"{exp.name} | {line.strip()}"))
        if latest:
            try:
                rec = runner.evaluate_latest(exp, quick, results_dir, logs_dir, echo=echo)
            except ExperimentError as e:
                say(f"{tag}: {e}")
                return {"name": exp.name, "status": str(e)}
            ev = rec["latest_evaluation"]
            say(f"{tag}: evaluated {ev['label']} in {ev['wall_s']:.0f}s")
            return {"name": exp.name, "status": "done"}
        rec = runner.run_experiment(exp, quick, results_dir, logs_dir, data_dir, echo=echo,
                                    pretrained_dir=pretrained_dir)
        say(f"{tag}: {rec['status']} in {rec['wall_s']:.0f}s")
        return rec

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        recs = list(pool.map(lambda pair: one(*pair), enumerate(todo)))
    return [r["name"] for r in recs if r["status"] != "done"]


def _stop_on_signals() -> None:
    """SIGINT/SIGTERM: stop cleanly (runner.request_stop) instead of dying mid-write."""
    def handler(signum, frame):
        print(f"run_experiments: {signal.Signals(signum).name}: stopping at the next checkpointable point",
              file=sys.stderr, flush=True)
        runner.request_stop()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, handler)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    data_dir = _abs(args.data_dir)
    try:
        if not args.targets:
            raise ExperimentError("nothing to do: give list, all, report or experiment names (see --help)")
        if args.targets == ["list"]:
            print(list_experiments(data_dir))
            return 0
        results_dir = _abs(args.results or ("results/quick" if args.quick else "results"))
        logs_dir = _abs(args.logs or ("logs/quick" if args.quick else "logs"))
        if args.targets == ["report"]:
            runner.ensure_writable(results_dir, "results")
            check_mode(results_dir, args.quick)
            report(results_dir, args.quick, args.figures, {})
            return 0
        if args.jobs < 1:
            raise ExperimentError(f"--jobs must be >= 1, got {args.jobs}")
        explicit = args.targets != ["all"]
        if explicit and {"all", "list", "report"} & set(args.targets):
            raise ExperimentError("list, all and report are commands of their own; do not mix them with names")
        try:
            chosen = registry.select(args.targets) if explicit else list(registry.EXPERIMENTS.values())
        except KeyError as e:
            raise ExperimentError(f"unknown experiment(s): {e.args[0]}\nvalid names:\n  "
                                  + "\n  ".join(registry.EXPERIMENTS)) from None
        skipped = {e.name: why for e in chosen if (why := runner.missing_data(e, data_dir))}
        if explicit and skipped:
            raise ExperimentError("missing data:\n  " + "\n  ".join(f"{n}: {w}" for n, w in skipped.items()))
        runner.ensure_writable(results_dir, "results")
        runner.ensure_writable(os.path.join(results_dir, "runs"), "results")
        runner.ensure_writable(logs_dir, "logs")
        check_mode(results_dir, args.quick)
        for name, why in skipped.items():
            print(f"skipping {name}: {why}")
        todo = [e for e in chosen if e.name not in skipped]
        pretrained_dir = _abs(args.pretrained) if args.pretrained else (None if args.quick else _abs("pretrained"))
        if pretrained_dir is not None:
            runner.ensure_writable(pretrained_dir, "pretrained")
        _stop_on_signals()
        failed = run_all(todo, args.quick, results_dir, logs_dir, data_dir, args.jobs, pretrained_dir, args.latest)
        report(results_dir, args.quick, args.figures, skipped)
        if runner.stop_requested():
            print("stopped: training runs were checkpointed (results/in_progress/ holds what resumes them); "
                  "the same command continues", file=sys.stderr)
            return 130
        if skipped:
            print(f"skipped {len(skipped)} experiment(s) for missing data: {', '.join(skipped)}")
        if failed:
            print(f"FAILED: {', '.join(failed)} (see the logs named in {results_dir}/README.md)", file=sys.stderr)
            return 1
        return 0
    except ExperimentError as e:
        print(f"run_experiments: error: {e}", file=sys.stderr)
        return 2
