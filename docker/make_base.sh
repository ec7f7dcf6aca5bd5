#!/usr/bin/env bash
# Make a Debian base image for docker/Dockerfile.* where the official Python image cannot be
# pulled: debootstrap builds a minimal Debian root file system (with Debian's python3, its venv
# module and the CA certificates, what the Dockerfiles expect of a base), and buildah imports it
# as an image (from scratch, the tree copied in, committed).
#
#   bash docker/make_base.sh [IMAGE]        # default IMAGE: localhost/datafilter-base:bookworm
#
# DATAFILTER_BASE_SUITE (default bookworm: the Debian of python:3.11-slim-bookworm, Python 3.11)
# and DATAFILTER_DEBIAN_MIRROR (default: the first Debian archive in this machine's apt sources,
# else http://deb.debian.org/debian). Needs root (debootstrap, buildah mount), debootstrap and
# buildah; takes ~2 minutes and ~300 MB.
set -euo pipefail

image=${1:-localhost/datafilter-base:bookworm}
suite=${DATAFILTER_BASE_SUITE:-bookworm}

for tool in debootstrap buildah; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "make_base.sh: $tool not found: apt-get install $tool" >&2
    exit 1
  fi
done

# The Debian archive apt uses here (one-line or deb822 sources), not its security archive.
apt_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local file
  for file in "${files[@]}"; do
    [[ -f "$file" ]] || continue
    grep -hoE '^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)[a-z]+://[^[:space:]]+' \
      "$file" | grep -oE '[a-z]+://[^[:space:]]+' | grep -E '/debian/?$' | head -n 1
  done | head -n 1
}
mirror=${DATAFILTER_DEBIAN_MIRROR:-$(apt_mirror || true)}
mirror=${mirror:-http://deb.debian.org/debian}

rootfs="$(mktemp -d /var/tmp/datafilter-base.XXXXXX)"
container=""
cleanup() {
  if [[ -n "$container" ]]; then
    buildah rm "$container" >/dev/null 2>&1 || true
  fi
  rm -rf "$rootfs"
}
trap cleanup EXIT

echo "make_base.sh: debootstrap $suite from $mirror ..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 20 "$rootfs.log" >&2
  echo "make_base.sh: debootstrap failed (full log: $rootfs.log)" >&2
  exit 1
}
rm -f "$rootfs.log"
# No package lists or downloaded .debs in the image: each install runs apt-get update itself.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb

container="$(buildah from scratch)"
mountpoint="$(buildah mount "$container")"
cp -a "$rootfs"/. "$mountpoint"/
buildah umount "$container" >/dev/null
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --cmd /bin/bash \
  --label "org.opencontainers.image.description=Debian $suite (debootstrap minbase) with python3" \
  "$container"
buildah commit --quiet "$container" "$image" >/dev/null
echo "make_base.sh: $image ($(buildah images --format '{{.Size}}' "$image"))"
