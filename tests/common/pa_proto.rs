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
    /// A DDSketch (not decoded here: this agent sends none).
    #[prost(bytes, tag = "1")]
    Histogram(Vec<u8>),
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

pub fn collector_connections(body: &[u8]) -> CollectorConnections {
    CollectorConnections::decode(&unzstd(body)[..]).expect("CollectorConnections")
}
