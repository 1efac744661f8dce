//! The process agent's `/intake` side channel (spec/protocol.md §4.4): the agent's own topology,
//! the check's health stream, and self-metrics as raw metric tuples.

use super::json;
use crate::model::container::{
    metric_applies, rates, throttling, throttling_applies, Container, ContainerTable, METRIC_NAMES, THROTTLING_NAMES,
};
use crate::sources::docker::Metadata;

pub struct CheckHealth<'a> {
    pub check: &'a str,
    pub interval_s: u64,
    /// `CLEAR`, `DEVIATING` or `CRITICAL`.
    pub health: &'a str,
    pub message: &'a str,
}

/// Writes the payload into `out` (cleared first).
/// A self-metric of the process agent: name, value and tags.
#[derive(Debug, Clone, Copy)]
pub struct SelfMetric<'a> {
    pub name: &'a str,
    pub value: f64,
    pub tags: &'a [&'a str],
}

impl<'a> SelfMetric<'a> {
    pub const fn new(name: &'a str, value: f64) -> SelfMetric<'a> {
        SelfMetric { name, value, tags: &[] }
    }
}

/// `health`: the agent's own topology and the check's health stream, sent when
/// `STS_REPORT_CHECK_HEALTH_STATE` is on (the default) or the receiver advertises `health-states`
/// (`None` otherwise). `containers`: the table, its metadata, and whether the eleven container
/// metrics go here as raw metrics (the receiver advertised `upgrade-to-multi-metrics`; without it
/// they ride only inside `Container` in `/api/v1/collector`, as the process agent 4.0.x sends
/// them). The throttling metrics go here whatever the receiver advertises.
#[allow(clippy::too_many_arguments)]
pub fn side_channel(
    out: &mut Vec<u8>,
    host: &str,
    agent_pid: u32,
    agent_create_ms: i64,
    unix_secs: u64,
    health: Option<&CheckHealth<'_>>,
    metrics: &[SelfMetric<'_>],
    containers: Option<(&ContainerTable, &Metadata, bool)>,
) {
    out.clear();
    out.extend_from_slice(b"{\"internalHostname\":");
    json::str(out, host);
    out.extend_from_slice(b",\"topologies\":[");
    if let Some(h) = health {
        agent_topology(out, host, agent_pid, agent_create_ms, h);
    }
    if let Some((t, meta, _)) = containers.filter(|(t, m, _)| t.containers.iter().any(|c| !docker_pass_owns(c, m))) {
        if health.is_some() {
            out.push(b',');
        }
        container_topology(out, host, t, meta);
    }
    out.extend_from_slice(b"],\"health\":[");
    if let Some(h) = health {
        health_stream(out, host, h);
    }
    out.extend_from_slice(b"],\"metrics\":[");
    let mut first = true;
    for m in metrics {
        raw_metric(out, &mut first, m.name, unix_secs, m.value, host, None, m.tags);
    }
    if let Some((t, _, raw_rates)) = containers {
        for c in &t.containers {
            if raw_rates {
                let r = rates(c, t);
                let values = [
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                    c.cur.mem_rss as f64,
                    c.cur.mem_cache as f64,
                ];
                for (i, (name, v)) in METRIC_NAMES.iter().zip(values).enumerate() {
                    if metric_applies(c, i) {
                        raw_metric(out, &mut first, name, unix_secs, v, host, Some(&c.id), &[]);
                    }
                }
            }
            // Sent by the process agent 4.0.5–4.0.11 whatever the receiver's features.
            for (i, (name, v)) in THROTTLING_NAMES.iter().zip(throttling(c, t)).enumerate() {
                if throttling_applies(c, i) {
                    raw_metric(out, &mut first, name, unix_secs, v, host, Some(&c.id), &[]);
                }
            }
        }
    }
    out.extend_from_slice(b"]}");
}

/// The agent's own topology (spec/protocol.md §4.4): the agent, the check's integration, `runs`.
fn agent_topology(out: &mut Vec<u8>, host: &str, agent_pid: u32, agent_create_ms: i64, h: &CheckHealth<'_>) {
    let agent_urn = |o: &mut Vec<u8>| {
        o.extend_from_slice(b"\"urn:stackstate-agent:process:/");
        json::escape_into(o, host.as_bytes());
        o.push(b'"');
    };
    let integration_urn = |o: &mut Vec<u8>| {
        o.extend_from_slice(b"\"urn:agent-integration:/");
        json::escape_into(o, host.as_bytes());
        o.extend_from_slice(b":process-agent:");
        json::escape_into(o, h.check.as_bytes());
        o.push(b'"');
    };
    out.extend_from_slice(b"{\"start_snapshot\":false,\"stop_snapshot\":false,\"instance\":{\"type\":\"agent\",\"url\":\"integrations\"},\"components\":[{\"externalId\":");
    agent_urn(out);
    out.extend_from_slice(
        b",\"type\":{\"name\":\"stackstate-agent\"},\"data\":{\"name\":\"StackState process agent\",\"hostname\":",
    );
    json::str(out, host);
    out.extend_from_slice(b",\"identifiers\":[\"urn:process:/");
    json::escape_into(out, host.as_bytes());
    out.push(b':');
    json::u64(out, u64::from(agent_pid));
    out.push(b':');
    json::u64(out, agent_create_ms.max(0) as u64);
    out.extend_from_slice(b"\"]},\"sourceProperties\":null},{\"externalId\":");
    integration_urn(out);
    out.extend_from_slice(b",\"type\":{\"name\":\"agent-integration\"},\"data\":{\"name\":");
    json::str(out, h.check);
    out.extend_from_slice(b",\"integration\":\"process-agent\",\"hostname\":");
    json::str(out, host);
    out.extend_from_slice(b"},\"sourceProperties\":null}],\"relations\":[{\"externalId\":\"");
    // `<src> -> <dst>`
    out.extend_from_slice(b"urn:stackstate-agent:process:/");
    json::escape_into(out, host.as_bytes());
    out.extend_from_slice(b" -> urn:agent-integration:/");
    json::escape_into(out, host.as_bytes());
    out.extend_from_slice(b":process-agent:");
    json::escape_into(out, h.check.as_bytes());
    out.extend_from_slice(b"\",\"sourceId\":");
    agent_urn(out);
    out.extend_from_slice(b",\"targetId\":");
    integration_urn(out);
    out.extend_from_slice(b",\"type\":{\"name\":\"runs\"},\"data\":{}}],\"delete_ids\":[]}");
}

/// The check's health stream: one snapshot with its one check state.
fn health_stream(out: &mut Vec<u8>, host: &str, h: &CheckHealth<'_>) {
    let integration_urn = |o: &mut Vec<u8>| {
        o.extend_from_slice(b"\"urn:agent-integration:/");
        json::escape_into(o, host.as_bytes());
        o.extend_from_slice(b":process-agent:");
        json::escape_into(o, h.check.as_bytes());
        o.push(b'"');
    };
    out.extend_from_slice(b"{\"start_snapshot\":{\"repeat_interval_s\":");
    json::u64(out, h.interval_s);
    out.extend_from_slice(b",\"expiry_interval_s\":");
    json::u64(out, h.interval_s * 2);
    out.extend_from_slice(b"},\"stop_snapshot\":{},\"stream\":{\"urn\":\"urn:health:stackstate-process-agent:");
    json::escape_into(out, host.as_bytes());
    out.extend_from_slice(b"\",\"sub_stream_id\":");
    json::str(out, h.check);
    out.extend_from_slice(b"},\"check_states\":[{\"checkStateId\":");
    integration_urn(out);
    if !h.message.is_empty() {
        out.extend_from_slice(b",\"message\":");
        json::str(out, h.message);
    }
    out.extend_from_slice(b",\"health\":");
    json::str(out, h.health);
    out.extend_from_slice(b",\"topologyElementIdentifier\":");
    integration_urn(out);
    out.extend_from_slice(b",\"name\":");
    json::str(out, h.check);
    out.extend_from_slice(b"}]}");
}

/// One raw metric tuple `[name, ts, value, {hostname, type: "raw"[, tags: ["containerId:<id>", …]]}]`.
#[allow(clippy::too_many_arguments)]
fn raw_metric(
    out: &mut Vec<u8>,
    first: &mut bool,
    name: &str,
    ts: u64,
    value: f64,
    host: &str,
    container: Option<&[u8]>,
    tags: &[&str],
) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.push(b'[');
    json::str(out, name);
    out.push(b',');
    json::u64(out, ts);
    out.push(b',');
    json::f64(out, value);
    out.extend_from_slice(b",{\"hostname\":");
    json::str(out, host);
    out.extend_from_slice(b",\"type\":\"raw\"");
    if container.is_some() || !tags.is_empty() {
        out.extend_from_slice(b",\"tags\":[");
        if let Some(id) = container {
            out.extend_from_slice(b"\"containerId:");
            json::escape_into(out, id);
            out.push(b'"');
        }
        for (i, t) in tags.iter().enumerate() {
            if i > 0 || container.is_some() {
                out.push(b',');
            }
            json::str(out, t);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}]");
}

/// Whether the docker check's pass, not this side channel, sends `c`'s component: once Docker
/// has answered a list, the pass is the one producer of `urn:container:docker:/…` components
/// (from Docker's list, `encode/container_topology.rs`), so a container Docker describes, or
/// one whose cgroup says Docker runs it (not listed yet: its appearance asks for a new list), is
/// left to the pass — one producer per external id, never two versions of one component. Without
/// Docker (never answered), and for other runtimes' containers, the side channel sends them.
pub fn docker_pass_owns(c: &Container, meta: &Metadata) -> bool {
    meta.listed && (meta.get(&c.id).is_some() || c.runtime == "docker")
}

/// Container components as the core agent's container topology check sends them
/// (spec/protocol.md §3.3): `urn:container:<runtime>:/<host>:<id>`, identifier
/// `urn:container:/<host>:<id>` (the identity shared with the process agent); only those the
/// docker pass does not send ([`docker_pass_owns`]).
fn container_topology(out: &mut Vec<u8>, host: &str, t: &ContainerTable, meta: &Metadata) {
    out.extend_from_slice(b"{\"start_snapshot\":false,\"stop_snapshot\":false,\"instance\":{\"type\":\"container\",\"url\":\"agents\"},\"components\":[");
    for (i, c) in t.containers.iter().filter(|c| !docker_pass_owns(c, meta)).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let m = meta.get(&c.id);
        let runtime = if m.is_some() {
            "docker"
        } else if c.runtime.is_empty() {
            "unknown"
        } else {
            c.runtime
        };
        out.extend_from_slice(b"{\"externalId\":\"urn:container:");
        out.extend_from_slice(runtime.as_bytes());
        out.extend_from_slice(b":/");
        json::escape_into(out, host.as_bytes());
        out.push(b':');
        out.extend_from_slice(&c.id);
        out.extend_from_slice(b"\",\"type\":{\"name\":\"container\"},\"data\":{\"type\":");
        json::str(out, runtime);
        out.extend_from_slice(b",\"containerId\":\"");
        out.extend_from_slice(&c.id);
        out.extend_from_slice(b"\",\"state\":\"running\"");
        if let Some(m) = m {
            out.extend_from_slice(b",\"name\":");
            json::str(out, &m.name);
            out.extend_from_slice(b",\"image\":");
            json::str(out, &m.image);
        }
        out.extend_from_slice(b",\"labels\":[\"runtime:");
        out.extend_from_slice(runtime.as_bytes());
        out.push(b'"');
        for t in m.map_or(&[][..], |m| &m.tags[..]) {
            out.push(b',');
            json::str(out, t);
        }
        out.extend_from_slice(b"],\"identifiers\":[\"urn:container:/");
        json::escape_into(out, host.as_bytes());
        out.push(b':');
        out.extend_from_slice(&c.id);
        out.extend_from_slice(b"\"]},\"sourceProperties\":null}");
    }
    out.extend_from_slice(b"],\"relations\":[],\"delete_ids\":[]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once Docker has listed, containers it describes (or whose cgroup says Docker runs them)
    /// are the docker pass's to send; others, and all without Docker, stay here.
    #[test]
    fn container_components_the_docker_pass_sends_are_left_out() {
        use crate::parse::docker::ContainerMeta;
        let (described, undescribed, other) = ([b'a'; 64], [b'b'; 64], [b'c'; 64]);
        let mut t = ContainerTable::default();
        for (id, runtime) in [(described, "ecs"), (undescribed, "docker"), (other, "containerd")] {
            let mut c = Container::new(id, 1, 1);
            c.runtime = runtime;
            t.containers.push(c);
        }
        let mut meta = Metadata::default();
        meta.by_id.push((described, ContainerMeta { name: "web".into(), ..Default::default() }));
        let h = CheckHealth { check: "process", interval_s: 30, health: "CLEAR", message: "" };
        let ids = |t: &ContainerTable, meta: &Metadata| -> Vec<String> {
            let mut b = Vec::new();
            side_channel(&mut b, "h", 1, 0, 0, Some(&h), &[], Some((t, meta, true)));
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            v["topologies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["instance"]["type"] == "container")
                .flat_map(|t| t["components"].as_array().unwrap().iter())
                .map(|c| c["externalId"].as_str().unwrap().to_string())
                .collect()
        };
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        assert_eq!(
            ids(&t, &meta),
            [
                format!("urn:container:docker:/h:{a}"),
                format!("urn:container:docker:/h:{b}"),
                format!("urn:container:containerd:/h:{c}")
            ],
            "no Docker list: all here"
        );
        meta.listed = true;
        assert_eq!(
            ids(&t, &meta),
            [format!("urn:container:containerd:/h:{c}")],
            "Docker listed: the pass sends the others"
        );
        // None left: no empty container topology.
        t.containers.pop();
        assert!(ids(&t, &meta).is_empty());
    }

    #[test]
    fn documented_shape() {
        let mut b = Vec::new();
        let h = CheckHealth { check: "process", interval_s: 30, health: "CLEAR", message: "" };
        side_channel(
            &mut b,
            "i-1",
            42,
            1_700_000_000_123,
            1_700_000_100,
            Some(&h),
            &[
                SelfMetric::new("stackstate.process_agent.processes.total_count", 7.0),
                SelfMetric {
                    name: "stackstate.process_agent.connections.reported",
                    value: 2.0,
                    tags: &["ipver:4", "proto:tcp"],
                },
            ],
            None,
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let t = &v["topologies"][0];
        assert_eq!(t["instance"], serde_json::json!({"type":"agent","url":"integrations"}));
        assert_eq!(t["components"][0]["externalId"], "urn:stackstate-agent:process:/i-1");
        assert_eq!(t["components"][0]["data"]["identifiers"][0], "urn:process:/i-1:42:1700000000123");
        assert_eq!(t["components"][1]["externalId"], "urn:agent-integration:/i-1:process-agent:process");
        assert_eq!(
            t["relations"][0]["externalId"],
            "urn:stackstate-agent:process:/i-1 -> urn:agent-integration:/i-1:process-agent:process"
        );
        assert_eq!(t["relations"][0]["type"]["name"], "runs");
        let hs = &v["health"][0];
        assert_eq!(
            hs["stream"],
            serde_json::json!({"urn":"urn:health:stackstate-process-agent:i-1","sub_stream_id":"process"})
        );
        assert_eq!(hs["start_snapshot"], serde_json::json!({"repeat_interval_s":30,"expiry_interval_s":60}));
        assert_eq!(hs["check_states"][0]["health"], "CLEAR");
        assert!(hs["check_states"][0].get("message").is_none());
        assert_eq!(
            v["metrics"][0],
            serde_json::json!(["stackstate.process_agent.processes.total_count", 1_700_000_100u64, 7.0, {"hostname":"i-1","type":"raw"}])
        );
        assert_eq!(
            v["metrics"][1],
            serde_json::json!(["stackstate.process_agent.connections.reported", 1_700_000_100u64, 2.0, {"hostname":"i-1","type":"raw","tags":["ipver:4","proto:tcp"]}])
        );
    }
}
