//! An independent decoder for StackState's `TracePayload` (spec/protocol.md §6.4): prost structs
//! written from the field table, and flate2 for the gzip body.
#![allow(dead_code)]

use prost::Message;
use std::collections::HashMap;
use std::io::Read;

#[derive(Clone, PartialEq, Message)]
pub struct TracePayload {
    #[prost(string, tag = "1")]
    pub host_name: String,
    #[prost(string, tag = "2")]
    pub env: String,
    #[prost(message, repeated, tag = "3")]
    pub traces: Vec<ApiTrace>,
    #[prost(message, repeated, tag = "4")]
    pub transactions: Vec<Span>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ApiTrace {
    #[prost(uint64, tag = "1")]
    pub trace_id: u64,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(int64, tag = "6")]
    pub start_time: i64,
    #[prost(int64, tag = "7")]
    pub end_time: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Span {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub resource: String,
    #[prost(uint64, tag = "4")]
    pub trace_id: u64,
    #[prost(uint64, tag = "5")]
    pub span_id: u64,
    #[prost(uint64, tag = "6")]
    pub parent_id: u64,
    #[prost(int64, tag = "7")]
    pub start: i64,
    #[prost(int64, tag = "8")]
    pub duration: i64,
    #[prost(int32, tag = "9")]
    pub error: i32,
    #[prost(map = "string, string", tag = "10")]
    pub meta: HashMap<String, String>,
    #[prost(map = "string, double", tag = "11")]
    pub metrics: HashMap<String, f64>,
    #[prost(string, tag = "12")]
    pub r#type: String,
}

/// A `/api/v0.2/traces` body: gzip, then protobuf.
pub fn decode(body: &[u8]) -> TracePayload {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut raw).expect("gzip body");
    TracePayload::decode(&raw[..]).expect("TracePayload")
}
