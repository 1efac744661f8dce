//! The process check runner: list and sample processes, select what to report, enrich those,
//! encode `CollectorProc` messages of at most 100 processes (header + zstd(protobuf)) and the
//! `/intake` side channel. All buffers are reused.

use crate::checks::process::{select, ProcessFilter, Selection, SelectionStats};
use crate::config::Config;
use crate::encode::process_intake::{side_channel, CheckHealth, SelfMetric};
use crate::encode::{process_json, process_msg};
use crate::model::container::ContainerTable;
use crate::model::process::ProcessTable;
use crate::sources::cgroups::ContainerSource;
use crate::sources::docker::Metadata;
use crate::sources::process::ProcessSource;
use std::io::{self, Cursor};

/// At most this many processes per message (spec/protocol.md §7).
pub const MAX_PER_MESSAGE: usize = 100;
/// Level 1: the process payload is small and this keeps compression well under a millisecond.
const ZSTD_LEVEL: i32 = 1;

pub struct ProcessCheck {
    source: ProcessSource,
    pub table: ProcessTable,
    containers_src: Option<ContainerSource>,
    pub containers: ContainerTable,
    filter: ProcessFilter,
    pub selection: Selection,
    system_info: Vec<u8>,
    proto: Vec<u8>,
    zstd: zstd::bulk::Compressor<'static>,
    group_id: i32,
    runs: u64,
    /// `STS_PROCESS_AGENT_ENABLED=false`: containers only, no processes.
    containers_only: bool,
    interval_s: u64,
    /// The agent's host pid (its identity in `urn:process:/…`).
    self_pid: u32,
}

