#!/usr/bin/env bash
# Every experiment of the MAML paper from one script; see `./run_experiments.sh --help`.
#   ./run_experiments.sh list | all | report | NAME... [--quick] [--results DIR] [--logs DIR] [--data_dir DIR]
# Runs inside the project virtualenv (scripts/venv.sh creates it on first use).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MAML_TF_CALLER_CWD="$PWD"
exec "$here/scripts/venv.sh" python -m maml_tf.experiments "$@"
