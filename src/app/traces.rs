//! The trace agent: answers the intake's requests (decode, normalise, interpret), appends the
//! traces to the pending `TracePayload`, and says when it is due (every 5 s, or at 1 MB).
//!
//! Memory per request is bounded by its body: what the body decodes to (spans, entries, strings
//! the agent adds) plus the payload bytes it would add may cost at most [`COST_PER_BODY_BYTE`] ×
//! the body + [`COST_SLACK`], and never more than [`COST_CAP`] with the payloads already pending;
//! past that the request gets 413 and nothing of it is kept. Payloads
//! are split as they are built, so none passes [`MAX_PAYLOAD`] (a trace too large for one is
//! sent in parts, each an `APITrace` with the same id).

use crate::checks::obfuscate::Obfuscator;
use crate::checks::traces::{process_with, Origin, RequestContext, TraceCounts};
use crate::encode::{trace_json, trace_payload};
use crate::model::process::ProcessTable;
use crate::model::trace::{Batch, Span};
use crate::parse::msgpack::DecodeError;
use crate::parse::traces::{decode_v04, decode_v05, Encoding, TOO_LARGE};
use crate::sources::trace_intake::Peer;
use crate::transport::http_server::{ContentType, RequestHead, Route};
use std::time::{Duration, Instant};

/// A payload is sent at most this long after its first trace arrived (the writer's flush period).
pub const FLUSH_PERIOD: Duration = Duration::from_secs(5);
/// …or as soon as it reaches this size. The Datadog writer's cap is 3.2 MB; a pending payload is
/// resident memory, and at 1 MB the agent stays within its 16 MiB budget at 2,000 spans/s
/// (benches/budget.sh: 16.3 MiB peak RSS with 3.2 MB).
pub const FLUSH_BYTES: usize = 1_000_000;
/// The largest payload, uncompressed (the Datadog trace writer's `maxPayloadSize`), trailer
/// (`hostName`, `env`) included.
pub const MAX_PAYLOAD: usize = 3_200_000;
/// Room kept in each payload for the trailer (a host name is at most 255 bytes).
const TRAILER_ROOM: usize = 1024;
/// A request may cost (decoded batch + payload bytes it adds) this many times its body… (v0.5
/// names table strings with one or two bytes: a realistic v0.5 body costs 6-8 times its size,
/// a v0.4 one about 2.3 times.)
pub const COST_PER_BODY_BYTE: usize = 8;
/// …plus this…
pub const COST_SLACK: usize = 4 << 20;
/// …and never more than this, together with the payloads already pending (a realistic 2.5 MB
/// v0.5 body costs about 22 MiB). With the intake's budget for bodies (`app/intake.rs`: the body
/// limit + 4 MiB) this bounds the trace path: at the default 10 MiB body limit, 14 MiB of bodies
/// on all connections plus 24 MiB here, within the ECS task's 64 MiB (README, Traces).
pub const COST_CAP: usize = 24 << 20;
/// The batch's storage is given back after a request that made it larger than this.
const KEEP_BATCH: usize = 4 << 20;
/// What each of the obfuscator's buffers keeps after a request (a large query's are given back:
/// they are outside the batch, counted against the request's limit only while it is processed).
const KEEP_OBFUSCATOR: usize = 64 << 10;
/// The `env` of payloads (the Datadog agent's default).
pub const DEFAULT_ENV: &str = "none";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TraceStats {
    pub payloads: u64,
    pub traces: u64,
    pub spans: u64,
    /// Traces dropped by normalisation.
    pub dropped_traces: u64,
    /// Traces dropped by priority sampling, by reason.
    pub sampling: crate::checks::sampling::SamplingDrops,
    /// What the STS interpretation of OpenTelemetry spans did (interpreted, dropped by reason).
    pub otel: crate::checks::otel_interpret::OtelCounts,
    /// Requests refused with 400 because the body did not decode.
    pub rejected_decode: u64,
    /// Requests refused with 413 because they decode to more than their body allows.
    pub rejected_too_large: u64,
    /// `/open-telemetry` requests (their decoding failures count in `rejected_*` too).
    pub otel_requests: u64,
    /// OTLP `/v1/traces` requests, and what their replies reported as rejected.
    pub otlp_requests: u64,
    pub otlp_rejected_spans: u64,
    /// Span and resource attributes past the OTLP caps, left out.
    pub otlp_dropped_attributes: u64,
    pub flushed_payloads: u64,
    /// SQL resources obfuscated, SQL resources that did not parse, Redis resources quantized.
    pub sql_obfuscated: u64,
    pub sql_errors: u64,
    pub redis_quantized: u64,
    /// CPU time of the trace path (this thread): intake I/O and HTTP framing, decoding,
    /// processing, encoding, and completing and compressing payloads; not `/status` requests
    /// nor the TLS send.
    pub cpu_ns: u64,
}

