#!/usr/bin/env bash
# Builds the agent as a static x86_64-unknown-linux-musl release binary (runs on any x86_64 Linux:
# the original Amazon Linux AMI, AL2, AL2023), strips it, and prints its path and size.
# Installs what it needs when missing: the rustup target, and Debian's musl-tools (ring and
# zstd compile C code, which needs musl-gcc). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
max_bytes=$((8 * 1024 * 1024))

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
