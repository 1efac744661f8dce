//! The ECS agent's introspection API (v1): `/v1/metadata` (the cluster) and `/v1/tasks` (each
//! task's ARN, family, version and containers by Docker id). Parsed on refresh only.

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcsContainer {
    pub task_arn: String,
    pub family: String,
    pub version: String,
    /// The container's name in the task definition.
    pub name: String,
}

/// `Cluster` from `/v1/metadata`.
pub fn cluster(body: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("/v1/metadata is not JSON: {e}"))?;
    v["Cluster"].as_str().map(str::to_string).ok_or_else(|| "/v1/metadata has no Cluster".to_string())
}

/// `(docker id, container)` for every container of every task not known to be stopped.
pub fn tasks(body: &[u8]) -> Result<Vec<([u8; 64], EcsContainer)>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("/v1/tasks is not JSON: {e}"))?;
    let tasks = v["Tasks"].as_array().ok_or("/v1/tasks has no Tasks array")?;
    let mut out = Vec::new();
    for t in tasks {
        if t["KnownStatus"].as_str() == Some("STOPPED") {
            continue;
        }
        let s = |k: &str| t[k].as_str().unwrap_or("").to_string();
        for c in t["Containers"].as_array().map_or(&[][..], |a| &a[..]) {
            let Some(id) = c["DockerId"].as_str().and_then(|s| <[u8; 64]>::try_from(s.as_bytes()).ok()) else {
                continue;
            };
            out.push((
                id,
                EcsContainer {
                    task_arn: s("Arn"),
                    family: s("Family"),
                    version: s("Version"),
                    name: c["Name"].as_str().unwrap_or("").to_string(),
                },
            ));
        }
    }
    Ok(out)
}

/// The ECS tags of one container, as the ECS tagger names them.
pub fn tags(c: &EcsContainer, cluster: Option<&str>) -> Vec<String> {
    let mut t = Vec::new();
    let mut push = |k: &str, v: &str| {
        if !v.is_empty() {
            t.push(format!("{k}:{v}"));
        }
    };
    push("task_arn", &c.task_arn);
    push("task_family", &c.family);
    push("task_name", &c.family);
    push("task_version", &c.version);
    push("ecs_container_name", &c.name);
    push("cluster_name", cluster.unwrap_or(""));
    // The ECS tagger's since Agent 2.13 (spec/docker-check.md §8).
    push("ecs_cluster_name", cluster.unwrap_or(""));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f5a2e1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn documented_payloads() {
        assert_eq!(
            cluster(br#"{"Cluster":"prod","ContainerInstanceArn":"arn:x","Version":"Amazon ECS Agent - v1.80.0"}"#)
                .unwrap(),
            "prod"
        );
        let body = format!(
            r#"{{"Tasks":[{{"Arn":"arn:aws:ecs:eu-west-1:1:task/prod/abc","DesiredStatus":"RUNNING","KnownStatus":"RUNNING",
                "Family":"web","Version":"7","Containers":[{{"DockerId":"{ID}","DockerName":"ecs-web-7-web-1","Name":"web"}}]}},
               {{"Arn":"arn:old","KnownStatus":"STOPPED","Family":"old","Version":"1","Containers":[{{"DockerId":"{ID}","Name":"x"}}]}}]}}"#
        );
        let t = tasks(body.as_bytes()).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[0].1,
            EcsContainer {
                task_arn: "arn:aws:ecs:eu-west-1:1:task/prod/abc".into(),
                family: "web".into(),
                version: "7".into(),
                name: "web".into()
            }
        );
        assert_eq!(
            tags(&t[0].1, Some("prod")),
            [
                "task_arn:arn:aws:ecs:eu-west-1:1:task/prod/abc",
                "task_family:web",
                "task_name:web",
                "task_version:7",
                "ecs_container_name:web",
                "cluster_name:prod",
                "ecs_cluster_name:prod"
            ]
        );
        assert!(tasks(b"{}").is_err() && cluster(b"[]").is_err());
    }
}
