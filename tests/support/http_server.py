# A real HTTP/1.1 server for the HTTP telemetry tests (Python's http.server, threaded, keep-alive).
#   http_server.py HOST PORT      listen (PORT 0: any), print "ready PORT", serve until killed
# Paths: /ok -> 200, /missing -> 404, /busy -> 503, /sleep?ms=N -> 200 after sleeping N ms;
# anything else -> 404.
#
# Each response (head and body) leaves in one write on a TCP_NODELAY socket, so it starts its own
# segment: the agent sees a response where a segment begins with "HTTP/1.1 NNN", as a real server
# that writes its response in one buffer would show it.
import http.server, socket, sys, time
from urllib.parse import urlsplit, parse_qs

REASONS = {200: b"OK", 404: b"Not Found", 503: b"Service Unavailable"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        url = urlsplit(self.path)
        code, body = 404, b"not found\n"
        if url.path == "/ok":
            code, body = 200, b"ok\n"
        elif url.path == "/busy":
            code, body = 503, b"busy\n"
        elif url.path == "/sleep":
            ms = int(parse_qs(url.query).get("ms", ["0"])[0])
            time.sleep(ms / 1000.0)
            code, body = 200, b"slept\n"
        # The request head is read whole by BaseHTTPRequestHandler before do_GET runs; the
        # response goes in one write (not send_response + end_headers + write: two writes).
        head = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % (
            code,
            REASONS[code],
            len(body),
        )
        self.wfile.write(head + body)
        self.wfile.flush()

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


host, port = sys.argv[1], int(sys.argv[2])
if ":" in host:
    Server.address_family = socket.AF_INET6
srv = Server((host, port), Handler)
print("ready", srv.server_address[1], flush=True)
srv.serve_forever()
