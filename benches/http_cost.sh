#!/usr/bin/env bash
# The cost of HTTP inspection to bulk traffic (issue 15): an iperf3 transfer at full speed across
# a veth pair with and without the agent, and the agent's CPU during the transfer against its idle
# CPU. Prints the figures; exits 1 when the throughput drops by 3 % or more, or the agent's CPU
# rises by more than 1 % of a core (benches/support/http_cost.py; method in benches/README.md).
# Run as root; needs iproute2 and iperf3. The agent is the budget's build (bench profile, counting
# allocations: the same binary `benches/budget.sh` runs), unless AGENT names another binary.
#
#   benches/http_cost.sh                     # 8 rounds of 3 s transfers
#   benches/http_cost.sh --rounds 5 --seconds 8
set -euo pipefail
cd "$(dirname "$0")/.."
command -v iperf3 >/dev/null || { echo "http_cost: iperf3 is not installed (apt-get install iperf3)" >&2; exit 2; }
if [ -z "${AGENT:-}" ]; then
  cargo build --quiet --profile bench --features count-allocs --bin sts-agent
  AGENT=target/release/sts-agent
fi
exec python3 benches/support/http_cost.py "$AGENT" "$@"
