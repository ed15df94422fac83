"""MLP policies for MAML-RL: a diagonal Gaussian and a categorical policy.

The reference (`maml_minimal_gauss_mlp_policy.py`) keeps the policy as an ordered list of
parameters W0, b0, W1, b1, W2, b2, std_param and builds every post-update policy by feeding
substituted parameters into the same forward function.  We do the same: the policy is a Keras
model that *owns* the variables (so it can be saved, restored and shown), while all the math runs
through :meth:`forward`, a pure function of a **flat, task-batched** parameter tensor
``theta_b`` of shape ``[T, P]`` (one row per task) and observations ``[T, N, obs_dim]``.
Batching the parameters per task is what lets the inner step of all tasks run as one
differentiable computation and lets the sampler run every task's (pre- or post-update) policy
in a single compiled call.

Distributions come from tensorflow_probability; "dist info" (the sampling policy's mean and
log-std, or logits) is stored as one packed tensor ``[..., K]`` so the old distribution of a
batch can travel through `tf.function` signatures as a plain tensor.
"""
from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

MIN_LOG_STD = math.log(1e-6)  # reference min_std = 1e-6, applied as tf.maximum(log_std, log 1e-6)

_NONLINEARITIES = {"relu": tf.nn.relu, "tanh": tf.nn.tanh}


