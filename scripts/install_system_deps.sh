#!/usr/bin/env bash
# Install the Debian/Ubuntu packages needed to build KenLM's lmplz and build_binary
# (see `python -m datafilter.kenlm.tools` / `datafilter setup-kenlm`).
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  cmake
  g++
  make
  libboost-program-options-dev
  libboost-system-dev
  libboost-thread-dev
  libboost-test-dev
  zlib1g-dev
  libbz2-dev
  liblzma-dev
)
# Images whose base has no Python (docker/Dockerfile.gpu) set this to get Debian's Python too.
if [[ "${DATAFILTER_SYSTEM_PYTHON:-0}" == 1 ]]; then
  PACKAGES+=(python3 python3-venv python3-dev)
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install_system_deps.sh: apt-get/dpkg-query not found; install these packages" \
    "(or their equivalents) by hand: ${PACKAGES[*]}" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != ii* ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "System dependencies already installed."
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install_system_deps.sh: not root and sudo not found; run as root: " \
      "apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

echo "Installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "System dependencies installed."
