# The throughput cost of HTTP inspection to bulk traffic (issue 15), measured side by side: two
# identical iperf3 transfers at full speed run at the same time, each across its own veth pair
# between two namespaces of its own; the agent captures one pair's namespaces and not the other's.
# The drop is 1 - (captured throughput / uncaptured throughput) within one window, so what the
# shared machine does to both (the +-10 % it swings from one run to the next) cancels out.
#
#   http_cost_paired.py AGENT_BINARY [--seconds T] [--rounds R] [--max-drop-pct 3.0] [--agent-env K=V]
#
# The agent runs in a pid namespace of its own (`unshare --pid --mount-proc`) holding only two idle
# processes, one in each namespace of the captured pair: those are the namespaces it visits (as it
# visits every namespace a process of the host is in), so the other pair stays out of its view
# while both transfers share the same CPUs, kernel and moment. The pairs swap roles every round,
# so a difference between them cancels too; the figure is the mean of the two roles' medians.
# Each round starts the agent, waits for its first checks (which open the captures), checks that
# it holds a packet socket in both namespaces of the captured pair and none in the other's, runs
# both transfers, and stops the agent. A control run (--agent-env
# STS_PROTOCOL_INSPECTION_ENABLED=false: no capture anywhere) shows what is left of the noise.
# Needs root, iproute2, iperf3, util-linux's unshare.
import argparse, json, os, signal, statistics, subprocess, sys, time
from cost_support import agent_env, sh, start_receiver

ap = argparse.ArgumentParser()
ap.add_argument("agent")
ap.add_argument("--seconds", type=float, default=5.0)
ap.add_argument("--rounds", type=int, default=16)
ap.add_argument("--max-drop-pct", type=float, default=3.0)
ap.add_argument("--agent-env", action="append", default=[])
# "vxlan": each pair talks over a VXLAN link on top of its veth pair, an interface the agent takes
# as leaving the host, so what the client sends is also cloned for a socket bound to it: the cost
# of capturing traffic that leaves the host (as through a NIC), not only of what arrives.
ap.add_argument("--link", choices=["veth", "vxlan"], default="veth")
# Each pair on a CPU of its own ("none": not pinned); accepted in http_cost.py's form too.
ap.add_argument("--pin", default="pairs")
args = ap.parse_args()
control = any(kv.startswith("STS_PROTOCOL_INSPECTION_ENABLED=") for kv in args.agent_env)


receiver_url = start_receiver()

pid = os.getpid()
# Two pairs of namespaces, (client, server), each joined by a veth pair.
pairs = []
for k in range(2):
    net = "10.98.%d" % ((pid + k) % 250)
    pairs.append(
        {
            "client": "sts-pc%d-%d" % (k, pid),
            "server": "sts-ps%d-%d" % (k, pid),
            "client_if": "spc%d%d" % (k, pid % 100000),
            "server_if": "sps%d%d" % (k, pid % 100000),
            "client_ip": net + ".1",
            "server_ip": net + ".2",
        }
    )
servers = []


def cleanup():
    for s in servers:
        s.kill()
    for p in pairs:
        subprocess.run(["ip", "netns", "del", p["client"]], capture_output=True)
        subprocess.run(["ip", "netns", "del", p["server"]], capture_output=True)


def packet_sockets(ns):
    """The agent's packet sockets in namespace `ns` (`ss -0p`: its binary's name)."""
    out = sh("ip", "netns", "exec", ns, "ss", "-0", "-p", check=False)
    name = os.path.basename(args.agent)[:15]
    return sum(1 for l in out.splitlines() if '"%s"' % name in l)


def start_agent(captured):
    env = agent_env(receiver_url, args.agent_env)
    idle = " ".join("ip netns exec %s sleep 100000 &" % ns for ns in (captured["client"], captured["server"]))
    script = '%s exec "%s"' % (idle, os.path.abspath(args.agent))
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM", "sh", "-c", script],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def stop_agent(agent):
    # unshare ignores SIGTERM while it waits; killing it sends SIGTERM to the agent (pid 1 of its
    # namespace), whose exit takes the idle processes with it.
    agent.kill()
    agent.wait()
    time.sleep(0.5)


def pin(k):
    """Pair k's client and server on CPU k (iperf3 -A), when there are two: a veth transfer's
    packets are processed on the sending CPU, so each pair keeps to its own core and the
    scheduler's moves do not make one pair slower than the other."""
    return ["-A", str(k)] if (os.cpu_count() or 1) >= 2 and args.pin != "none" else []


