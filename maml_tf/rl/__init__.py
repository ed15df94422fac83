"""MAML-TRPO meta-reinforcement learning (cbfinn/maml_rl semantics).

Where things live:
  policies.py   Gaussian / categorical MLP policies (Keras models; forward on task-batched flat params)
  sampler.py    lock-step per-task rollouts with the reference stop rule (one policy call per step)
  advantages.py returns, in-sample LinearFeatureBaseline, GAE, per-task standardisation, padding
  maml_trpo.py  the inner VPG step and the MAML-TRPO objective (loss, mean KL, gradients, HVPs)
  trpo.py       conjugate gradient, FD Hessian-vector product, step scaling + line search
  config.py     reference settings per experiment; train.py the loop; main.py / evaluate.py CLIs
  envs/         the task environments (Gymnasium)
"""
