"""`python -m maml_tf.main`: train or test MAML with the flags of cbfinn/maml's main.py.

    # 10-shot sinusoid (the reference README's command: alpha stays at the 1e-3 default, which
    # reproduces the paper's table; the paper's text says 0.01)
    python -m maml_tf.main --datasource=sinusoid --metatrain_iterations=70000 --norm=None \
        --update_batch_size=10
    # ... then its test protocol (600 tasks), with K=5 test shots
    python -m maml_tf.main --datasource=sinusoid --metatrain_iterations=70000 --norm=None \
        --update_batch_size=5 --train_update_batch_size=10 --train=False
"""
from __future__ import annotations

import sys

from absl import app, flags

from maml_tf.config import Config
from maml_tf.errors import MamlError
from maml_tf.flagspec import define_flags

FLAGS = flags.FLAGS
# The reference's flags and maml-tf's additions, as `Config` declares them (names, defaults, help).
FLAG_NAMES = define_flags(Config, module_name=__name__)


def config_from_flags() -> Config:
    return Config.from_dict({name: getattr(FLAGS, name) for name in FLAG_NAMES})


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from maml_tf.train.stop import TrainingStopped

    try:
        from maml_tf.run import run

        run(config_from_flags())
    except TrainingStopped as e:  # a requested stop, already checkpointed and logged: not an error
        sys.exit(e.exit_status)
    except MamlError as e:
        print(f"maml_tf: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
