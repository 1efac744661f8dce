//! The Docker Engine API's container list (`GET /containers/json`): what the agent needs of
//! each running container, and the tags the Datadog/StackState Docker and ECS taggers derive
//! (spec/ecs.md §3.6). ECS task tags come from the `com.amazonaws.ecs.*` labels that the ECS
//! agent sets on every task container. Runs only when the list is refreshed, so it may allocate.

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerMeta {
    pub name: String,
    pub image: String,
    /// `ContainerState` enum: created 1, restarting 2, running 3, paused 4, exited 5, dead 6.
    pub state: i32,
    /// `ContainerHealth` enum: starting 1, healthy 2, unhealthy 3; 0 when there is no check.
    pub health: i32,
    /// Epoch seconds.
    pub created: i64,
    /// Epoch seconds, from `GET /containers/<id>/json` (`State.StartedAt`); `None` until inspected.
    pub started: Option<i64>,
    pub labels: Vec<(String, String)>,
    /// `key:value` tags, in a stable order.
    pub tags: Vec<String>,
    /// Docker's `State` as it says it (`running`, `exited`, `removing`, ...).
    pub state_text: String,
    /// The list's `Mounts`: `(type, source, destination)`.
    pub mounts: Vec<Mount>,
    /// The names of the Docker networks it is attached to (`NetworkSettings.Networks`).
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub destination: String,
}

/// `(id, meta)` for each entry; entries without a 64-hex id are skipped.
pub fn container_list(body: &[u8]) -> Result<Vec<([u8; 64], ContainerMeta)>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("container list is not JSON: {e}"))?;
    let list = v.as_array().ok_or("container list is not a JSON array")?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let Some(id) = c["Id"].as_str().and_then(|s| <[u8; 64]>::try_from(s.as_bytes()).ok()) else { continue };
        if !id.iter().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let name = c["Names"].as_array().and_then(|n| n.first()).and_then(Value::as_str).unwrap_or("");
        let name = name.strip_prefix('/').unwrap_or(name).to_string();
        let image = c["Image"].as_str().unwrap_or("").to_string();
        let status = c["Status"].as_str().unwrap_or("");
        let mut labels: Vec<(String, String)> = c["Labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
            .unwrap_or_default();
        labels.sort();
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        let mounts = c["Mounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| Mount { kind: s(&m["Type"]), source: s(&m["Source"]), destination: s(&m["Destination"]) })
                    .collect()
            })
            .unwrap_or_default();
        let mut networks: Vec<String> =
            c["NetworkSettings"]["Networks"].as_object().map(|n| n.keys().cloned().collect()).unwrap_or_default();
        networks.sort();
        let mut meta = ContainerMeta {
            started: None,
            state_text: s(&c["State"]),
            mounts,
            networks,
            state: state(c["State"].as_str().unwrap_or("")),
            health: health(status),
            created: c["Created"].as_i64().unwrap_or(0),
            tags: Vec::new(),
            name,
            image,
            labels,
        };
        meta.tags = tags(&id, &meta);
        out.push((id, meta));
    }
    Ok(out)
}

/// From `GET /containers/<id>/json`: `(State.StartedAt` in epoch seconds, the health enum from
/// `State.Health.Status` when the container has a health check).
pub fn inspect(body: &[u8]) -> Result<(Option<i64>, Option<i32>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("inspect is not JSON: {e}"))?;
    let started = v["State"]["StartedAt"].as_str().and_then(rfc3339_secs).filter(|s| *s > 0);
    let health = v["State"]["Health"]["Status"].as_str().map(|h| match h {
        "starting" => 1,
        "healthy" => 2,
        "unhealthy" => 3,
        _ => 0,
    });
    Ok((started, health))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to epoch seconds (Docker's timestamps).
pub fn rfc3339_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { std::str::from_utf8(b.get(r)?).ok()?.parse().ok() };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

fn state(s: &str) -> i32 {
    match s {
        "created" => 1,
        "restarting" => 2,
        "running" => 3,
        "paused" => 4,
        "exited" => 5,
        "dead" => 6,
        _ => 0,
    }
}

/// From the `Status` text: `Up 5 minutes (healthy)`, `(unhealthy)`, `(health: starting)`.
fn health(status: &str) -> i32 {
    if status.contains("(health: starting)") {
        1
    } else if status.contains("(healthy)") {
        2
    } else if status.contains("(unhealthy)") {
        3
    } else {
        0
    }
}

/// `name[:tag][@digest]` split into `(image_name, short_image, tag)`; a `:` in a registry
/// host (`host:5000/app`) is not a tag.
pub fn split_image(image: &str) -> (&str, &str, &str) {
    let no_digest = image.split('@').next().unwrap_or(image);
    let (name, tag) = match no_digest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (no_digest, "latest"),
    };
    let short = name.rsplit('/').next().unwrap_or(name);
    (name, short, tag)
}

