"""Every paper experiment, with the paper's flags written once.

An `Experiment` is a list of commands (train, then test/evaluate) of the project's entry points,
`python -m maml_tf.main` (supervised, the flags of cbfinn/maml's main.py) and
`python -m maml_tf.rl.main` / `python -m maml_tf.rl.evaluate` (RL, the settings of cbfinn/maml_rl's
scripts, which `maml_tf.rl.config` already holds as presets). The flags come from the paper /
reference README (spec "Paper commands"); `QUICK_*` shrink every experiment to a wiring check.

Nothing here runs anything or imports TensorFlow: `list` must be instant.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

# ------------------------------------------------------------------------------------------------
# Paper settings (cbfinn/maml README + paper; spec reference-supervised.md "Paper commands").
# MAML sinusoid: the reference README's command, which leaves alpha at main.py's 1e-3 default (the paper's
# text says 0.01). Measured here, 1e-3 reproduces the paper's K=5 table (0.70 / 0.36 / 0.33 after 1 / 5 / 10
# steps); a model meta-trained and tested at 0.01 diverges on ~4% of the K=5 test tasks after 3+ steps.
SINUSOID = dict(datasource="sinusoid", metatrain_iterations=70000, norm="None", update_batch_size=10,
                update_lr=0.001)
# The pretrained baseline is fine-tuned with "an automatically tuned step size" (paper 5.1): pretraining
# ignores alpha, and of {0.001, 0.003, 0.01, 0.02, 0.05} measured here 0.01 gives the lowest K=5 MSE after
# one step (2.43; 2.57 at 0.003, 2.62 at 0.02), matching the paper's 2.41 / 2.23 / 2.19.
SINUSOID_PRETRAINED_LR = 0.01
SINUSOID_TEST_SHOTS = (10, 5, 20)  # the training K first: it is tested right after training
OMNIGLOT = {  # N-way: flags shared by 1- and 5-shot
    5: dict(datasource="omniglot", metatrain_iterations=60000, meta_batch_size=32, update_lr=0.4, num_updates=1),
    20: dict(datasource="omniglot", num_classes=20, metatrain_iterations=60000, meta_batch_size=16,
             update_lr=0.1, num_updates=5),
}
MINIIMAGENET = dict(datasource="miniimagenet", metatrain_iterations=60000, meta_batch_size=4, update_lr=0.01,
                    num_updates=5, num_classes=5, num_filters=32, max_pool=True)
IMAGE_TEST = dict(train=False, test_set=True)  # "--train=False --test_set=True" (reference README)

# Inner steps the paper's appendix A.1 says each Table 1 family was evaluated with: Omniglot 5-way 3 (trained
# with 1), 20-way 5, MiniImagenet 10. The reference's test prints every step 0..10 and its README does not
# say which one the table took, so the results table gives the last step and this one beside it.
PAPER_EVAL_STEPS = {("omniglot", 5): 3, ("omniglot", 20): 5, ("miniimagenet", 5): 10}
# Paper Table 1 (mean accuracy %, 95% interval over 600 tasks); None where the paper has no entry.
TABLE1 = {
    ("omniglot", 5, 1, "conv", "second"): (98.7, 0.4), ("omniglot", 5, 5, "conv", "second"): (99.9, 0.1),
    ("omniglot", 20, 1, "conv", "second"): (95.8, 0.3), ("omniglot", 20, 5, "conv", "second"): (98.9, 0.2),
    ("omniglot", 5, 1, "fc", "second"): (89.7, 1.1), ("omniglot", 5, 5, "fc", "second"): (97.5, 0.6),
    ("miniimagenet", 5, 1, "conv", "second"): (48.70, 1.84), ("miniimagenet", 5, 5, "conv", "second"): (63.11, 0.92),
    ("miniimagenet", 5, 1, "conv", "first"): (48.07, 1.75), ("miniimagenet", 5, 5, "conv", "first"): (63.15, 0.91),
}
# Paper sinusoid numbers (appendix, K=5): MSE after 1 / 5 / 10 steps.
SINUSOID_PAPER = {("maml", 5): {1: 0.67, 5: 0.38, 10: 0.35}, ("pretrained", 5): {1: 2.41, 5: 2.23, 10: 2.19}}

RL_ENVS = {  # family -> (title, mujoco needed)
    "point": ("2D navigation", False),
    "cheetah_vel": ("half-cheetah goal velocity", True),
    "cheetah_dir": ("half-cheetah forward/backward", True),
    "ant_vel": ("ant goal velocity", True),
    "ant_dir": ("ant forward/backward", True),
}
RL_METHODS = {  # our name -> (rl.main --algo or None for untrained, rl.evaluate --method)
    "maml": ("maml", "maml"), "pretrained": ("pretrain", "pretrain"), "random": (None, "random"),
    "oracle": ("oracle", "oracle"),
}
# The snapshot the reference evaluated (spec 1.2 / 1.3): (env, method) -> (the n_itr of the reference's run,
# N of its itr_N.pkl; params.pkl, the last snapshot, is N = n_itr - 1). Our itr_N.npz is the same policy
# (maml_tf.rl.train: parameters after iteration N's update), so the script trains to N + 1 iterations and
# evaluates itr_N.npz: iterations after N cannot change that snapshot, and itr_N.npz is always written as
# the last iteration's.
RL_REFERENCE_SNAPSHOT = {
    ("point", "maml"): (100, 99), ("cheetah_vel", "maml"): (800, 475), ("cheetah_dir", "maml"): (800, 100),
    ("ant_vel", "maml"): (800, 375), ("ant_dir", "maml"): (800, 575),
    ("point", "pretrained"): (100, 99), ("cheetah_vel", "pretrained"): (1000, 475),
    ("cheetah_dir", "pretrained"): (1000, 999), ("ant_vel", "pretrained"): (2000, 575),
    ("ant_dir", "pretrained"): (2000, 1999),
    ("point", "oracle"): (100, 99), ("cheetah_vel", "oracle"): (1000, 975), ("cheetah_dir", "oracle"): (1000, 999),
    ("ant_vel", "oracle"): (2000, 550), ("ant_dir", "oracle"): (2000, 1975),
}
RL_TRAIN_NOTE = ("trained to iteration N + 1 only, N the snapshot the reference evaluated: iterations after N "
                 "cannot change itr_N.npz")


def rl_snapshot_label(env: str, method: str, itr: int) -> str:
    """What the evaluated itr_<itr>.npz is, next to what the reference evaluated ("itr_100, as the reference")."""
    n_ref, n = RL_REFERENCE_SNAPSHOT[(env, method)]
    ref = f"itr_{n}" + (f" (params.pkl, the last of {n_ref})" if n == n_ref - 1 else "")
    return f"{ref}, as the reference" if itr == n else f"itr_{itr} (the reference evaluated {ref})"

# ------------------------------------------------------------------------------------------------
# --quick: every experiment at a tiny size. Only sizes shrink; the model and algorithm stay.
QUICK_SUPERVISED = dict(meta_batch_size=2, num_test_tasks=4, test_chunk=4, save_interval=2, print_interval=1,
                        summary_interval=1, val_interval=2)
QUICK_ITERATIONS = 3
QUICK_RL_TRAIN = dict(n_itr=2, meta_batch_size=2, fast_batch_size=1, max_path_length=10, batch_size=20,
                      snapshot_gap=1)
QUICK_RL_EVAL = dict(n_goals=2, n_itr=2)  # batch_size: one path of the protocol's horizon (set per env)
RL_EVAL_HORIZON = {"point": 100}  # the evaluation protocol's H (200 for the locomotion tasks)

# Rough cost on the 2-core development CPU, for `list` (seconds per iteration), all measured with our
# entry points: sinusoid and point (lightly / heavily loaded machine); the image rates are maml_tf.main's
# meta-iterations/s on a quiet machine (Omniglot conv 5-way 1-shot ~9.5-11, 20-way ~1.7; fully connected
# 5-way 1-shot 60,000 iterations in 1 h 38 min, ~10 it/s; bench/README.md, issue 19) and the step's for
# MiniImagenet (0.93) and first order (20.2 vs 11.65); the locomotion rates are one full-size
# meta-iteration beside another training run (bench/bench_rl_iteration.py: cheetah ~41 s, ant ~194 s) and a
# TRPO baseline's iteration (20,000 timesteps: cheetah ~3.2 s; ant scaled by its sampling rate).
# Not measured, scaled by the images per task: conv K-shot = K x the 1-shot time (the convolutions dominate);
# fully connected 20-way = 4 x 5-way. K-shot fully connected stays at the 1-shot rate (5-shot measured
# 10-12 it/s: that net's step is bound by per-op cost, not by its matmuls).
RATE = {"sinusoid_it": 1 / 90, "omniglot5_it": 1 / 9.5, "omniglot20_it": 1 / 1.7, "omniglot_fc5_it": 1 / 10,
        "mini_it": 1 / 0.93, "first_order_factor": 11.65 / 20.2, "point_itr": 20, "loco_itr": 41, "ant_itr": 194,
        "loco_trpo_itr": 3.2, "ant_trpo_itr": 10}


def image_seconds_per_iteration(source: str, ways: int, shots: int, net: str) -> float:
    """RATE's rough seconds per meta-iteration of an image experiment (second order)."""
    if source == "miniimagenet":
        return RATE["mini_it"] * shots
    if net == "fc":
        return RATE["omniglot_fc5_it"] * ways / 5
    return RATE[f"omniglot{ways}_it"] * shots