class MLPPolicy(keras.Model):
    """Shared machinery: parameter bookkeeping, flat <-> per-variable views, batched forward.

    Subclasses define the output head (:meth:`dist_from_info`, :meth:`info_from_outputs`).
    """

    def __init__(self, obs_dim: int, out_dim: int, hidden_sizes: Sequence[int] = (100, 100),
                 hidden_nonlinearity: str = "relu", seed: int | None = None, dtype: str = "float32",
                 extra_params: Sequence[tuple[str, tuple[int, ...]]] = (), **kwargs):
        if obs_dim <= 0 or out_dim <= 0:
            raise ValueError(f"obs_dim and out_dim must be positive, got {obs_dim}, {out_dim}")
        if hidden_nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"hidden_nonlinearity must be one of {sorted(_NONLINEARITIES)}, "
                             f"got {hidden_nonlinearity!r}")
        super().__init__(dtype=dtype, **kwargs)
        self.obs_dim = int(obs_dim)
        self.out_dim = int(out_dim)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.hidden_nonlinearity = hidden_nonlinearity
        self.param_dtype = tf.as_dtype(dtype)
        self._act = _NONLINEARITIES[hidden_nonlinearity]
        sizes = (self.obs_dim,) + self.hidden_sizes + (self.out_dim,)
        self.param_names: list[str] = []
        self.param_shapes: list[tuple[int, ...]] = []
        self.n_layers = len(sizes) - 1
        for i in range(self.n_layers):
            # Glorot-uniform (tf.contrib xavier_initializer) weights, zero biases, as the reference.
            w_seed = None if seed is None else seed + 2 * i
            self._add(f"W{i}", (sizes[i], sizes[i + 1]), keras.initializers.GlorotUniform(seed=w_seed))
            self._add(f"b{i}", (sizes[i + 1],), keras.initializers.Zeros())
        for name, shape in extra_params:
            self._add(name, shape, keras.initializers.Zeros())
        self.param_sizes = [int(np.prod(s)) for s in self.param_shapes]
        self.num_params = int(sum(self.param_sizes))

    def _add(self, name: str, shape: tuple[int, ...], init) -> None:
        setattr(self, f"_{name}", self.add_weight(name=name, shape=shape, initializer=init,
                                                   dtype=self.param_dtype, trainable=True))
        self.param_names.append(name)
        self.param_shapes.append(tuple(shape))

    # ----------------------------------------------------------------------------- parameters
    @property
    def params(self) -> list:
        return [getattr(self, f"_{n}") for n in self.param_names]

    def get_flat(self) -> np.ndarray:
        """All parameters as one flat numpy vector in the reference order."""
        return np.concatenate([np.asarray(v.numpy()).reshape(-1) for v in self.params])

    def set_flat(self, flat: np.ndarray) -> None:
        flat = np.asarray(flat)
        if flat.shape != (self.num_params,):
            raise ValueError(f"flat parameter vector has shape {flat.shape}, expected ({self.num_params},)")
        if not np.all(np.isfinite(flat)):
            raise ValueError("refusing to load non-finite policy parameters")
        offset = 0
        for v, shape, size in zip(self.params, self.param_shapes, self.param_sizes):
            v.assign(flat[offset:offset + size].reshape(shape).astype(self.param_dtype.as_numpy_dtype))
            offset += size

    def unflatten(self, theta_b: tf.Tensor) -> list[tf.Tensor]:
        """[T, P] -> list of [T, *shape] tensors (pure; differentiable)."""
        parts = tf.split(theta_b, self.param_sizes, axis=-1)
        t = tf.shape(theta_b)[0]
        return [tf.reshape(p, tf.concat([[t], shape], 0)) for p, shape in zip(parts, self.param_shapes)]

    # ----------------------------------------------------------------------------- forward
    def mlp(self, theta_b: tf.Tensor, obs: tf.Tensor) -> tf.Tensor:
        """Task-batched MLP: theta_b [T, P], obs [T, N, obs_dim] -> outputs [T, N, out_dim]."""
        ps = self.unflatten(theta_b)
        h = tf.cast(obs, self.param_dtype)
        for i in range(self.n_layers):
            w, b = ps[2 * i], ps[2 * i + 1]
            h = tf.matmul(h, w) + b[:, None, :]
            if i < self.n_layers - 1:
                h = self._act(h)
        return h

    def forward(self, theta_b: tf.Tensor, obs: tf.Tensor) -> tf.Tensor:
        """Dist info [T, N, K] for every task's parameter row applied to that task's observations."""
        raise NotImplementedError

    # numpy twin of the forward pass, for the sampler's one-observation-per-env lock-steps: on a
    # small shared CPU a TF dispatch costs ~0.5-1.5 ms while these three batched matmuls take
    # ~0.1 ms. Tested equal to `forward` (tests/rl/test_policies.py).
    def numpy_forward_fn(self, theta_b: np.ndarray):
        """Unflatten theta_b [T, P] once; return obs [T, N, obs_dim] -> dist info [T, N, K]."""
        theta_b = np.asarray(theta_b, dtype=self.param_dtype.as_numpy_dtype)
        offs = np.cumsum([0] + self.param_sizes)
        ps = [theta_b[:, offs[i]:offs[i + 1]].reshape((len(theta_b),) + shape)
              for i, shape in enumerate(self.param_shapes)]
        act = (lambda x: np.maximum(x, 0)) if self.hidden_nonlinearity == "relu" else np.tanh

        def mlp(obs):
            h = np.asarray(obs, dtype=theta_b.dtype)
            for i in range(self.n_layers):
                h = np.matmul(h, ps[2 * i]) + ps[2 * i + 1][:, None, :]
                if i < self.n_layers - 1:
                    h = act(h)
            return h

        return self._numpy_head(mlp, ps)

    def _numpy_head(self, mlp, ps):
        raise NotImplementedError

    def call(self, obs):
        """Keras entry point: the current parameters on a [N, obs_dim] batch -> dist info [N, K]."""
        theta = tf.concat([tf.reshape(tf.convert_to_tensor(v), [-1]) for v in self.params], 0)
        return self.forward(theta[None], tf.convert_to_tensor(obs)[None])[0]

    # ----------------------------------------------------------------------------- distributions
    def dist_from_info(self, info: tf.Tensor) -> tfd.Distribution:
        raise NotImplementedError

    def log_prob(self, info: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        return self.dist_from_info(info).log_prob(self._cast_actions(actions))

    def kl(self, old_info: tf.Tensor, new_info: tf.Tensor) -> tf.Tensor:
        """KL(old || new) per timestep, the direction the reference's TRPO constraint uses."""
        return tfd.kl_divergence(self.dist_from_info(old_info), self.dist_from_info(new_info))

    def entropy(self, info: tf.Tensor) -> tf.Tensor:
        return self.dist_from_info(info).entropy()

    def _cast_actions(self, actions: tf.Tensor) -> tf.Tensor:
        return tf.cast(actions, self.param_dtype)

    def sample_numpy(self, info: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw actions from packed dist info with a numpy RNG (reproducible, off the TF graph)."""
        raise NotImplementedError

    @property
    def info_dim(self) -> int:
        raise NotImplementedError

    @property
    def action_dim_stored(self) -> int:
        """Width of the stored action array (d for Gaussian, 1 for a categorical index)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "obs_dim": self.obs_dim, "out_dim": self.out_dim,
                "hidden_sizes": list(self.hidden_sizes), "hidden_nonlinearity": self.hidden_nonlinearity,
                "dtype": self.param_dtype.name}


class GaussianMLPPolicy(MLPPolicy):
    """Diagonal Gaussian with state-independent, exp-parametrised log-std (init 0 -> sigma 1).

    The log-std vector is an ordinary parameter: the inner SGD step and TRPO both update it
    (reference quirk: `update_param_keys = all_params.keys()`). It is floored at log(1e-6)
    wherever the distribution is formed. Dist info = concat(mean, floored log_std).
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int] = (100, 100),
                 hidden_nonlinearity: str = "relu", seed: int | None = None, dtype: str = "float32",
                 **kwargs):
        super().__init__(obs_dim, action_dim, hidden_sizes, hidden_nonlinearity, seed, dtype,
                         extra_params=(("log_std", (action_dim,)),), **kwargs)
        self.action_dim = int(action_dim)

    def mean_and_log_std(self, theta_b: tf.Tensor, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        mean = self.mlp(theta_b, obs)
        log_std = tf.maximum(self.unflatten(theta_b)[-1], tf.cast(MIN_LOG_STD, self.param_dtype))
        return mean, tf.broadcast_to(log_std[:, None, :], tf.shape(mean))

    def forward(self, theta_b, obs):
        mean, log_std = self.mean_and_log_std(theta_b, obs)
        return tf.concat([mean, log_std], axis=-1)

    def _numpy_head(self, mlp, ps):
        log_std = np.maximum(ps[-1], MIN_LOG_STD)[:, None, :]

        def fn(obs):
            mean = mlp(obs)
            return np.concatenate([mean, np.broadcast_to(log_std, mean.shape)], axis=-1)

        return fn

    def dist_from_info(self, info):
        mean, log_std = tf.split(info, 2, axis=-1)
        return tfd.Independent(tfd.Normal(mean, tf.exp(log_std)), reinterpreted_batch_ndims=1)

    def sample_numpy(self, info, rng):
        d = self.action_dim
        mean, log_std = info[..., :d], info[..., d:]
        return mean + np.exp(log_std) * rng.standard_normal(mean.shape).astype(mean.dtype)

    @property
    def info_dim(self):
        return 2 * self.action_dim

    @property
    def action_dim_stored(self):
        return self.action_dim

    def describe(self):
        return {**super().describe(), "action_dim": self.action_dim}


class CategoricalMLPPolicy(MLPPolicy):
    """Softmax MLP policy for discrete actions (`maml_minimal_categorical_mlp_policy.py`).

    Dist info = logits; stored actions are the integer index in a width-1 float array.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int] = (100, 100),
                 hidden_nonlinearity: str = "relu", seed: int | None = None, dtype: str = "float32",
                 **kwargs):
        super().__init__(obs_dim, n_actions, hidden_sizes, hidden_nonlinearity, seed, dtype, **kwargs)
        self.n_actions = int(n_actions)

    def forward(self, theta_b, obs):
        # Normalised logits (log-softmax) so KL/log-prob match the reference's probability form.
        return tf.nn.log_softmax(self.mlp(theta_b, obs), axis=-1)

    def _numpy_head(self, mlp, ps):
        def fn(obs):
            z = mlp(obs)
            z = z - z.max(-1, keepdims=True)
            return z - np.log(np.exp(z).sum(-1, keepdims=True))

        return fn

    def dist_from_info(self, info):
        return tfd.Categorical(logits=info)

    def _cast_actions(self, actions):
        return tf.cast(tf.squeeze(actions, -1), tf.int32)

    def sample_numpy(self, info, rng):
        p = np.exp(info - info.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        u = rng.random(p.shape[:-1] + (1,))
        idx = (np.cumsum(p, -1) < u).sum(-1, keepdims=True)
        return np.minimum(idx, self.n_actions - 1).astype(info.dtype)

    @property
    def info_dim(self):
        return self.n_actions

    @property
    def action_dim_stored(self):
        return 1

    def describe(self):
        return {**super().describe(), "n_actions": self.n_actions}


def make_policy(spec: dict) -> MLPPolicy:
    """Rebuild a policy from :meth:`MLPPolicy.describe` output (used by checkpoints)."""
    kind = spec.get("kind")
    common = dict(hidden_sizes=spec["hidden_sizes"], hidden_nonlinearity=spec["hidden_nonlinearity"],
                  dtype=spec.get("dtype", "float32"))
    if kind == "GaussianMLPPolicy":
        return GaussianMLPPolicy(spec["obs_dim"], spec["action_dim"], **common)
    if kind == "CategoricalMLPPolicy":
        return CategoricalMLPPolicy(spec["obs_dim"], spec["n_actions"], **common)
    raise ValueError(f"unknown policy kind {kind!r} in checkpoint spec")
