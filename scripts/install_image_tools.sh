#!/usr/bin/env bash
# Install Debian's buildah and debootstrap for docker/build.sh and tests/test_images.py, which
# build the container images without a Docker daemon (buildah, chroot isolation) on a Debian
# base made by debootstrap where no registry serves the official Python image. scripts/setup.sh
# runs this for its dev target. Idempotent: does nothing when both are on PATH.
set -euo pipefail

if command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1; then
  echo "buildah and debootstrap already installed"
  exit 0
fi

PACKAGES=(buildah debootstrap)

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_image_tools.sh: apt-get not found; install ${PACKAGES[*]} by hand" >&2
  exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install_image_tools.sh: not root and sudo not found; run as root:" \
      "apt-get install --no-install-recommends ${PACKAGES[*]}" >&2
    exit 1
  fi
fi

echo "Installing: ${PACKAGES[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "buildah installed: $(buildah --version)"
