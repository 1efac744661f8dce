//! The core agent's container topology on `POST /intake/` (spec/docker-check.md §3.2, the
//! 2.18+ form): instance `{"type":"container","url":"agents"}`, one component per container
//! Docker lists, in every state (exited ones included), `urn:container:docker:/<host>:<id>`,
//! with the process agent's container identity `urn:container:/<host>:<id>` as its identifier
//! so the two merge. No relations, no snapshots, no deletes.

use super::json;
use crate::parse::docker::ContainerMeta;

/// Writes the payload into `out` (cleared first); returns the number of components. Nothing is
/// written (and 0 returned) when there is no container, as the original sends nothing then.
pub fn container_topology<'a>(
    out: &mut Vec<u8>,
    host: &str,
    containers: impl Iterator<Item = (&'a [u8; 64], &'a ContainerMeta)>,
) -> usize {
    out.clear();
    let mut n = 0;
    for (id, m) in containers {
        if n == 0 {
            out.extend_from_slice(b"{\"internalHostname\":");
            json::str(out, host);
            out.extend_from_slice(
                b",\"topologies\":[{\"start_snapshot\":false,\"stop_snapshot\":false,\
                  \"instance\":{\"type\":\"container\",\"url\":\"agents\"},\"components\":[",
            );
        } else {
            out.push(b',');
        }
        n += 1;
        let host_part = |out: &mut Vec<u8>| {
            if !host.is_empty() {
                json::escape_into(out, host.as_bytes());
                out.push(b':');
            }
        };
        out.extend_from_slice(b"{\"externalId\":\"urn:container:docker:/");
        host_part(out);
        out.extend_from_slice(id);
        out.extend_from_slice(b"\",\"type\":{\"name\":\"container\"},\"data\":{\"type\":\"docker\",\"containerId\":\"");
        out.extend_from_slice(id);
        // Docker's name keeps its leading `/` here.
        out.extend_from_slice(b"\",\"name\":\"/");
        json::escape_into(out, m.name.as_bytes());
        out.extend_from_slice(b"\",\"image\":");
        json::str(out, &m.image);
        out.extend_from_slice(b",\"mounts\":[");
        for (i, mount) in m.mounts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"destination\":");
            json::str(out, &mount.destination);
            out.extend_from_slice(b",\"type\":");
            json::str(out, &mount.kind);
            out.extend_from_slice(b",\"source\":");
            json::str(out, &mount.source);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"state\":");
        json::str(out, &m.state_text);
        out.extend_from_slice(b",\"labels\":[\"runtime:docker\"]");
        // The identity the process agent's container component has, present with a host name.
        if !host.is_empty() {
            out.extend_from_slice(b",\"identifiers\":[\"urn:container:/");
            host_part(out);
            out.extend_from_slice(id);
            out.extend_from_slice(b"\"]");
        }
        out.extend_from_slice(b"},\"sourceProperties\":null}");
    }
    if n > 0 {
        out.extend_from_slice(b"],\"relations\":[],\"delete_ids\":[]}],\"health\":[],\"metrics\":[]}");
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::docker::Mount;

    #[test]
    fn documented_shape_with_an_exited_container() {
        let running = ContainerMeta {
            name: "ecs-web-7-nginx-b2c4".into(),
            image: "nginx:1.21".into(),
            state_text: "running".into(),
            mounts: vec![Mount {
                kind: "bind".into(),
                source: "/data/www".into(),
                destination: "/usr/share/nginx".into(),
            }],
            ..Default::default()
        };
        let exited = ContainerMeta { name: "old\"one".into(), state_text: "exited".into(), ..Default::default() };
        let (a, b) = ([b'a'; 64], [b'b'; 64]);
        let mut out = Vec::new();
        let n = container_topology(&mut out, "i-0abc", [(&a, &running), (&b, &exited)].into_iter());
        assert_eq!(n, 2);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["internalHostname"], "i-0abc");
        assert_eq!((v["health"].as_array().unwrap().len(), v["metrics"].as_array().unwrap().len()), (0, 0));
        let t = &v["topologies"][0];
        assert_eq!(t["instance"], serde_json::json!({"type": "container", "url": "agents"}));
        assert_eq!((t["start_snapshot"].as_bool(), t["stop_snapshot"].as_bool()), (Some(false), Some(false)));
        assert_eq!(t["relations"], serde_json::json!([]));
        assert_eq!(t["delete_ids"], serde_json::json!([]));
        let a_id = "a".repeat(64);
        let c = &t["components"][0];
        assert_eq!(c["externalId"], format!("urn:container:docker:/i-0abc:{a_id}"));
        assert_eq!(c["type"]["name"], "container");
        assert!(c["sourceProperties"].is_null() && c.as_object().unwrap().contains_key("sourceProperties"));
        let d = &c["data"];
        assert_eq!(d["type"], "docker");
        assert_eq!(d["containerId"], a_id.as_str());
        assert_eq!(d["name"], "/ecs-web-7-nginx-b2c4");
        assert_eq!(d["image"], "nginx:1.21");
        assert_eq!(d["state"], "running");
        assert_eq!(d["labels"], serde_json::json!(["runtime:docker"]));
        assert_eq!(d["identifiers"], serde_json::json!([format!("urn:container:/i-0abc:{a_id}")]));
        assert_eq!(
            d["mounts"],
            serde_json::json!([{"destination": "/usr/share/nginx", "type": "bind", "source": "/data/www"}])
        );
        let e = &t["components"][1]["data"];
        assert_eq!((e["state"].as_str(), e["name"].as_str()), (Some("exited"), Some("/old\"one")));
        // No host name: no host in the external id, and no identifiers.
        container_topology(&mut out, "", [(&a, &running)].into_iter());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let c = &v["topologies"][0]["components"][0];
        assert_eq!(c["externalId"], format!("urn:container:docker:/{a_id}"));
        assert!(c["data"].get("identifiers").is_none());
        // No containers: nothing to send.
        assert_eq!(container_topology(&mut out, "h", std::iter::empty()), 0);
        assert!(out.is_empty());
    }
}
