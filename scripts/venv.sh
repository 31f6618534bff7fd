#!/usr/bin/env bash
# Create or reuse the project environment in .venv/ (idempotent).
# The environment is rebuilt only when pyproject.toml or requirements/constraints.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp_src=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)
stamp=.venv/.installed-$stamp_src

if [ ! -f "$stamp" ] || [ ! -x .venv/bin/python ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $($PYTHON --version)" >&2
    "$PYTHON" -m venv .venv
  fi
  echo "installing the project into .venv (pinned by requirements/constraints.txt)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# DVC's lock writes made atomic in this environment (pipeline/dvc_atomic.py); every run, so an existing
# .venv gets it too. Not -m: the .pth has imported the module already, and runpy would warn.
.venv/bin/python -c "import pipeline.dvc_atomic as m; m.write_pth()"
