#!/usr/bin/env bash
# Builds the agent as a static x86_64-unknown-linux-musl release binary (runs on any x86_64 Linux:
# the original Amazon Linux AMI, AL2, AL2023), strips it, and prints its path and size.
# Installs what it needs when missing: the rustup target, and Debian's musl-tools (ring and
# zstd compile C code, which needs musl-gcc). Honours CARGO_TARGET_DIR.
#
# --target aarch64: the static aarch64-unknown-linux-musl binary instead (AWS Graviton), built
# with the toolchain that aarch64-env.sh installs (Debian's rustc-web and std sources, zig).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
max_bytes=$((8 * 1024 * 1024))

case "${1:-}" in
  "") ;;
  --target | --target=*)
    arch=${2:-}
    [ "$1" = --target ] || arch=${1#--target=}
    case "$arch" in
      x86_64 | x86_64-unknown-linux-musl | amd64) ;;
      aarch64 | aarch64-unknown-linux-musl | arm64)
        . packaging/aarch64-env.sh
        # std is built from source for the target (-Zbuild-std); panic_abort as the profile says.
        # link-self-contained=no: rustc would link the crt objects and libc a rustup target ships
        # (there is none here); zig brings musl's own. Only the final link needs it, so it is
        # passed to the binary alone (`rustc --`), which leaves every other crate's build as is.
        cargo-zigbuild rustc --release --locked --target "$target" -Zbuild-std=std,panic_abort --bin sts-agent \
          -- -C link-self-contained=no >&2
        bin="${CARGO_TARGET_DIR:-target}/$target/release/sts-agent"
        size=$(stat -c %s "$bin")
        echo "$bin"
        echo "size: $size bytes ($(( (size + 1023) / 1024 )) KiB)"
        if [ "$size" -gt "$max_bytes" ]; then
          echo "the static binary is larger than 8 MiB" >&2
          exit 1
        fi
        exit 0
        ;;
      *) echo "build-static.sh: --target must be x86_64 or aarch64, not '$arch'" >&2; exit 2 ;;
    esac
    ;;
  *) echo "usage: build-static.sh [--target x86_64|aarch64]" >&2; exit 2 ;;
esac

rustup target list --installed | grep -qx "$target" || rustup target add "$target"
if ! command -v musl-gcc >/dev/null; then
  echo "installing Debian's musl-tools (musl-gcc)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq musl-tools >/dev/null
fi

export CC_x86_64_unknown_linux_musl=musl-gcc
# The release profile (Cargo.toml) already uses LTO, one codegen unit, panic=abort and strip.
cargo build --release --locked --target "$target" --bin sts-agent

bin="${CARGO_TARGET_DIR:-target}/$target/release/sts-agent"
strip "$bin" 2>/dev/null || true
size=$(stat -c %s "$bin")
echo "$bin"
echo "size: $size bytes ($(( (size + 1023) / 1024 )) KiB)"
if [ "$size" -gt "$max_bytes" ]; then
  echo "the static binary is larger than 8 MiB" >&2
  exit 1
fi
