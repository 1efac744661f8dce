//! The OpenTelemetry routes of the trace agent (spec traces-parity §5):
//!
//! - `/open-telemetry` on the trace intake (8126 and its Unix socket), as StackState's agent
//!   answers it: protobuf only (415 with a text otherwise), no gzip, `200 OK\n`; a body that does
//!   not decode gets `200` with an empty body (the original's handler writes nothing) and is
//!   counted in `/status`.
//! - `/v1/traces` on the OTLP/HTTP listener (`STS_OTLP_ENABLED=true`, `STS_OTLP_HTTP_PORT`): a
//!   standard receiver (protobuf or JSON by `Content-Type`, `Content-Encoding: gzip` inflated
//!   within [`OTLP_MAX_BODY`], replies in the request's type: an empty
//!   `ExportTraceServiceResponse`, with `partial_success` when spans were dropped; 400 with a
//!   `google.rpc.Status` for undecodable data; 413 over the size limit; 405 for a method other
//!   than `POST`). The listener is a second
//!   [`TraceIntake`] (same framing, limits and connection handling as 8126).
//!
//! Both go through the same processing and into the same payloads as Datadog-format spans.

use super::source::Source;
use super::timers::thread_cpu_ns;
use super::traces::{request_limit, COST_CAP};
use super::{App, TraceAgent};
use crate::checks::traces::Origin;
use crate::config::Config;
use crate::encode::{json, proto};
use crate::model::process::ProcessTable;
use crate::parse::gzip::{gunzip, GzipError};
use crate::parse::otlp::{decode_otlp, decode_stackstate, Format, Scratch};
use crate::parse::traces::TOO_LARGE;
use crate::sources::trace_intake::{IntakeConfig, Peer, TraceIntake};
use crate::transport::http_server::{ContentEncoding, ContentType, RequestHead, Route};
use mio::{Registry, Token};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Scratch storage kept above this is given back after the request.
const KEEP_SCRATCH: usize = 256 * 1024;
/// The largest `/v1/traces` body, on the wire and inflated (or `STS_APM_MAX_PAYLOAD_SIZE` when
/// smaller). An SDK's batch is 512 spans by default, a few hundred KB; the bound keeps what the
/// receiver adds to the trace path's memory small (bodies held on its connections within this
/// + 1 MiB, one inflated body).
pub const OTLP_MAX_BODY: usize = 4 << 20;

/// The OpenTelemetry routes' reused state.
pub struct OtelState {
    scratch: Scratch,
    /// A gzipped body, inflated (its storage kept from request to request: at most the limit).
    inflated: Vec<u8>,
    inflater: flate2::Decompress,
    /// The most a `/v1/traces` body may inflate to.
    pub max_inflated: usize,
}

impl Default for OtelState {
    fn default() -> OtelState {
        OtelState {
            scratch: Scratch::default(),
            inflated: Vec::new(),
            inflater: flate2::Decompress::new(false),
            max_inflated: OTLP_MAX_BODY,
        }
    }
}

/// `google.rpc.Code`s of the replies.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;

