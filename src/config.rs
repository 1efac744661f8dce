//! Every `STS_*` variable of the StackState ECS manifest (and a few of our own), parsed once,
//! typed and validated. An error names the variable, what is wrong with the value and the
//! expected form; it never echoes the API key.

use crate::log::Level;
use crate::url::Url;
use regex::bytes::{Regex, RegexSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One documented variable: the single source for `--help` and for the README table.
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const VARS: &[VarDoc] = &[
    VarDoc { name: "STS_API_KEY", default: "(none; required with a URL)", meaning: "API key of the StackState receiver; sent in the sts-api-key header, never logged" },
    VarDoc { name: "STS_STS_URL", default: "(none: dry run)", meaning: "receiver base URL, e.g. https://<host>:7077/stsAgent; host metrics and topology go to /api/v1/series and /intake/. Unset: print payloads instead of sending" },
    VarDoc { name: "STS_PROCESS_AGENT_URL", default: "STS_STS_URL", meaning: "base URL for process and connection data (/api/v1/collector, /api/v1/connections)" },
    VarDoc { name: "STS_APM_URL", default: "STS_STS_URL", meaning: "base URL for traces (/api/v0.2/traces)" },
    VarDoc { name: "STS_SKIP_SSL_VALIDATION", default: "false", meaning: "true accepts any server certificate (self-signed receivers); verification is on otherwise" },
    VarDoc { name: "STS_PROCESS_BLACKLIST_PATTERNS", default: "(the StackState process agent's list)", meaning: "comma-separated regexes matched against the space-joined command line; when set it replaces the default list" },
    VarDoc { name: "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU", default: "0", meaning: "report this many top CPU processes even if blacklisted" },
    VarDoc { name: "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_READ", default: "0", meaning: "report this many top IO-read processes even if blacklisted" },
    VarDoc { name: "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_WRITE", default: "0", meaning: "report this many top IO-write processes even if blacklisted" },
    VarDoc { name: "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM", default: "0", meaning: "report this many top memory processes even if blacklisted" },
    VarDoc { name: "STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD", default: "0 (no gate)", meaning: "top-CPU inclusions apply only while the host-wide CPU percent (sum over processes, top's units: 100 = one core) is at least this" },
    VarDoc { name: "STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD", default: "0 (no gate)", meaning: "top-memory inclusions apply only while the host's used memory (MemTotal - MemAvailable) is at least this percent" },
    VarDoc { name: "STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", default: "60", meaning: "processes both created and first seen less than this many seconds ago are not reported; 0 disables" },
    VarDoc { name: "STS_PROCESS_AGENT_ENABLED", default: "true", meaning: "true: processes and containers; false: containers only; disabled: neither" },
    VarDoc { name: "STS_APM_ENABLED", default: "true", meaning: "accept traces on the trace intake and forward them" },
    VarDoc { name: "STS_APM_RECEIVER_PORT", default: "8126", meaning: "TCP port of the trace intake (Datadog-format /v0.3, /v0.4, /v0.5/traces and /info)" },
    VarDoc { name: "STS_APM_NON_LOCAL_TRAFFIC", default: "false", meaning: "true: the trace intake listens on every interface (the ECS task sets it); false: 127.0.0.1 only" },
    VarDoc { name: "STS_APM_RECEIVER_SOCKET", default: "(none)", meaning: "also accept traces on this Unix socket path (spans are then tagged with the client's pid)" },
    VarDoc { name: "STS_APM_MAX_PAYLOAD_SIZE", default: "10485760", meaning: "largest trace request body in bytes; larger ones get 413 from their Content-Length alone" },
    VarDoc { name: "STS_OTLP_ENABLED", default: "false", meaning: "true: an OTLP/HTTP receiver (POST /v1/traces, protobuf or JSON, gzip) for OpenTelemetry SDKs, on STS_OTLP_HTTP_PORT; its spans go where the trace intake's go (needs STS_APM_ENABLED)" },
    VarDoc { name: "STS_OTLP_HTTP_PORT", default: "4318", meaning: "TCP port of the OTLP/HTTP receiver; it binds where the trace intake does (every interface with STS_APM_NON_LOCAL_TRAFFIC=true, else 127.0.0.1)" },
    VarDoc { name: "STS_APM_MAX_CONNECTIONS", default: "128", meaning: "open trace-intake connections at most; past it the longest-waiting one is closed" },
    VarDoc { name: "STS_USE_DOGSTATSD", default: "true", meaning: "accept DogStatsD metrics and events (UDP and the optional Unix socket) and send them as series and /intake/ events" },
    VarDoc { name: "STS_DOGSTATSD_PORT", default: "8125", meaning: "UDP port of DogStatsD; 0 closes UDP" },
    VarDoc { name: "STS_DOGSTATSD_NON_LOCAL_TRAFFIC", default: "false", meaning: "true: DogStatsD listens on every interface, IPv4 and IPv6 (the ECS task sets it; keep 8125/udp private in the security groups); false: STS_BIND_HOST only (127.0.0.1 by default)" },
    VarDoc { name: "STS_DOGSTATSD_SOCKET", default: "(none)", meaning: "also accept DogStatsD on this Unix datagram socket path, 107 bytes at most (mode 0722; a stale socket there is replaced; if it cannot be bound, UDP still works)" },
    VarDoc { name: "STS_DOGSTATSD_ORIGIN_DETECTION", default: "false", meaning: "true: tag what arrives on the Unix socket with the sender's container (container_id and its ECS task tags), from its pid (SO_PASSCRED)" },
    VarDoc { name: "STS_DOGSTATSD_SO_RCVBUF", default: "4194304", meaning: "receive buffer of the DogStatsD sockets in bytes (at most 536870912), room for ~0.5 s of 100,000 metrics/s packed 16 a datagram while a check runs (far less for one metric a datagram); above net.core.rmem_max it needs CAP_NET_ADMIN (SO_RCVBUFFORCE), else the kernel caps it (the shipped ECS task gets the 208 KiB default and a warning); no effect on the Unix socket's queue (net.unix.max_dgram_qlen); 0: kernel default" },
    VarDoc { name: "STS_DOGSTATSD_BUFFER_SIZE", default: "8192", meaning: "largest DogStatsD datagram taken whole, in bytes; a longer one loses its last, partial line (counted as truncated)" },
    VarDoc { name: "STS_DOGSTATSD_TAGS", default: "(none)", meaning: "extra tags added to every DogStatsD metric and event: space-separated (env:prod team:a) or a JSON array ([\"env:prod\",\"team:a\"]); 512 bytes at most comma-joined" },
    VarDoc { name: "STS_BIND_HOST", default: "localhost", meaning: "address the DogStatsD UDP listener binds while STS_DOGSTATSD_NON_LOCAL_TRAFFIC is false: localhost (127.0.0.1) or an IP address such as ::1" },
    VarDoc { name: "STS_DOGSTATSD_DROP_LOG_SECS", default: "60", meaning: "for tests: DogStatsD logs each refusal reason at most once this many seconds (1-3600)" },
    VarDoc { name: "STS_DOGSTATSD_MAX_CONTEXTS", default: "4096", meaning: "live DogStatsD contexts (name + tags + host) at most, the aggregator's memory bound (2.6 KiB a context at worst, 0.5 KiB with 60-byte names and tags); samples of new ones past it are dropped and counted" },
    VarDoc { name: "STS_NETWORK_TRACING_ENABLED", default: "true", meaning: "report TCP connections between processes and containers" },
    VarDoc { name: "STS_PROTOCOL_INSPECTION_ENABLED", default: "true", meaning: "HTTP/1.x request rates and response times, and the http/mysql protocol label, on reported server connections (a packet capture per network namespace; needs CAP_NET_RAW)" },
    VarDoc { name: "STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", default: "60", meaning: "connections whose relation (connectionIdentifier) was first seen less than this many seconds ago are not reported; 0 disables" },
    VarDoc { name: "STS_NETWORK_TRACER_MAX_CONNECTIONS", default: "10000", meaning: "at most this many TCP sockets are tracked per cycle (the memory bound); the rest are counted and skipped" },
    VarDoc { name: "STS_FORWARDER_RETRY_QUEUE_MAX_SIZE", default: "8388608", meaning: "bytes of encoded payloads held for delivery in total (all endpoints); when full the oldest payload is dropped and counted" },
    VarDoc { name: "STS_HOSTNAME", default: "EC2 instance id, else OS hostname", meaning: "the host name used in every payload, URN and header" },
    VarDoc { name: "HOST_PROC", default: "/proc", meaning: "where the host's procfs is mounted (/host/proc in the ECS task)" },
    VarDoc { name: "HOST_SYS", default: "/sys", meaning: "where the host's sysfs is mounted (/host/sys in the ECS task)" },
    VarDoc { name: "STS_LOG_LEVEL", default: "info", meaning: "off, error, warn, info, debug or trace" },
    VarDoc { name: "STS_HOST_CHECK_INTERVAL", default: "15", meaning: "seconds between host checks (system.* metrics, host topology)" },
    VarDoc { name: "STS_PROCESS_CHECK_INTERVAL", default: "30", meaning: "seconds between process checks" },
    VarDoc { name: "STS_PROCESS_HOLD_FILES", default: "stat", meaning: "which per-process files stay open between process checks (one pread a cycle instead of open/read/close): stat, all (stat, statm, io) or none; each costs about 5.7 KiB of kernel memory charged to the agent's cgroup" },
    VarDoc { name: "STS_PROCESS_HELD_FILES_MAX_KIB", default: "2048", meaning: "kernel memory the held files may take, at 6 KiB a file (2048: 341 files); processes beyond it open, read and close their files each cycle; 0 holds none" },
    VarDoc { name: "STS_PROCESS_SKIP_IDLE", default: "true", meaning: "true: a process whose CPU clock has not moved since its last read keeps that read's figures (read in full at least every fourth process check, and when its parent exits); false: every process read every check" },
    VarDoc { name: "STS_CONNECTION_CHECK_INTERVAL", default: "30", meaning: "seconds between connection checks" },
    VarDoc {
        name: "STS_DOCKER_CHECK_INTERVAL",
        default: "40",
        meaning: "seconds between docker check passes (docker.* series, container events and topology)",
    },
    VarDoc {
        name: "STS_DOCKER_EVENTS_ENABLED",
        default: "true",
        meaning: "stream Docker container events (one /events connection) and send them to /intake/ per image every docker check pass",
    },
    VarDoc { name: "STS_HEALTH_PORT", default: "0 (off)", meaning: "a TCP port (every interface) answering GET /live (the loop answers) and /ready (every component healthy, as sts-agent health; the report to loopback peers only) for orchestrators other than ECS; sts-agent health asks it first; exit 2 when it cannot be bound. Unset with STS_APM_ENABLED=false: /health on 127.0.0.1:5555" },
    VarDoc { name: "STS_HEALTH_RETRY_HORIZON", default: "300", meaning: "seconds an endpoint may fail (retrying with backoff, or refusing the API key), or have payloads waiting without a delivery, before sts-agent health reports it FAIL" },
    VarDoc {
        name: "STS_FEATURES",
        default: "auto",
        meaning: "auto: ask <url>/features (core and process agent) and follow the answer; none, or a comma list (upgrade-to-multi-metrics,incremental-topology,health-states): take that set and ask nothing",
    },
    VarDoc {
        name: "STS_REPORT_CHECK_HEALTH_STATE",
        default: "true",
        meaning: "send the process agent's own topology and health stream to /intake (the original's report_check_health_state); false: only when the receiver advertises health-states",
    },
    VarDoc { name: "DOCKER_HOST", default: "unix:///var/run/docker.sock", meaning: "the Docker Engine API socket, for container names, images, labels and ECS task tags" },
    VarDoc { name: "STS_ECS_AGENT_URL", default: "http://localhost:51678", meaning: "the ECS agent's introspection API, for the cluster name and each container's task" },
    VarDoc { name: "STS_EC2_METADATA_URL", default: "http://169.254.169.254", meaning: "EC2 instance metadata service (IMDSv2) used for the instance id" },
];

/// The API key. It cannot be printed: `Debug` and `Display` show only whether it is set.
#[derive(Clone, Default)]
pub struct ApiKey(Option<String>);

impl ApiKey {
    pub fn expose(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "ApiKey(<set>)" } else { "ApiKey(<unset>)" })
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessAgentMode {
    /// Processes and containers.
    Enabled,
    /// Containers only (`false`).
    ContainersOnly,
    /// Neither (`disabled`).
    Disabled,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inclusions {
    pub top_cpu: u32,
    pub top_io_read: u32,
    pub top_io_write: u32,
    pub top_mem: u32,
    pub cpu_threshold: u64,
    pub mem_threshold: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub api_key: ApiKey,
    /// `None`: dry run (print what would be sent).
    pub sts_url: Option<Url>,
    pub process_agent_url: Option<Url>,
    pub apm_url: Option<Url>,
    pub skip_ssl_validation: bool,
    /// The blacklist, matched against the space-joined (scrubbed) command line.
    pub blacklist: RegexSet,
    pub short_lived_secs: u64,
    pub inclusions: Inclusions,
    pub process_agent: ProcessAgentMode,
    pub apm_enabled: bool,
    pub apm_port: u16,
    pub apm_non_local_traffic: bool,
    pub apm_socket: Option<PathBuf>,
    pub apm_max_payload: usize,
    pub apm_max_connections: usize,
    pub otlp_enabled: bool,
    pub otlp_http_port: u16,
    pub dogstatsd: DogStatsdConfig,
    pub network_tracing_enabled: bool,
    pub protocol_inspection_enabled: bool,
    pub relation_short_lived_secs: u64,
    pub max_connections: usize,
    pub outbox_budget: usize,
    pub hostname: Option<String>,
    pub host_proc: PathBuf,
    pub host_sys: PathBuf,
    pub log_level: Option<Level>,
    pub host_check_interval: Duration,
    pub process_check_interval: Duration,
    /// `STS_PROCESS_HOLD_FILES`: see `sources::process::HoldFiles`.
    pub process_hold_files: crate::sources::process::HoldFiles,
    /// `STS_PROCESS_HELD_FILES_MAX_KIB`: see `sources::process::ProcessSource::held_files_max`.
    pub process_held_files_max_kib: u64,
    /// `STS_PROCESS_SKIP_IDLE`: see `sources::process::ProcessSource::skip_idle`.
    pub process_skip_idle: bool,
    pub connection_check_interval: Duration,
    /// The docker check's pass: `docker.*` series, event bundles, container topology (the
    /// original's 40 s default check interval since Agent 2.13).
    pub docker_check_interval: Duration,
    /// Container events from Docker's `/events` stream (the original's `collect_events`).
    pub docker_events_enabled: bool,
    /// `STS_FEATURES`: ask the receivers' `/features`, or take a fixed set.
    pub features: FeaturesSetting,
    /// `STS_REPORT_CHECK_HEALTH_STATE` (the process agent's `ReportCheckHealthState`, default
    /// true): its self topology and health go out when this is on or `health-states` is advertised.
    pub report_check_health_state: bool,
    pub ec2_metadata_url: Url,
    /// The Docker Engine API's Unix socket.
    pub docker_socket: PathBuf,
    pub ecs_agent_url: Url,
    /// `/live` and `/ready` on this TCP port (`None`: off).
    pub health_port: Option<u16>,
    /// How long an endpoint may fail before `sts-agent health` reports it.
    pub health_retry_horizon: Duration,
}

/// What the agent takes the receiver to support (spec/protocol.md E4/E7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FeaturesSetting {
    /// Ask `<url>/features` (`auto`, the default).
    #[default]
    Discover,
    /// These, without asking (`none`, or a comma-separated list of feature names).
    Fixed(crate::parse::features::Features),
}

fn parse_features(v: &str) -> Result<FeaturesSetting, ConfigError> {
    let v = v.trim();
    let expected = "auto, none, or a comma-separated list of upgrade-to-multi-metrics, incremental-topology, health-states, expose-kubernetes-status";
    if v.eq_ignore_ascii_case("auto") {
        return Ok(FeaturesSetting::Discover);
    }
    let mut f = crate::parse::features::Features::default();
    if v.eq_ignore_ascii_case("none") {
        return Ok(FeaturesSetting::Fixed(f));
    }
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !f.set(name.as_bytes(), true) {
            return Err(err("STS_FEATURES", v, format!("unknown feature {name:?}"), expected));
        }
    }
    Ok(FeaturesSetting::Fixed(f))
}

