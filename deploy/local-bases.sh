#!/usr/bin/env bash
# Makes the two base images hoist's Dockerfile names, for a machine that
# cannot reach Docker Hub, in the store hoist uses (HOIST_ROOT or its
# default):
#   docker.io/library/debian:bookworm-slim     debootstrap --variant=minbase bookworm
#   docker.io/library/rust:X.Y-slim-bookworm   the same plus ca-certificates, gcc and
#                                               libc6-dev (what the official image adds),
#                                               rustup and this machine's toolchain of
#                                               rust-toolchain.toml (without its docs and
#                                               sources), as the official image lays them out
# The Rust image also gets this machine's CA bundle, so that cargo trusts
# what the host trusts (a TLS-intercepting proxy's CA, for one).
# Needs root (debootstrap), a Debian mirror (DEBIAN_MIRROR) and that
# toolchain installed with rustup. Nothing big is written outside the
# store: each root is streamed into `hoist import`.
#
#   deploy/local-bases.sh [HOIST]        # HOIST: the hoist binary (default: hoist)
#   hoist build -t hoist:dev .
set -euo pipefail
hoist=${1:-hoist}
top=$(cd "$(dirname "$0")/.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
die() { echo "local-bases: $*" >&2; exit 1; }

version=$(sed -n 's/^channel = "\(.*\)"$/\1/p' "$top/rust-toolchain.toml")
[[ -n $version ]] || die "no channel in rust-toolchain.toml"
sysroot=$(rustc "+$version" --print sysroot) || die "toolchain $version is not installed (rustup toolchain install $version)"
host=$(rustc "+$version" -vV | sed -n 's/^host: //p')
rustup=$(command -v rustup) || die "rustup is not on PATH"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/hoist-bases.XXXXXX")
trap 'rm -rf "$work"' EXIT

import() { # ROOT NAME [--change ...]
  local root=$1 name=$2
  shift 2
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner --xattrs --xattrs-include='security.capability' -c . |
    "$hoist" import "$@" - "$name"
  rm -rf "$root"
}

echo "debian:bookworm-slim: debootstrap --variant=minbase bookworm"
debootstrap --variant=minbase bookworm "$work/debian" "$mirror" >"$work/debian.log" 2>&1 ||
  die "debootstrap failed: $(tail -n 5 "$work/debian.log")"
import "$work/debian" docker.io/library/debian:bookworm-slim

tag=${version%.*}-slim-bookworm
echo "rust:$tag: minbase bookworm, gcc, libc6-dev, ca-certificates, Rust $version"
root=$work/rust
debootstrap --variant=minbase --include=ca-certificates,gcc,libc6-dev bookworm "$root" "$mirror" \
  >"$work/rust.log" 2>&1 || die "debootstrap failed: $(tail -n 5 "$work/rust.log")"
toolchain=$root/usr/local/rustup/toolchains/$version-$host
mkdir -p "$toolchain" "$root/usr/local/cargo/bin"
cp -a "$sysroot/bin" "$sysroot/lib" "$toolchain/"
[[ -d $sysroot/libexec ]] && cp -a "$sysroot/libexec" "$toolchain/"
rm -rf "$toolchain/lib/rustlib/src"
printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$version-$host" \
  >"$root/usr/local/rustup/settings.toml"
cp "$rustup" "$root/usr/local/cargo/bin/rustup"
for proxy in cargo rustc rustdoc; do
  ln -s rustup "$root/usr/local/cargo/bin/$proxy"
done
[[ -f /etc/ssl/certs/ca-certificates.crt ]] &&
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
import "$root" "docker.io/library/rust:$tag" \
  -c 'ENV RUSTUP_HOME=/usr/local/rustup' -c 'ENV CARGO_HOME=/usr/local/cargo' \
  -c 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "ENV RUST_VERSION=$version"
