//! The trace agent: answers the intake's requests (decode, normalise, interpret), appends the
//! traces to the pending `TracePayload`, and says when it is due (every 5 s, or at 1 MB).

use crate::checks::traces::{process, RequestContext};
use crate::encode::{trace_json, trace_payload};
use crate::model::process::ProcessTable;
use crate::model::trace::Batch;
use crate::parse::msgpack::DecodeError;
use crate::parse::traces::{decode_v04, decode_v05, Encoding};
use crate::sources::trace_intake::Peer;
use crate::transport::http_server::{ContentType, RequestHead, Route};
use std::time::{Duration, Instant};

/// A payload is sent at most this long after its first trace arrived (the writer's flush period).
pub const FLUSH_PERIOD: Duration = Duration::from_secs(5);
/// …or as soon as it reaches this size. The Datadog writer's cap is 3.2 MB; a pending payload is
/// resident memory, and at 1 MB the agent stays within its 16 MiB budget at 2,000 spans/s
/// (benches/budget.sh: 16.3 MiB peak RSS with 3.2 MB).
pub const FLUSH_BYTES: usize = 1_000_000;
/// The `env` of payloads (the Datadog agent's default).
pub const DEFAULT_ENV: &str = "none";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TraceStats {
    pub payloads: u64,
    pub traces: u64,
    pub spans: u64,
    /// Traces dropped by normalisation.
    pub dropped_traces: u64,
    /// Requests refused with 400 because the body did not decode.
    pub rejected_decode: u64,
    pub flushed_payloads: u64,
    /// CPU time of the trace path (this thread): intake I/O and HTTP framing, decoding,
    /// processing, encoding, and completing and compressing payloads; not `/status` requests
    /// nor the TLS send.
    pub cpu_ns: u64,
}

pub struct TraceAgent {
    batch: Batch,
    /// APITrace messages (or, in a dry run, JSON trace objects) waiting to be sent.
    pending: Vec<u8>,
    pending_since: Option<Instant>,
    json: bool,
    info: Vec<u8>,
    pub stats: TraceStats,
}

impl TraceAgent {
    pub fn new(json: bool) -> TraceAgent {
        let info = format!(
            "{{\"version\":\"{}\",\"endpoints\":[\"/v0.3/traces\",\"/v0.4/traces\",\"/v0.5/traces\",\"/info\"],\"client_drop_p0s\":false,\"feature_flags\":[],\"config\":{{\"default_env\":\"{DEFAULT_ENV}\"}}}}",
            env!("CARGO_PKG_VERSION")
        );
        TraceAgent {
            batch: Batch::default(),
            pending: Vec::with_capacity(64 * 1024),
            pending_since: None,
            json,
            info: info.into_bytes(),
            stats: TraceStats::default(),
        }
    }

