//! Arguments, configuration, run the loop; nothing else.
#![deny(unsafe_code)]

use std::process::ExitCode;
use sts_agent::app::{App, RunOptions};
use sts_agent::config::{help_text, Config};

/// The budget benchmark's build counts allocations (see `sts_agent::alloc_count`).
#[cfg(feature = "count-allocs")]
#[global_allocator]
static ALLOCATOR: sts_agent::alloc_count::Counting = sts_agent::alloc_count::Counting;

fn main() -> ExitCode {
    let mut opts = RunOptions::default();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--help" | "-h" => {
                print!("{}", help_text());
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("sts-agent {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "status" => return status(),
            "--once" => opts.once = true,
            "--dry-run" => opts.dry_run = true,
            other => {
                eprintln!("sts-agent: unknown argument {other:?}; see sts-agent --help");
                return ExitCode::from(2);
            }
        }
    }
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sts-agent: {e}");
            return ExitCode::from(2);
        }
    };
    sts_agent::log::set_max_level(cfg.log_level);
    match App::new(cfg, opts).and_then(App::run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            sts_agent::error!("not every payload could be delivered");
            ExitCode::from(1)
        }
        Err(e) => {
            sts_agent::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `sts-agent status`: asks the running agent (its trace-intake port, or its Unix socket when
/// configured) for `/status` and prints the JSON. Exit 0 when the agent answered.
fn status() -> ExitCode {
    use std::io::{Read, Write};
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sts-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let request = b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut response = Vec::new();
    let timeout = Some(std::time::Duration::from_secs(5));
    let result = match &cfg.apm_socket {
        Some(path) => std::os::unix::net::UnixStream::connect(path).and_then(|mut s| {
            s.set_read_timeout(timeout)?;
            s.write_all(request)?;
            s.read_to_end(&mut response)
        }),
        None => std::net::TcpStream::connect(("127.0.0.1", cfg.apm_port)).and_then(|mut s| {
            s.set_read_timeout(timeout)?;
            s.write_all(request)?;
            s.read_to_end(&mut response)
        }),
    };
    let target = match &cfg.apm_socket {
        Some(p) => format!("unix:{}", p.display()),
        None => format!("127.0.0.1:{}", cfg.apm_port),
    };
    if let Err(e) = result {
        eprintln!("sts-agent status: no agent answered on {target} ({e}); is it running with STS_APM_ENABLED=true?");
        return ExitCode::from(1);
    }
    let text = String::from_utf8_lossy(&response);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("sts-agent status: unexpected reply from {target}: {}", text.lines().next().unwrap_or(""));
            ExitCode::from(1)
        }
    }
}
