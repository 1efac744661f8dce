#!/usr/bin/env bash
# The whole-agent budget: builds the agent (release profile with symbols, counting allocations)
# and runs benches/budget.rs on a synthetic busy host. Run as root (`ss -K` clears loopback
# TIME_WAIT between scenarios; `perf stat` counts the agent's syscalls). Needs python3 (the socket
# holders; psutil for that baseline). Results go to target/budget/. Method: benches/README.md.
#
#   benches/budget.sh                 # one run of the default scenario, figures printed
#   benches/budget.sh --check         # the same, plus the traces, HTTP, containers, DogStatsD and static-build phases; exit 1 if a gate is crossed
#   benches/budget.sh --sweep         # processes 100..2,000 and sockets 1,000..20,000: table and SVG
#   benches/budget.sh --procs 1000 --sockets 10000 --spans 2000 --http 5000 --containers 50   # any scenario
#   benches/budget.sh --dogstatsd 100000   # the default scenario and the DogStatsD phase only
#   benches/budget.sh --no-psutil     # without the psutil baseline (refused with --check: its gate is enforced)
#   BUDGET_SKIP_IDLE=false benches/budget.sh   # every process read every cycle (all of them ran)
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for a in "$@"; do
  case "$a" in
    --check)
      args+=(--check benches/budget.toml --spans 2000 --http 5000 --containers 50 --dogstatsd 100000)
      # The static phase's binary: the musl build users run (packaging/build-static.sh; a no-op
      # rebuild when it is up to date).
      built=$(packaging/build-static.sh) || { echo "budget: the static build (packaging/build-static.sh) failed: the static phase cannot run" >&2; exit 1; }
      args+=(--static-agent "$(realpath "${built%%$'\n'*}")") ;;
    *) args+=("$a") ;;
  esac
done
python3 -c 'import psutil' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check psutil==7.1.3 ||
  echo "budget: no psutil; the psutil baseline is skipped (a --check run then fails its psutil gate)" >&2
exec cargo bench --features count-allocs --bench budget -- "${args[@]}"
