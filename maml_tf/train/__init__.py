"""Drivers: task streams, the training loop (checkpoints, summaries, progress) and the test protocol."""
