"""The MAML-TRPO objective: inner VPG step per task + post-update TRPO surrogate and mean KL.

Reference: `sandbox/rocky/tf/algos/maml_npo.py` and `maml_minimal_gauss_mlp_policy.py`.

* Inner loss of task i: ``L_i(theta) = -mean_t log pi_theta(a_t|s_t) A_t`` over task i's
  pre-update batch; ``theta'_i = theta - fast_lr * grad L_i(theta)`` on **all** parameters
  (log-std included).  All tasks are done at once: theta is tiled to ``[T, P]`` and
  ``sum_i L_i(theta_i)`` is differentiated w.r.t. the tiled tensor, which yields every task's own
  gradient in one backward pass.  The same function is run numerically (to get the post-update
  policies for sampling) and inside outer tapes (for the meta-objective), so the sampled and the
  differentiated post-update policies coincide.  ``first_order=True`` wraps the inner gradient in
  `tf.stop_gradient` (the reference's ``stop_grad``).
* Outer loss: mean over tasks of ``-mean_t exp(log pi_{theta'_i} - log pi_old) A_t`` on the
  post-update batch; constraint: KL(pi_old || pi_{theta'_i}) averaged over *all* post-update
  timesteps of all tasks (timestep-weighted, unlike the loss).
* ``num_grad_updates=0`` turns the same code into plain TRPO / the multi-task "pretrain"
  surrogate (theta' = theta).

Pure functions of (theta, batches); the driver owns sampling, logging and parameter storage.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from maml_tf.rl import trpo
from maml_tf.rl.advantages import TaskBatch
from maml_tf.rl.policies import MLPPolicy


class Batch(NamedTuple):
    """TaskBatch as TF tensors (see `advantages.pack`)."""
    obs: tf.Tensor
    actions: tf.Tensor
    advantages: tf.Tensor
    mask: tf.Tensor
    dist_info: tf.Tensor


def to_batch(tb: TaskBatch, dtype=tf.float32) -> Batch:
    return Batch(*(tf.convert_to_tensor(np.asarray(x), dtype=dtype) for x in tb))


def _masked_task_mean(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """[T, N] -> [T]: mean over each task's real timesteps."""
    return tf.reduce_sum(x * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class MetaObjective:
    """Compiled pure functions of a flat theta [P] and the step-0 / step-1 batches."""

    def __init__(self, policy: MLPPolicy, fast_lr: float = 0.1, num_grad_updates: int = 1,
                 first_order: bool = False):
        if num_grad_updates not in (0, 1):
            raise ValueError("num_grad_updates must be 0 (plain TRPO / pretrain) or 1 (all paper runs); "
                             f"got {num_grad_updates} (the reference's k>1 sampling is buggy, see spec 3.9)")
        if fast_lr < 0:
            raise ValueError(f"fast_lr must be >= 0, got {fast_lr}")
        self.policy = policy
        self.fast_lr = float(fast_lr)
        self.num_grad_updates = num_grad_updates
        self.first_order = bool(first_order)
        self.dtype = policy.param_dtype
        p = policy.num_params
        spec_b = Batch(
            obs=tf.TensorSpec([None, None, policy.obs_dim], self.dtype),
            actions=tf.TensorSpec([None, None, policy.action_dim_stored], self.dtype),
            advantages=tf.TensorSpec([None, None], self.dtype),
            mask=tf.TensorSpec([None, None], self.dtype),
            dist_info=tf.TensorSpec([None, None, policy.info_dim], self.dtype),
        )
        theta_spec = tf.TensorSpec([p], self.dtype)
        theta_b_spec = tf.TensorSpec([None, p], self.dtype)
        obs_spec = tf.TensorSpec([None, None, policy.obs_dim], self.dtype)
        # XLA for the sampler's per-lock-step call: it is dispatch-bound (tiny matmuls), jit cuts ~3x.
        self.dist_info = tf.function(self._dist_info, input_signature=[theta_b_spec, obs_spec], jit_compile=True)
        self.adapted_params = tf.function(self._adapted_params, input_signature=[theta_spec, spec_b])
        self.adapt_from = tf.function(self._adapt_from, input_signature=[theta_b_spec, spec_b, tf.TensorSpec([], self.dtype)])
        self.loss_and_kl = tf.function(self._loss_and_kl, input_signature=[theta_spec, spec_b, spec_b])
        self.loss_and_grad = tf.function(self._loss_and_grad, input_signature=[theta_spec, spec_b, spec_b])
        self.kl_grad = tf.function(self._kl_grad, input_signature=[theta_spec, spec_b, spec_b])
        self.kl_hvp_exact = tf.function(self._kl_hvp_exact, input_signature=[theta_spec, theta_spec, spec_b, spec_b])
        self.kl_hvp_fd = tf.function(self._kl_hvp_fd, input_signature=[theta_spec, theta_spec, spec_b, spec_b,
                                                                        tf.TensorSpec([], self.dtype)])

    # ------------------------------------------------------------------ building blocks
    def _dist_info(self, theta_b, obs):
        return self.policy.forward(theta_b, obs)

    def inner_losses(self, theta_b: tf.Tensor, b: Batch) -> tf.Tensor:
        """[T] vanilla PG losses -mean_t log pi(a|s) A (no ratio, no entropy), one per task row."""
        logp = self.policy.log_prob(self.policy.forward(theta_b, b.obs), b.actions)
        return -_masked_task_mean(logp * b.advantages, b.mask)

    def _adapt_from(self, theta_b, b0, lr):
        """theta_b - lr * grad of each task's inner loss (differentiable unless first-order)."""
        with tf.GradientTape() as tape:
            tape.watch(theta_b)
            total = tf.reduce_sum(self.inner_losses(theta_b, b0))
        g = tape.gradient(total, theta_b)
        if self.first_order:
            g = tf.stop_gradient(g)
        return theta_b - lr * g

    def _adapted_params(self, theta, b0):
        """Post-update parameters [T, P] (T from the step-0 batch); theta tiled if no update."""
        t = tf.shape(b0.obs)[0]
        theta_b = tf.tile(theta[None], [t, 1])
        if self.num_grad_updates == 0:
            return theta_b
        return self._adapt_from(theta_b, b0, tf.constant(self.fast_lr, self.dtype))

    def _loss_and_kl(self, theta, b0, b1):
        theta_p = self._adapted_params(theta, b0) if self.num_grad_updates else \
            tf.tile(theta[None], [tf.shape(b1.obs)[0], 1])
        new_info = self.policy.forward(theta_p, b1.obs)
        logp_new = self.policy.log_prob(new_info, b1.actions)
        logp_old = self.policy.log_prob(b1.dist_info, b1.actions)
        ratio = tf.exp(logp_new - logp_old)
        loss = tf.reduce_mean(-_masked_task_mean(ratio * b1.advantages, b1.mask))
        kl_t = self.policy.kl(b1.dist_info, new_info)
        kl = tf.reduce_sum(kl_t * b1.mask) / tf.reduce_sum(b1.mask)
        return loss, kl

    def _loss_and_grad(self, theta, b0, b1):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            loss, _ = self._loss_and_kl(theta, b0, b1)
        return loss, tape.gradient(loss, theta)

    def _kl_grad(self, theta, b0, b1):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            _, kl = self._loss_and_kl(theta, b0, b1)
        return tape.gradient(kl, theta)

    def _kl_hvp_exact(self, theta, v, b0, b1):
        """Exact H v by double backprop (third derivatives through the inner step)."""
        with tf.GradientTape() as outer:
            outer.watch(theta)
            g = self._kl_grad(theta, b0, b1)
            gv = tf.reduce_sum(g * tf.stop_gradient(v))
        return outer.gradient(gv, theta)

    def _kl_hvp_fd(self, theta, v, b0, b1, base_eps):
        """Reference FD HVP in one compiled call: eps = base_eps / (||theta|| + 1e-8)."""
        eps = base_eps / (tf.norm(theta) + 1e-8)
        gp = self._kl_grad(theta + eps * v, b0, b1)
        gm = self._kl_grad(theta - eps * v, b0, b1)
        return (gp - gm) / (2.0 * eps)


def meta_trpo_step(obj: MetaObjective, theta: np.ndarray, b0: Batch, b1: Batch, max_kl: float,
                   hvp: str = "fd", fd_base_eps: float = trpo.REFERENCE_FD_BASE_EPS,
                   cg_iters: int = trpo.REFERENCE_CG_ITERS) -> tuple[trpo.TRPOResult, dict]:
    """One TRPO update of theta on the MAML objective; returns the result and a time breakdown."""
    if hvp not in ("fd", "exact"):
        raise ValueError(f"hvp must be 'fd' (reference) or 'exact', got {hvp!r}")
    dt = obj.dtype.as_numpy_dtype
    theta = np.asarray(theta, dtype=dt)
    times = {"grad": 0.0, "hvp": 0.0, "line_search": 0.0}
    n_hvp = 0
    t0 = time.perf_counter()
    loss_before, grad = obj.loss_and_grad(tf.constant(theta), b0, b1)
    times["grad"] = time.perf_counter() - t0
    th = tf.constant(theta)
    eps_t = tf.constant(fd_base_eps, obj.dtype)

    def hvp_fn(v):
        nonlocal n_hvp
        t = time.perf_counter()
        vt = tf.constant(np.asarray(v, dtype=dt))
        out = obj.kl_hvp_fd(th, vt, b0, b1, eps_t) if hvp == "fd" else obj.kl_hvp_exact(th, vt, b0, b1)
        times["hvp"] += time.perf_counter() - t
        n_hvp += 1
        return out.numpy()

    def loss_kl(cand):
        t = time.perf_counter()
        loss, kl = obj.loss_and_kl(tf.constant(cand), b0, b1)
        times["line_search"] += time.perf_counter() - t
        return float(loss), float(kl)

    res = trpo.trpo_step(theta, float(loss_before), grad.numpy(), hvp_fn, loss_kl, max_kl, cg_iters=cg_iters)
    times["n_hvp"] = n_hvp
    times["n_line_search"] = res.n_backtracks + 1
    return res, times


class PretrainStep:
    """`use_maml=False`: one full-batch Adam(1e-3) step on the mean pre-update surrogate.

    The objective must be built with num_grad_updates=0; the data is the step-0 batch.
    """

    def __init__(self, obj: MetaObjective, learning_rate: float = 1e-3):
        if obj.num_grad_updates != 0:
            raise ValueError("PretrainStep needs a MetaObjective with num_grad_updates=0")
        self.obj = obj
        self.var = keras.Variable(np.zeros(obj.policy.num_params), dtype=obj.dtype.name, name="theta")
        self.opt = keras.optimizers.Adam(learning_rate=learning_rate)
        self.opt.build([self.var])

    def __call__(self, theta: np.ndarray, b0: Batch) -> tuple[np.ndarray, float]:
        self.var.assign(np.asarray(theta, dtype=self.obj.dtype.as_numpy_dtype))
        loss, grad = self.obj.loss_and_grad(tf.convert_to_tensor(self.var), b0, b0)
        self.opt.apply_gradients([(grad, self.var)])
        return np.asarray(self.var.numpy()), float(loss)

    def state(self) -> list[np.ndarray]:
        return [np.asarray(v.numpy()) for v in self.opt.variables]

    def load_state(self, values: list[np.ndarray]) -> None:
        for v, x in zip(self.opt.variables, values):
            v.assign(x)
