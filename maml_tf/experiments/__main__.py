import sys

from maml_tf.experiments.cli import main

sys.exit(main(sys.argv[1:]))