impl TraceAgent {
    /// `/open-telemetry` (the batch's limit is set by the caller).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_telemetry(
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
        self.stats.otel_requests += 1;
        if head.content_type != ContentType::Protobuf {
            reply.extend_from_slice(b"unsupported media type: \"");
            reply.extend_from_slice(head.media_type.as_str().unwrap_or("").as_bytes());
            reply.extend_from_slice(b"\", OpenTelemetry only supports application/x-protobuf\n");
            return (415, "text/plain");
        }
        let r = decode_stackstate(body, &mut self.batch, &mut self.otel.scratch)
            .and_then(|_| self.ingest(head, body, peer, now, now_ns, host, procs, Origin::StackStateOtel));
        self.otel.scratch.shrink(KEEP_SCRATCH);
        match r {
            Ok(_) => {
                reply.extend_from_slice(b"OK\n");
                (200, "text/plain")
            }
            Err(e) => {
                // As the original: counted, and answered with an empty 200.
                self.count_refusal(e);
                (200, "text/plain")
            }
        }
    }

    /// Answers a request of the OTLP/HTTP listener (as [`TraceAgent::handle`] does the trace
    /// intake's).
    #[allow(clippy::too_many_arguments)]
    pub fn otlp(
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
        if head.route != Route::OtlpTraces {
            reply.extend_from_slice(b"not found\n");
            return (404, "text/plain");
        }
        if !head.post {
            reply.extend_from_slice(b"method not allowed: OTLP/HTTP takes POST\n");
            return (405, "text/plain");
        }
        let (format, ctype) = match head.content_type {
            ContentType::Protobuf => (Format::Protobuf, "application/x-protobuf"),
            ContentType::Json => (Format::Json, "application/json"),
            _ => {
                reply.extend_from_slice(b"unsupported media type: \"");
                reply.extend_from_slice(head.media_type.as_str().unwrap_or("").as_bytes());
                reply.extend_from_slice(b"\"; OTLP/HTTP takes application/x-protobuf or application/json\n");
                return (415, "text/plain");
            }
        };
        self.stats.otlp_requests += 1;
        // The inflated body is taken out of `self` while the request uses it.
        let mut inflated = std::mem::take(&mut self.otel.inflated);
        let body = match head.content_encoding {
            ContentEncoding::Identity => Ok(body),
            ContentEncoding::Gzip => {
                match gunzip(body, &mut inflated, self.otel.max_inflated, &mut self.otel.inflater) {
                    Ok(()) => Ok(&inflated[..]),
                    Err(GzipError::TooLarge) => Err((
                        413,
                        RESOURCE_EXHAUSTED,
                        "the inflated body is larger than the limit (STS_APM_MAX_PAYLOAD_SIZE, at most 4 MiB)",
                    )),
                    Err(GzipError::Invalid(why)) => Err((400, INVALID_ARGUMENT, why)),
                }
            }
            ContentEncoding::Other => Err((415, INVALID_ARGUMENT, "unsupported Content-Encoding (gzip or none)")),
        };
        let answer = match body {
            Ok(body) => self.otlp_traces(head, body, format, peer, reply, now, now_ns, host, procs),
            Err((status, code, why)) => {
                self.stats.rejected_decode += u64::from(status == 400);
                self.stats.rejected_too_large += u64::from(status == 413);
                rpc_status(reply, format, code, why);
                status
            }
        };
        // Kept whatever its size: `gunzip` never grows it past the limit (and one step), which
        // the receiver's memory bound counts already, and an exporter's gzip batches of a few
        // hundred KB would otherwise grow it again, step by step, for every request.
        self.otel.inflated = inflated;
        (answer, ctype)
    }

    #[allow(clippy::too_many_arguments)]
    fn otlp_traces(
        &mut self,
        head: &RequestHead,
        body: &[u8],
        format: Format,
        peer: Peer,
        reply: &mut Vec<u8>,
        now: Instant,
        now_ns: i64,
        host: &str,
        procs: Option<&ProcessTable>,
    ) -> u16 {
        self.batch.limit = request_limit(body.len()).min(COST_CAP.saturating_sub(self.pending_bytes()));
        let r = decode_otlp(body, format, &mut self.batch, &mut self.otel.scratch).and_then(|d| {
            let counts = self.ingest(head, body, peer, now, now_ns, host, procs, Origin::Otlp)?;
            Ok((d, counts))
        });
        self.otel.scratch.shrink(KEEP_SCRATCH);
        match r {
            Ok((d, counts)) => {
                self.stats.otlp_dropped_attributes += d.dropped_attributes;
                let rejected = d.spans.saturating_sub(counts.spans);
                self.stats.otlp_rejected_spans += rejected;
                let why = "spans of traces without a valid trace id or span id (or left out by the agent's sampling) are dropped";
                export_response(reply, format, rejected, why);
                200
            }
            Err(e) => {
                self.count_refusal(e);
                if e == TOO_LARGE {
                    rpc_status(reply, format, RESOURCE_EXHAUSTED, e.0);
                    413
                } else {
                    rpc_status(reply, format, INVALID_ARGUMENT, e.0);
                    400
                }
            }
        }
    }
}

/// An `ExportTraceServiceResponse`: empty, or with `partial_success` when spans were rejected.
fn export_response(out: &mut Vec<u8>, format: Format, rejected: u64, why: &str) {
    match format {
        Format::Protobuf => {
            if rejected > 0 {
                proto::message(out, 1, |m| {
                    proto::int64(m, 1, rejected as i64);
                    proto::bytes(m, 2, why.as_bytes());
                });
            }
        }
        Format::Json => {
            if rejected > 0 {
                // proto3 JSON writes int64 as a string.
                out.extend_from_slice(b"{\"partialSuccess\":{\"rejectedSpans\":\"");
                json::u64(out, rejected);
                out.extend_from_slice(b"\",\"errorMessage\":");
                json::str(out, why);
                out.extend_from_slice(b"}}");
            } else {
                out.extend_from_slice(b"{}");
            }
        }
    }
}

