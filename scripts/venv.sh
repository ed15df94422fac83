#!/usr/bin/env bash
# Create (or reuse) the project virtualenv at .venv, then run the given command inside it.
#   scripts/venv.sh python -m maml_tf.main ...
# The venv is (re)installed when it is missing or when setup.cfg changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.maml_tf_installed"
want="$(cat "$root/setup.cfg" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[venv] creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[venv] installing maml-tf and its dependencies into $venv (first run: about a minute)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel >&2
  "$venv/bin/python" -m pip install -q -e "$root[test,plots]" >&2
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
[ $# -gt 0 ] || exit 0
cd "$root"
exec "$@"