/// The DogStatsD listener (spec/dogstatsd.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DogStatsdConfig {
    pub enabled: bool,
    /// 0: no UDP.
    pub port: u16,
    pub non_local_traffic: bool,
    pub socket: Option<PathBuf>,
    pub origin_detection: bool,
    /// 0: the kernel's default.
    pub so_rcvbuf: usize,
    pub buffer_size: usize,
    pub max_contexts: usize,
    /// `STS_DOGSTATSD_TAGS`, comma-joined (the form origin tags take), empty when unset.
    pub extra_tags: String,
    /// `STS_BIND_HOST`: the UDP address unless non-local traffic is on.
    pub bind_host: std::net::IpAddr,
    /// `STS_DOGSTATSD_DROP_LOG_SECS` (for tests): the drop log's period.
    pub drop_log_secs: u64,
}

/// A rejected variable. `Display` is the one line printed before exiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    /// The offending value, already made safe to print (never the API key).
    pub shown_value: Option<String>,
    pub problem: String,
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.var)?;
        if let Some(v) = &self.shown_value {
            write!(f, "={v:?}")?;
        }
        write!(f, ": {}; expected {}", self.problem, self.expected)
    }
}

impl std::error::Error for ConfigError {}

/// Shows at most 80 characters of a rejected value.
fn shown(v: &str) -> Option<String> {
    let mut s: String = v.chars().take(80).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    Some(s)
}

