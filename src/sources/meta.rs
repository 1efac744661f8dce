//! The host name, resolved once before the loop starts (spec/protocol.md §5.1): `STS_HOSTNAME`,
//! else the EC2 instance id from IMDSv2 (token PUT, then `meta-data/instance-id`, short
//! timeouts, blocking `ureq`), else the OS host name.

use crate::url::Url;
use std::time::Duration;

const IMDS_TIMEOUT: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostnameSource {
    Configured,
    Ec2InstanceId,
    Os,
}

pub fn resolve_hostname(configured: Option<&str>, imds: &Url) -> (String, HostnameSource) {
    if let Some(h) = configured {
        return (h.to_string(), HostnameSource::Configured);
    }
    match ec2_instance_id(imds, IMDS_TIMEOUT) {
        Ok(id) => return (id, HostnameSource::Ec2InstanceId),
        Err(e) => debug!("no EC2 instance id from {imds}: {e}"),
    }
    let os = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    (os, HostnameSource::Os)
}

/// IMDSv2: `PUT /latest/api/token`, then `GET /latest/meta-data/instance-id` with the token.
pub fn ec2_instance_id(imds: &Url, timeout: Duration) -> Result<String, String> {
    let config =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(true).max_redirects(0).build();
    let agent = ureq::Agent::new_with_config(config);
    let base = imds.to_string();
    let token = agent
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send_empty()
        .map_err(|e| format!("token: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("token: {e}"))?;
    let id = agent
        .get(format!("{base}/latest/meta-data/instance-id"))
        .header("X-aws-ec2-metadata-token", token.trim())
        .call()
        .map_err(|e| format!("instance-id: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("instance-id: {e}"))?;
    let id = id.trim();
    let valid =
        id.len() <= 32 && id.starts_with("i-") && id[2..].bytes().all(|b| b.is_ascii_alphanumeric()) && id.len() > 2;
    if valid {
        Ok(id.to_string())
    } else {
        Err(format!("not an instance id: {:?}", id.get(..id.len().min(40)).unwrap_or("")))
    }
}
