# What the bulk-traffic cost scripts (http_cost.py, http_cost_paired.py) share: running a command,
# and the agent's receiver (a local HTTP server answering 202 to everything, bodies discarded).
import http.server, os, socketserver, subprocess, sys, threading


def sh(*cmd, check=True):
    """The command's stdout; exits with its stderr when it fails (unless check=False)."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout


class Sink(http.server.BaseHTTPRequestHandler):
    """The agent's receiver: 202 to everything, bodies discarded."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(202)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_PUT = do_POST

    def log_message(self, *a):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def start_receiver():
    """The receiver, serving on a thread; its URL for STS_STS_URL."""
    rx = Server(("127.0.0.1", 0), Sink)
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d/stsAgent" % rx.server_address[1]


def agent_env(receiver_url, extra):
    """The agent's environment for a cost run: checks every 30 s (host 60 s), so that the measured
    windows fall between them; nothing to look up; `extra` ("K=V" strings) last."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "STS_STS_URL": receiver_url,
        "STS_API_KEY": "cost-key",
        "STS_LOG_LEVEL": "warn",
        "STS_HOST_CHECK_INTERVAL": "60",
        "STS_PROCESS_CHECK_INTERVAL": "30",
        "STS_CONNECTION_CHECK_INTERVAL": "30",
        "STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS": "0",
        "STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS": "0",
        "STS_EC2_METADATA_URL": "http://127.0.0.1:9",
        "STS_ECS_AGENT_URL": "http://127.0.0.1:9",
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "STS_APM_ENABLED": "false",
    }
    env.update(kv.split("=", 1) for kv in extra)
    return env
