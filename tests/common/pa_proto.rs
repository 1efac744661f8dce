//! Independent decoders for the process agent's messages: prost structs written from the field
//! tables of spec/protocol.md §4 (and the process agent's agent.proto), plus a pure-Rust zstd
//! decoder that shares no code with the encoder's libzstd.
#![allow(dead_code)]

use prost::Message;
use std::io::Read;

#[derive(Clone, PartialEq, Message)]
pub struct CollectorProc {
    #[prost(string, tag = "2")]
    pub host_name: String,
    #[prost(message, repeated, tag = "3")]
    pub processes: Vec<Process>,
    #[prost(message, optional, tag = "5")]
    pub info: Option<SystemInfo>,
    #[prost(int32, tag = "6")]
    pub group_id: i32,
    #[prost(int32, tag = "7")]
    pub group_size: i32,
    #[prost(message, repeated, tag = "10")]
    pub containers: Vec<Container>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Container {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(float, tag = "5")]
    pub cpu_limit: f32,
    #[prost(uint64, tag = "6")]
    pub memory_limit: u64,
    #[prost(int32, tag = "8")]
    pub state: i32,
    #[prost(int32, tag = "9")]
    pub health: i32,
    #[prost(int64, tag = "10")]
    pub created: i64,
    /// Rate fields 11–22 (13 is `key`): filled only without `upgrade-to-multi-metrics`.
    #[prost(float, tag = "11")]
    pub rbps: f32,
    #[prost(float, tag = "12")]
    pub wbps: f32,
    #[prost(float, tag = "14")]
    pub net_rcvd_ps: f32,
    #[prost(float, tag = "15")]
    pub net_sent_ps: f32,
    #[prost(float, tag = "16")]
    pub net_rcvd_bps: f32,
    #[prost(float, tag = "17")]
    pub net_sent_bps: f32,
    #[prost(float, tag = "18")]
    pub user_pct: f32,
    #[prost(float, tag = "19")]
    pub system_pct: f32,
    #[prost(float, tag = "20")]
    pub total_pct: f32,
    #[prost(uint64, tag = "21")]
    pub mem_rss: u64,
    #[prost(uint64, tag = "22")]
    pub mem_cache: u64,
    #[prost(int64, tag = "24")]
    pub started: i64,
    #[prost(string, repeated, tag = "26")]
    pub tags: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Process {
    #[prost(uint32, tag = "1")]
    pub key: u32,
    #[prost(int32, tag = "2")]
    pub pid: i32,
    #[prost(message, optional, tag = "4")]
    pub command: Option<Command>,
    #[prost(message, optional, tag = "5")]
    pub user: Option<ProcessUser>,
    #[prost(message, optional, tag = "7")]
    pub memory: Option<MemoryStat>,
    #[prost(message, optional, tag = "8")]
    pub cpu: Option<CpuStat>,
    #[prost(int64, tag = "9")]
    pub create_time: i64,
    #[prost(int32, tag = "11")]
    pub open_fd_count: i32,
    #[prost(int32, tag = "12")]
    pub state: i32,
    #[prost(message, optional, tag = "13")]
    pub io_stat: Option<IoStat>,
    #[prost(string, tag = "14")]
    pub container_id: String,
    #[prost(uint64, tag = "16")]
    pub voluntary_ctx_switches: u64,
    #[prost(uint64, tag = "17")]
    pub involuntary_ctx_switches: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Command {
    #[prost(string, repeated, tag = "1")]
    pub args: Vec<String>,
    #[prost(string, tag = "3")]
    pub cwd: String,
    #[prost(string, tag = "4")]
    pub root: String,
    #[prost(bool, tag = "5")]
    pub on_disk: bool,
    #[prost(int32, tag = "6")]
    pub ppid: i32,
    #[prost(string, tag = "8")]
    pub exe: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProcessUser {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "2")]
    pub uid: i32,
    #[prost(int32, tag = "3")]
    pub gid: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct MemoryStat {
    #[prost(uint64, tag = "1")]
    pub rss: u64,
    #[prost(uint64, tag = "2")]
    pub vms: u64,
    #[prost(uint64, tag = "3")]
    pub swap: u64,
    #[prost(uint64, tag = "4")]
    pub shared: u64,
    #[prost(uint64, tag = "5")]
    pub text: u64,
    #[prost(uint64, tag = "7")]
    pub data: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct CpuStat {
    #[prost(string, tag = "1")]
    pub last_cpu: String,
    #[prost(float, tag = "2")]
    pub total_pct: f32,
    #[prost(float, tag = "3")]
    pub user_pct: f32,
    #[prost(float, tag = "4")]
    pub system_pct: f32,
    #[prost(int32, tag = "5")]
    pub num_threads: i32,
    #[prost(int32, tag = "7")]
    pub nice: i32,
    #[prost(int64, tag = "8")]
    pub user_time: i64,
    #[prost(int64, tag = "9")]
    pub system_time: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct IoStat {
    #[prost(float, tag = "1")]
    pub read_rate: f32,
    #[prost(float, tag = "2")]
    pub write_rate: f32,
    #[prost(float, tag = "3")]
    pub read_bytes_rate: f32,
    #[prost(float, tag = "4")]
    pub write_bytes_rate: f32,
}

#[derive(Clone, PartialEq, Message)]
pub struct SystemInfo {
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(message, optional, tag = "2")]
    pub os: Option<OsInfo>,
    #[prost(message, repeated, tag = "3")]
    pub cpus: Vec<CpuInfo>,
    #[prost(int64, tag = "5")]
    pub total_memory: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct OsInfo {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub platform: String,
    #[prost(string, tag = "3")]
    pub family: String,
    #[prost(string, tag = "4")]
    pub version: String,
    #[prost(string, tag = "5")]
    pub kernel_version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct CpuInfo {
    #[prost(int32, tag = "1")]
    pub number: i32,
    #[prost(string, tag = "2")]
    pub vendor: String,
    #[prost(int32, tag = "7")]
    pub cores: i32,
    #[prost(int64, tag = "8")]
    pub mhz: i64,
}

/// The 16-byte header, big-endian: (version, encoding, type, subscription, org, timestamp ms).
pub fn header(body: &[u8]) -> (u8, u8, u8, u8, i32, i64) {
    assert!(body.len() >= 16, "body shorter than the header");
    (
        body[0],
        body[1],
        body[2],
        body[3],
        i32::from_be_bytes(body[4..8].try_into().unwrap()),
        i64::from_be_bytes(body[8..16].try_into().unwrap()),
    )
}

/// The protobuf after the header, decompressed with ruzstd.
pub fn unzstd(body: &[u8]) -> Vec<u8> {
    let mut dec = ruzstd::streaming_decoder::StreamingDecoder::new(&body[16..]).expect("zstd frame");
    let mut out = Vec::new();
    dec.read_to_end(&mut out).expect("zstd data");
    out
}

pub fn collector_proc(body: &[u8]) -> CollectorProc {
    CollectorProc::decode(&unzstd(body)[..]).expect("CollectorProc")
}

/// `CollectorCommands` (type 13), spec/protocol.md §4.2.
#[derive(Clone, PartialEq, Message)]
pub struct CollectorCommands {
    #[prost(string, tag = "2")]
    pub host_name: String,
    #[prost(message, repeated, tag = "3")]
    pub commands: Vec<CollectorCommand>,
    #[prost(int32, tag = "6")]
    pub group_id: i32,
    #[prost(int32, tag = "7")]
    pub group_size: i32,
}

/// A oneof in agent.proto; as optional fields here, exactly one of which is set.
#[derive(Clone, PartialEq, Message)]
pub struct CollectorCommand {
    #[prost(message, optional, tag = "1")]
    pub update_process: Option<Process>,
    #[prost(message, optional, tag = "2")]
    pub update_process_metrics: Option<Process>,
    #[prost(message, optional, tag = "3")]
    pub delete_process: Option<Process>,
    #[prost(message, optional, tag = "10")]
    pub update_container: Option<Container>,
    #[prost(message, optional, tag = "11")]
    pub update_container_metrics: Option<Container>,
    #[prost(message, optional, tag = "12")]
    pub delete_container: Option<Container>,
}

pub fn collector_commands(body: &[u8]) -> CollectorCommands {
    CollectorCommands::decode(&unzstd(body)[..]).expect("CollectorCommands")
}

/// `CollectorConnections` (type 22), spec/protocol.md §4.3.
#[derive(Clone, PartialEq, Message)]
pub struct CollectorConnections {
    #[prost(string, tag = "2")]
    pub host_name: String,
    #[prost(message, repeated, tag = "3")]
    pub connections: Vec<Connection>,
    #[prost(int32, tag = "5")]
    pub group_id: i32,
    #[prost(int32, tag = "6")]
    pub group_size: i32,
    #[prost(string, tag = "7")]
    pub cluster_name: String,
    #[prost(int32, tag = "8")]
    pub collection_interval: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Connection {
    #[prost(int32, tag = "1")]
    pub pid: i32,
    #[prost(message, optional, tag = "5")]
    pub laddr: Option<Addr>,
    #[prost(message, optional, tag = "6")]
    pub raddr: Option<Addr>,
    #[prost(float, tag = "8")]
    pub bytes_sent_per_second: f32,
    #[prost(float, tag = "9")]
    pub bytes_received_per_second: f32,
    /// v4 = 0, v6 = 1
    #[prost(int32, tag = "10")]
    pub family: i32,
    /// tcp = 0, udp = 1
    #[prost(int32, tag = "11")]
    pub r#type: i32,
    #[prost(int64, tag = "12")]
    pub pid_create_time: i64,
    #[prost(string, tag = "50")]
    pub namespace: String,
    /// none = 0, outgoing = 1, incoming = 2
    #[prost(int32, tag = "51")]
    pub direction: i32,
    #[prost(string, tag = "52")]
    pub connection_identifier: String,
    #[prost(string, tag = "53")]
    pub application_protocol: String,
    #[prost(message, repeated, tag = "54")]
    pub metrics: Vec<ConnectionMetric>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Addr {
    #[prost(string, tag = "2")]
    pub ip: String,
    #[prost(int32, tag = "3")]
    pub port: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ConnectionMetric {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(map = "string, string", tag = "2")]
    pub tags: std::collections::HashMap<String, String>,
    #[prost(message, optional, tag = "3")]
    pub value: Option<ConnectionMetricValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ConnectionMetricValue {
    #[prost(oneof = "MetricValue", tags = "1, 2")]
    pub value: Option<MetricValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MetricValue {
    #[prost(message, tag = "1")]
    Histogram(DdSketch),
    #[prost(double, tag = "2")]
    Number(f64),
}

impl Connection {
    /// A metric's number, when present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.name == name).and_then(|m| match m.value.as_ref()?.value.as_ref()? {
            MetricValue::Number(n) => Some(*n),
            MetricValue::Histogram(_) => None,
        })
    }
}

/// `DDSketch`, the top-level message of sketches-go's `ddsketch.proto` (spec http-inspection §2.1).
#[derive(Clone, PartialEq, Message)]
pub struct DdSketch {
    #[prost(message, optional, tag = "1")]
    pub mapping: Option<IndexMapping>,
    #[prost(message, optional, tag = "2")]
    pub positive_values: Option<Store>,
    #[prost(message, optional, tag = "3")]
    pub negative_values: Option<Store>,
    #[prost(double, tag = "4")]
    pub zero_count: f64,
}

#[derive(Clone, PartialEq, Message)]
pub struct IndexMapping {
    #[prost(double, tag = "1")]
    pub gamma: f64,
    #[prost(double, tag = "2")]
    pub index_offset: f64,
    /// NONE = 0, LINEAR = 1, QUADRATIC = 2, CUBIC = 3
    #[prost(int32, tag = "3")]
    pub interpolation: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Store {
    #[prost(map = "sint32, double", tag = "1")]
    pub bin_counts: std::collections::HashMap<i32, f64>,
    #[prost(double, repeated, tag = "2")]
    pub contiguous_bin_counts: Vec<f64>,
    #[prost(sint32, tag = "3")]
    pub contiguous_bin_index_offset: i32,
}

impl DdSketch {
    /// The non-zero positive bins as (index, count), from either encoding.
    pub fn positive_bins(&self) -> Vec<(i32, f64)> {
        let Some(s) = &self.positive_values else { return Vec::new() };
        let mut out: Vec<(i32, f64)> = s.bin_counts.iter().map(|(&i, &c)| (i, c)).collect();
        for (k, &c) in s.contiguous_bin_counts.iter().enumerate() {
            out.push((s.contiguous_bin_index_offset + k as i32, c));
        }
        out.retain(|&(_, c)| c != 0.0);
        out.sort_by_key(|&(i, _)| i);
        out
    }

    pub fn count(&self) -> f64 {
        let store = |s: &Option<Store>| {
            s.as_ref().map_or(0.0, |s| s.bin_counts.values().sum::<f64>() + s.contiguous_bin_counts.iter().sum::<f64>())
        };
        self.zero_count + store(&self.positive_values) + store(&self.negative_values)
    }

    /// A bin's value as a reader of the proto computes it (sketches-go `FromProto` →
    /// `NewLogarithmicMappingWithGamma`): multiplier 1/ln(γ), relative accuracy 1 − 2/(1+γ).
    pub fn value(&self, index: i32) -> f64 {
        let m = self.mapping.as_ref().expect("mapping");
        let accuracy = 1.0 - 2.0 / (1.0 + m.gamma);
        ((f64::from(index) - m.index_offset) * m.gamma.ln()).exp() * (1.0 + accuracy)
    }
}

impl ConnectionMetric {
    pub fn code(&self) -> &str {
        self.tags.get("code").map_or("", String::as_str)
    }

    pub fn sketch(&self) -> Option<&DdSketch> {
        match self.value.as_ref()?.value.as_ref()? {
            MetricValue::Histogram(h) => Some(h),
            MetricValue::Number(_) => None,
        }
    }

    pub fn number(&self) -> Option<f64> {
        match self.value.as_ref()?.value.as_ref()? {
            MetricValue::Number(n) => Some(*n),
            MetricValue::Histogram(_) => None,
        }
    }
}

pub fn collector_connections(body: &[u8]) -> CollectorConnections {
    CollectorConnections::decode(&unzstd(body)[..]).expect("CollectorConnections")
}
