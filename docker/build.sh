#!/usr/bin/env bash
# Build the images with buildah (no Docker daemon needed), from the repository root's tree:
#
#   bash docker/build.sh            # both: datafilter:cpu and datafilter:gpu
#   bash docker/build.sh cpu        # or only one
#
# The base: $BASE_IMAGE if set; else the official python:3.11-slim-bookworm where it can be
# pulled; else a Debian root file system made by debootstrap (docker/make_base.sh, reused once
# made), the same Dockerfiles either way (build argument BASE_IMAGE). RUN steps use chroot
# isolation: no daemon and no network namespace, so pip and apt-get inside the build reach what
# the host reaches. The host's CA bundle ($PIP_CERT, else /etc/ssl/certs/ca-certificates.crt)
# goes to pip as a build secret (for TLS-inspecting proxies), never into an image.
# DATAFILTER_IMAGE_PREFIX names the images (default datafilter: datafilter:cpu, datafilter:gpu).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(cpu gpu)
for target in "${targets[@]}"; do
  if [[ "$target" != cpu && "$target" != gpu ]]; then
    echo "build.sh: targets are cpu and gpu, not '$target'" >&2
    exit 2
  fi
done
if ! command -v buildah >/dev/null 2>&1; then
  echo "build.sh: buildah not found: apt-get install buildah (or run scripts/setup.sh)" >&2
  exit 1
fi

official=docker.io/library/python:3.11-slim-bookworm
debootstrapped=localhost/datafilter-base:bookworm
base=${BASE_IMAGE:-}
if [[ -z "$base" ]]; then
  if buildah inspect --type image "$official" >/dev/null 2>&1 \
    || buildah pull --quiet --retry 0 "$official" >/dev/null 2>/tmp/datafilter-pull.$$; then
    base=$official
  else
    echo "build.sh: cannot pull $official ($(tail -n 1 /tmp/datafilter-pull.$$))"
    if ! buildah inspect --type image "$debootstrapped" >/dev/null 2>&1; then
      bash docker/make_base.sh "$debootstrapped"
    fi
    base=$debootstrapped
  fi
  rm -f /tmp/datafilter-pull.$$
fi

secret=()
ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [[ -s "$ca" ]]; then
  secret=(--secret "id=pip_cert,src=$ca")
fi

prefix=${DATAFILTER_IMAGE_PREFIX:-datafilter}
for target in "${targets[@]}"; do
  tag="$prefix:$target"
  echo "build.sh: building $tag on $base ..."
  started=$SECONDS
  buildah bud --isolation chroot \
    --build-arg "BASE_IMAGE=$base" "${secret[@]}" \
    -f "docker/Dockerfile.$target" -t "$tag" .
  echo "build.sh: built $tag in $((SECONDS - started)) s," \
    "$(buildah images --format '{{.Size}}' "$tag")"
done