/// What one run produced.
pub enum Encoded<'a> {
    /// A `/api/v1/collector` body (binary) or, in a dry run, its JSON view.
    Collector(&'a [u8]),
    /// A `/intake` JSON side-channel payload (uncompressed).
    Intake(&'a [u8]),
    /// A `/api/v1/connections` body (binary) or, in a dry run, its JSON view.
    Connections(&'a [u8]),
}

impl ProcessCheck {
    pub fn new(cfg: &Config, containers_only: bool) -> io::Result<ProcessCheck> {
        let mut source = ProcessSource::open(&cfg.host_proc)?;
        // Nothing is reported in containers-only mode: no file is worth its kernel memory.
        source.hold_files =
            if containers_only { crate::sources::process::HoldFiles::None } else { cfg.process_hold_files };
        source.held_files_max_kib = cfg.process_held_files_max_kib;
        let self_pid = source.self_pid();
        Ok(ProcessCheck {
            self_pid,
            source,
            table: ProcessTable::default(),
            // No cgroups (or an unreadable HOST_SYS) is normal: processes are still reported.
            containers_src: ContainerSource::open(&cfg.host_proc, &cfg.host_sys).ok(),
            containers: ContainerTable::default(),
            filter: ProcessFilter {
                blacklist: cfg.blacklist.clone(),
                inclusions: cfg.inclusions,
                short_lived_secs: cfg.short_lived_secs,
            },
            selection: Selection::default(),
            system_info: crate::sources::sysinfo::encode_system_info(&cfg.host_proc),
            proto: Vec::with_capacity(64 * 1024),
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            group_id: (std::process::id() as i32).wrapping_mul(7919),
            runs: 0,
            containers_only,
            interval_s: cfg.process_check_interval.as_secs(),
        })
    }

    /// The agent's own `(host pid, create time ms)`: its `urn:process:/…` identity.
    pub fn agent_identity(&self) -> (u32, i64) {
        let me = self.self_pid;
        let create = self
            .table
            .procs
            .binary_search_by_key(&me, |p| p.pid)
            .ok()
            .map_or(0, |i| self.table.procs[i].create_time_ms);
        (me, create)
    }

    /// For the docker pass at `mono_secs`: samples the containers `want` names that this
    /// check's cycle did not already sample for that moment (see `ContainerTable::docker_wanted`),
    /// through the cgroup directories it holds; returns the table.
    pub fn sample_for_docker(&mut self, mono_secs: f64, want: impl Fn(&[u8; 64]) -> bool) -> &mut ContainerTable {
        if let Some(cs) = self.containers_src.as_mut() {
            for c in &mut self.containers.containers {
                if c.docker.cur_at != Some(mono_secs) && want(&c.id) {
                    cs.docker_sample(c, mono_secs);
                }
            }
        }
        &mut self.containers
    }

    /// Asks the next cycle to read the docker pass's figures too (it runs in the same moment).
    pub fn want_docker_samples(&mut self, wanted: bool) {
        self.containers.docker_wanted = wanted;
    }

    pub fn stats(&self) -> SelectionStats {
        self.selection.stats
    }

    /// Collects and, from the second run on, hands each encoded payload to `emit`. The first run
    /// only primes the rates (as the original agent does). `json`: emit JSON views (dry run).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        mono_secs: f64,
        unix_ms: i64,
        host: &str,
        json: bool,
        meta: &Metadata,
        msg: &mut Vec<u8>,
        emit: &mut dyn FnMut(Encoded<'_>),
    ) {
        self.runs += 1;
        self.source.own_namespace = self.containers_src.as_ref().and_then(ContainerSource::own_namespace);
        self.source.collect(&mut self.table, mono_secs, unix_ms);
        select(&mut self.table, &self.filter, &mut self.selection);
        if self.containers_only {
            self.selection.reported.clear();
        }
        self.source.enrich(&mut self.table, &self.selection.reported);
        if let Some(cs) = self.containers_src.as_mut() {
            cs.update(&mut self.containers, &self.table);
        }
        self.containers.docker_wanted = false;
        if self.runs == 1 {
            return;
        }
        self.group_id = self.group_id.wrapping_add(1);
        let chunks = self.selection.reported.len().div_ceil(MAX_PER_MESSAGE).max(1);
        let source = &self.source;
        let user = |uid| source.user_name(uid);
        for k in 0..chunks {
            let lo = (k * MAX_PER_MESSAGE).min(self.selection.reported.len());
            let hi = ((k + 1) * MAX_PER_MESSAGE).min(self.selection.reported.len());
            let part = &self.selection.reported[lo..hi];
            // All containers ride in the first message of the cycle.
            let ctrs = (k == 0).then_some((&self.containers, meta));
            if json {
                process_json::collector_proc(msg, host, &self.table, part, user, ctrs, self.group_id, chunks as i32);
            } else {
                self.proto.clear();
                process_msg::collector_proc(
                    &mut self.proto,
                    host,
                    &self.table,
                    part,
                    user,
                    &self.system_info,
                    ctrs,
                    self.group_id,
                    chunks as i32,
                );
                if !frame(msg, process_msg::TYPE_COLLECTOR_PROC, unix_ms, &self.proto, &mut self.zstd) {
                    continue;
                }
            }
            emit(Encoded::Collector(msg));
        }

        let s = self.selection.stats;
        let (me, my_create) = self.agent_identity();
        let metrics = [
            SelfMetric::new("stackstate.process_agent.processes.total_count", f64::from(s.total)),
            SelfMetric::new("stackstate.process_agent.processes.reported_count", f64::from(s.reported)),
            SelfMetric::new("stackstate.process_agent.processes.top_usage_count", f64::from(s.included_by_usage)),
            SelfMetric::new("stackstate.process_agent.processes.white_listed_count", f64::from(s.allowed)),
            SelfMetric::new("stackstate.process_agent.containers.total_count", self.containers.containers.len() as f64),
            SelfMetric::new("stackstate.process_agent.processes.skipped_no_fds", f64::from(self.table.no_fds)),
        ];
        let (health, message) = if self.table.no_fds > 0 {
            ("DEVIATING", "out of file descriptors reading /proc: some processes were skipped; see the agent log")
        } else {
            ("CLEAR", "")
        };
        let health = CheckHealth { check: "process", interval_s: self.interval_s, health, message };
        side_channel(
            msg,
            host,
            me,
            my_create,
            (unix_ms / 1000) as u64,
            &health,
            &metrics,
            Some((&self.containers, meta)),
        );
        emit(Encoded::Intake(msg));
    }
}

/// A process-agent message: the 16-byte header, then `proto` compressed as one zstd frame.
/// `false` when compression failed (the message is skipped).
pub(crate) fn frame(
    msg: &mut Vec<u8>,
    msg_type: u8,
    unix_ms: i64,
    proto: &[u8],
    zstd: &mut zstd::bulk::Compressor<'static>,
) -> bool {
    msg.clear();
    process_msg::header(msg, msg_type, unix_ms);
    let bound = zstd::zstd_safe::compress_bound(proto.len()) + msg.len();
    if msg.capacity() < bound {
        msg.reserve(bound * 2 - msg.len());
    }
    let mut cursor = Cursor::new(&mut *msg);
    cursor.set_position(16);
    zstd.compress_to_buffer(proto, &mut cursor).is_ok()
}