fn err(var: &'static str, value: &str, problem: impl Into<String>, expected: &'static str) -> ConfigError {
    ConfigError { var, shown_value: shown(value), problem: problem.into(), expected }
}

/// A rejected URL, shown without what may be a credential: userinfo, query and fragment are
/// masked (`https://***@host:badport/`, `…?***`), and the API key, wherever it is, too.
fn url_err(
    var: &'static str,
    value: &str,
    api_key: Option<&str>,
    problem: impl Into<String>,
    expected: &'static str,
) -> ConfigError {
    let redacted = crate::url::redact(value.trim());
    let safe = match api_key {
        Some(k) => crate::log::scrub(&redacted, &crate::log::secret_forms(k.trim())),
        None => redacted,
    };
    ConfigError { var, shown_value: shown(&safe), problem: problem.into(), expected }
}

/// The longest Unix socket path (`sun_path` is 108 bytes with its terminating NUL).
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// `STS_DOGSTATSD_TAGS`, comma-joined, at most this long: they join every sample's context key
/// (refused past 2 KiB) and raw form (sorted each time past 1 KiB), so they must leave room.
pub const MAX_DOGSTATSD_TAGS_BYTES: usize = 512;

/// `STS_DOGSTATSD_TAGS` as the original reads list variables: a JSON array of strings, or else
/// tags separated by white space; returned comma-joined. A tag may not hold a comma (it would split
/// in two on the wire form) and is taken as is otherwise.
fn parse_tag_list(v: &str) -> Result<String, String> {
    let v = v.trim();
    let tags: Vec<String> = if v.starts_with('[') {
        let parsed: Vec<serde_json::Value> =
            serde_json::from_str(v).map_err(|e| format!("starts with [ but is not a JSON array ({e})"))?;
        parsed
            .into_iter()
            .map(|t| match t {
                serde_json::Value::String(s) => Ok(s),
                other => Err(format!("the JSON array holds {other}, not a string")),
            })
            .collect::<Result<_, _>>()?
    } else {
        v.split_whitespace().map(str::to_string).collect()
    };
    let mut out = String::new();
    for t in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if t.contains(',') {
            return Err(format!("the tag {t:?} holds a comma"));
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(t);
    }
    if out.len() > MAX_DOGSTATSD_TAGS_BYTES {
        return Err(format!(
            "the tags are {} bytes comma-joined, more than {MAX_DOGSTATSD_TAGS_BYTES} (they are added to every sample's context)",
            out.len()
        ));
    }
    Ok(out)
}

