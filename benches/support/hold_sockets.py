"""Holds COUNT established loopback TCP sockets (COUNT/2 connections to its own listener) for
benches/budget.rs, prints its listener's port when they are all open, and exits when its stdin
closes. A process of its own because the harness may not raise its open-file limit past the hard
limit (no CAP_SYS_RESOURCE in a container); busy hosts spread sockets over processes anyway.

usage: python3 hold_sockets.py COUNT
"""

import resource
import socket
import sys


def main():
    count = int(sys.argv[1])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    pairs = []
    for _ in range(count // 2):
        c = socket.create_connection(listener.getsockname())
        a, _ = listener.accept()
        pairs.append((c, a))
    print(listener.getsockname()[1], flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
