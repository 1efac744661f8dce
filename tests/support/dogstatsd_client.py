"""Sends DogStatsD samples with the real `datadog` client (PyPI), for tests/dogstatsd.rs.

argv[1]: JSON {"udp_port": P} or {"socket": path}, "buffered": bool, "phases": [[sample, ...], ...].
Each phase is sent inside one 10 s bucket (between seconds 1 and 5 of it, so that every sample
lands in that bucket whatever the agent's clock reads); prints {"buckets": [start, ...]}.

The client samples client-side (`random() > sample_rate` skips a sample); the test needs every
sample that carries a rate to arrive, so `random` is replaced by 0.0: the wire format, including
`|@rate`, is the client's own.
"""
import json
import sys
import time

import datadog.dogstatsd.base as base
from datadog.dogstatsd.base import DogStatsd

base.random = lambda: 0.0

cfg = json.loads(sys.argv[1])
kw = dict(disable_telemetry=True, disable_buffering=not cfg.get("buffered", False))
if "socket" in cfg:
    c = DogStatsd(socket_path=cfg["socket"], **kw)
else:
    c = DogStatsd(host="127.0.0.1", port=cfg["udp_port"], **kw)


def send(s):
    k = s["kind"]
    tags = s.get("tags")
    rate = s.get("rate")
    if k == "gauge":
        c.gauge(s["name"], s["value"], tags=tags, sample_rate=rate)
    elif k == "increment":
        c.increment(s["name"], s["value"], tags=tags, sample_rate=rate)
    elif k == "decrement":
        c.decrement(s["name"], s["value"], tags=tags, sample_rate=rate)
    elif k == "set":
        c.set(s["name"], s["value"], tags=tags, sample_rate=rate)
    elif k == "histogram":
        c.histogram(s["name"], s["value"], tags=tags, sample_rate=rate)
    elif k == "timing":
        c.timing(s["name"], s["value"], tags=tags, sample_rate=rate)
    elif k == "distribution":
        c.distribution(s["name"], s["value"], tags=tags, sample_rate=rate)
    elif k == "event":
        c.event(s["title"], s["text"], alert_type=s.get("alert_type"), aggregation_key=s.get("aggregation_key"),
                source_type_name=s.get("source_type_name"), date_happened=s.get("date_happened"),
                priority=s.get("priority"), tags=tags, hostname=s.get("hostname"))
    elif k == "service_check":
        c.service_check(s["name"], s["status"], tags=tags, message=s.get("message"))
    else:
        raise SystemExit("unknown kind " + k)


buckets = []
for phase in cfg["phases"]:
    # Into the next bucket's seconds 1-5 (a fresh bucket each phase).
    while True:
        t = time.time()
        if 1.0 <= t % 10 < 5.0 and (not buckets or int(t) - int(t) % 10 > buckets[-1]):
            break
        time.sleep(0.05)
    start = int(t) - int(t) % 10
    for s in phase:
        send(s)
    c.flush()
    if time.time() - start >= 9.0:
        raise SystemExit("a phase overran its bucket")
    buckets.append(start)
c.close_socket()
print(json.dumps({"buckets": buckets}))
