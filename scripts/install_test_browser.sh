#!/usr/bin/env bash
# Install Debian's `chromium` (headless) for tests/test_report.py, which renders the HTML report
# in a real browser; without it that test fails, saying how to install it. scripts/setup.sh runs
# this for its dev target (the images do not need it). Idempotent: does nothing when chromium is
# on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(command -v chromium)"
  exit 0
fi

PACKAGES=(chromium fonts-dejavu-core)

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_test_browser.sh: apt-get not found; install Chromium by hand" \
    "(the report test looks for 'chromium' on PATH)" >&2
  exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install_test_browser.sh: not root and sudo not found; run as root:" \
      "apt-get install --no-install-recommends ${PACKAGES[*]}" >&2
    exit 1
  fi
fi

echo "Installing: ${PACKAGES[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "chromium installed: $(command -v chromium)"