/// A `google.rpc.Status`.
fn rpc_status(out: &mut Vec<u8>, format: Format, code: i32, message: &str) {
    match format {
        Format::Protobuf => {
            proto::int32(out, 1, code);
            proto::bytes(out, 2, message.as_bytes());
        }
        Format::Json => {
            out.extend_from_slice(b"{\"code\":");
            json::u64(out, code as u64);
            out.extend_from_slice(b",\"message\":");
            json::str(out, message);
            out.push(b'}');
        }
    }
}

/// The OTLP/HTTP listener, when `STS_OTLP_ENABLED=true` and the trace agent runs.
pub(super) fn open(cfg: &Config, registry: &Registry, traces: Option<&mut TraceAgent>) -> Option<TraceIntake> {
    if !cfg.otlp_enabled {
        return None;
    }
    let Some(traces) = traces else {
        if !cfg.apm_enabled {
            warn!("STS_OTLP_ENABLED=true is ignored: the OTLP receiver needs the trace agent (STS_APM_ENABLED=false)");
        }
        return None;
    };
    // The trace intake's bind address: every interface when it listens on every interface.
    let ip = if cfg.apm_non_local_traffic { [0, 0, 0, 0] } else { [127, 0, 0, 1] };
    let addr = std::net::SocketAddr::from((ip, cfg.otlp_http_port));
    let max_body = cfg.apm_max_payload.min(OTLP_MAX_BODY);
    traces.otel.max_inflated = max_body;
    let icfg = IntakeConfig {
        tcp: Some(addr),
        unix: None,
        max_body,
        max_conns: cfg.apm_max_connections,
        read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        held_budget: max_body.saturating_add(1 << 20),
    };
    match TraceIntake::open(icfg, registry, Source::OtlpIntake.tokens().start) {
        Ok(i) => {
            info!("OTLP/HTTP traces on http://{addr}/v1/traces");
            Some(i)
        }
        Err(e) => {
            error!("OTLP/HTTP receiver disabled: STS_OTLP_HTTP_PORT={}: {e}", cfg.otlp_http_port);
            None
        }
    }
}

impl App {
    /// The OTLP listener's readiness: requests go to the trace agent.
    pub(super) fn on_otlp_event(&mut self, t: Token, now: Instant) -> io::Result<()> {
        let (Some(intake), Some(traces)) = (self.otlp_intake.as_mut(), self.traces.as_mut()) else {
            return Ok(());
        };
        let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let host = self.hostname.as_str();
        let procs = self.process.as_ref().map(|p| &p.table);
        let cpu_start = thread_cpu_ns();
        intake.on_event(self.poll.registry(), t, now, &mut |head, body, peer, reply| {
            traces.otlp(head, body, peer, reply, now, now_ns, host, procs)
        });
        traces.stats.cpu_ns += thread_cpu_ns().saturating_sub(cpu_start);
        if traces.due(now) {
            self.flush_traces()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_otlp_messages() {
        let mut out = Vec::new();
        export_response(&mut out, Format::Protobuf, 0, "x");
        assert!(out.is_empty(), "an empty ExportTraceServiceResponse is no bytes");
        export_response(&mut out, Format::Protobuf, 3, "why");
        assert_eq!(out, [0x0a, 7, 0x08, 3, 0x12, 3, b'w', b'h', b'y']);
        out.clear();
        export_response(&mut out, Format::Json, 0, "x");
        assert_eq!(out, b"{}");
        out.clear();
        export_response(&mut out, Format::Json, 2, "a \"b\"");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedSpans"], "2");
        assert_eq!(v["partialSuccess"]["errorMessage"], "a \"b\"");
        out.clear();
        rpc_status(&mut out, Format::Protobuf, 3, "bad");
        assert_eq!(out, [0x08, 3, 0x12, 3, b'b', b'a', b'd']);
        out.clear();
        rpc_status(&mut out, Format::Json, 3, "bad");
        assert_eq!(out, br#"{"code":3,"message":"bad"}"#);
    }
}
