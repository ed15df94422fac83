"""Training loop for MAML-TRPO and the TRPO / pretrain baselines (`BatchMAMLPolopt.train`).

One meta-iteration (spec 3.1): draw meta_batch_size goals, sample with theta, process per task,
compute theta'_i, sample with theta'_i, process, one TRPO step on the post-update surrogate.
Logs per iteration the pre-/post-update AverageReturn (csv + TensorBoard) and a progress line
with timing; checkpoints are written atomically (temp file + os.replace): ``latest.npz`` every
iteration (resume); ``itr_<n>.npz``, the parameters after iteration n's update, for n a multiple of
``snapshot_gap`` and for the last iteration: the reference's ``itr_N.pkl`` numbering (0-based N,
N % 25 == 0, the snapshot taken after the update), so our ``itr_100.npz`` is the policy its
``itr_100.pkl`` was; ``best.npz`` whenever the training return (post-update for MAML) improves
(quirk 19). A training return is earned by the parameters *before* that iteration's update (for
MAML, the post-update paths were sampled with theta'_i adapted from them), so ``best.npz`` holds
those: the parameters of ``itr_<i-1>`` (the initial parameters for i = 0), with i and its return
in its state.

SIGINT / SIGTERM (`maml_tf.train.stop`) stop a one-process run after the iteration in progress:
``latest.npz`` then holds exactly that state and `TrainingStopped` is raised; the same command
with ``--resume`` continues as if never stopped.

``cfg.distribute`` (MAML only) splits the meta-batch over tf.distribute replicas and workers
(`maml_tf.rl.workers`): every worker draws the same task list, samples and processes only its
share, and takes the all-reduced TRPO step (`maml_tf.rl.distributed`), so all hold the same
parameters. The returns that pick ``best.npz`` are summed over workers; only the chief writes;
on resume every worker reads the same ``latest.npz`` (checked). Action noise is keyed by
(seed, worker, iteration), so a distributed run is not a bit-for-bit copy of a one-process run,
but a resumed distributed run continues exactly.
"""
from __future__ import annotations

import dataclasses
import os
import time
import zlib
from typing import Callable

import numpy as np
import tensorflow as tf

from maml_tf.errors import MamlError
from maml_tf.files import atomic_write_text
from maml_tf.progress import RunLog
from maml_tf.rl import checkpoint as rl_checkpoint
from maml_tf.rl import distributed
from maml_tf.rl.advantages import average_return, pack, process_task
from maml_tf.rl.config import RLConfig
from maml_tf.rl.maml_trpo import MetaObjective, PretrainStep, meta_trpo_step, to_batch
from maml_tf.rl.policies import GaussianMLPPolicy, CategoricalMLPPolicy, MLPPolicy, make_policy
from maml_tf.rl.sampler import TaskSampler, numpy_inference, tf_inference
from maml_tf.train.stop import StopRequest, TrainingStopped

# Flags a resumed run may change (see Trainer._restore).
RESUMABLE = ("n_itr", "distribute", "env_workers")

CSV_FIELDS = ["itr", "pre_return", "post_return", "loss_before", "loss_after", "mean_kl", "accepted",
              "n_backtracks", "step_size", "pre_trajs", "post_trajs", "entropy", "t_sample", "t_process",
              "t_adapt", "t_update", "t_grad", "t_hvp", "n_hvp", "t_line_search", "t_total", "env_steps"]
TB_SCALARS = ("pre_return", "post_return", "mean_kl", "loss_after", "entropy", "t_total")


def _flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def build_policy(cfg: RLConfig, seed: int | None = None) -> MLPPolicy:
    from maml_tf.rl.envs import env_info

    info = env_info(cfg.env_id)
    cls = CategoricalMLPPolicy if info.discrete else GaussianMLPPolicy
    return cls(info.obs_dim, info.act_dim, hidden_sizes=cfg.hidden_sizes,
               hidden_nonlinearity=cfg.hidden_nonlinearity, seed=seed)


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str, theta: np.ndarray, policy: MLPPolicy, cfg: RLConfig, itr: int,
                    state: dict | None = None) -> None:
    """Atomic write (see `maml_tf.rl.checkpoint`): a partially written file never replaces a good checkpoint."""
    rl_checkpoint.save(path, theta, policy.describe(), cfg.to_json(), itr, state)


