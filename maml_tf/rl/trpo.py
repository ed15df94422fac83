"""TRPO machinery: conjugate gradient, step scaling and the backtracking line search.

Mirrors `sandbox/rocky/tf/optimizers/conjugate_gradient_optimizer.py` and
`rllab/misc/krylov.py::cg`.  Nothing here knows about environments, policies or MAML: the
objective is supplied as callables on a flat parameter vector, so the same code runs plain TRPO
(oracle baselines) and MAML-TRPO (where every call goes through the inner update).

Hessian-vector products are supplied as a callable too; they live with the objective, in one
compiled call each (`maml_trpo.MetaObjective.kl_hvp_fd` and `kl_hvp_exact`).  The reference uses
central finite differences of the constraint gradient, ``Hv ~ (g(theta + eps v) - g(theta - eps v))
/ (2 eps)`` with ``eps = base_eps / (||theta|| + 1e-8)``.  Because `ConjugateGradientOptimizer`
constructs `FiniteDifferenceHvp(num_slices)` positionally, its effective ``base_eps`` is 1 (not
1e-8); :data:`REFERENCE_FD_BASE_EPS` keeps that quirk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

REFERENCE_FD_BASE_EPS = 1.0
REFERENCE_CG_ITERS = 10
REFERENCE_REG_COEFF = 1e-5
REFERENCE_BACKTRACK_RATIO = 0.8
REFERENCE_MAX_BACKTRACKS = 15

Vec = np.ndarray


def conjugate_gradient(f_ax: Callable[[Vec], Vec], b: Vec, cg_iters: int = REFERENCE_CG_ITERS,
                       residual_tol: float = 1e-10) -> Vec:
    """Solve A x = b for symmetric positive-definite A given only x -> A x (rllab `krylov.cg`).

    Starts at x = 0; stops after `cg_iters` iterations or once r.r < residual_tol.
    """
    b = np.asarray(b, dtype=np.float64)
    p = b.copy()
    r = b.copy()
    x = np.zeros_like(b)
    rdotr = r.dot(r)
    for _ in range(cg_iters):
        if rdotr < residual_tol:
            break
        z = np.asarray(f_ax(p), dtype=np.float64)
        alpha = rdotr / p.dot(z)
        x += alpha * p
        r -= alpha * z
        new_rdotr = r.dot(r)
        p = r + (new_rdotr / rdotr) * p
        rdotr = new_rdotr
    return x


@dataclass
class TRPOResult:
    theta: Vec            # parameters after the step (== input if rejected)
    accepted: bool
    loss_before: float
    loss_after: float
    kl_after: float
    n_backtracks: int     # index k of the tried step 0.8^k (last tried when rejected)
    initial_step_size: float


def trpo_step(theta: Vec, loss_before: float, grad: Vec, hvp: Callable[[Vec], Vec],
              loss_and_kl: Callable[[Vec], tuple[float, float]], max_kl: float,
              cg_iters: int = REFERENCE_CG_ITERS, reg_coeff: float = REFERENCE_REG_COEFF,
              backtrack_ratio: float = REFERENCE_BACKTRACK_RATIO,
              max_backtracks: int = REFERENCE_MAX_BACKTRACKS) -> TRPOResult:
    """One constrained step: CG on the damped HVP, scale to the KL bound, backtrack.

    Accept rule (reference): the first k with loss < loss_before and kl <= max_kl; afterwards, if
    loss or KL is NaN, loss >= loss_before or kl >= max_kl, the old parameters are restored.
    """
    if max_kl <= 0:
        raise ValueError(f"max_kl (the trust-region size) must be positive, got {max_kl}")
    theta = np.asarray(theta)

    def damped(v: Vec) -> Vec:
        return np.asarray(hvp(v), dtype=np.float64) + reg_coeff * np.asarray(v, dtype=np.float64)

    direction = conjugate_gradient(damped, grad, cg_iters)
    shs = direction.dot(damped(direction))
    with np.errstate(invalid="ignore", divide="ignore"):
        step_size = np.sqrt(2.0 * max_kl * (1.0 / (shs + 1e-8)))
    if np.isnan(step_size):
        step_size = 1.0
    full_step = step_size * direction
    loss, kl, k = np.nan, np.nan, 0
    cand = theta
    for k in range(max_backtracks):
        cand = (theta - (backtrack_ratio ** k) * full_step).astype(theta.dtype)
        loss, kl = loss_and_kl(cand)
        if loss < loss_before and kl <= max_kl:
            break
    rejected = (np.isnan(loss) or np.isnan(kl) or loss >= loss_before or kl >= max_kl)
    if rejected:
        return TRPOResult(theta, False, float(loss_before), float(loss), float(kl), k, float(step_size))
    return TRPOResult(cand, True, float(loss_before), float(loss), float(kl), k, float(step_size))
