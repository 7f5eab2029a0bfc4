#!/usr/bin/env bash
# A Debian 12 + Python 3.11 base image built from Debian's packages, for a machine that cannot
# pull the official python:3.11-slim (air-gapped, registry blocked). The image trusts the
# host's CA bundle, so downloads in a build on top of it (pip, uv) verify as the host's do.
#
#   deploy/images/build-base.sh ENGINE NAME
#
# ENGINE is docker or podman, NAME the image tag (make base-image: shiftwatch-base:bookworm).
# The Debian mirror is the host's own (its apt sources), never a fixed address.
set -euo pipefail
engine=${1:?engine (docker or podman)}
name=${2:?image name}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

# The first http(s) URI of a deb822 `URIs:` line or a one-line `deb [options] URI suite` entry.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
  /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security \
  | awk '/^(URIs:|deb )/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
  || true)
[ -n "$mirror" ] || { echo "build-base.sh: no Debian mirror in the host's apt sources" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }

root=$(mktemp -d)
# debootstrap mounts proc and sys in the root; a failed run may leave them mounted, and rm must
# never follow them into the host's.
cleanup() {
  umount -R "$root/proc" "$root/sys" "$root/dev" 2>/dev/null || true
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
packages=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >/dev/null
# The host's CA bundle (a TLS-intercepting proxy's root included) beside Debian's own.
cp "$ca_bundle" "$root/usr/local/share/ca-bundle.crt"
# Debian's python refuses pip outside a venv (PEP 668); the Bento's Dockerfile installs uv
# with the system pip, as on the official image.
rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
# What an image does not need: apt lists, docs, man pages, locales but C.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C*' -exec rm -rf {} + 2>/dev/null || true

tar -C "$root" -c . | "$engine" import \
  --change 'ENV SSL_CERT_FILE=/usr/local/share/ca-bundle.crt' \
  --change 'ENV PIP_CERT=/usr/local/share/ca-bundle.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/usr/local/share/ca-bundle.crt' \
  --change 'ENV UV_NATIVE_TLS=1' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  - "$name" >/dev/null
echo "$name"