    /// Answers one request: writes the reply body into `reply`, returns status and content type.
    #[allow(clippy::too_many_arguments)]
    pub fn handle(
        &mut self,
        head: &RequestHead,
        body: &[u8],
        peer: Peer,
        reply: &mut Vec<u8>,
        now: Instant,
        now_ns: i64,
        host: &str,
        procs: Option<&ProcessTable>,
    ) -> (u16, &'static str) {
        let decoded = match head.route {
            Route::Info => {
                reply.extend_from_slice(&self.info);
                return (200, "application/json");
            }
            Route::Other | Route::Status => {
                reply.extend_from_slice(b"not found\n");
                return (404, "text/plain");
            }
            Route::V05Traces => decode_v05(body, &mut self.batch),
            Route::V03Traces | Route::V04Traces => match head.content_type {
                ContentType::Msgpack => decode_v04(body, Encoding::Msgpack, &mut self.batch),
                ContentType::Json | ContentType::None => decode_v04(body, Encoding::Json, &mut self.batch),
                // Unknown type: JSON, then msgpack (the Datadog agent's order).
                ContentType::Other => decode_v04(body, Encoding::Json, &mut self.batch)
                    .or_else(|_| decode_v04(body, Encoding::Msgpack, &mut self.batch)),
            },
        };
        if let Err(DecodeError(why)) = decoded {
            self.stats.rejected_decode += 1;
            reply.extend_from_slice(why.as_bytes());
            reply.push(b'\n');
            return (400, "text/plain");
        }
        // A Unix-socket client is a known process: its pid, start time and container.
        let proc = peer.pid.and_then(|pid| {
            let t = procs?;
            let i = t.procs.binary_search_by_key(&pid, |p| p.pid).ok()?;
            Some(&t.procs[i])
        });
        let client = proc.map(|p| (p.pid, p.create_time_ms));
        let proc_container = proc.and_then(|p| p.container_id.as_ref()).and_then(|id| std::str::from_utf8(id).ok());
        let container_id = head.container_id.as_str().or(proc_container);
        let ctx = RequestContext { now_ns, host, container_id, client };
        let counts = process(&mut self.batch, body, &ctx);
        self.stats.payloads += 1;
        self.stats.traces += counts.traces;
        self.stats.spans += counts.spans;
        self.stats.dropped_traces += counts.dropped_traces;
        if counts.traces > 0 {
            if self.json {
                trace_json::append_traces(&mut self.pending, &self.batch, body);
            } else {
                trace_payload::append_traces(&mut self.pending, &self.batch, body);
            }
            self.pending_since.get_or_insert(now);
        }
        if head.route == Route::V03Traces {
            reply.extend_from_slice(b"OK\n");
            (200, "text/plain")
        } else {
            // Keep everything: one rate for every service and env.
            reply.extend_from_slice(b"{\"rate_by_service\":{\"service:,env:\":1}}");
            (200, "application/json")
        }
    }

    /// When the pending payload is due (for the loop's poll timeout).
    pub fn deadline(&self) -> Option<Instant> {
        self.pending_since.map(|t| t + FLUSH_PERIOD)
    }

    /// Whether the pending payload should go now.
    pub fn due(&self, now: Instant) -> bool {
        self.pending_since.is_some_and(|t| now >= t + FLUSH_PERIOD) || self.pending.len() >= FLUSH_BYTES
    }

    /// Completes the pending payload in place (protobuf, or the JSON view) and returns it; the
    /// caller sends it and then calls [`TraceAgent::sent`]. `None` when nothing is pending.
    /// In place, so a full payload is held once, not copied.
    pub fn finish_payload(&mut self, host: &str) -> Option<&[u8]> {
        if self.pending.is_empty() {
            return None;
        }
        if self.json {
            // The trace objects were appended comma-separated; wrap them.
            let mut head = Vec::with_capacity(64);
            head.extend_from_slice(b"{\"hostName\":");
            crate::encode::json::str(&mut head, host);
            head.extend_from_slice(b",\"env\":\"");
            head.extend_from_slice(DEFAULT_ENV.as_bytes());
            head.extend_from_slice(b"\",\"traces\":[");
            self.pending.splice(0..0, head);
            self.pending.extend_from_slice(b"]}");
        } else {
            trace_payload::finish(&mut self.pending, host, DEFAULT_ENV);
        }
        self.stats.flushed_payloads += 1;
        Some(&self.pending)
    }

    /// Empties the pending payload after [`TraceAgent::finish_payload`].
    pub fn sent(&mut self) {
        self.pending.clear();
        if self.pending.capacity() > 2 * FLUSH_BYTES {
            self.pending.shrink_to(FLUSH_BYTES);
        }
        self.pending_since = None;
    }

    /// Completes the pending payload into `out` and empties it (for callers that keep it).
    pub fn take_payload(&mut self, host: &str, out: &mut Vec<u8>) -> bool {
        let Some(p) = self.finish_payload(host) else { return false };
        out.clear();
        out.extend_from_slice(p);
        self.sent();
        true
    }
}