@dataclasses.dataclass(frozen=True)
class Command:
    """One invocation of an entry point: `python -m module --flag=value ...`."""

    role: str                       # "train", "test" or "eval"
    module: str
    flags: dict[str, Any]
    label: str = ""                 # e.g. "K=5" for one of several tests
    produces_result: bool = False   # writes a test-protocol json (supervised train+test, test)

    def argv(self) -> list[str]:
        return ["python", "-m", self.module] + [f"--{k}={v}" for k, v in self.flags.items()]


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    paper_ref: str                  # which paper table / figure it reproduces
    table: str                      # results table it belongs to: "table1", "sinusoid", "rl_<env>"
    family: str                     # "supervised" or "rl"
    data: str | None                # "omniglot", "miniimagenet", "mujoco" or None
    cost_s: float                   # rough full-size cost on this machine (train + test), seconds
    spec: dict[str, Any]            # table-specific keys (K, method, N, shots, ...)
    train_flags: dict[str, Any] | None  # supervised: the run's flags; RL: extra rl.main flags (None: the presets)
    tests: tuple[dict[str, Any], ...]

    def commands(self, quick: bool, logdir: str, data_dir: str, out_dir: str) -> list[Command]:
        """The full command list for one run; `logdir` is this experiment's own folder."""
        if self.family == "supervised":
            return _supervised_commands(self, quick, logdir, data_dir)
        return _rl_commands(self, quick, logdir, out_dir)


