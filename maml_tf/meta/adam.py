"""Adam exactly as TF1's `tf.train.AdamOptimizer` (the reference's meta-optimiser).

Why not keras.optimizers.Adam: its epsilon default (1e-7) and bias correction (powers recomputed
from an iteration count) differ, and the golden fixtures record TF1's state variables
(`<var>/Adam_2` = m, `<var>/Adam_3` = v, `beta1_power_1`, `beta2_power_1`). This class keeps the
same state with the same update formula as TF1's ApplyAdam kernel, written with plain assign ops so
that it also runs on mirrored variables under tf.distribute.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf


class TF1Adam(tf.Module):
    def __init__(self, variables: Sequence, learning_rate: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-8, name: str = "adam"):
        super().__init__(name=name)
        self.variables_ = list(variables)
        dtype = self.variables_[0].dtype
        self.lr, self.beta1, self.beta2, self.epsilon = learning_rate, beta1, beta2, epsilon
        self.m = [tf.Variable(tf.zeros(v.shape, dtype), trainable=False) for v in self.variables_]
        self.v = [tf.Variable(tf.zeros(v.shape, dtype), trainable=False) for v in self.variables_]
        self.beta1_power = tf.Variable(tf.constant(beta1, dtype), trainable=False)
        self.beta2_power = tf.Variable(tf.constant(beta2, dtype), trainable=False)

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        dtype = self.beta1_power.dtype
        one = tf.constant(1.0, dtype)
        b1, b2 = tf.constant(self.beta1, dtype), tf.constant(self.beta2, dtype)
        eps, lr = tf.constant(self.epsilon, dtype), tf.constant(self.lr, dtype)
        alpha = lr * tf.sqrt(one - self.beta2_power) / (one - self.beta1_power)
        for var, m, v, g in zip(self.variables_, self.m, self.v, grads):
            g = tf.cast(g, dtype)
            m_new = m + (g - m) * (one - b1)
            v_new = v + (tf.square(g) - v) * (one - b2)
            m.assign(m_new)
            v.assign(v_new)
            var.assign(var - (m_new * alpha) / (tf.sqrt(v_new) + eps))
        self.beta1_power.assign(self.beta1_power * b1)
        self.beta2_power.assign(self.beta2_power * b2)

    def state(self, names: Sequence[str], slot_names: tuple[str, str] = ("Adam_2", "Adam_3"),
              power_suffix: str = "_1") -> dict[str, tf.Variable]:
        """Optimizer state under TF1 names (metatrain_op's Adam is the second one: Adam_2/Adam_3)."""
        out = {}
        for n, m, v in zip(names, self.m, self.v):
            out[f"{n}/{slot_names[0]}"] = m
            out[f"{n}/{slot_names[1]}"] = v
        out[f"beta1_power{power_suffix}"] = self.beta1_power
        out[f"beta2_power{power_suffix}"] = self.beta2_power
        return out
