# A traced application for the trace parity tests (tests/trace_parity.rs), sending with the real
# ddtrace client to DD_TRACE_AGENT_URL.
#   traced_parity_app.py sampling   one trace per sampling case, each with a child span: a kept
#                                   one, two the user rejects (sampling_priority = USER_REJECT,
#                                   and the manual.drop tag), an AUTO_REJECT one, an AUTO_REJECT
#                                   one with an error, and a USER_KEEP one
#   traced_parity_app.py sqlite     a web request running sqlite3 queries (patched by ddtrace)
#                                   with literals: an e-mail, an integer, a float
import sys
from ddtrace import patch, tracer
from ddtrace.constants import AUTO_REJECT, MANUAL_DROP_KEY, USER_KEEP, USER_REJECT

SERVICE = "svc-parity"
mode = sys.argv[1]


def request(resource, decide=None):
    with tracer.trace("web.request", service=SERVICE, resource=resource) as s:
        s.set_tag("span.kind", "server")
        if decide:
            decide(s)
        with tracer.trace("work", service=SERVICE, resource=resource + " work"):
            pass


def set_priority(p):
    def decide(s):
        s.context.sampling_priority = p

    return decide


def with_error(s):
    s.context.sampling_priority = AUTO_REJECT
    s.error = 1


if mode == "sampling":
    request("GET /kept")
    request("GET /user-reject", set_priority(USER_REJECT))
    request("GET /manual-drop", lambda s: s.set_tag(MANUAL_DROP_KEY))
    request("GET /auto-reject", set_priority(AUTO_REJECT))
    request("GET /auto-reject-error", with_error)
    request("GET /user-keep", set_priority(USER_KEEP))
elif mode == "sqlite":
    patch(sqlite3=True)
    import sqlite3

    db = sqlite3.connect(":memory:")
    with tracer.trace("web.request", service=SERVICE, resource="POST /signup") as s:
        s.set_tag("span.kind", "server")
        cur = db.cursor()
        cur.execute("CREATE TABLE users (id INTEGER, email TEXT, balance REAL)")
        cur.execute("INSERT INTO users VALUES (73519286401, 'alice.secret@example.com', 8642.75)")
        cur.execute("SELECT id, balance FROM users WHERE email = 'alice.secret@example.com' AND id = 73519286401")
        assert cur.fetchall() == [(73519286401, 8642.75)]
        db.execute("UPDATE users SET balance = 8642.75 WHERE email IN ('alice.secret@example.com', 'x@y.z')")
        db.commit()
else:
    sys.exit("unknown mode " + mode)
tracer.flush()
tracer.shutdown()
