"""The paper's experiments from one command (`./run_experiments.sh`): registry, runner, results, plots."""
