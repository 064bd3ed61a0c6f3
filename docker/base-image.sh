#!/usr/bin/env bash
# Build the local base image that stands in for python:3.11-slim-bookworm where no image registry is
# reachable: Debian bookworm from Debian's packages (debootstrap), Python 3.11 with venv, and this
# machine's CA bundle (pip inside the build trusts what pip on the machine trusts), imported with
# `podman import`.
#
#   docker/base-image.sh [IMAGE]        default IMAGE: localhost/renalmae-base:bookworm
#
# Needs root and Debian's debootstrap + podman. Takes a few minutes (about 60 MB of packages).
set -euo pipefail

image="${1:-localhost/renalmae-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
rootfs="$(mktemp -d "${TMPDIR:-/tmp}/renalmae-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    cat "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"
cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar --numeric-owner -C "$rootfs" -c . | podman import --quiet \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$image" >/dev/null
echo "$image"
