"""Experiment configuration for MAML-RL: the reference scripts' settings, validated once.

Presets follow the checkpoints the reference evaluated (spec 1.2/1.3): e.g. cheetah goal-vel
used ``fbs10``, cheetah fwd/bwd ``mlr0.02``, ant fwd/bwd ``fbs40``, point ``mbs20``.

``algo``:
* ``maml``     MAML-TRPO (`maml_trpo_*.py`);
* ``pretrain`` the reference's "pretrained" baseline: for point the MAML code with
  ``use_maml=False`` (Adam 1e-3 on the mean pre-update surrogate); for locomotion plain TRPO on
  the rand env with one persistent random goal per env copy (`cluster_trpo_*.py` oracle=False);
* ``oracle``   plain TRPO on the oracle env (goal in the observation, redrawn every episode).

``distribute`` (MAML only): ``none`` (one process, as the reference), ``mirrored`` (the GPUs, or
logical CPUs, of this host) or ``multi_worker`` (hosts from TF_CONFIG); the meta-batch is split
over the replicas (see `maml_tf.rl.workers`). Each worker draws its own action noise, so a
distributed run does not reproduce a one-process run bit for bit.

``env_workers`` > 1 steps the sampler's envs in that many processes, a block of envs each
(`maml_tf.rl.envs.block`); unlike ``distribute`` this changes no result, only the wall time.
"""
from __future__ import annotations

import dataclasses
import json
import math

from maml_tf.errors import MamlError
from maml_tf.flagspec import setting
from maml_tf.rl.envs.registration import FAMILIES, env_info

ALGOS = ("maml", "pretrain", "oracle")


class RLConfigError(MamlError, ValueError):
    """A bad RL flag: the entry points print it as one message (a ValueError for older callers)."""
DISTRIBUTE = ("none", "mirrored", "multi_worker")

