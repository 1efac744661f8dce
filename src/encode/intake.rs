//! `POST /intake/` body with the host component (spec/protocol.md §3.1, §3.3):
//! `{"internalHostname","topologies":[{instance {disk, agents}, components:[urn:host:/<host>]}],
//! "health":[],"metrics":[]}`.

use super::json;
use crate::model::host::HostSample;

/// Writes the host topology payload into `out` (cleared first). `devices` are the block devices
/// behind the host's filesystems, as the disk check's topology reports them.
pub fn host_topology(out: &mut Vec<u8>, host: &str, sample: &HostSample) {
    out.clear();
    out.extend_from_slice(b"{\"internalHostname\":");
    json::str(out, host);
    out.extend_from_slice(
        b",\"topologies\":[{\"start_snapshot\":false,\"stop_snapshot\":false,\
          \"instance\":{\"type\":\"disk\",\"url\":\"agents\"},\"components\":[{\"externalId\":\"urn:host:/",
    );
    json::escape_into(out, host.as_bytes());
    out.extend_from_slice(b"\",\"type\":{\"name\":\"host\"},\"data\":{\"host\":");
    json::str(out, host);
    out.extend_from_slice(b",\"identifiers\":[],\"devices\":[");
    for (i, f) in sample.filesystems.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::bytes_as_str(out, sample.names.get(f.device));
    }
    out.extend_from_slice(
        b"]},\"sourceProperties\":null}],\"relations\":[],\"delete_ids\":[]}],\"health\":[],\"metrics\":[]}",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::host::Filesystem;

    #[test]
    fn host_component_shape() {
        let mut s = HostSample::default();
        let device = s.names.push(b"/dev/vda");
        s.filesystems.push(Filesystem { device, ..Default::default() });
        let mut buf = Vec::new();
        host_topology(&mut buf, "i-0abc", &s);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["internalHostname"], "i-0abc");
        let t = &v["topologies"][0];
        assert_eq!(t["start_snapshot"], false);
        assert_eq!(t["instance"], serde_json::json!({"type": "disk", "url": "agents"}));
        let c = &t["components"][0];
        assert_eq!(c["externalId"], "urn:host:/i-0abc");
        assert_eq!(c["type"]["name"], "host");
        assert_eq!(c["data"]["devices"][0], "/dev/vda");
        assert!(c["sourceProperties"].is_null());
        assert_eq!(t["relations"], serde_json::json!([]));
        assert_eq!(v["health"], serde_json::json!([]));
        assert_eq!(v["metrics"], serde_json::json!([]));
    }
}
