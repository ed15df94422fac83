"""MAML-TRPO meta-reinforcement learning (cbfinn/maml_rl semantics)."""
