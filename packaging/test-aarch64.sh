#!/usr/bin/env bash
# The aarch64 build under qemu-user on this x86_64 machine (issue 20): the static binary
# (build-static.sh --target aarch64; `file` must say ARM aarch64, statically linked), the unit
# tests (`cargo test --lib`), every fuzz target's corpus replayed (fuzz/replay; fuzz/run.sh lays
# the corpora out), and tests/aarch64_qemu.rs, which runs the binary with --once and builds the
# image for both platforms (it needs the x86_64 static binary too: .ci/run builds it before).
set -euo pipefail
cd "$(dirname "$0")/.."
native_path=$PATH
start=$(date +%s)
step() { echo "--- aarch64: $* ($(( $(date +%s) - start ))s)"; }

step "static binary"
built=$(packaging/build-static.sh --target aarch64)
echo "$built"
bin=$(echo "$built" | head -n 1)
kind=$(file "$bin")
echo "$kind"
echo "$kind" | grep -q 'ARM aarch64' && echo "$kind" | grep -Eq 'statically linked|static-pie linked' ||
  { echo "not a static aarch64 binary: $kind" >&2; exit 1; }

AARCH64_TESTS=1 . packaging/aarch64-env.sh
# Debug builds (tests, replay) share one target directory: std and the dependencies build once.
dev_dir="${CARGO_TARGET_DIR:-target}/aarch64-dev"
dev_dir=$(realpath -m "$dev_dir")
# Tests and the replay link several binaries: zig's musl start files and libc for all of them (see
# build-static.sh for why). `--cfg qemu_user`: the few unit tests that need what qemu-user does
# not emulate (socket options and control messages it does not translate) are ignored, and say
# why; the tests that run the test binary again do it through the runner.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-self-contained=no --cfg qemu_user"

# The tests and the replay are built with opt-level 1 and line tables only (for this target's
# builds here, not the native ones): under qemu the unoptimised tests ran 2.5 to 3.7 min (one
# test alone 101 s) and built in 6.4 min cold; so built, they run in 16 to 22 s and build in 3.8
# min cold (7.4 min with other builds on the machine), with debug assertions and overflow checks
# still on.
dev_profile=(env CARGO_PROFILE_DEV_OPT_LEVEL=1 CARGO_PROFILE_DEV_DEBUG=line-tables-only CARGO_TARGET_DIR="$dev_dir")

if [ "${1:-}" = --binary-only ]; then
  echo "--- aarch64: --binary-only: unit tests and fuzz corpora under qemu not run"
else
step "unit tests under $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER"
"${dev_profile[@]}" cargo-zigbuild test --locked --lib --target "$target" -Zbuild-std

step "fuzz corpora replayed under $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER"
# The seeds always (idempotent): a corpus left by a native fuzz run may predate a new target's seeds.
FUZZ_SEED_ONLY=1 fuzz/run.sh
(cd fuzz/replay && "${dev_profile[@]}" cargo-zigbuild zigbuild --locked --target "$target" -Zbuild-std)
"$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER" "$dev_dir/$target/debug/sts-agent-fuzz-replay" fuzz/corpus | tail -n 3
fi

step "the binary with --once under qemu-user (tests/aarch64_qemu.rs)"
env -u RUSTC -u RUSTC_BOOTSTRAP PATH="$native_path" STS_AARCH64_BIN="$(realpath "$bin")" \
  cargo test --locked --test aarch64_qemu -- --ignored
step "done"
