#!/usr/bin/env bash
# Build the runtime image (Dockerfile) as localhost/cos-ray:TAG with podman, or docker when
# there is no podman. Without registry access (BASE unset and no python base image at hand)
# it first makes a Debian bookworm base with debootstrap, localhost/debian-base:bookworm.
# The machine's extra CA certificates (/usr/local/share/ca-certificates) go into the build,
# for egress that re-signs HTTPS. Usage: scripts/build-image.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-dev}
if command -v podman >/dev/null; then
  engine=podman
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/containers.conf}
else
  engine=docker
fi
base=${BASE:-localhost/debian-base:bookworm}
if [ "$base" = localhost/debian-base:bookworm ] && ! "$engine" image inspect "$base" >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  tar --numeric-owner -C "$rootfs" -c . | "$engine" import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  rm -rf "$rootfs"
fi
cp /usr/local/share/ca-certificates/*.crt docker/ca/ 2>/dev/null || true
"$engine" build --build-arg "BASE=$base" -t "localhost/cos-ray:$tag" .