/// `STS_BIND_HOST`: `localhost` (127.0.0.1, as the original resolves it) or an IP literal, IPv6
/// with or without brackets. Other host names are refused rather than resolved at start.
fn parse_bind_host(v: &str) -> Option<std::net::IpAddr> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("localhost") {
        return Some(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let v = v.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(v);
    v.parse().ok()
}

/// The StackState process agent's default blacklist (stackstate-process-agent
/// `config/config_nix.go`, `defaultBlacklistPatterns`).
pub const DEFAULT_BLACKLIST: &[&str] = &[
    r"^/usr/bin/stress",
    r"^stress",
    r"^/usr/bin/yes",
    r"^yes\s.*$",
    r"^-bash",
    r"^-sh",
    r"^su\s.*$",
    r"^/lib/systemd/",
    r"^/usr/lib/systemd/",
    r"^pickup",
    r"^/sbin/",
    r"^/usr/sbin/.*",
    r"^/usr/sbin/sshd",
    r"^qmgr",
    r"^sshd:",
    r"^/usr/bin/vi(?:m|m.basic)?\s",
    r"^/usr/bin/tail",
    r"^\(sd-pam\)",
    r"^/compose-controller\s",
    r"^/api-server",
    r"^containerd-shim",
    r"^docker-container-shim",
    r"^docker-containerd",
    r"^docker-containerd-shim",
    r"^pause",
    r"^/pause",
    r"^/usr/lib/accountsservice/accounts-daemon",
    r"^/adapter",
    r"^/sbin/agetty",
    r"^/bin/alertmanager*",
    r"^/usr/bin/amazon-ssm-agent",
    r"^/usr/lib/at-spi2-core/at-spi-bus-launcher",
    r"^/usr/lib/at-spi2-core/at-spi2-registryd",
    r"^atlantis",
    r"^avahi-daemon.",
    r"^awk",
    r"^/app/aws-k8s-agent",
    r"^bash",
    r"^/bin/bash",
    r"^/usr/bin/bash",
    r"^sh",
    r"^/bin/sh",
    r"^/usr/bin/sh",
    r"^/bin/busybox",
    r"^/usr/lib/bluetooth/bluetoothd",
    r"^/app/cmd/cainjector/cainjector",
    r"^calico-node",
    r"^calico-typha",
    r"^/bin/chaoskube",
    r"^./cluster-autoscaler",
    r"^/usr/lib/colord/colord",
    r"^/configmap-reload",
    r"^/usr/bin/containerd",
    r"^/usr/local/bin/containerd",
    r"^./controller",
    r"^/coredns",
    r"^crond",
    r"^/usr/bin/dbus-daemon",
    r"^/usr/lib/dconf/dconf-service",
    r"^/sbin/dhclient",
    r"^/usr/bin/dockerd",
    r"^dotnet",
    r"^.*dumb-init",
    r"^/usr/bin/exporter",
    r"^external-dns",
    r"^/usr/lib/x86_64-linux-gnu/fwupd/fwupd",
    // Ours: the original lists Debian's x86_64 multiarch paths only; the same daemons on arm64.
    r"^/usr/lib/aarch64-linux-gnu/fwupd/fwupd",
    r"^/usr/bin/ghostunnel",
    r"^/usr/lib/gvfs/gvfsd-fuse",
    r"^/usr/lib/gvfs/gvfsd",
    r"^.*indicator-application/indicator-application-service",
    r"^.*indicator-bluetooth/indicator-bluetooth-service",
    r"^.*indicator-datetime/indicator-datetime-service",
    r"^.*indicator-keyboard/indicator-keyboard-service",
    r"^.*indicator-messages/indicator-messages-service",
    r"^.*indicator-power/indicator-power-service",
    r"^.*indicator-session/indicator-session-service",
    r"^.indicator-sound/indicator-sound-service",
    r"^/bin/IngressMonitorController",
    r"^/sbin/init",
    r"^lightdm",
    r"^/usr/bin/lsmd",
    r"^/sbin/lvmetad",
    r"^/usr/libexec/postfix/master",
    r"^nm-applet",
    r"^/usr/lib/x86_64-linux-gnu/notify-osd",
    r"^/usr/lib/aarch64-linux-gnu/notify-osd",
    r"^/bin/oauth2_proxy",
    r"^/usr/lib/policykit-1/polkitd",
    r"^/usr/bin/pulseaudio",
    r"^rescheduler",
    r"^/usr/lib/rtkit/rtkit-daemon",
    r"^ruby",
    r"^/usr/local/bin/ruby",
    r"^runsv",
    r"^/usr/bin/runsvdir",
    r"^/home/weave/runsvinit",
    r"^/bin/operator",
    r"^s6-",
    r"^sleep",
    r"^/lib/systemd",
    r"^tail",
    r"^/tiller",
    r"^/usr/bin/tini",
    r"^tini",
    r"^/usr/lib/udisks2/udisksd",
    r"^.*unity-settings-daemon",
    r"^/usr/bin/unpigz",
    r"^/usr/lib/upower/upowerd",
    r"^upstart",
    r"^/app/cmd/webhook/webhook",
    r"^/usr/bin/whoopsie",
    r"^/sbin/wpa_supplicant",
    r"^/usr/lib/xorg/Xorg",
    r"^/usr/lib/snapd/snapd",
    r"^(/usr(/local)?/bin/)?kubelet.*--config=.*/kubelet.conf",
    r"^/usr/local/bin/k3s",
];

const BOOL_FORM: &str = "true or false (also 1/0, yes/no, on/off)";

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads variables through `get` (tests pass a map). Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());

        // Only to keep it out of a rejected URL's echo (it is validated below).
        let raw_key = get("STS_API_KEY");
        let raw_key = raw_key.as_deref();
        let url = |var: &'static str| -> Result<Option<Url>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(v) => Url::parse(v.trim()).map(Some).map_err(|p| {
                    url_err(
                        var,
                        &v,
                        raw_key,
                        p,
                        "an absolute http:// or https:// URL such as https://stackstate.example.com:7077/stsAgent",
                    )
                }),
            }
        };
        let boolean = |var: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => parse_bool(&v).ok_or_else(|| err(var, &v, "not a boolean", BOOL_FORM)),
            }
        };
        let count = |var: &'static str| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(0),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| err(var, &v, "not a whole number", "a whole number ≥ 0, e.g. 5")),
            }
        };
        let seconds = |var: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match get(var) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(s @ 1..=86_400) => Ok(Duration::from_secs(s)),
                    _ => {
                        Err(err(var, &v, "not a number of seconds in range", "whole seconds from 1 to 86400, e.g. 15"))
                    }
                },
            }
        };

        let sts_url = url("STS_STS_URL")?;
        let process_agent_url = url("STS_PROCESS_AGENT_URL")?.or_else(|| sts_url.clone());
        let apm_url = url("STS_APM_URL")?.or_else(|| sts_url.clone());

        let api_key = match get("STS_API_KEY") {
            Some(k) if k.trim().chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(ConfigError {
                    var: "STS_API_KEY",
                    shown_value: None,
                    problem: "contains whitespace or control characters (value not shown)".into(),
                    expected: "the API key from the StackState UI, with no spaces",
                });
            }
            Some(k) => ApiKey(Some(k.trim().to_string())),
            None => ApiKey(None),
        };
        if !api_key.is_set() && (sts_url.is_some() || process_agent_url.is_some() || apm_url.is_some()) {
            return Err(ConfigError {
                var: "STS_API_KEY",
                shown_value: None,
                problem: "is not set, but a receiver URL is".into(),
                expected: "the API key from the StackState UI (or unset STS_STS_URL for a dry run)",
            });
        }

        let patterns: Vec<String> = match get("STS_PROCESS_BLACKLIST_PATTERNS") {
            None => DEFAULT_BLACKLIST.iter().map(|p| p.to_string()).collect(),
            Some(v) => {
                let mut out = Vec::new();
                for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    // Compiled one by one first, so the error names the pattern at fault.
                    Regex::new(p).map_err(|e| {
                        // The regex error is multi-line; keep its last line, which says what is wrong.
                        let why = e.to_string();
                        let why = why.lines().last().unwrap_or("does not compile").trim().to_string();
                        err(
                            "STS_PROCESS_BLACKLIST_PATTERNS",
                            &v,
                            format!("pattern {p:?} does not compile ({why})"),
                            "comma-separated regular expressions (RE2 syntax), e.g. ^/usr/bin/dockerd,^s6-",
                        )
                    })?;
                    out.push(p.to_string());
                }
                out
            }
        };
        let blacklist = RegexSet::new(&patterns).map_err(|e| {
            err(
                "STS_PROCESS_BLACKLIST_PATTERNS",
                "",
                format!("the patterns together are too large ({e})"),
                "fewer or simpler patterns",
            )
        })?;
        let short_lived_secs = match get("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS") {
            None => 60,
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                err(
                    "STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS",
                    &v,
                    "not a whole number",
                    "whole seconds ≥ 0 (0 disables), e.g. 60",
                )
            })?,
        };

        let relation_short_lived_secs = match get("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS") {
            None => 60,
            Some(_) => count("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS")?,
        };
        let max_connections = match get("STS_NETWORK_TRACER_MAX_CONNECTIONS") {
            None => 10_000,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n @ 1..=1_000_000) => n,
                _ => {
                    return Err(err(
                        "STS_NETWORK_TRACER_MAX_CONNECTIONS",
                        &v,
                        "not a whole number from 1 to 1000000",
                        "a connection count, e.g. 10000",
                    ))
                }
            },
        };
        let apm_port = match get("STS_APM_RECEIVER_PORT") {
            None => 8126,
            Some(v) => match v.trim().parse::<u16>() {
                Ok(p @ 1..=65535) => p,
                _ => {
                    return Err(err("STS_APM_RECEIVER_PORT", &v, "not a TCP port", "a port from 1 to 65535, e.g. 8126"))
                }
            },
        };
        let apm_max_payload = match get("STS_APM_MAX_PAYLOAD_SIZE") {
            None => 10 << 20,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n @ 1024..=104_857_600) => n,
                _ => {
                    return Err(err(
                        "STS_APM_MAX_PAYLOAD_SIZE",
                        &v,
                        "not a size from 1024 to 104857600 bytes",
                        "bytes, e.g. 10485760",
                    ))
                }
            },
        };
        let apm_max_connections = match get("STS_APM_MAX_CONNECTIONS") {
            None => 128,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n @ 1..=10_000) => n,
                _ => {
                    return Err(err("STS_APM_MAX_CONNECTIONS", &v, "not a count from 1 to 10000", "a count, e.g. 128"))
                }
            },
        };
        let apm_socket = get("STS_APM_RECEIVER_SOCKET").map(PathBuf::from);
        let otlp_http_port = match get("STS_OTLP_HTTP_PORT") {
            None => 4318,
            Some(v) => match v.trim().parse::<u16>() {
                Ok(p @ 1..=65535) if p != apm_port => p,
                _ => {
                    return Err(err(
                        "STS_OTLP_HTTP_PORT",
                        &v,
                        "not a TCP port other than the trace intake's",
                        "a port from 1 to 65535, e.g. 4318",
                    ))
                }
            },
        };
        let ranged = |var: &'static str, default: usize, lo: usize, hi: usize, expected: &'static str| match get(var) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(err(var, &v, format!("not a whole number from {lo} to {hi}"), expected)),
            },
        };
        let dogstatsd = DogStatsdConfig {
            enabled: boolean("STS_USE_DOGSTATSD", true)?,
            port: ranged("STS_DOGSTATSD_PORT", 8125, 0, 65535, "a UDP port, e.g. 8125 (0 closes UDP)")? as u16,
            non_local_traffic: boolean("STS_DOGSTATSD_NON_LOCAL_TRAFFIC", false)?,
            socket: match get("STS_DOGSTATSD_SOCKET") {
                // `sun_path` holds 108 bytes, its terminating NUL included: a longer path cannot
                // be bound (the kernel would refuse it at start, or a shorter one be cut).
                Some(v) if v.len() > MAX_UNIX_SOCKET_PATH => {
                    return Err(err(
                        "STS_DOGSTATSD_SOCKET",
                        &v,
                        format!("the path is {} bytes, more than {MAX_UNIX_SOCKET_PATH}", v.len()),
                        "a Unix socket path of at most 107 bytes, e.g. /var/run/sts/dsd.socket",
                    ))
                }
                v => v.map(PathBuf::from),
            },
            origin_detection: boolean("STS_DOGSTATSD_ORIGIN_DETECTION", false)?,
            so_rcvbuf: ranged("STS_DOGSTATSD_SO_RCVBUF", 4 << 20, 0, 1 << 29, "bytes, e.g. 8388608 (0: kernel's)")?,
            buffer_size: ranged("STS_DOGSTATSD_BUFFER_SIZE", 8192, 512, 65536, "bytes, e.g. 8192")?,
            max_contexts: ranged("STS_DOGSTATSD_MAX_CONTEXTS", 4096, 1, 10_000_000, "a count, e.g. 4096")?,
            extra_tags: match get("STS_DOGSTATSD_TAGS") {
                None => String::new(),
                Some(v) => parse_tag_list(&v).map_err(|problem| {
                    err(
                        "STS_DOGSTATSD_TAGS",
                        &v,
                        problem,
                        "space-separated tags (env:prod team:a) or a JSON array of strings ([\"env:prod\",\"team:a\"]), 512 bytes at most",
                    )
                })?,
            },
            bind_host: match get("STS_BIND_HOST") {
                None => std::net::IpAddr::from([127, 0, 0, 1]),
                Some(v) => parse_bind_host(&v).ok_or_else(|| {
                    err(
                        "STS_BIND_HOST",
                        &v,
                        "not localhost nor an IP address",
                        "localhost, or an IP address such as 127.0.0.1 or ::1",
                    )
                })?,
            },
            drop_log_secs: ranged("STS_DOGSTATSD_DROP_LOG_SECS", 60, 1, 3600, "seconds, e.g. 60")? as u64,
        };
        let outbox_budget = match get("STS_FORWARDER_RETRY_QUEUE_MAX_SIZE") {
            None => 8 << 20,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n @ 16_384..=1_073_741_824) => n,
                _ => {
                    return Err(err(
                        "STS_FORWARDER_RETRY_QUEUE_MAX_SIZE",
                        &v,
                        "not a size from 16384 to 1073741824 bytes",
                        "bytes, e.g. 8388608",
                    ))
                }
            },
        };
        let top = |var| count(var).map(|v| v.min(u64::from(u32::MAX)) as u32);
        let inclusions = Inclusions {
            top_cpu: top("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU")?,
            top_io_read: top("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_READ")?,
            top_io_write: top("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_WRITE")?,
            top_mem: top("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM")?,
            cpu_threshold: count("STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD")?,
            mem_threshold: count("STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD")?,
        };

        let process_agent = match get("STS_PROCESS_AGENT_ENABLED") {
            None => ProcessAgentMode::Enabled,
            Some(v) if v.trim().eq_ignore_ascii_case("disabled") => ProcessAgentMode::Disabled,
            Some(v) => match parse_bool(&v) {
                Some(true) => ProcessAgentMode::Enabled,
                Some(false) => ProcessAgentMode::ContainersOnly,
                None => {
                    return Err(err(
                        "STS_PROCESS_AGENT_ENABLED",
                        &v,
                        "not a known mode",
                        "true, false (containers only) or disabled",
                    ))
                }
            },
        };

        let hostname = match get("STS_HOSTNAME") {
            None => None,
            Some(v) => {
                let h = v.trim();
                let ok = h.len() <= 255
                    && h.split('.').all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'))
                    && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
                if !ok {
                    return Err(err(
                        "STS_HOSTNAME",
                        &v,
                        "not a valid host name",
                        "an RFC 1123 host name such as i-0123456789abcdef0 or web-1.example.com",
                    ));
                }
                Some(h.to_string())
            }
        };

        let dir = |var: &'static str, default: &str| -> Result<PathBuf, ConfigError> {
            let v = get(var).unwrap_or_else(|| default.to_string());
            let p = PathBuf::from(v.trim());
            if p.is_dir() {
                Ok(p)
            } else {
                Err(err(
                    var,
                    &v,
                    "is not a directory",
                    "the path where the host's filesystem is mounted, e.g. /host/proc",
                ))
            }
        };
        let host_proc = dir("HOST_PROC", "/proc")?;
        let host_sys = dir("HOST_SYS", "/sys")?;

        let log_level = match get("STS_LOG_LEVEL") {
            None => Some(Level::Info),
            Some(v) => Level::parse(v.trim())
                .ok_or_else(|| err("STS_LOG_LEVEL", &v, "not a log level", "off, error, warn, info, debug or trace"))?,
        };

        let ec2_metadata_url = match get("STS_EC2_METADATA_URL") {
            None => Url::parse("http://169.254.169.254").expect("literal URL parses"),
            Some(v) => match Url::parse(v.trim()) {
                Ok(u) if u.scheme == crate::url::Scheme::Http => u,
                Ok(_) => {
                    return Err(url_err(
                        "STS_EC2_METADATA_URL",
                        &v,
                        raw_key,
                        "https is not supported by the metadata service",
                        "an http:// URL such as http://169.254.169.254",
                    ))
                }
                Err(p) => {
                    return Err(url_err(
                        "STS_EC2_METADATA_URL",
                        &v,
                        raw_key,
                        p,
                        "an http:// URL such as http://169.254.169.254",
                    ))
                }
            },
        };

        let docker_socket = match get("DOCKER_HOST") {
            None => PathBuf::from("/var/run/docker.sock"),
            Some(v) => match v.trim().strip_prefix("unix://") {
                Some(p) if p.starts_with('/') => PathBuf::from(p),
                _ => {
                    return Err(url_err(
                        "DOCKER_HOST",
                        &v,
                        raw_key,
                        "only a Unix socket is supported",
                        "unix:///path/to/docker.sock, e.g. unix:///var/run/docker.sock",
                    ))
                }
            },
        };

        let ecs_agent_url = match get("STS_ECS_AGENT_URL") {
            None => Url::parse("http://localhost:51678").expect("literal URL parses"),
            Some(v) => match Url::parse(v.trim()) {
                Ok(u) if u.scheme == crate::url::Scheme::Http => u,
                Ok(_) => {
                    return Err(url_err(
                        "STS_ECS_AGENT_URL",
                        &v,
                        raw_key,
                        "the ECS agent speaks plain http",
                        "an http:// URL such as http://localhost:51678",
                    ))
                }
                Err(p) => {
                    return Err(url_err(
                        "STS_ECS_AGENT_URL",
                        &v,
                        raw_key,
                        p,
                        "an http:// URL such as http://localhost:51678",
                    ))
                }
            },
        };

        Ok(Config {
            ecs_agent_url,
            docker_socket,
            api_key,
            sts_url,
            process_agent_url,
            apm_url,
            skip_ssl_validation: boolean("STS_SKIP_SSL_VALIDATION", false)?,
            blacklist,
            short_lived_secs,
            inclusions,
            process_agent,
            apm_enabled: boolean("STS_APM_ENABLED", true)?,
            apm_port,
            apm_non_local_traffic: boolean("STS_APM_NON_LOCAL_TRAFFIC", false)?,
            apm_socket,
            apm_max_payload,
            apm_max_connections,
            otlp_enabled: boolean("STS_OTLP_ENABLED", false)?,
            otlp_http_port,
            dogstatsd,
            network_tracing_enabled: boolean("STS_NETWORK_TRACING_ENABLED", true)?,
            protocol_inspection_enabled: boolean("STS_PROTOCOL_INSPECTION_ENABLED", true)?,
            relation_short_lived_secs,
            max_connections,
            outbox_budget,
            hostname,
            host_proc,
            host_sys,
            log_level,
            host_check_interval: seconds("STS_HOST_CHECK_INTERVAL", 15)?,
            process_check_interval: seconds("STS_PROCESS_CHECK_INTERVAL", 30)?,
            process_hold_files: match get("STS_PROCESS_HOLD_FILES") {
                None => crate::sources::process::HoldFiles::Stat,
                Some(v) => crate::sources::process::HoldFiles::parse(&v).ok_or_else(|| {
                    err(
                        "STS_PROCESS_HOLD_FILES",
                        &v,
                        "not a known set of files",
                        crate::sources::process::HoldFiles::FORMS,
                    )
                })?,
            },
            process_held_files_max_kib: match get("STS_PROCESS_HELD_FILES_MAX_KIB") {
                None => crate::sources::process::HELD_FILES_MAX_KIB,
                Some(v) => v.trim().parse::<u64>().map_err(|_| {
                    err("STS_PROCESS_HELD_FILES_MAX_KIB", &v, "not a whole number", "whole KiB ≥ 0, e.g. 2048")
                })?,
            },
            process_skip_idle: boolean("STS_PROCESS_SKIP_IDLE", true)?,
            connection_check_interval: seconds("STS_CONNECTION_CHECK_INTERVAL", 30)?,
            docker_check_interval: seconds("STS_DOCKER_CHECK_INTERVAL", 40)?,
            docker_events_enabled: boolean("STS_DOCKER_EVENTS_ENABLED", true)?,
            features: get("STS_FEATURES").map_or(Ok(FeaturesSetting::Discover), |v| parse_features(&v))?,
            report_check_health_state: boolean("STS_REPORT_CHECK_HEALTH_STATE", true)?,
            ec2_metadata_url,
            health_port: match ranged("STS_HEALTH_PORT", 0, 0, 65535, "a TCP port, e.g. 5555 (0: off)")? as u16 {
                0 => None,
                p => Some(p),
            },
            health_retry_horizon: seconds("STS_HEALTH_RETRY_HORIZON", 300)?,
        })
    }
}