pub struct TraceAgent {
    pub(super) batch: Batch,
    /// The OpenTelemetry routes' scratch and gzip state.
    pub(super) otel: super::otlp::OtelState,
    /// Lives as long as the agent: the SQL backslash mode is sticky.
    obfuscator: Obfuscator,
    /// APITrace messages (or, in a dry run, JSON trace objects) waiting to be sent: the open payload.
    pending: Vec<u8>,
    /// Payloads that reached [`MAX_PAYLOAD`], oldest first, sent before `pending`.
    full: Vec<Vec<u8>>,
    /// Buffers of sent full payloads, for reuse.
    spare: Vec<Vec<u8>>,
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
            otel: super::otlp::OtelState::default(),
            obfuscator: Obfuscator::default(),
            pending: Vec::with_capacity(64 * 1024),
            full: Vec::new(),
            spare: Vec::new(),
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
        // The payloads still pending (a large request, or several pipelined ones, fill some
        // before the loop sends them) share the cap with this request.
        self.batch.limit = request_limit(body.len()).min(COST_CAP.saturating_sub(self.pending_bytes()));
        let decoded = match head.route {
            Route::Info => {
                reply.extend_from_slice(&self.info);
                return (200, "application/json");
            }
            Route::Other | Route::Status | Route::Health | Route::Live | Route::Ready | Route::OtlpTraces => {
                reply.extend_from_slice(b"not found\n");
                return (404, "text/plain");
            }
            Route::OpenTelemetry => return self.open_telemetry(head, body, peer, reply, now, now_ns, host, procs),
            Route::V05Traces => decode_v05(body, &mut self.batch),
            Route::V03Traces | Route::V04Traces => match head.content_type {
                ContentType::Msgpack => decode_v04(body, Encoding::Msgpack, &mut self.batch),
                ContentType::Json | ContentType::None => decode_v04(body, Encoding::Json, &mut self.batch),
                // Unknown type (protobuf is none of Datadog's): JSON, then msgpack (the Datadog
                // agent's order). (A JSON body too large for its size is answered as such.)
                ContentType::Protobuf | ContentType::Other => decode_v04(body, Encoding::Json, &mut self.batch)
                    .or_else(|e| {
                        if e == TOO_LARGE {
                            Err(e)
                        } else {
                            decode_v04(body, Encoding::Msgpack, &mut self.batch)
                        }
                    }),
            },
        };
        if let Err(e) = decoded {
            return self.refuse(e, reply);
        }
        if let Err(e) = self.ingest(head, body, peer, now, now_ns, host, procs, Origin::Datadog) {
            return self.refuse(e, reply);
        }
        if head.route == Route::V03Traces {
            reply.extend_from_slice(b"OK\n");
            (200, "text/plain")
        } else {
            // Keep everything: one rate for every service and env. (The original answers its
            // samplers' rates per service; with 1 here clients set priority 1, and only their own
            // rules set 0 or below, which checks/sampling.rs honours.)
            reply.extend_from_slice(b"{\"rate_by_service\":{\"service:,env:\":1}}");
            (200, "application/json")
        }
    }

    /// Processes the decoded batch (normalisation, interpretation, the agent's tags) and appends
    /// what is kept to the pending payload; `TOO_LARGE` when it would cost more than its limit
    /// (nothing of it is kept then).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ingest(
        &mut self,
        head: &RequestHead,
        body: &[u8],
        peer: Peer,
        now: Instant,
        now_ns: i64,
        host: &str,
        procs: Option<&ProcessTable>,
        origin: Origin,
    ) -> Result<TraceCounts, DecodeError> {
        // A Unix-socket client is a known process: its pid, start time and container.
        let proc = peer.pid.and_then(|pid| {
            let t = procs?;
            let i = t.index_of(pid)?;
            Some(&t.procs[i])
        });
        let client = proc.map(|p| (p.pid, p.create_time_ms));
        let proc_container = proc.and_then(|p| p.container_id.as_ref()).and_then(|id| std::str::from_utf8(id).ok());
        let container_id = head.container_id.as_str().or(proc_container);
        let ctx = RequestContext { now_ns, host, container_id, client, origin };
        let counts = process_with(&mut self.batch, body, &ctx, &mut self.obfuscator);
        // What the payload bytes would add, at most: with the batch, within the request's limit.
        let bound = self.encoded_bound();
        if counts.over_limit || self.batch.cost().saturating_add(bound) > self.batch.limit {
            return Err(TOO_LARGE);
        }
        self.stats.payloads += 1;
        self.stats.traces += counts.traces;
        self.stats.spans += counts.spans;
        self.stats.dropped_traces += counts.dropped_traces;
        self.stats.sql_obfuscated += counts.sql_obfuscated;
        self.stats.sql_errors += counts.sql_errors;
        self.stats.redis_quantized += counts.redis_quantized;
        self.stats.sampling.add(counts.sampling);
        self.stats.otel.add(counts.otel);
        if counts.traces > 0 {
            self.append(body, bound);
            self.pending_since.get_or_insert(now);
        }
        self.batch.shrink(KEEP_BATCH);
        self.obfuscator.shrink(KEEP_OBFUSCATOR);
        Ok(counts)
    }

    /// Forgets a request that is not kept (its batch is cleared) and counts why.
    pub(super) fn count_refusal(&mut self, e: DecodeError) {
        self.batch.clear();
        self.batch.shrink(KEEP_BATCH);
        self.obfuscator.shrink(KEEP_OBFUSCATOR);
        if e == TOO_LARGE {
            self.stats.rejected_too_large += 1;
        } else {
            self.stats.rejected_decode += 1;
        }
    }

    /// 400 for a body that does not decode, 413 for one that decodes to more than it may cost.
    fn refuse(&mut self, e: DecodeError, reply: &mut Vec<u8>) -> (u16, &'static str) {
        self.count_refusal(e);
        reply.extend_from_slice(e.0.as_bytes());
        reply.push(b'\n');
        if e == TOO_LARGE {
            (413, "text/plain")
        } else {
            (400, "text/plain")
        }
    }

    /// The obfuscator (its buffers, lexing counter and backslash mode), for tests.
    pub fn obfuscator(&self) -> &Obfuscator {
        &self.obfuscator
    }

    /// Bytes of payloads waiting to be sent (the open one and the full ones).
    pub fn pending_bytes(&self) -> usize {
        self.pending.len() + self.full.iter().map(Vec::len).sum::<usize>()
    }

    /// At most the bytes the batch adds to payloads.
    fn encoded_bound(&self) -> usize {
        let total =
            if self.json { trace_json::batch_bound(&self.batch) } else { trace_payload::batch_bound(&self.batch) };
        let (trace_bound, _) = self.encoder();
        // A trace split across payloads repeats its header once per part.
        total.saturating_add(total / (MAX_PAYLOAD / 2) * trace_bound + trace_bound)
    }

    fn encoder(&self) -> (usize, fn(&Batch, &Span) -> usize) {
        if self.json {
            (trace_json::TRACE_BOUND, trace_json::span_bound)
        } else {
            (trace_payload::TRACE_BOUND, trace_payload::span_bound)
        }
    }

    /// Appends the kept traces of the batch to the open payload; a payload that would pass
    /// [`MAX_PAYLOAD`] is closed first (put in `full`), and a trace that does not fit in one
    /// payload is cut between spans into several `APITrace`s. A span larger than a payload
    /// travels alone. `bound`: at most the bytes the whole batch adds.
    fn append(&mut self, body: &[u8], bound: usize) {
        let (trace_bound, span_bound) = self.encoder();
        let room_of_payload = MAX_PAYLOAD - TRAILER_ROOM - trace_bound;
        let b = &self.batch;
        if self.pending.len().saturating_add(bound) <= room_of_payload {
            // All of it fits (the usual case): no span needs measuring.
            if self.json {
                trace_json::append_traces(&mut self.pending, b, body);
            } else {
                trace_payload::append_traces(&mut self.pending, b, body);
            }
            return;
        }
        for &(first, n) in &b.traces {
            let spans = b.spans.get(first as usize..(first + n) as usize).unwrap_or(&[]);
            let mut i = 0;
            while i < spans.len() {
                let room = room_of_payload.saturating_sub(self.pending.len());
                let (mut j, mut size) = (i, 0);
                while let Some(s) = spans.get(j) {
                    let sb = span_bound(b, s);
                    if size + sb > room && (j > i || !self.pending.is_empty()) {
                        break;
                    }
                    size += sb;
                    j += 1;
                }
                if j > i {
                    if self.json {
                        trace_json::append_trace(&mut self.pending, b, body, &spans[i..j]);
                    } else {
                        trace_payload::append_trace(&mut self.pending, b, body, &spans[i..j]);
                    }
                    i = j;
                }
                if i < spans.len() {
                    // The rest goes to the next payload.
                    let next = self.spare.pop().unwrap_or_default();
                    self.full.push(std::mem::replace(&mut self.pending, next));
                }
            }
        }
    }

    /// When the pending payload is due (for the loop's poll timeout).
    pub fn deadline(&self) -> Option<Instant> {
        self.pending_since.map(|t| if self.full.is_empty() { t + FLUSH_PERIOD } else { t })
    }

    /// Whether a payload should go now (a full one always).
    pub fn due(&self, now: Instant) -> bool {
        !self.full.is_empty()
            || self.pending_since.is_some_and(|t| now >= t + FLUSH_PERIOD)
            || self.pending.len() >= FLUSH_BYTES
    }

    /// Completes the next payload in place (protobuf, or the JSON view) and returns it; the
    /// caller sends it and then calls [`TraceAgent::sent`], and calls again until `None` (full
    /// payloads go first, oldest first). In place, so a payload is held once, not copied.
    pub fn finish_payload(&mut self, host: &str) -> Option<&[u8]> {
        let json = self.json;
        let p = match self.full.first_mut() {
            Some(p) => p,
            None if self.pending.is_empty() => {
                self.pending_since = None;
                return None;
            }
            None => &mut self.pending,
        };
        if json {
            // The trace objects were appended comma-separated; wrap them.
            let mut head = Vec::with_capacity(64);
            head.extend_from_slice(b"{\"hostName\":");
            crate::encode::json::str(&mut head, host);
            head.extend_from_slice(b",\"env\":\"");
            head.extend_from_slice(DEFAULT_ENV.as_bytes());
            head.extend_from_slice(b"\",\"traces\":[");
            p.splice(0..0, head);
            p.extend_from_slice(b"]}");
        } else {
            trace_payload::finish(p, host, DEFAULT_ENV);
        }
        self.stats.flushed_payloads += 1;
        Some(p)
    }

    /// Empties the payload returned by [`TraceAgent::finish_payload`].
    pub fn sent(&mut self) {
        if !self.full.is_empty() {
            let mut p = self.full.remove(0);
            if self.spare.is_empty() {
                p.clear();
                p.shrink_to(FLUSH_BYTES);
                self.spare.push(p);
            }
            if self.full.is_empty() && self.pending.is_empty() {
                self.pending_since = None;
            }
            return;
        }
        self.pending.clear();
        if self.pending.capacity() > 2 * FLUSH_BYTES {
            self.pending.shrink_to(FLUSH_BYTES);
        }
        self.pending_since = None;
    }

    /// Completes the next payload into `out` and empties it (for callers that keep it).
    pub fn take_payload(&mut self, host: &str, out: &mut Vec<u8>) -> bool {
        let Some(p) = self.finish_payload(host) else { return false };
        out.clear();
        out.extend_from_slice(p);
        self.sent();
        true
    }
}

/// The most a request with a body of `len` bytes may cost (bytes of decoded storage and of
/// payload it adds): [`COST_PER_BODY_BYTE`] × `len` + [`COST_SLACK`], at most [`COST_CAP`].
pub fn request_limit(len: usize) -> usize {
    len.saturating_mul(COST_PER_BODY_BYTE).saturating_add(COST_SLACK).min(COST_CAP)
}
