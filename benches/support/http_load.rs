//! The budget's HTTP load: plain HTTP/1.1 on loopback keep-alive connections, as a service and its
//! callers on one host would make it. A server (a thread per connection; each response, head and
//! body, in one write on a TCP_NODELAY socket, so that every response starts a segment) and one
//! client thread that sends requests at a fixed rate, round-robin over the connections, each
//! request waiting for its response (no pipelining). Of every 20 requests 17 get 200, 2 get 404
//! and 1 gets 503, so the agent keeps three codes' bins per connection.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RESPONSES: [(&[u8], &[u8]); 3] = [
    (b"GET /ok HTTP/1.1\r\nHost: bench\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    (b"GET /missing HTTP/1.1\r\nHost: bench\r\n\r\n", b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"),
    (b"GET /busy HTTP/1.1\r\nHost: bench\r\n\r\n", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno"),
];

/// Which of `RESPONSES` the `i`-th request asks for.
fn kind(i: u64) -> usize {
    match i % 20 {
        0 => 2,
        7 | 14 => 1,
        _ => 0,
    }
}

pub struct HttpLoad {
    pub server_port: u16,
    /// Kept listening, as a real server does: the agent tracks a flow only on a listening port.
    _listener: TcpListener,
    /// The client ends, while no load runs (the load's thread holds them and gives them back).
    clients: Vec<TcpStream>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<TcpStream>>>,
}

impl HttpLoad {
    /// A server on 127.0.0.1 and `conns` kept-alive connections to it; nothing is sent yet.
    pub fn connect(conns: usize) -> HttpLoad {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_port = listener.local_addr().unwrap().port();
        let mut clients = Vec::new();
        for _ in 0..conns {
            let c = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
            c.set_nodelay(true).unwrap();
            let (s, _) = listener.accept().unwrap();
            s.set_nodelay(true).unwrap();
            std::thread::spawn(move || serve(s));
            clients.push(c);
        }
        HttpLoad {
            server_port,
            _listener: listener,
            clients,
            sent: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// Sends `per_s` requests per second from now on (in batches every 2 ms, each request waiting
    /// for its response), until `stop`.
    pub fn start(&mut self, per_s: u32) {
        let mut conns = std::mem::take(&mut self.clients);
        let (sent, stop) = (self.sent.clone(), self.stop.clone());
        self.thread = Some(std::thread::spawn(move || {
            let tick = Duration::from_millis(2);
            let per_tick = f64::from(per_s) * tick.as_secs_f64();
            let mut due = 0.0f64;
            let mut next = Instant::now();
            let mut i = 0u64;
            let mut reply = [0u8; 128];
            while !stop.load(Ordering::Relaxed) {
                due += per_tick;
                while due >= 1.0 {
                    let (req, resp) = RESPONSES[kind(i)];
                    let n = conns.len();
                    let c = &mut conns[i as usize % n];
                    c.write_all(req).unwrap();
                    c.read_exact(&mut reply[..resp.len()]).unwrap();
                    debug_assert_eq!(&reply[..resp.len()], resp);
                    i += 1;
                    due -= 1.0;
                    sent.store(i, Ordering::Relaxed);
                }
                next += tick;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            conns
        }));
    }

    /// Requests answered so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending; the requests answered in all. The connections stay open until the load is
    /// dropped: a connection that closes between two checks loses the responses of its last
    /// interval (the agent reports HTTP figures on the connections its check sees, as the
    /// original does), which the count would take for misses.
    pub fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            self.clients = t.join().unwrap();
        }
        self.sent()
    }
}

impl Drop for HttpLoad {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answers every complete request head in `s`'s input with its response, in one write each.
fn serve(mut s: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end + 4];
            let resp = RESPONSES.iter().find(|(req, _)| *req == head).map_or(RESPONSES[1].1, |r| r.1);
            if s.write_all(resp).is_err() {
                return;
            }
            buf.drain(..end + 4);
        }
    }
}