def both_transfers():
    """Gbit/s of each pair's transfer, run at the same time."""
    clients = [
        subprocess.Popen(
            ["ip", "netns", "exec", p["client"], "iperf3", "-c", p["server_ip"], "-p", "5201", "-t", str(args.seconds), "-J"]
            + pin(k),
            stdout=subprocess.PIPE,
            text=True,
        )
        for k, p in enumerate(pairs)
    ]
    out = [json.loads(c.communicate()[0]) for c in clients]
    return [o["end"]["sum_received"]["bits_per_second"] / 1e9 for o in out]


try:
    for p in pairs:
        sh("ip", "netns", "add", p["client"])
        sh("ip", "netns", "add", p["server"])
        sh("ip", "link", "add", p["client_if"], "type", "veth", "peer", "name", p["server_if"])
        for side in ("client", "server"):
            ns, link, ip = p[side], p[side + "_if"], p[side + "_ip"]
            sh("ip", "link", "set", link, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", ip + "/30", "dev", link)
            sh("ip", "-n", ns, "link", "set", link, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        if args.link == "vxlan":
            # The overlay's addresses replace the pair's for the transfer: .5 (client), .6 (server).
            net = p["client_ip"].rsplit(".", 1)[0]
            for side, me, peer, overlay in (("client", "1", "2", "5"), ("server", "2", "1", "6")):
                ns = p[side]
                sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
                   "local", "%s.%s" % (net, me), "remote", "%s.%s" % (net, peer), "dev", p[side + "_if"])
                sh("ip", "-n", ns, "addr", "add", "%s.%s/30" % (net, overlay), "dev", "vx0")
                sh("ip", "-n", ns, "link", "set", "vx0", "up")
            p["client_ip"], p["server_ip"] = net + ".5", net + ".6"
        servers.append(
            subprocess.Popen(
                ["ip", "netns", "exec", p["server"], "iperf3", "-s", "-B", p["server_ip"], "-p", "5201"] + pin(len(servers)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(0.5)
    rows = []
    for r in range(args.rounds):
        k = r % 2
        captured, other = pairs[k], pairs[1 - k]
        agent = start_agent(captured)
        try:
            # The first checks (the namespaces visited, their captures opened) run at start.
            time.sleep(3.0)
            if agent.poll() is not None:
                sys.exit("the agent exited with %s" % agent.returncode)
            seen = [packet_sockets(captured["client"]), packet_sockets(captured["server"])]
            unseen = [packet_sockets(other["client"]), packet_sockets(other["server"])]
            rates = both_transfers()
        finally:
            stop_agent(agent)
        drop = (1 - rates[k] / rates[1 - k]) * 100
        rows.append((k, rates[k], rates[1 - k], drop, seen, unseen))
        print(
            "round %d: pair %d captured %.2f Gbit/s, pair %d not %.2f Gbit/s at the same time (drop %.2f %%); agent packet sockets %s in the captured pair, %s in the other"
            % (r + 1, k, rates[k], 1 - k, rates[1 - k], drop, seen, unseen),
            flush=True,
        )
finally:
    cleanup()

by_role = [statistics.median(x[3] for x in rows if x[0] == k) for k in (0, 1)]
drop = sum(by_role) / 2
print("iperf3 over %s, two transfers at once, %d rounds of %.0f s:" % (args.link, args.rounds, args.seconds))
print(
    "  throughput drop of the captured transfer against the other: %.2f %% (medians with pair 0 captured %.2f %%, pair 1 %.2f %%; limit %.1f %%)"
    % (drop, by_role[0], by_role[1], args.max_drop_pct)
)
print("  pairs: %s" % " ".join("%.1f" % x[3] for x in rows))
ok = True
# Each captured namespace: its socket on every interface, and over VXLAN one bound to vx0.
want = 2 if args.link == "vxlan" else 1
if not control and any(min(x[4]) < want or max(x[5]) > 0 for x in rows):
    print("FAIL: the agent did not hold %d packet socket(s) in both captured namespaces and none in the others; nothing was measured" % want)
    ok = False
if control and any(max(x[4]) > 0 for x in rows):
    print("FAIL: the control run held packet sockets")
    ok = False
if drop >= args.max_drop_pct:
    print("FAIL: throughput drop %.2f %% >= %.1f %%" % (drop, args.max_drop_pct))
    ok = False
print("http_cost_paired: %s" % ("every limit holds" if ok else "a limit is crossed"))
sys.exit(0 if ok else 1)
