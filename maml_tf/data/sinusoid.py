"""Sinusoid regression tasks, drawn exactly as the reference's DataGenerator.generate_sinusoid_batch.

The RNG is a numpy RandomState used with the same calls in the same order as the reference's
global np.random, so `SinusoidTasks(seed=1)` reproduces what the reference draws after
np.random.seed(1) (its test protocol). Its state is saved in checkpoints for exact resume.
"""
from __future__ import annotations

import json

import numpy as np

AMP_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, np.pi)
INPUT_RANGE = (-5.0, 5.0)


class SinusoidTasks:
    """Batches of sinusoid tasks: y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]."""

    dim_input = 1
    dim_output = 1

    def __init__(self, samples_per_task: int, seed: int | None = None, oracle: bool = False):
        self.samples_per_task = samples_per_task
        self.oracle = oracle
        self.rng = np.random.RandomState(seed)

    def generate(self, batch_size: int):
        """(inputs [mb, S, 1 or 3], outputs [mb, S, 1], amp [mb], phase [mb]) as float64, like the reference."""
        amp = self.rng.uniform(AMP_RANGE[0], AMP_RANGE[1], [batch_size])
        phase = self.rng.uniform(PHASE_RANGE[0], PHASE_RANGE[1], [batch_size])
        outputs = np.zeros([batch_size, self.samples_per_task, 1])
        inputs = np.zeros([batch_size, self.samples_per_task, 1])
        for i in range(batch_size):
            inputs[i] = self.rng.uniform(INPUT_RANGE[0], INPUT_RANGE[1], [self.samples_per_task, 1])
            outputs[i] = amp[i] * np.sin(inputs[i] - phase[i])
        if self.oracle:  # main.py: amplitude and phase appended to every input
            inputs = np.concatenate([inputs, np.zeros([batch_size, self.samples_per_task, 2])], 2)
            inputs[:, :, 1] = amp[:, None]
            inputs[:, :, 2] = phase[:, None]
        return inputs, outputs, amp, phase

    def split_batch(self, batch_size: int, support: int, dtype=np.float32):
        """(inputa, labela, inputb, labelb): the first `support` points of each task, then the rest."""
        x, y, _, _ = self.generate(batch_size)
        x, y = x.astype(dtype), y.astype(dtype)
        return x[:, :support], y[:, :support], x[:, support:], y[:, support:]

    # -- exact resume -----------------------------------------------------------------------
    def get_state(self) -> str:
        name, keys, pos, has_gauss, cached = self.rng.get_state()
        return json.dumps({"name": name, "keys": keys.tolist(), "pos": int(pos),
                           "has_gauss": int(has_gauss), "cached": float(cached)})

    def set_state(self, state: str) -> None:
        s = json.loads(state)
        self.rng.set_state((s["name"], np.array(s["keys"], dtype=np.uint32), s["pos"], s["has_gauss"], s["cached"]))
