//! Arguments, configuration, run the loop; nothing else.
#![deny(unsafe_code)]

use std::process::ExitCode;
use sts_agent::app::{App, RunOptions};
use sts_agent::config::{help_text, Config};

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
