"""The psutil baseline of benches/budget.rs: the approach of Python-era agents (the StackState and
Datadog v5 process checks), collecting the facts the agent reports, the way psutil gets them: per
process CPU times, memory, I/O counters, open fds, threads, context switches, create time, name,
command line, user, exe and cwd (the agent reads the last four once per process; psutil keeps no
such cache, so a psutil collector reads them each cycle); every TCP connection with its owning
pid. Prints one JSON object: CPU time (user and system, this process) per cycle, the median over
the measured cycles after one warm-up cycle.

usage: python3 psutil_collector.py CYCLES
       python3 psutil_collector.py --serve   # one warm-up cycle, prints "ready"; then one cycle per
                                             # line read on stdin, its CPU as one JSON line each
                                             # (the budget runs these between the agent's cycles,
                                             # so both see the same machine)
"""

import json
import resource
import statistics
import sys

import psutil

FIELDS = [
    "cpu_times",
    "memory_info",
    "io_counters",
    "num_fds",
    "num_threads",
    "num_ctx_switches",
    "create_time",
    "name",
    "cmdline",
    "username",
    "exe",
    "cwd",
]


def cycle():
    procs = 0
    for p in psutil.process_iter(FIELDS):
        procs += 1
    conns = psutil.net_connections(kind="tcp")
    return procs, len(conns)


def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime, u.ru_stime


def serve():
    cycle()  # warm-up, as in main()
    print("ready", flush=True)
    for _ in sys.stdin:
        u0, s0 = cpu()
        procs, conns = cycle()
        u1, s1 = cpu()
        print(
            json.dumps(
                {
                    "psutil": psutil.__version__,
                    "processes": procs,
                    "connections": conns,
                    "user_ms": (u1 - u0) * 1e3,
                    "sys_ms": (s1 - s0) * 1e3,
                }
            ),
            flush=True,
        )


def main():
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cycle()  # warm-up: psutil caches Process objects across process_iter calls
    samples = []
    for _ in range(cycles):
        u0, s0 = cpu()
        procs, conns = cycle()
        u1, s1 = cpu()
        samples.append((u1 - u0, s1 - s0))
    total = statistics.median(u + s for u, s in samples)
    mid = min(samples, key=lambda x: abs(x[0] + x[1] - total))
    print(
        json.dumps(
            {
                "psutil": psutil.__version__,
                "cycles": cycles,
                "processes": procs,
                "connections": conns,
                "cpu_ms": total * 1e3,
                "user_ms": mid[0] * 1e3,
                "sys_ms": mid[1] * 1e3,
            }
        )
    )


if __name__ == "__main__":
    main()
