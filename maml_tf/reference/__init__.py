"""Everything about the original code's artefacts: golden fixtures, TF1 checkpoints, name mapping."""
