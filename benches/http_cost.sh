#!/usr/bin/env bash
# The cost of HTTP inspection to bulk traffic (issue 15), two measurements:
#  1. benches/support/http_cost_paired.py: the throughput drop, two iperf3 transfers across veth
#     pairs at once, one captured by the agent and one not (the machine's swings cancel out);
#     exits 1 when the drop is 3 % or more.
#  2. benches/support/http_cost.py: the agent's CPU during a transfer against its idle CPU (limit
#     +1 % of a core), and the share of the transfer's CPU in the packet taps' kernel path (perf;
#     limit 3 %), one transfer with the agent and one without, in turn.
# Method and figures in benches/README.md. Run as root; needs iproute2, iperf3, util-linux. The
# agent is the budget's build (bench profile, counting allocations: the binary `benches/budget.sh`
# runs), unless AGENT names another binary. Arguments (e.g. --agent-env
# STS_PROTOCOL_INSPECTION_ENABLED=false, --rounds N, --seconds T) go to both.
#
#   benches/http_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v iperf3 >/dev/null || { echo "http_cost: iperf3 is not installed (apt-get install iperf3)" >&2; exit 2; }
if [ -z "${AGENT:-}" ]; then
  cargo build --quiet --profile bench --features count-allocs --bin sts-agent
  AGENT=target/release/sts-agent
fi
status=0
python3 benches/support/http_cost_paired.py "$AGENT" "$@" || status=1
python3 benches/support/http_cost.py "$AGENT" "$@" || status=1
exit $status
