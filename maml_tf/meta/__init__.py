"""The MAML algorithm: losses, the inner loop, the compiled meta-step and the TF1-faithful Adam."""