fn tags(id: &[u8; 64], m: &ContainerMeta) -> Vec<String> {
    let mut t = vec![format!("container_id:{}", String::from_utf8_lossy(id))];
    if !m.name.is_empty() {
        t.push(format!("container_name:{}", m.name));
    }
    if !m.image.is_empty() {
        let (name, short, tag) = split_image(&m.image);
        t.push(format!("docker_image:{}", m.image));
        t.push(format!("image_name:{name}"));
        t.push(format!("short_image:{short}"));
        t.push(format!("image_tag:{tag}"));
    }
    let label = |k: &str| m.labels.iter().find(|(lk, _)| lk == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    if let Some(v) = label("com.amazonaws.ecs.task-arn") {
        t.push(format!("task_arn:{v}"));
    }
    if let Some(v) = label("com.amazonaws.ecs.task-definition-family") {
        t.push(format!("task_family:{v}"));
        t.push(format!("task_name:{v}"));
    }
    if let Some(v) = label("com.amazonaws.ecs.task-definition-version") {
        t.push(format!("task_version:{v}"));
    }
    if let Some(v) = label("com.amazonaws.ecs.container-name") {
        t.push(format!("ecs_container_name:{v}"));
    }
    if let Some(v) = label("com.amazonaws.ecs.cluster") {
        t.push(format!("cluster_name:{v}"));
        t.push(format!("ecs_cluster_name:{v}"));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_inspect() {
        assert_eq!(rfc3339_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_secs("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000));
        assert_eq!(rfc3339_secs("2023-11-15T00:13:20+02:00"), Some(1_700_000_000));
        assert_eq!(rfc3339_secs("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(rfc3339_secs("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
        for bad in ["", "2023-13-01T00:00:00Z", "2023-11-14 22:13:20", "garbage-at-all-here"] {
            assert_eq!(rfc3339_secs(bad), None, "{bad}");
        }
        let (started, health) = inspect(
            br#"{"State":{"Status":"running","StartedAt":"2023-11-14T22:13:20.5Z","Health":{"Status":"unhealthy"}}}"#,
        )
        .unwrap();
        assert_eq!((started, health), (Some(1_700_000_000), Some(3)));
        // A never-started container has Docker's zero time.
        assert_eq!(inspect(br#"{"State":{"StartedAt":"0001-01-01T00:00:00Z"}}"#).unwrap(), (None, None));
    }

    #[test]
    fn images() {
        assert_eq!(split_image("nginx"), ("nginx", "nginx", "latest"));
        assert_eq!(split_image("nginx:1.25"), ("nginx", "nginx", "1.25"));
        assert_eq!(split_image("localhost:5000/team/app:v2"), ("localhost:5000/team/app", "app", "v2"));
        assert_eq!(split_image("localhost:5000/app"), ("localhost:5000/app", "app", "latest"));
        assert_eq!(
            split_image("123.dkr.ecr.eu-west-1.amazonaws.com/web@sha256:abc"),
            ("123.dkr.ecr.eu-west-1.amazonaws.com/web", "web", "latest")
        );
    }

    #[test]
    fn list_with_ecs_labels() {
        let id = "3f5a2e1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
        let body = format!(
            r#"[{{"Id":"{id}","Names":["/ecs-web-1-web-abc"],"Image":"nginx:1.25","Created":1700000000,
               "State":"running","Status":"Up 2 hours (healthy)",
               "Mounts":[{{"Type":"bind","Source":"/data/www","Destination":"/usr/share/nginx/html","Mode":"","RW":true}}],
               "NetworkSettings":{{"Networks":{{"bridge":{{"IPAddress":"172.17.0.2"}}}}}},
               "Labels":{{"com.amazonaws.ecs.cluster":"prod","com.amazonaws.ecs.container-name":"web",
                          "com.amazonaws.ecs.task-arn":"arn:aws:ecs:eu-west-1:1:task/prod/abc",
                          "com.amazonaws.ecs.task-definition-family":"web","com.amazonaws.ecs.task-definition-version":"7"}}}},
               {{"Id":"short","Names":["/x"]}}]"#
        );
        let l = container_list(body.as_bytes()).unwrap();
        assert_eq!(l.len(), 1);
        let m = &l[0].1;
        assert_eq!((m.name.as_str(), m.state, m.health, m.created), ("ecs-web-1-web-abc", 3, 2, 1_700_000_000));
        for t in [
            "container_name:ecs-web-1-web-abc",
            "docker_image:nginx:1.25",
            "image_name:nginx",
            "short_image:nginx",
            "image_tag:1.25",
            "task_arn:arn:aws:ecs:eu-west-1:1:task/prod/abc",
            "task_family:web",
            "task_name:web",
            "task_version:7",
            "ecs_container_name:web",
            "cluster_name:prod",
            "ecs_cluster_name:prod",
        ] {
            assert!(m.tags.iter().any(|x| x == t), "missing {t} in {:?}", m.tags);
        }
        assert_eq!(m.state_text, "running");
        assert_eq!(
            m.mounts,
            [Mount { kind: "bind".into(), source: "/data/www".into(), destination: "/usr/share/nginx/html".into() }]
        );
        assert_eq!(m.networks, ["bridge"]);
        assert!(container_list(b"{}").is_err());
        assert!(container_list(b"not json").is_err());
    }
}