/// The `--help` text: usage, flags, and every variable with its default and meaning.
pub fn help_text() -> String {
    let mut s = String::from(
        "sts-agent: reports this host's topology and telemetry to StackState.\n\n\
         USAGE: sts-agent [--once] [--dry-run] [--help] [--version]\n       sts-agent status [--json]   (print the running agent's status report)\n       sts-agent health   (PASS/FAIL per component; exit 0 when the running agent is healthy)\n\n\
         FLAGS:\n  --once      run each enabled check once (twice where a rate needs two samples), send or print, exit\n  \
         --dry-run   print every payload as one JSON line {\"endpoint\":…,\"payload\":…} instead of sending (also when STS_STS_URL is unset)\n  \
         --help      this text\n  --version   the version\n\nENVIRONMENT (default in brackets):\n",
    );
    for v in VARS {
        s.push_str(&format!("  {:<48} [{}]\n      {}\n", v.name, v.default, v.meaning));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn features_setting_auto_none_lists_and_errors() {
        use crate::parse::features::Features;
        assert_eq!(cfg(&[]).unwrap().features, FeaturesSetting::Discover);
        assert_eq!(cfg(&[("STS_FEATURES", "AUTO")]).unwrap().features, FeaturesSetting::Discover);
        assert_eq!(cfg(&[("STS_FEATURES", "none")]).unwrap().features, FeaturesSetting::Fixed(Features::default()));
        let f = Features { multi_metrics: true, health_states: true, ..Default::default() };
        let got = cfg(&[("STS_FEATURES", " upgrade-to-multi-metrics , health-states,")]).unwrap().features;
        assert_eq!(got, FeaturesSetting::Fixed(f));
        let e = cfg(&[("STS_FEATURES", "health-states,bogus")]).unwrap_err();
        assert_eq!(e.var, "STS_FEATURES");
        assert!(e.problem.contains("bogus") && e.expected.contains("incremental-topology"), "{e}");
    }

    #[test]
    fn dogstatsd_defaults_and_errors() {
        let d = cfg(&[]).unwrap().dogstatsd;
        assert_eq!(
            d,
            DogStatsdConfig {
                enabled: true,
                port: 8125,
                non_local_traffic: false,
                socket: None,
                origin_detection: false,
                so_rcvbuf: 4 << 20,
                buffer_size: 8192,
                max_contexts: 4096,
                extra_tags: String::new(),
                bind_host: std::net::IpAddr::from([127, 0, 0, 1]),
                drop_log_secs: 60,
            }
        );
        let d = cfg(&[
            ("STS_DOGSTATSD_PORT", "0"),
            ("STS_DOGSTATSD_NON_LOCAL_TRAFFIC", "true"),
            ("STS_DOGSTATSD_SOCKET", "/var/run/sts/dsd.socket"),
            ("STS_DOGSTATSD_SO_RCVBUF", "26214400"),
        ])
        .unwrap()
        .dogstatsd;
        assert_eq!((d.port, d.non_local_traffic, d.so_rcvbuf), (0, true, 26_214_400));
        assert_eq!(cfg(&[("STS_DOGSTATSD_SO_RCVBUF", "536870912")]).unwrap().dogstatsd.so_rcvbuf, 1 << 29);
        assert_eq!(d.socket.as_deref(), Some(std::path::Path::new("/var/run/sts/dsd.socket")));
        // 107 bytes fit `sun_path` with its NUL; 108 do not.
        let path = |n: usize| format!("/tmp/{}", "s".repeat(n - 5));
        let ok = cfg(&[("STS_DOGSTATSD_SOCKET", &path(107))]).unwrap().dogstatsd.socket.unwrap();
        assert_eq!(ok.as_os_str().len(), 107);
        let long_path = path(108);
        let e = cfg(&[("STS_DOGSTATSD_SOCKET", &long_path)]).unwrap_err();
        assert!(e.to_string().contains("108 bytes") && e.expected.contains("107"), "{e}");
        for (var, v) in [
            ("STS_DOGSTATSD_PORT", "70000"),
            ("STS_DOGSTATSD_BUFFER_SIZE", "100"),
            ("STS_USE_DOGSTATSD", "maybe"),
            ("STS_DOGSTATSD_MAX_CONTEXTS", "0"),
            ("STS_DOGSTATSD_TAGS", "[\"env:prod\""),
            ("STS_DOGSTATSD_TAGS", "[\"env:prod\", 3]"),
            ("STS_DOGSTATSD_TAGS", "env:prod a,b"),
            ("STS_BIND_HOST", "my-host.example"),
            ("STS_BIND_HOST", "127.0.0.1:8125"),
            ("STS_DOGSTATSD_DROP_LOG_SECS", "0"),
            // Past 2^29 the kernel's doubling would pass INT_MAX and clamp it.
            ("STS_DOGSTATSD_SO_RCVBUF", "536870913"),
            ("STS_DOGSTATSD_SOCKET", long_path.as_str()),
        ] {
            let e = cfg(&[(var, v)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    /// `STS_PROCESS_HOLD_FILES`: `stat` by default, the three forms in any case; `true`/`false`
    /// (the form before the kernel-memory budget) and anything else are refused, naming the forms.
    #[test]
    fn process_held_files_forms_and_errors() {
        use crate::sources::process::{HoldFiles, HELD_FILES_MAX_KIB};
        let c = cfg(&[]).unwrap();
        assert_eq!((c.process_hold_files, c.process_held_files_max_kib), (HoldFiles::Stat, HELD_FILES_MAX_KIB));
        for (v, want) in [("stat", HoldFiles::Stat), ("ALL", HoldFiles::All), (" none ", HoldFiles::None)] {
            assert_eq!(cfg(&[("STS_PROCESS_HOLD_FILES", v)]).unwrap().process_hold_files, want, "{v}");
        }
        assert_eq!(cfg(&[("STS_PROCESS_HELD_FILES_MAX_KIB", "0")]).unwrap().process_held_files_max_kib, 0);
        assert!(c.process_skip_idle);
        assert!(!cfg(&[("STS_PROCESS_SKIP_IDLE", "false")]).unwrap().process_skip_idle);
        let e = cfg(&[("STS_PROCESS_SKIP_IDLE", "sometimes")]).unwrap_err().to_string();
        assert!(e.contains("STS_PROCESS_SKIP_IDLE"), "{e}");
        for (var, v) in [
            ("STS_PROCESS_HOLD_FILES", "true"),
            ("STS_PROCESS_HOLD_FILES", "statm"),
            ("STS_PROCESS_HELD_FILES_MAX_KIB", "2 MiB"),
            ("STS_PROCESS_HELD_FILES_MAX_KIB", "-1"),
        ] {
            let e = cfg(&[(var, v)]).unwrap_err();
            assert_eq!(e.var, var);
            let shown = e.to_string();
            assert!(
                shown.contains(var) && shown.contains(if var.ends_with("KIB") { "KiB" } else { "stat" }),
                "{shown}"
            );
        }
    }

    #[test]
    fn dogstatsd_tags_and_bind_host_forms() {
        let tags = |v: &str| cfg(&[("STS_DOGSTATSD_TAGS", v)]).unwrap().dogstatsd.extra_tags;
        assert_eq!(tags(" env:prod \tteam:a  "), "env:prod,team:a");
        assert_eq!(tags(r#"["env:prod", "team:a b", ""]"#), "env:prod,team:a b");
        assert_eq!(tags("[]"), "");
        let e = cfg(&[("STS_DOGSTATSD_TAGS", "[env:prod]")]).unwrap_err().to_string();
        assert!(e.contains("not a JSON array") && e.contains("expected space-separated tags"), "{e}");
        // 512 bytes comma-joined pass, one more is refused with the variable named.
        let at_limit = ["t".repeat(255), "u".repeat(256)].join(" ");
        assert_eq!(tags(&at_limit).len(), MAX_DOGSTATSD_TAGS_BYTES);
        let e = cfg(&[("STS_DOGSTATSD_TAGS", &format!("{at_limit}u"))]).unwrap_err();
        assert_eq!(e.var, "STS_DOGSTATSD_TAGS");
        assert!(e.to_string().contains("more than 512"), "{e}");
        let host = |v: &str| cfg(&[("STS_BIND_HOST", v)]).unwrap().dogstatsd.bind_host.to_string();
        assert_eq!(host("localhost"), "127.0.0.1");
        assert_eq!(host("::1"), "::1");
        assert_eq!(host("[::1]"), "::1");
        assert_eq!(host("0.0.0.0"), "0.0.0.0");
        assert_eq!(host(" 10.0.0.5 "), "10.0.0.5");
    }

    #[test]
    fn defaults_are_a_dry_run() {
        let c = cfg(&[]).unwrap();
        assert!(c.sts_url.is_none() && c.apm_url.is_none());
        assert_eq!(c.host_check_interval, Duration::from_secs(15));
        assert_eq!(c.process_check_interval, Duration::from_secs(30));
        assert_eq!(c.docker_check_interval, Duration::from_secs(40));
        assert_eq!(c.blacklist.len(), DEFAULT_BLACKLIST.len());
        assert_eq!(c.process_agent, ProcessAgentMode::Enabled);
        assert!(c.apm_enabled && c.network_tracing_enabled && !c.skip_ssl_validation);
        assert_eq!((c.relation_short_lived_secs, c.max_connections), (60, 10_000));
        let c = cfg(&[("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")]).unwrap();
        assert_eq!(c.relation_short_lived_secs, 0);
    }

    #[test]
    fn urls_fall_back_to_sts_url() {
        let c = cfg(&[("STS_STS_URL", "https://h:7077/stsAgent"), ("STS_API_KEY", "k")]).unwrap();
        assert_eq!(c.process_agent_url, c.sts_url);
        assert_eq!(c.apm_url, c.sts_url);
    }

    #[test]
    fn each_bad_value_names_its_variable_and_form() {
        let cases: &[(&str, &str, &str)] = &[
            ("STS_STS_URL", "localhost:7077", "http"),
            ("STS_SKIP_SSL_VALIDATION", "maybe", "true or false"),
            ("STS_PROCESS_BLACKLIST_PATTERNS", "^ok,(unclosed", "regular expressions"),
            ("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU", "-3", "whole number"),
            ("STS_PROCESS_AGENT_ENABLED", "sometimes", "disabled"),
            ("STS_HOST_CHECK_INTERVAL", "0", "seconds"),
            ("STS_LOG_LEVEL", "loud", "debug"),
            ("STS_APM_RECEIVER_PORT", "80000", "port"),
            ("STS_APM_NON_LOCAL_TRAFFIC", "yes please", "true or false"),
            ("STS_APM_MAX_PAYLOAD_SIZE", "10MB", "bytes"),
            ("STS_OTLP_ENABLED", "perhaps", "true or false"),
            ("STS_OTLP_HTTP_PORT", "4318/tcp", "port"),
            ("STS_OTLP_HTTP_PORT", "8126", "other than the trace intake's"),
            ("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", "soon", "whole number"),
            ("STS_NETWORK_TRACER_MAX_CONNECTIONS", "0", "connection count"),
            ("STS_HOSTNAME", "bad host", "RFC 1123"),
            ("HOST_PROC", "/nonexistent-proc", "mounted"),
        ];
        for (var, val, form) in cases {
            let e = cfg(&[(var, val)]).unwrap_err();
            assert_eq!(e.var, *var);
            let line = e.to_string();
            assert!(line.contains(var) && line.contains(form) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn api_key_is_never_shown() {
        let e = cfg(&[("STS_STS_URL", "https://h"), ("STS_API_KEY", "sec ret")]).unwrap_err();
        assert!(!e.to_string().contains("sec"));
        let c = cfg(&[("STS_STS_URL", "https://h"), ("STS_API_KEY", "topsecret")]).unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
        assert_eq!(c.api_key.expose(), "topsecret");
        assert_eq!(cfg(&[("STS_STS_URL", "https://h")]).unwrap_err().var, "STS_API_KEY");
    }

    #[test]
    fn help_lists_every_variable() {
        let h = help_text();
        for v in VARS {
            assert!(h.contains(v.name));
        }
        for name in ["STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD", "STS_NETWORK_TRACING_ENABLED", "STS_APM_URL"] {
            assert!(h.contains(name));
        }
    }
}
