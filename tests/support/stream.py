# Paced TCP streams for the connections tests: each side sends its rate in 50 ms slices and
# drains what it receives.
#   stream.py server HOST PORT RATE        listen, print "ready", serve one client
#   stream.py client HOST PORT RATE        connect and stream
#   stream.py pair HOST PORT SRV_RATE CLI_RATE   both ends in this one process
import socket, sys, threading, time

def pace(sock, rate):
    data = b"x" * (rate // 20)
    t = time.monotonic()
    while True:
        sock.sendall(data)
        t += 0.05
        time.sleep(max(0.0, t - time.monotonic()))

def drain(sock):
    while sock.recv(1 << 16):
        pass

def both(sock, rate):
    threading.Thread(target=drain, args=(sock,), daemon=True).start()
    pace(sock, rate)

def listen(host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen()
    return s

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "server":
    s = listen(host, port)
    print("ready", flush=True)
    c, _ = s.accept()
    both(c, int(sys.argv[4]))
elif mode == "client":
    both(socket.create_connection((host, port)), int(sys.argv[4]))
elif mode == "pair":
    s = listen(host, port)
    c = socket.create_connection((host, port))
    a, _ = s.accept()
    threading.Thread(target=both, args=(a, int(sys.argv[4])), daemon=True).start()
    print("ready", flush=True)
    both(c, int(sys.argv[5]))
