//! Where encoded payloads go: compressed per endpoint and queued in the outbox (the forwarder),
//! or printed on stdout in a dry run. Separate from `App` so a check can emit while the app's
//! other fields are borrowed.

use super::source::Source;
use super::{unix_now, RunOptions};
use crate::config::Config;
use crate::encode::compress::Deflate;
use crate::outbox::{Forwarder, RouteId, RouteSpec};
use crate::transport::tls;
use mio::Registry;
use std::io::{self, Write};
use std::time::Instant;

/// The kinds of payload the agent sends; each maps to one route (endpoint) when sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Payload {
    /// `/api/v1/series`, zlib JSON.
    Series = 0,
    /// `/intake/` (core agent), zlib JSON.
    Intake = 1,
    /// `/api/v1/collector`, header + zstd(protobuf), sent as is.
    Collector = 2,
    /// `/intake` (process agent), gzip JSON.
    ProcessIntake = 3,
    /// `/api/v1/connections`, header + zstd(protobuf), sent as is.
    Connections = 4,
    /// `/api/v0.2/traces`, gzip(protobuf `TracePayload`).
    Traces = 5,
}

pub(super) const ENDPOINTS: [&str; 6] =
    ["/api/v1/series", "/intake/", "/api/v1/collector", "/intake", "/api/v1/connections", "/api/v0.2/traces"];

enum Output {
    /// Print `{"endpoint":…,"payload":…}` lines on stdout.
    DryRun,
    Forward(Forwarder),
}

