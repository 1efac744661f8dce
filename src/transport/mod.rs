//! HTTP/1.1 over TCP or rustls, non-blocking, driven by the loop.

pub mod client;
pub mod http1;
pub mod http_server;
pub mod records;
pub mod resolve;
pub mod tls;
pub mod tls_stream;
