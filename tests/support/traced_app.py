# A traced application for the trace-intake tests: N traces of a server span ("span.kind":
# "server", service SERVICE) with a child SQL span (service pg, db.instance orders), sent by the
# real ddtrace client to DD_TRACE_AGENT_URL. Prints its pid first.
#   traced_app.py SERVICE N
import os, sys, time
print(os.getpid(), flush=True)
# Let the agent's process check see this process before any span arrives.
time.sleep(float(os.environ.get("TRACED_APP_DELAY", "0")))
from ddtrace import tracer

service, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with tracer.trace("web.request", service=service, resource="GET /item/%d" % i) as s:
        s.set_tag("span.kind", "server")
        with tracer.trace("db.query", service="pg", span_type="sql") as c:
            c.set_tag("db.instance", "orders")
tracer.flush()
tracer.shutdown()
