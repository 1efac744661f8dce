//! What checks emit: a named value with a type and tags, handed to a sink (an encoder).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value at the sample time.
    Gauge,
    /// A per-second rate over the check interval (computed by the agent from two samples).
    Rate,
    /// A number of occurrences in the flush interval (the agent's `stackstate.agent.started`).
    Count,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Rate => "rate",
            Kind::Count => "count",
        }
    }
}

/// A tag `key:value`; the value is borrowed bytes (interface and device names need not be UTF-8).
#[derive(Debug, Clone, Copy)]
pub struct Tag<'a> {
    pub key: &'static str,
    pub value: &'a [u8],
}

pub trait MetricSink {
    fn metric(&mut self, name: &str, kind: Kind, value: f64, tags: &[Tag<'_>]);
}

/// Collects metrics into owned rows; for tests and tools, not for the hot path.
#[derive(Debug, Default)]
pub struct MetricRows(pub Vec<(String, Kind, f64, Vec<String>)>);

impl MetricSink for MetricRows {
    fn metric(&mut self, name: &str, kind: Kind, value: f64, tags: &[Tag<'_>]) {
        let tags = tags.iter().map(|t| format!("{}:{}", t.key, String::from_utf8_lossy(t.value))).collect();
        self.0.push((name.to_string(), kind, value, tags));
    }
}

impl MetricRows {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|r| r.0 == name).map(|r| r.2)
    }
}