def load_checkpoint(path: str) -> dict:
    """{"theta", "itr", "policy", "config" (an RLConfig), "state"}; RLCheckpointError names a bad file."""
    ck = rl_checkpoint.load(path)
    try:
        ck["config"] = RLConfig.from_json(ck["config"])
    except (ValueError, TypeError, KeyError) as e:
        raise rl_checkpoint.RLCheckpointError(f"checkpoint {path}: its config is not a maml_tf.rl config ({e})") from None
    return ck


def load_policy(path: str) -> tuple[MLPPolicy, np.ndarray]:
    ck = load_checkpoint(path)
    try:
        policy = make_policy(ck["policy"])
        policy.set_flat(ck["theta"])
    except (ValueError, TypeError, KeyError) as e:
        raise rl_checkpoint.RLCheckpointError(f"checkpoint {path}: its policy cannot be rebuilt ({e})") from None
    return policy, ck["theta"]


# ------------------------------------------------------------------------------ the loop
class Trainer:
    """Thin driver around the pure pieces; all state needed for resume lives in checkpoints."""

    def __init__(self, cfg: RLConfig, log_dir: str, resume: bool = False,
                 log: Callable[[str], None] = print):
        self.cfg = cfg.validate()
        self.log_dir = log_dir
        self.log = log
        strategy = None
        if cfg.distribute != "none":  # first: a multi-worker strategy must precede every other TF op
            from maml_tf.strategy import flag_strategy
            strategy = flag_strategy(cfg.distribute)
        self.policy = build_policy(cfg, seed=cfg.seed)
        mode = cfg.mode
        self.obj = MetaObjective(self.policy, cfg.fast_lr, 1 if mode == "maml" else 0, cfg.first_order)
        self.workers = None
        if strategy is not None:
            from maml_tf.rl.workers import Workers
            self.workers = Workers(strategy, self.obj, cfg.meta_batch_size)
        self.is_chief = self.workers is None or self.workers.is_chief  # the only writer
        if self.is_chief:
            os.makedirs(log_dir, exist_ok=True)
        self.pretrain = PretrainStep(self.obj, cfg.pretrain_lr) if mode == "maml0" else None
        seed = cfg.seed
        if mode == "trpo":
            n_tasks, k = 1, cfg.trpo_envs()  # tasks unpinned: not the batched point env
        elif self.workers is not None:  # this worker's tasks; env seeds as their sub-envs' in one process
            n_tasks, k = self.workers.num_local_tasks, cfg.envs_per_task
            seed += self.workers.task_bounds[0] * k
        else:
            n_tasks, k = cfg.meta_batch_size, cfg.envs_per_task
        try:
            self.sampler = TaskSampler(cfg.env_id, n_tasks, cfg.max_path_length, k, cfg.asynchronous, seed=seed,
                                       batched_point=mode != "trpo", env_workers=cfg.env_workers)
        except ValueError as e:  # e.g. --env_workers not dividing this worker's envs (known only now)
            raise MamlError(f"--env_workers={cfg.env_workers}: {e}") from None
        self.inference = (numpy_inference(self.policy) if cfg.inference == "numpy"
                          else tf_inference(self.obj.dist_info))
        self.theta = self.policy.get_flat()
        self.start_itr = 0
        self.best = -np.inf
        self.action_rng = np.random.default_rng(cfg.seed)
        self.task_rng = np.random.RandomState(cfg.seed)  # the reference's global np.random for goals
        latest = os.path.join(log_dir, "latest.npz")
        found = os.path.exists(latest) if self.workers is None else self._agree_on_start(latest)
        if resume and found:
            self._restore(latest)
        elif not resume and found:
            raise MamlError(f"--run_dir {log_dir} already holds a run ({latest}); pass --resume to continue it, or "
                            "use a new --run_dir (nothing was changed)")
        if self.is_chief:
            atomic_write_text(os.path.join(log_dir, "config.json"), cfg.to_json())

    def _agree_on_start(self, latest: str) -> bool:
        """Whether latest.npz exists, the same on every worker, which also start from the same theta.

        One collective, before anything can raise on one worker only (the others would wait forever).
        """
        crc = 0
        if os.path.exists(latest):
            with open(latest, "rb") as f:
                crc = zlib.crc32(f.read())
        mine = [os.path.exists(latest), crc, zlib.crc32(np.ascontiguousarray(self.theta).tobytes())]
        from maml_tf.strategy import replica_rows

        rows = replica_rows(self.workers.strategy, mine)  # one row per replica, its worker's values
        if np.any(rows[:, 2] != rows[0, 2]):
            raise MamlError("--distribute: the workers built different initial parameters (same flags and --seed "
                            "on every worker?)")
        if np.any(rows[:, :2] != rows[0, :2]):
            seen = ", ".join(f"replica {i}: " + (f"crc32 {int(c):08x}" if e else "none")
                             for i, (e, c, _) in enumerate(rows))
            raise MamlError(f"--run_dir: the workers see different checkpoints {latest} ({seen}); with "
                            "--distribute every worker must read the same run folder (shared, or a copy of it)")
        return bool(rows[0, 0])

    def _restore(self, path: str) -> None:
        ck = load_checkpoint(path)
        # n_itr may grow on resume (train longer), the run may move to other hosts (distribute) or
        # step its envs in another number of processes (env_workers: same results); everything else
        # must match the saved run.
        saved = dataclasses.asdict(ck["config"])
        now = dataclasses.asdict(self.cfg)
        differ = [k for k in now if k not in RESUMABLE and saved.get(k) != now[k]]
        if differ:
            detail = ", ".join(f"--{k} {_flag_value(saved.get(k))} there, {_flag_value(now[k])} now" for k in differ)
            raise MamlError(f"--resume: {path} was written with other flags ({detail}); give the run's flags "
                            "(only --n_itr, --distribute and --env_workers may change), or use a new --run_dir")
        ex = ck["state"]
        if not ex:
            raise MamlError(f"--resume: {path} holds no resume state (it is a best/itr snapshot, not latest.npz)")
        self.theta = ck["theta"]
        self.start_itr = ck["itr"] + 1
        self.best = ex["best"]
        self.action_rng.bit_generator.state = ex["action_rng"]
        self.task_rng.set_state(tuple(ex["task_rng"]))
        self.sampler._n_resets = ex["n_resets"]
        if "env_tasks" in ex:  # plain TRPO: the rand envs' persistent goals (unpinned, as they were)
            self.sampler.envs.set_attr("persistent_task", list(ex["env_tasks"]))
        if self.pretrain is not None:
            self.pretrain.load_state(ex["adam"])
        self.log(f"resumed from {path} at itr {self.start_itr}")

    def _extra(self) -> dict:
        ex = {"best": self.best, "action_rng": self.action_rng.bit_generator.state,
              "task_rng": self.task_rng.get_state(), "n_resets": self.sampler._n_resets}
        if self.cfg.mode == "trpo":  # unpinned envs: a rand env's goal is drawn once and kept
            ex["env_tasks"] = list(self.sampler.envs.get_attr("task"))
        if self.pretrain is not None:
            ex["adam"] = self.pretrain.state()
        return ex

    def _sample(self, theta_b: np.ndarray, quota: int, rng: np.random.Generator) -> list:
        return self.sampler.sample(self.inference, theta_b, quota,
                                   "total", self.policy.sample_numpy, rng)

    def _process(self, paths: list) -> list:
        cfg = self.cfg
        empty = [i for i, p in enumerate(paths) if not p]
        if empty:
            raise RuntimeError(f"tasks {empty} completed no path before the batch quota was reached")
        return [process_task(p, cfg.discount, cfg.gae_lambda) for p in paths]

    def iteration(self, itr: int) -> dict:
        cfg, obj, workers = self.cfg, self.obj, self.workers
        t0 = time.perf_counter()
        row: dict = {"itr": itr}
        rng = self.action_rng if workers is None else workers.action_rng(cfg.seed, itr)
        if cfg.mode == "trpo":
            self.sampler.set_tasks(None)  # oracle: new goal per episode; rand: one persistent goal per env
            quota = cfg.batch_size
        else:
            tasks = self._sample_tasks(cfg.meta_batch_size)  # the same list on every worker
            if workers is not None:
                tasks = workers.local(tasks)
            self.sampler.set_tasks(tasks)
            quota = cfg.fast_batch_size * cfg.max_path_length * len(tasks)
        n = self.sampler.n_tasks
        theta_b = np.tile(self.theta[None], (n, 1))
        ts = time.perf_counter()
        paths0 = self._sample(theta_b, quota, rng)
        t_sample = time.perf_counter() - ts
        steps = self.sampler.last_stats["env_steps"]
        tp = time.perf_counter()
        proc0 = self._process(paths0)
        b0 = to_batch(pack(proc0))
        t_process = time.perf_counter() - tp
        row["pre_return"] = average_return(proc0)
        row["pre_trajs"] = sum(len(p) for p in paths0)
        row["post_return"], row["post_trajs"], t_adapt = np.nan, 0, 0.0
        b1 = b0
        if cfg.mode == "maml":
            ta = time.perf_counter()
            theta_p = obj.adapted_params(tf.constant(self.theta), b0).numpy()
            t_adapt = time.perf_counter() - ta
            ts = time.perf_counter()
            paths1 = self._sample(theta_p, quota, rng)
            t_sample += time.perf_counter() - ts
            steps += self.sampler.last_stats["env_steps"]
            tp = time.perf_counter()
            proc1 = self._process(paths1)
            b1 = to_batch(pack(proc1))
            t_process += time.perf_counter() - tp
            row["post_return"] = average_return(proc1)
            row["post_trajs"] = sum(len(p) for p in paths1)
        tu = time.perf_counter()
        if cfg.mode == "maml0":
            self.theta, loss = self.pretrain(self.theta, b0)
            row.update(loss_before=loss, loss_after=np.nan, mean_kl=np.nan, accepted=1, n_backtracks=0,
                       step_size=cfg.pretrain_lr, t_grad=np.nan, t_hvp=0.0, n_hvp=0, t_line_search=0.0)
        else:
            if workers is not None:  # b0/b1 hold this worker's tasks; the step is the global one
                res, times = distributed.meta_trpo_step(workers.objective, self.theta, b0, b1, cfg.meta_step_size,
                                                        cfg.hvp, cfg.fd_base_eps)
            else:
                res, times = meta_trpo_step(obj, self.theta, b0, b1, cfg.meta_step_size, cfg.hvp, cfg.fd_base_eps)
            self.theta = res.theta
            row.update(loss_before=res.loss_before, loss_after=res.loss_after, mean_kl=res.kl_after,
                       accepted=int(res.accepted), n_backtracks=res.n_backtracks, step_size=res.initial_step_size,
                       t_grad=times["grad"], t_hvp=times["hvp"], n_hvp=times["n_hvp"], t_line_search=times["line_search"])
        t_update = time.perf_counter() - tu
        info = b1.dist_info.numpy()
        d = info.shape[-1] // 2
        row["entropy"] = float(np.mean(np.sum(info[..., d:], -1))) + 0.5 * d * (1 + np.log(2 * np.pi)) \
            if isinstance(self.policy, GaussianMLPPolicy) else np.nan
        row.update(t_sample=t_sample, t_process=t_process, t_adapt=t_adapt, t_update=t_update,
                   t_total=time.perf_counter() - t0, env_steps=steps)
        if workers is not None:
            self._global_stats(row, proc0, proc1, info)
        return row

    def _global_stats(self, row: dict, proc0: list, proc1: list, info: np.ndarray) -> None:
        """Replace this worker's returns, path counts, env steps and entropy by those of all workers.

        Sums and counts are all-reduced, so every worker logs the same values and picks the same best
        checkpoint; with one worker they equal the local ones exactly.
        """
        def sum_count(proc):
            r = np.concatenate([t.path_returns for t in proc])
            return [np.sum(r), r.size]
        d = info.shape[-1] // 2
        ent = np.sum(info[..., d:], -1)
        pre_s, pre_n, post_s, post_n, steps, ent_s, ent_n = self.workers.all_sum(
            sum_count(proc0) + sum_count(proc1) + [row["env_steps"], np.sum(ent), ent.size])
        row.update(pre_return=pre_s / pre_n, post_return=post_s / post_n, pre_trajs=int(pre_n),
                   post_trajs=int(post_n), env_steps=int(steps))
        if isinstance(self.policy, GaussianMLPPolicy):
            row["entropy"] = ent_s / ent_n + 0.5 * d * (1 + np.log(2 * np.pi))

    def _sample_tasks(self, n: int):
        from maml_tf.rl.envs import sample_tasks

        return sample_tasks(self.cfg.env_id, n, self.task_rng)

    def train(self) -> dict:
        """Iterations start_itr .. n_itr-1; a SIGINT/SIGTERM ends the run after the iteration in progress.

        Under --distribute signals keep their usual effect: every worker would have to stop at the
        same iteration, which one process's signal cannot arrange.
        """
        if self.workers is not None:
            return self._train(None)
        with StopRequest() as stop:
            return self._train(stop)

    def _train(self, stop: StopRequest | None) -> dict:
        cfg = self.cfg
        # The progress line, progress.csv and tb/ as the supervised loop writes them (maml_tf.progress);
        # only the chief writes files (progress.csv keeps the rows before a resumed iteration).
        progress = RunLog(cfg.n_itr, self.start_itr, log=self.log, every_s=0, write=self.is_chief,
                          csv_path=os.path.join(self.log_dir, "progress.csv"), csv_fields=CSV_FIELDS,
                          tb_dir=os.path.join(self.log_dir, "tb"))
        t_run = time.perf_counter()
        last = {}
        try:  # the env worker processes are closed however the loop ends (a diverged run, Ctrl-C)
            for itr in range(self.start_itr, cfg.n_itr):
                if stop is not None and stop.requested:
                    self._stop(itr, stop.signum)
                theta_before = self.theta.copy()  # what earns this iteration's training return
                row = self.iteration(itr)
                self._check_finite(itr, row)
                last = row
                train_return = row["post_return"] if cfg.mode == "maml" else row["pre_return"]
                improved = train_return > self.best  # a global value under --distribute: the same on every worker
                if improved:
                    self.best = train_return
                if self.is_chief:
                    self._write(itr, row, theta_before if improved else None)
                steps_per_s = row["env_steps"] / max(row["t_sample"], 1e-9)
                progress.row(row)
                progress.scalars(itr, {**{k: row[k] for k in TB_SCALARS}, "env_steps_per_second": steps_per_s})
                progress.flush()
                progress.line(itr, f"pre {row['pre_return']:9.3f} | post {row['post_return']:9.3f} | "
                              f"kl {row['mean_kl']:.4f} | {'ok ' if row['accepted'] else 'REJ'} "
                              f"bt {row['n_backtracks']:2d} | sample {row['t_sample']:.1f}s "
                              f"update {row['t_update']:.1f}s total {row['t_total']:.1f}s | {steps_per_s:.0f} steps/s")
        finally:
            progress.close()
            self.sampler.close()
        return {"last": last, "best": self.best, "wall_s": time.perf_counter() - t_run}

    def _stop(self, next_itr: int, signum: int) -> None:
        """Raise TrainingStopped before iteration `next_itr`: latest.npz already holds the state after
        iteration next_itr - 1 (written at its end), so nothing is left to write."""
        latest = os.path.join(self.log_dir, "latest.npz")
        err = TrainingStopped(signum, next_itr, self.cfg.n_itr, latest if os.path.exists(latest) else None)
        self.log(f"Training {err}")
        raise err

    def _check_finite(self, itr: int, row: dict) -> None:
        """Stop a diverging run before its non-finite parameters reach a checkpoint (the last good ones stay)."""
        bad = [k for k in ("pre_return", "loss_before") if not np.isfinite(row[k])]
        if not np.all(np.isfinite(self.theta)):
            bad.insert(0, "the policy parameters")
        if bad:
            raise MamlError(f"iteration {itr}: {', '.join(bad)} not finite: training diverged; stopped without "
                            f"saving (step sizes --fast_lr={self.cfg.fast_lr}, --meta_step_size="
                            f"{self.cfg.meta_step_size}; the checkpoints written before are kept)")

    def _write(self, itr: int, row: dict, best_theta: np.ndarray | None) -> None:
        """Checkpoints of one iteration (the chief's job); `best_theta`: the parameters that earned a new
        best training return (theta before this iteration's update), None when it did not improve."""
        cfg = self.cfg
        if best_theta is not None:
            save_checkpoint(os.path.join(self.log_dir, "best.npz"), best_theta, self.policy, cfg, itr - 1,
                            best_state(itr, self.best))
        if is_snapshot(itr, cfg):
            save_checkpoint(os.path.join(self.log_dir, f"itr_{itr}.npz"), self.theta, self.policy, cfg, itr)
        save_checkpoint(os.path.join(self.log_dir, "latest.npz"), self.theta, self.policy, cfg, itr, self._extra())


def is_snapshot(itr: int, cfg: RLConfig) -> bool:
    """Whether iteration `itr` writes itr_<itr>.npz: the reference's numbering (0-based, every
    snapshot_gap-th from 0, taken after the update), plus the last iteration (its params.pkl)."""
    return itr % cfg.snapshot_gap == 0 or itr == cfg.n_itr - 1


def best_state(itr: int, train_return: float) -> dict:
    """best.npz's state: whose training return it is, and which snapshot its parameters equal.

    Its checkpoint `itr` field is itr - 1 (the parameters after iteration itr - 1's update; -1: the
    initial parameters), as for every other checkpoint.
    """
    return {"train_return": float(train_return), "return_iteration": itr,
            "params": f"itr_{itr - 1}" if itr > 0 else "initial",
            "note": f"the parameters that earned iteration {itr}'s training return, i.e. before its update "
                    f"(= {'the initial parameters' if itr == 0 else f'itr_{itr - 1}, after iteration {itr - 1}'})"}
