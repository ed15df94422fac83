"""Sample processing, numpy-side as in the reference (`rllab/sampler/base.py::process_samples`).

Per task and per sampling step: discounted returns, a LinearFeatureBaseline fitted *in-sample*
on that same task's paths (this fork fits before predicting), GAE with lambda = 1 (so the
advantage is return minus baseline), then standardisation over the task's batch.  The result is
packed into zero-padded ``[T, N, ...]`` arrays plus a mask so the TF objectives can keep
per-task means for losses and a timestep-weighted mean for the KL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np


@dataclass
class Path:
    """One completed trajectory; actions are the raw (unclipped) policy samples."""
    observations: np.ndarray  # [L, obs_dim]
    actions: np.ndarray       # [L, act_dim]
    rewards: np.ndarray       # [L]
    dist_info: np.ndarray     # [L, K] packed info of the sampling policy

    def __len__(self) -> int:
        return len(self.rewards)


def discount_cumsum(x: np.ndarray, discount: float) -> np.ndarray:
    """y_t = sum_k discount^k x_{t+k} (no bootstrap: paths are complete or truncated at H)."""
    out = np.zeros(len(x), dtype=np.float64)
    running = 0.0
    for t in range(len(x) - 1, -1, -1):
        running = x[t] + discount * running
        out[t] = running
    return out


def baseline_features(obs: np.ndarray) -> np.ndarray:
    """Reference LinearFeatureBaseline features: clip(o,-10,10), its square, t/100 powers 1..3, 1."""
    o = np.clip(np.asarray(obs, dtype=np.float64), -10, 10)
    n = len(o)
    al = np.arange(n, dtype=np.float64).reshape(-1, 1) / 100.0
    return np.concatenate([o, o ** 2, al, al ** 2, al ** 3, np.ones((n, 1))], axis=1)


class LinearFeatureBaseline:
    """Ridge regression of returns on :func:`baseline_features` (reg 1e-5, x10 retry on NaN)."""

    def __init__(self, reg_coeff: float = 1e-5):
        self.reg_coeff = reg_coeff
        self.coeffs: np.ndarray | None = None

    def fit(self, observations: Sequence[np.ndarray], returns: Sequence[np.ndarray]) -> None:
        if len(observations) == 0:
            raise ValueError("cannot fit the baseline on zero paths")
        feats = np.concatenate([baseline_features(o) for o in observations])
        rets = np.concatenate(returns)
        reg = self.reg_coeff
        for _ in range(5):
            a = feats.T @ feats + reg * np.identity(feats.shape[1])
            coeffs = np.linalg.lstsq(a, feats.T @ rets, rcond=-1)[0]
            if not np.any(np.isnan(coeffs)):
                break
            reg *= 10
        self.coeffs = coeffs

    def predict(self, obs: np.ndarray) -> np.ndarray:
        if self.coeffs is None:
            return np.zeros(len(obs))
        return baseline_features(obs) @ self.coeffs


class TaskBatch(NamedTuple):
    """Padded per-task arrays ([T, N, ...]); mask marks real timesteps."""
    obs: np.ndarray
    actions: np.ndarray
    advantages: np.ndarray
    mask: np.ndarray
    dist_info: np.ndarray


@dataclass
class ProcessedTask:
    observations: np.ndarray
    actions: np.ndarray
    advantages: np.ndarray
    dist_info: np.ndarray
    returns: np.ndarray           # discounted, concatenated
    path_returns: np.ndarray      # undiscounted return of each path
    baselines: np.ndarray


def process_task(paths: Sequence[Path], discount: float = 0.99, gae_lambda: float = 1.0,
                 center_adv: bool = True, reg_coeff: float = 1e-5) -> ProcessedTask:
    """Returns -> in-sample baseline fit -> GAE -> standardise, for one task's paths."""
    if len(paths) == 0:
        raise ValueError("a task produced no completed paths; increase the batch size or horizon")
    returns = [discount_cumsum(p.rewards, discount) for p in paths]
    baseline = LinearFeatureBaseline(reg_coeff)
    baseline.fit([p.observations for p in paths], returns)
    advs, bases = [], []
    for p in paths:
        b = baseline.predict(p.observations)
        b_next = np.append(b[1:], 0.0)
        deltas = p.rewards + discount * b_next - b
        advs.append(discount_cumsum(deltas, discount * gae_lambda))
        bases.append(b)
    adv = np.concatenate(advs)
    if center_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return ProcessedTask(
        observations=np.concatenate([p.observations for p in paths]),
        actions=np.concatenate([p.actions for p in paths]),
        advantages=adv,
        dist_info=np.concatenate([p.dist_info for p in paths]),
        returns=np.concatenate(returns),
        path_returns=np.array([float(np.sum(p.rewards)) for p in paths]),
        baselines=np.concatenate(bases),
    )


def pack(tasks: Sequence[ProcessedTask], dtype=np.float32) -> TaskBatch:
    """Zero-pad per-task arrays to the longest task and stack them with a validity mask."""
    n = max(len(t.advantages) for t in tasks)
    t_count = len(tasks)

    def stack(get, width):
        out = np.zeros((t_count, n, width), dtype=dtype)
        for i, t in enumerate(tasks):
            a = get(t)
            out[i, :len(a)] = a.reshape(len(a), width)
        return out

    mask = np.zeros((t_count, n), dtype=dtype)
    for i, t in enumerate(tasks):
        mask[i, :len(t.advantages)] = 1
    return TaskBatch(
        obs=stack(lambda t: t.observations, tasks[0].observations.shape[1]),
        actions=stack(lambda t: t.actions, tasks[0].actions.shape[1]),
        advantages=stack(lambda t: t.advantages, 1)[..., 0],
        mask=mask,
        dist_info=stack(lambda t: t.dist_info, tasks[0].dist_info.shape[1]),
    )


def average_return(tasks: Sequence[ProcessedTask]) -> float:
    """Reference `AverageReturn`: mean undiscounted return over the union of all tasks' paths."""
    return float(np.mean(np.concatenate([t.path_returns for t in tasks])))