# ------------------------------------------------------------------------------------------------
def _supervised_commands(exp: Experiment, quick: bool, logdir: str, data_dir: str) -> list[Command]:
    base = dict(exp.train_flags, logdir=logdir)
    if exp.data:
        base["data_dir"] = data_dir
    if quick:
        base.update(QUICK_SUPERVISED)
        for key in ("metatrain_iterations", "pretrain_iterations"):
            if base.get(key):
                base[key] = QUICK_ITERATIONS
    # The first test uses the training K: main.py runs it on the final weights (--test_after_train),
    # which saves a process start; test_set only selects the test protocol's split.
    first, *others = exp.tests
    if first.get("update_batch_size", base.get("update_batch_size")) != base.get("update_batch_size"):
        raise ValueError(f"{exp.name}: the first test must use the training K")
    train = {**base, **{k: v for k, v in first.items() if k != "train"}, "test_after_train": True}
    cmds = [Command("train", "maml_tf.main", train, _label(first), produces_result=True)]
    for t in others:
        cmds.append(Command("test", "maml_tf.main", {**base, **t, "train": False}, _label(t), produces_result=True))
    return cmds


def _label(test: dict[str, Any]) -> str:
    return f"K={test['update_batch_size']}" if "update_batch_size" in test else ""


def _rl_commands(exp: Experiment, quick: bool, logdir: str, out_dir: str) -> list[Command]:
    env, method = exp.spec["env"], exp.spec["method"]
    algo, eval_method = RL_METHODS[method]
    cmds = []
    ev: dict[str, Any] = dict(env=env, method=eval_method, out_dir=out_dir)
    label = ""
    if algo is not None:
        train = dict(env=env, algo=algo, run_dir=logdir, n_itr=RL_REFERENCE_SNAPSHOT[(env, method)][1] + 1)
        if quick:
            train.update(QUICK_RL_TRAIN)
        train.update(exp.train_flags or {})  # sizes of a test's own experiment
        cmds.append(Command("train", "maml_tf.rl.main", train))
        itr = train["n_itr"] - 1  # the last iteration: the reference's snapshot in a full run
        ev["checkpoint"] = f"{logdir}/itr_{itr}.npz"
        label = rl_snapshot_label(env, method, itr)
    if quick:
        ev.update(QUICK_RL_EVAL, batch_size=RL_EVAL_HORIZON.get(env, 200))
        if method == "oracle":
            ev["n_itr"] = 1
    cmds.append(Command("eval", "maml_tf.rl.evaluate", ev, label, produces_result=True))
    return cmds


