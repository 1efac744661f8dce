//! Arguments, configuration, run the loop; nothing else.
#![deny(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;
use sts_agent::app::{App, RunOptions};
use sts_agent::config::{help_text, Config};
use sts_agent::control;

/// The budget benchmark's build counts allocations (see `sts_agent::alloc_count`).
#[cfg(feature = "count-allocs")]
#[global_allocator]
static ALLOCATOR: sts_agent::alloc_count::Counting = sts_agent::alloc_count::Counting;

fn main() -> ExitCode {
    sts_agent::sys::malloc::tune();
    let mut opts = RunOptions::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("status") => return status(&args[1..]),
        Some("health") => return health(&args[1..]),
        _ => {}
    }
    for arg in args {
        match arg.as_str() {
            "--help" | "-h" => {
                print!("{}", help_text());
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("sts-agent {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
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
        // A configuration the agent cannot run with (e.g. STS_HEALTH_PORT cannot be bound).
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            sts_agent::error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            sts_agent::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// The configuration the running agent was given (the same environment), or exit 2.
fn client_config(command: &str) -> Result<Config, ExitCode> {
    Config::from_env().map_err(|e| {
        eprintln!("sts-agent {command}: {e}");
        ExitCode::from(2)
    })
}

/// `sts-agent status [--json]`: asks the running agent for `/status` and prints a readable
/// report, or the JSON itself. Exit 0 when the agent answered.
fn status(args: &[String]) -> ExitCode {
    let json = match args {
        [] => false,
        [a] if a == "--json" => true,
        _ => {
            eprintln!("sts-agent status: unknown arguments {args:?}; usage: sts-agent status [--json]");
            return ExitCode::from(2);
        }
    };
    let cfg = match client_config("status") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(target) = control::target(&cfg, "/status") else {
        eprintln!(
            "sts-agent status: /status is served on the trace intake only, which is off (STS_APM_ENABLED=false); \
             sts-agent health still answers"
        );
        return ExitCode::from(1);
    };
    match control::get(&target, "/status", Duration::from_secs(5)).map(|r| (r.status, r.body)) {
        Ok((200, body)) if json => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((200, body)) => match serde_json::from_str(&body) {
            Ok(v) => {
                print!("{}", control::render_status(&v, control::unix_now()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sts-agent status: {target} answered something that is not JSON ({e})");
                ExitCode::from(1)
            }
        },
        Ok((code, body)) => {
            eprintln!("sts-agent status: {target} answered {code}: {}", body.trim());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!(
                "sts-agent status: no agent answered on {target} ({e}); is it running with STS_APM_ENABLED=true?"
            );
            ExitCode::from(1)
        }
    }
}

/// `sts-agent health`: the running agent's `/health`, one `PASS`/`FAIL` line per component.
/// Exit 0 when healthy, 1 otherwise (no answer within the limit included), within 2 s, as a
/// container health check wants.
fn health(args: &[String]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("sts-agent health: takes no arguments (got {args:?})");
        return ExitCode::from(2);
    }
    // A health check reads 0 or 1 only: a configuration the agent could not start with is a fail.
    let Ok(cfg) = client_config("health") else {
        println!("FAIL config: the environment is not a valid configuration (see above)");
        return ExitCode::from(1);
    };
    let Some(target) = control::target(&cfg, "/health") else {
        println!("FAIL loop: no local API to ask (STS_APM_ENABLED=false and STS_HEALTH_PORT unset)");
        return ExitCode::from(1);
    };
    let limit = Duration::from_millis(1500);
    match control::get(&target, "/health", limit) {
        // Only the agent's own report counts: another program answering on the port (holding
        // it while the agent could not bind it) is no healthy agent.
        Ok(reply) => match control::health_report(&reply) {
            Ok(()) => {
                print!("{}", reply.body);
                if reply.status == 200 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(what) => {
                println!("FAIL loop: something else answers on {target}: {what}");
                ExitCode::from(1)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            println!("FAIL loop: something else answers on {target}: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("FAIL loop: no answer from {target}: {e}");
            ExitCode::from(1)
        }
    }
}
