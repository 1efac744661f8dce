//! The binary with bad configuration: non-zero exit, one line naming the variable and the
//! expected form, and the API key nowhere in any output. Plus `--help`.

mod common;
use common::*;
use std::time::Duration;

const SECRET: &str = "s3cr3t-api-key-value-42";

#[test]
fn each_bad_value_exits_nonzero_with_one_clear_line() {
    // 108 bytes: one more than `sun_path` holds with its NUL.
    let long_socket = format!("/tmp/{}", "d".repeat(103));
    let cases: &[(&str, &str, &str)] = &[
        ("STS_DOGSTATSD_SOCKET", &long_socket, "at most 107 bytes"),
        ("STS_STS_URL", "stackstate:7077", "http:// or https://"),
        ("STS_PROCESS_AGENT_URL", "ftp://x", "http:// or https://"),
        ("STS_APM_URL", "https://h:99999", "http:// or https://"),
        ("STS_SKIP_SSL_VALIDATION", "perhaps", "true or false"),
        ("STS_PROCESS_BLACKLIST_PATTERNS", "^ok,[unclosed", "regular expressions"),
        ("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM", "ten", "whole number"),
        ("STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD", "1.5", "whole number"),
        ("STS_PROCESS_AGENT_ENABLED", "maybe", "disabled"),
        ("STS_APM_ENABLED", "yes please", "true or false"),
        ("STS_NETWORK_TRACING_ENABLED", "2", "true or false"),
        ("STS_HOST_CHECK_INTERVAL", "15s", "seconds"),
        ("STS_PROCESS_CHECK_INTERVAL", "-1", "seconds"),
        ("STS_CONNECTION_CHECK_INTERVAL", "0", "seconds"),
        ("STS_LOG_LEVEL", "chatty", "debug"),
        ("STS_HOSTNAME", "not a host", "RFC 1123"),
        ("HOST_PROC", "/definitely/not/here", "mounted"),
        ("HOST_SYS", "/definitely/not/here", "mounted"),
    ];
    for (var, value, expected) in cases {
        let out = run_agent(&["--once"], &[(var, value), ("STS_API_KEY", SECRET)], Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{var}: {stderr}");
        assert!(lines[0].contains(var) && lines[0].contains(expected), "{var}: {stderr}");
        assert!(!stderr.contains(SECRET) && out.stdout.is_empty(), "{var}: {stderr}");
    }
}

#[test]
fn the_api_key_is_never_echoed() {
    // A key with a space is rejected without showing it.
    let out = run_agent(
        &[],
        &[("STS_STS_URL", "https://127.0.0.1:9"), ("STS_API_KEY", "abc def-secret")],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("STS_API_KEY") && !stderr.contains("def-secret"), "{stderr}");
    // A URL without a key is an error too.
    let out = run_agent(&[], &[("STS_STS_URL", "https://127.0.0.1:9")], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    // A run that fails to connect, at debug level, logs the failure but never the key.
    let child = spawn_agent(
        &[],
        &[
            ("STS_STS_URL", "http://127.0.0.1:9/stsAgent"),
            ("STS_API_KEY", SECRET),
            ("STS_HOSTNAME", "h"),
            ("STS_LOG_LEVEL", "debug"),
        ],
    );
    std::thread::sleep(Duration::from_millis(2500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(10));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("connect failed"), "{all}");
    assert!(!all.contains(SECRET), "{all}");
    assert!(out.status.success());
}

#[test]
fn help_lists_every_variable_and_unknown_flags_are_refused() {
    let out = run_agent(&["--help"], &[], Duration::from_secs(10));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for v in sts_agent::config::VARS {
        assert!(help.contains(v.name) && help.contains(v.default), "{}", v.name);
    }
    let out = run_agent(&["--bogus"], &[], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

#[test]
fn dry_run_prints_one_decodable_json_line_per_payload() {
    let out = run_agent(&["--once"], &[("STS_HOSTNAME", "dry-host")], Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let by =
        |ep: &str| lines.iter().find(|l| l["endpoint"] == ep).unwrap_or_else(|| panic!("no {ep} line in {stdout}"));
    assert!(by("/api/v1/series")["payload"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["metric"] == "system.cpu.user"));
    assert_eq!(by("/intake/")["payload"]["topologies"][0]["components"][0]["externalId"], "urn:host:/dry-host");
    assert_eq!(by("/api/v1/collector")["payload"]["hostName"], "dry-host");
    assert_eq!(by("/intake")["payload"]["internalHostname"], "dry-host");
}

#[test]
fn readme_documents_every_variable() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for v in sts_agent::config::VARS {
        assert!(readme.contains(&format!("`{}`", v.name)), "README lacks {}", v.name);
    }
}

/// Issue 14: a rejected receiver URL is named with its variable and the expected form, and shown
/// without its credentials: no userinfo, no password, no query (`?api_key=`), no fragment, and
/// the API key nowhere (not even in the path).
#[test]
fn a_rejected_url_is_shown_without_its_credentials() {
    let values = [
        "https://user:url-password-1@stackstate.example:badport/",
        "https://stackstate.example:badport/stsAgent?api_key=query-key-2&x=1",
        "https://stackstate.example:0/p#token=fragment-3",
        &format!("https://{SECRET}@stackstate.example/"),
        &format!("https://stackstate.example:99999/{SECRET}/stsAgent"),
        "stackstate.example:7077/?api_key=query-key-4",
        "user:url-password-5@stackstate.example:7077",
        // A password holding `/`, `?` or `#`; a `://` in the query.
        "https://user:url-pass/word-6@stackstate.example:7077/stsAgent",
        "https://user:url-pass?word-7@stackstate.example:7077/stsAgent",
        "https://user:url-pass#word-8@stackstate.example:7077/stsAgent",
        "user:url-password-9@stackstate.example:7077/stsAgent?token=query-key-10&next=http://x",
    ];
    for var in ["STS_STS_URL", "STS_PROCESS_AGENT_URL", "STS_APM_URL"] {
        for value in values {
            let out = run_agent(&["--once"], &[(var, value), ("STS_API_KEY", SECRET)], Duration::from_secs(10));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{var}: {stderr}");
            assert!(lines[0].contains(var) && lines[0].contains("http:// or https://"), "{var}: {stderr}");
            // Still recognisable: the host is shown.
            assert!(lines[0].contains("stackstate.example"), "{var}: {stderr}");
            for secret in ["url-pass", "user:", "query-key", "fragment-3", "word-", SECRET] {
                assert!(!stderr.contains(secret), "{var}={value} echoed {secret:?}: {stderr}");
            }
            assert!(out.stdout.is_empty());
        }
    }
}