def _sinusoid() -> list[Experiment]:
    tests = tuple(dict(update_batch_size=k, train_update_batch_size=SINUSOID["update_batch_size"])
                  for k in SINUSOID_TEST_SHOTS)
    train_cost = SINUSOID["metatrain_iterations"] * RATE["sinusoid_it"] + 3 * 60
    pre = dict(SINUSOID, pretrain_iterations=SINUSOID["metatrain_iterations"], metatrain_iterations=0,
               update_lr=SINUSOID_PRETRAINED_LR)
    return [
        Experiment("sinusoid", "Sinusoid regression, MAML (K=10 training, tested K=5/10/20)",
                   "Sinusoid table, Fig. 2, Fig. 3", "sinusoid", "supervised", None, train_cost,
                   dict(method="maml"), SINUSOID, tests),
        Experiment("sinusoid_pretrained", "Sinusoid regression, pretrained on all tasks (baseline)",
                   "Sinusoid table, Fig. 2, Fig. 3", "sinusoid", "supervised", None, train_cost,
                   dict(method="pretrained"), pre, tests),
        Experiment("sinusoid_oracle", "Sinusoid regression, oracle (amplitude and phase as inputs)",
                   "Sinusoid table", "sinusoid", "supervised", None, train_cost,
                   dict(method="oracle"), dict(SINUSOID, baseline="oracle"), tests),
    ]


def _images() -> list[Experiment]:
    out = []
    settings = [("omniglot", n, k) for n in (5, 20) for k in (1, 5)] + [("miniimagenet", 5, k) for k in (1, 5)]
    for source, n, k in settings:
        for net in (("conv", "fc") if source == "omniglot" else ("conv",)):
            for order in ("second", "first"):
                flags = dict(OMNIGLOT[n] if source == "omniglot" else MINIIMAGENET, update_batch_size=k)
                if net == "fc":
                    flags["conv"] = False
                if order == "first":
                    flags["stop_grad"] = True
                name = f"{source}_{n}way{k}shot" + ("_fc" if net == "fc" else "") + ("_fo" if order == "first" else "")
                pretty = "Omniglot" if source == "omniglot" else "MiniImagenet"
                title = (f"{pretty} {n}-way {k}-shot, {'conv' if net == 'conv' else 'fully connected'} net, "
                         f"{order}-order MAML")
                rate = image_seconds_per_iteration(source, n, k, net)
                cost = flags["metatrain_iterations"] * rate * (RATE["first_order_factor"] if order == "first" else 1) + 600
                out.append(Experiment(name, title, "Table 1" if (source, n, k, net, order) in TABLE1 else
                                      "Table 1 setting (no paper number)", "table1", "supervised", source, cost,
                                      dict(source=source, ways=n, shots=k, net=net, order=order),
                                      flags, (dict(IMAGE_TEST, update_batch_size=k),)))
    return out


def _rl() -> list[Experiment]:
    out = []
    for env, (title, mujoco) in RL_ENVS.items():
        kind = "point" if env == "point" else "ant" if env.startswith("ant") else "loco"
        for method in RL_METHODS:
            # MAML iterations sample and adapt 40 tasks; the TRPO baselines' are 20,000 timesteps of one policy
            per_itr = RATE[f"{kind}_itr" if method == "maml" or kind == "point" else f"{kind}_trpo_itr"]
            cost = 0.0 if method == "random" else (RL_REFERENCE_SNAPSHOT[(env, method)][1] + 1) * per_itr
            cost += 10 * 60
            out.append(Experiment(f"rl_{env}_{method}", f"{title}, {method}", "Fig. 5 (RL) / spec 4.1", f"rl_{env}",
                                  "rl", "mujoco" if mujoco else None, cost, dict(env=env, method=method), None, ()))
    return out


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in _sinusoid() + _images() + _rl()}


def select(patterns: list[str]) -> list[Experiment]:
    """Experiments matching names or shell-style patterns (`'omniglot_*'`), in registry order.

    Raises KeyError naming every pattern that matches nothing.
    """
    unknown = [p for p in patterns if not fnmatch.filter(EXPERIMENTS, p)]
    if unknown:
        raise KeyError(", ".join(unknown))
    return [e for name, e in EXPERIMENTS.items() if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
