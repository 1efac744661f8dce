# Real HTTP/1.1 clients for the HTTP telemetry tests, driven over stdin/stdout.
#   http_client.py PLAN_JSON
# PLAN: {"host": H, "port": P, "conns": [CONN, ...]} where CONN is
#   {"kind": "keepalive", "paths": ["/ok", "/missing", ...]}   http.client, one request at a time
#   {"kind": "pipeline", "batches": [["/ok", "/busy"], ...]}   raw socket: each batch's requests
#                                                              in one sendall, then the responses
#                                                              read one by one
#   the same with "gap_ms": G                                  each request of a batch sent on its
#                                                              own, G ms after the previous one
# Steps: connect every connection, print {"ports": [local port of each]}; wait for a line on
# stdin; run the connections one after the other (one thread: a client thread waiting for the GIL
# would add its wait to the latency it measures); print {"conns": [{"port", "codes": {code: n},
# "latency_ms": [...]}]}; wait for a line (or EOF) on stdin; close everything and exit.
#
# A keep-alive request's latency is time.perf_counter() from just before the request is sent to
# just after the whole response (head and body) was read; a pipelined request's, from just before
# its own send (its batch's, when sent in one) to just after its own response was read.
import http.client, json, socket, sys, time

plan = json.loads(sys.argv[1])
host, port = plan["host"], plan["port"]


def request_bytes(path):
    return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: pipeline\r\n\r\n" % (path, host, port)).encode()


def read_response(sock, buf):
    """One response from sock (buf: bytes already read); returns (status, rest of buf)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed before a response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed mid-body")
        rest += chunk
    return status, rest[length:]


conns = []
for c in plan["conns"]:
    if c["kind"] == "keepalive":
        h = http.client.HTTPConnection(host, port, timeout=30)
        h.connect()
        h.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append((c, h, h.sock.getsockname()[1]))
    elif c["kind"] == "pipeline":
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append((c, s, s.getsockname()[1]))
    else:
        raise SystemExit("unknown kind %r" % c["kind"])
print(json.dumps({"ports": [p for _, _, p in conns]}), flush=True)
sys.stdin.readline()

results = []
for c, h, p in conns:
    codes, lat = {}, []
    if c["kind"] == "keepalive":
        for path in c["paths"]:
            t0 = time.perf_counter()
            h.request("GET", path)
            r = h.getresponse()
            r.read()
            t1 = time.perf_counter()
            codes[str(r.status)] = codes.get(str(r.status), 0) + 1
            lat.append((t1 - t0) * 1000.0)
    else:
        buf = b""
        gap = c.get("gap_ms", 0) / 1000.0
        for batch in c["batches"]:
            if gap == 0:
                t0 = time.perf_counter()
                h.sendall(b"".join(request_bytes(path) for path in batch))
                sent = [t0] * len(batch)
            else:
                # Staggered: each request in its own segment, `gap` after the previous one, all
                # before the first response is read.
                sent = []
                for j, path in enumerate(batch):
                    if j:
                        time.sleep(gap)
                    sent.append(time.perf_counter())
                    h.sendall(request_bytes(path))
            for t0 in sent:
                status, buf = read_response(h, buf)
                # From its own send: what each pipelined request waited for its response.
                lat.append((time.perf_counter() - t0) * 1000.0)
                codes[str(status)] = codes.get(str(status), 0) + 1
        assert buf == b"", "bytes after the last response"
    results.append({"port": p, "codes": codes, "latency_ms": lat})
print(json.dumps({"conns": results}), flush=True)
sys.stdin.readline()
for _, h, _ in conns:
    h.close()