# family -> reference MAML settings (fast_lr, fast_batch_size, meta_batch_size, H, n_itr, step size)
MAML_PRESETS = {
    "point": dict(fast_lr=0.5, fast_batch_size=20, meta_batch_size=20, max_path_length=100, n_itr=100, meta_step_size=0.01),
    "cheetah_vel": dict(fast_lr=0.1, fast_batch_size=10, meta_batch_size=40, max_path_length=200, n_itr=800, meta_step_size=0.01),
    "cheetah_dir": dict(fast_lr=0.1, fast_batch_size=20, meta_batch_size=40, max_path_length=200, n_itr=800, meta_step_size=0.02),
    "ant_vel": dict(fast_lr=0.1, fast_batch_size=20, meta_batch_size=40, max_path_length=200, n_itr=800, meta_step_size=0.01),
    "ant_dir": dict(fast_lr=0.1, fast_batch_size=40, meta_batch_size=40, max_path_length=200, n_itr=800, meta_step_size=0.01),
}
# family -> plain-TRPO baseline settings (batch in timesteps, n_itr, max mean KL). trpo_point.py and
# cluster_trpo_{cheetah,ant}.py all use step_size 0.01: the 0.02 of the cheetah fwd/bwd MAML checkpoint
# (`mlr0.02`) belongs to that MAML run only.
TRPO_PRESETS = {
    "point": dict(batch_size=1000, max_path_length=100, n_itr=100, meta_step_size=0.01),
    "cheetah_vel": dict(batch_size=20000, max_path_length=200, n_itr=1000, meta_step_size=0.01),
    "cheetah_dir": dict(batch_size=20000, max_path_length=200, n_itr=1000, meta_step_size=0.01),
    "ant_vel": dict(batch_size=20000, max_path_length=200, n_itr=2000, meta_step_size=0.01),
    "ant_dir": dict(batch_size=20000, max_path_length=200, n_itr=2000, meta_step_size=0.01),
}


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """The settings of one RL run; each flag of `python -m maml_tf.rl.main` is declared here once.

    Defaults are the point experiment's; `override=True` flags default to None on the command line,
    which keeps the chosen experiment's reference value (`preset`).
    """
    env: str = setting("point", "experiment (task family)", choices=sorted(MAML_PRESETS))
    algo: str = setting("maml", "maml | pretrain | oracle", choices=ALGOS)
    fast_lr: float = setting(0.5, "inner SGD step size alpha", override=True)
    fast_batch_size: int = setting(20, "trajectories per task per sampling step", override=True)
    meta_batch_size: int = setting(20, "tasks per meta-iteration", override=True)
    max_path_length: int = setting(100, "horizon H", override=True)
    n_itr: int = setting(100, "meta-iterations", override=True)
    meta_step_size: float = setting(0.01, "TRPO max mean KL (delta)", override=True)
    batch_size: int = setting(1000, "timesteps per iteration for plain TRPO baselines", override=True)
    num_grad_updates: int = setting(1, "inner steps (1 in every paper run)", override=True)
    first_order: bool = setting(False, "stop_gradient on the inner gradient (reference stop_grad)", override=True)
    hvp: str = setting("fd", "Hessian-vector product: reference finite differences or exact", choices=("fd", "exact"),
                       override=True)
    fd_base_eps: float = setting(1.0, "FD HVP eps = base_eps/||theta|| (reference effective value 1)",
                                 override=True)  # the reference's effective base_eps (spec 3.6)
    pretrain_lr: float = setting(1e-3, flag=False)
    discount: float = setting(0.99, "gamma", override=True)
    gae_lambda: float = setting(1.0, flag=False)
    hidden_sizes: tuple = setting((100, 100), flag=False)
    hidden_nonlinearity: str = setting("relu", "policy hidden activation", choices=("relu", "tanh"), override=True)
    seed: int = setting(1, "seed (reference: 1)", override=True)
    snapshot_gap: int = setting(25, "write itr_<n>.npz (the parameters after iteration n's update) for n = 0, gap, 2*gap, ... "
                                "and the last iteration, as the reference's itr_<n>.pkl", override=True)
    envs_per_task: int = setting(1, "parallel env copies per task (reference: 1)", override=True)
    asynchronous: bool = setting(False, "subprocess vector envs", override=True)
    env_workers: int = setting(
        0, "step the sampler's envs in this many worker processes, a block of envs each (0 or 1, the default: in "
        "this process). The policy forward stays in the main process, so leave it a core. Must divide the sampler's "
        "env count (meta_batch_size * envs_per_task, per worker under --distribute; plain TRPO: min(100, batch_size "
        "/ max_path_length)); not for --env point or with --asynchronous. Results are bit-identical to in-process "
        "stepping.", override=True)
    inference: str = setting("numpy", "sampler policy forward (batched numpy or XLA-compiled TF)",
                             choices=("numpy", "tf"), override=True)
    distribute: str = setting(
        "none", "MAML only: none (one process, default) | mirrored (this host's GPUs, else its logical CPUs) | "
        "multi_worker (one process per host, cluster and index from TF_CONFIG, the same flags and a --run_dir every "
        "worker can read). --meta_batch_size must be a multiple of the replica count; each worker samples only its "
        "share of the tasks and only the chief (worker 0) writes. Each worker draws its own action noise (seeded by "
        "--seed, the worker and the iteration), so a distributed run does not reproduce a one-process run bit for "
        "bit.", override=True)

    @property
    def mode(self) -> str:
        """Which update runs: 'maml', 'maml0' (use_maml=False) or 'trpo'."""
        if self.algo == "maml":
            return "maml"
        if self.algo == "pretrain" and self.env == "point":
            return "maml0"
        return "trpo"

    @property
    def env_id(self) -> str:
        rand_id, oracle_id = FAMILIES[self.env]
        return oracle_id if self.algo == "oracle" else rand_id

    def validate(self) -> "RLConfig":
        if self.env not in MAML_PRESETS:
            raise RLConfigError(f"--env must be one of {sorted(MAML_PRESETS)}, got {self.env!r}")
        if self.algo not in ALGOS:
            raise RLConfigError(f"--algo must be one of {ALGOS}, got {self.algo!r}")
        if self.inference not in ("numpy", "tf"):
            raise RLConfigError(f"--inference must be 'numpy' or 'tf', got {self.inference!r}")
        if self.hvp not in ("fd", "exact"):
            raise RLConfigError(f"--hvp must be 'fd' or 'exact', got {self.hvp!r}")
        if self.distribute not in DISTRIBUTE:
            raise RLConfigError(f"--distribute must be one of {DISTRIBUTE}, got {self.distribute!r}")
        if self.distribute != "none" and self.mode != "maml":
            raise RLConfigError(f"--distribute={self.distribute} runs MAML-TRPO only (--algo=maml); "
                            f"--algo={self.algo} trains in one process (--distribute=none)")
        for name in ("fast_batch_size", "meta_batch_size", "max_path_length", "n_itr", "batch_size",
                     "snapshot_gap", "envs_per_task"):
            if getattr(self, name) < 1:
                raise RLConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        # NaN passes every comparison, so finiteness comes first.
        for name in ("fast_lr", "meta_step_size", "pretrain_lr", "fd_base_eps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise RLConfigError(f"--{name} must be a finite number > 0, got {value}")
        if self.seed < 0:
            raise RLConfigError(f"--seed must be >= 0, got {self.seed}")
        if not 0 <= self.gae_lambda <= 1:
            raise RLConfigError(f"--gae_lambda must be in [0, 1], got {self.gae_lambda}")
        if not 0 < self.discount <= 1:
            raise RLConfigError(f"--discount must be in (0, 1], got {self.discount}")
        if self.num_grad_updates != 1 and self.mode == "maml":
            raise RLConfigError("--num_grad_updates must be 1 for MAML training (all paper runs; see spec 3.9)")
        if self.mode == "trpo" and self.batch_size < self.max_path_length:
            raise RLConfigError(f"--batch_size ({self.batch_size}) must be at least one path (H={self.max_path_length})")
        self._validate_env_workers()
        env_info(self.env_id)
        return self

    def _validate_env_workers(self) -> None:
        """--env_workers: >= 0; above 1 not with --asynchronous, not for point, and dividing the env count."""
        w = self.env_workers
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise RLConfigError(f"--env_workers must be an integer >= 0 (0 or 1: step the envs in-process), got {w!r}")
        if w <= 1:
            return
        if self.asynchronous:
            raise RLConfigError(f"--env_workers={w} (a block of envs per process) and --asynchronous (a process per "
                             f"env) exclude each other; pick one")
        if self.env == "point":
            # The point env is stepped in-process: as one numpy batch (MAML) or as gym envs whose step is
            # a few array ops; a pipe round trip per lock-step costs more than the stepping itself.
            raise RLConfigError(f"--env_workers={w}: the point env is stepped in-process (a few array ops per step, "
                             f"cheaper than a round trip to a worker process); use --env_workers=0")
        if self.distribute != "none":
            return  # each worker's share of the tasks is known only at run time; the sampler checks it
        n = self.trpo_envs() if self.mode == "trpo" else self.meta_batch_size * self.envs_per_task
        if w > n or n % w:
            valid = [d for d in range(1, n + 1) if n % d == 0]
            raise RLConfigError(f"--env_workers={w} must divide the sampler's {n} envs (a block of equal size per "
                             f"process); valid counts: {valid}")

    def trpo_envs(self) -> int:
        """Reference VectorizedSampler: n_envs = min(100, batch_size / H)."""
        return max(1, min(100, self.batch_size // self.max_path_length))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(s: str) -> "RLConfig":
        d = json.loads(s)
        d["hidden_sizes"] = tuple(d["hidden_sizes"])
        d.setdefault("inference", "numpy")
        d.setdefault("distribute", "none")
        return RLConfig(**d)


def preset(env: str, algo: str = "maml", **overrides) -> RLConfig:
    """The reference settings for (env, algo), with explicit overrides applied last."""
    if env not in MAML_PRESETS:
        raise RLConfigError(f"--env: unknown experiment {env!r}; choose from {sorted(MAML_PRESETS)}")
    base: dict = dict(env=env, algo=algo)
    base.update(MAML_PRESETS[env])
    if algo == "oracle" or (algo == "pretrain" and env != "point"):
        base.update(TRPO_PRESETS[env])
    base.update({k: v for k, v in overrides.items() if v is not None})
    if algo not in ALGOS:
        raise RLConfigError(f"--algo must be one of {ALGOS}, got {algo!r}")
    return RLConfig(**base).validate()