pub(super) struct Sink {
    output: Output,
    /// Route ids by `Payload` when sending.
    routes: [Option<RouteId>; 6],
    /// One compressor for the zlib and the gzip payloads (about 300 KiB each otherwise).
    deflate: Deflate,
    zbuf: Vec<u8>,
    /// `(payloads, bytes)` handed on per `Payload` kind (compressed when sending, as printed in a
    /// dry run), for `--once`'s summary.
    pub(super) handed: [(u64, u64); 6],
    /// The forwarder's TLS client configuration (native roots loaded once), shared with the
    /// `/features` probes.
    pub(super) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Sink {
    /// The forwarder with a route per endpoint the configuration enables, or a dry run.
    pub(super) fn new(
        cfg: &Config,
        opts: RunOptions,
        hostname: &str,
        process_enabled: bool,
        connections: bool,
    ) -> io::Result<Sink> {
        let mut routes = [None; 6];
        let mut tls_config = None;
        let output = match (&cfg.sts_url, opts.dry_run) {
            (Some(base), false) => {
                if cfg.skip_ssl_validation {
                    warn!("STS_SKIP_SSL_VALIDATION=true: server certificates are NOT verified");
                }
                let tls = tls::client_config(cfg.skip_ssl_validation)
                    .map_err(|e| io::Error::other(format!("TLS setup: {e}")))?;
                tls_config = Some(tls.clone());
                let mut specs = vec![
                    RouteSpec {
                        split: Some(crate::encode::split::series_zlib),
                        ..RouteSpec::core_json("series", base, ENDPOINTS[Payload::Series as usize])
                    },
                    RouteSpec::core_json("intake", base, ENDPOINTS[Payload::Intake as usize]),
                ];
                routes[Payload::Series as usize] = Some(0);
                routes[Payload::Intake as usize] = Some(1);
                if let (true, Some(pa)) = (process_enabled, &cfg.process_agent_url) {
                    let collector = ENDPOINTS[Payload::Collector as usize];
                    routes[Payload::Collector as usize] = Some(specs.len());
                    specs.push(RouteSpec::process_agent("collector", pa, collector, hostname));
                    routes[Payload::ProcessIntake as usize] = Some(specs.len());
                    specs.push(RouteSpec::process_intake(pa, hostname));
                    if connections {
                        let path = ENDPOINTS[Payload::Connections as usize];
                        routes[Payload::Connections as usize] = Some(specs.len());
                        specs.push(RouteSpec::process_agent("connections", pa, path, hostname));
                    }
                }
                if let (true, Some(apm)) = (cfg.apm_enabled && !opts.once, &cfg.apm_url) {
                    routes[Payload::Traces as usize] = Some(specs.len());
                    specs.push(RouteSpec::traces(apm));
                }
                // One token per origin at most, inside the forwarder's range.
                debug_assert!(specs.len() <= Source::Forwarder.tokens().len());
                let seed = u64::from(std::process::id()) ^ unix_now().rotate_left(17);
                let first_token = Source::Forwarder.tokens().start;
                let f = Forwarder::new(specs, cfg.api_key.expose(), Some(tls), cfg.outbox_budget, first_token, seed)
                    .map_err(io::Error::other)?;
                info!("sending to {base}");
                Output::Forward(f)
            }
            _ => {
                info!("dry run: printing payloads on stdout instead of sending (set STS_STS_URL to send)");
                Output::DryRun
            }
        };
        Ok(Sink {
            output,
            routes,
            deflate: Deflate::default(),
            zbuf: Vec::with_capacity(16 * 1024),
            handed: [(0, 0); 6],
            tls: tls_config,
        })
    }

    /// The outbox route of a kind of payload, when it is sent.
    pub(super) fn route(&self, kind: usize) -> Option<RouteId> {
        self.routes.get(kind).copied().flatten()
    }

    pub(super) fn dry_run(&self) -> bool {
        matches!(self.output, Output::DryRun)
    }

    pub(super) fn forwarder(&self) -> Option<&Forwarder> {
        match &self.output {
            Output::Forward(f) => Some(f),
            Output::DryRun => None,
        }
    }

    pub(super) fn forwarder_mut(&mut self) -> Option<&mut Forwarder> {
        match &mut self.output {
            Output::Forward(f) => Some(f),
            Output::DryRun => None,
        }
    }

    /// Starts sending what was queued (after every turn of the loop).
    pub(super) fn pump(&mut self, registry: &Registry, now: Instant) {
        if let Some(f) = self.forwarder_mut() {
            f.pump(registry, now);
        }
    }

    /// Whether a payload of `kind` handed over now would be sent next on its route: nothing of
    /// the route waits (one may be in flight). Always, in a dry run or without the route.
    pub(super) fn room_for(&self, kind: Payload) -> bool {
        match (&self.output, self.routes[kind as usize]) {
            (Output::Forward(f), Some(route)) => f.waiting(route) == 0,
            _ => true,
        }
    }

    pub(super) fn deliver(&mut self, kind: Payload, bytes: &[u8]) -> io::Result<()> {
        match &mut self.output {
            Output::DryRun => {
                let h = &mut self.handed[kind as usize];
                *h = (h.0 + 1, h.1 + bytes.len() as u64);
                print_dry_run(ENDPOINTS[kind as usize], bytes)
            }
            Output::Forward(f) => {
                let Some(route) = self.routes[kind as usize] else { return Ok(()) };
                let sent = match kind {
                    Payload::Series | Payload::Intake => {
                        self.deflate.zlib(bytes, &mut self.zbuf);
                        &self.zbuf
                    }
                    Payload::ProcessIntake | Payload::Traces => {
                        self.deflate.gzip(bytes, &mut self.zbuf);
                        &self.zbuf
                    }
                    Payload::Collector | Payload::Connections => bytes,
                };
                f.enqueue(route, sent);
                let h = &mut self.handed[kind as usize];
                *h = (h.0 + 1, h.1 + sent.len() as u64);
                Ok(())
            }
        }
    }
}

fn print_dry_run(endpoint: &str, payload: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let r = out
        .write_all(b"{\"endpoint\":\"")
        .and_then(|_| out.write_all(endpoint.as_bytes()))
        .and_then(|_| out.write_all(b"\",\"payload\":"))
        .and_then(|_| out.write_all(payload))
        .and_then(|_| out.write_all(b"}\n"))
        .and_then(|_| out.flush());
    match r {
        // A closed stdout (`| head`) ends a dry run; it is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other,
    }
}
