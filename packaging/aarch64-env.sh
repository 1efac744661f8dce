# Sourced by build-static.sh --target aarch64 and test-aarch64.sh: installs (when missing) and sets
# up the cross toolchain for aarch64-unknown-linux-musl on an x86_64 Debian machine where rustup
# cannot fetch another target's std.
#
# The route (the simplest that works unattended with apt and pip alone):
# - Debian's rustc-web/cargo-web 1.96 with rust-web-src: std's sources, built for the target by
#   cargo's -Zbuild-std (RUSTC_BOOTSTRAP=1 allows that one unstable flag on this stable compiler;
#   the x86_64 build keeps rustup's toolchain).
# - ziglang and cargo-zigbuild (PyPI): zig is the C cross compiler (ring, zstd) and the linker, and
#   brings musl's libc and start files for aarch64 (Debian's gcc-aarch64-linux-gnu has no musl).
# Debian's libstd-rust-web-dev:arm64 was not taken: it is a glibc std (aarch64-unknown-linux-gnu).
target=aarch64-unknown-linux-musl
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

aarch64_install() {
  local need=()
  [ -x /usr/bin/rustc ] && /usr/bin/rustc -V | grep -q '^rustc 1\.9[6-9]' || need+=(rustc-web)
  [ -x /usr/bin/cargo ] && /usr/bin/cargo -V | grep -q '^cargo 1\.9[6-9]' || need+=(cargo-web)
  [ -d /usr/lib/rustlib/src/rust/library/std ] || need+=(rust-web-src)
  if [ "${AARCH64_TESTS:-}" = 1 ]; then
    command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  fi
  command -v file >/dev/null || need+=(file)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian's ${need[*]}" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! command -v cargo-zigbuild >/dev/null || ! python3 -c 'import ziglang' 2>/dev/null; then
    echo "installing ziglang and cargo-zigbuild (PyPI)" >&2
    python3 -m pip install --quiet --disable-pip-version-check \
      "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" >&2
  fi
}

aarch64_install
# Debian's cargo and rustc before rustup's proxies, for this script only.
export PATH="/usr/bin:$PATH"
export RUSTC=/usr/bin/rustc
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static
