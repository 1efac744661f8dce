//! The process check runner: list and sample processes, select what to report, enrich those,
//! encode `CollectorProc` messages of at most 100 processes (header + zstd(protobuf)) and the
//! `/intake` side channel. All buffers are reused.

use crate::checks::process::{select, ProcessFilter, Selection, SelectionStats};
use crate::config::Config;
use crate::encode::process_intake::{side_channel, CheckHealth, SelfMetric};
use crate::encode::{process_json, process_msg};
use crate::model::container::ContainerTable;
use crate::model::process::ProcessTable;
use crate::parse::features::Features;
use crate::sources::cgroups::ContainerSource;
use crate::sources::docker::Metadata;
use crate::sources::process::ProcessSource;
use std::io::{self, Cursor};

/// At most this many processes per message (spec/protocol.md §7).
pub const MAX_PER_MESSAGE: usize = 100;
/// Process messages at level 1: command lines and paths vary, and the payload is small.
pub const ZSTD_LEVEL_PROCESSES: i32 = 1;
/// Connection messages at level -1 (zstd's first "fast" level: fewer match searches): 100
/// connections repeat the host, namespace, metric names and addresses, so they lose little to
/// it. Measured on a 100-connection message (`zstd -b`): loopback addresses (the budget's) 893
/// bytes either way at 3.1 GB/s (level 1) and 4.8 GB/s (level -1); the same with 40 different
/// private addresses 2,174 and 2,280 bytes (5 % more) at 1.6 and 2.0 GB/s. Compression was a
/// seventh of the connections check's CPU at level 1 (perf, benches/connections_cycle.rs).
pub const ZSTD_LEVEL_CONNECTIONS: i32 = -1;

/// The zstd context that compresses process-agent messages. The app keeps one and lends it to
/// the process and connections checks in turn: a context keeps its tables and sequence store at
/// their high-water size, so a second one would hold as much again for nothing (with the shared
/// deflate compressor, the budget's `[heap]` went from 2,888 to 2,360 KiB: benches/README.md).
/// Each message type has its level; the context's is changed only when it differs (a parameter
/// set). Level -1 uses smaller hash tables than level 1, so the context keeps its workspace at
/// level 1's size; zstd gives a workspace back (and allocates a smaller one) only after 128
/// compressions in a row that use under a third of it, which a cycle's process messages
/// interrupt unless more than 128 connection messages (12,800 connections) come in a row.
pub struct Zstd {
    ctx: zstd::bulk::Compressor<'static>,
    level: i32,
}

impl Zstd {
    /// Compresses `src` as one frame at `level` after `dst`'s position; `false` if it failed.
    fn compress_at(&mut self, level: i32, src: &[u8], dst: &mut Cursor<&mut Vec<u8>>) -> bool {
        if self.level != level {
            if self.ctx.set_compression_level(level).is_err() {
                return false;
            }
            self.level = level;
        }
        self.ctx.compress_to_buffer(src, dst).is_ok()
    }
}

/// A context for process-agent messages.
pub fn zstd_context() -> io::Result<Zstd> {
    Ok(Zstd { ctx: zstd::bulk::Compressor::new(ZSTD_LEVEL_PROCESSES)?, level: ZSTD_LEVEL_PROCESSES })
}

pub struct ProcessCheck {
    source: ProcessSource,
    pub table: ProcessTable,
    containers_src: Option<ContainerSource>,
    pub containers: ContainerTable,
    filter: ProcessFilter,
    pub selection: Selection,
    system_info: Vec<u8>,
    proto: Vec<u8>,
    group_id: i32,
    runs: u64,
    /// `STS_PROCESS_AGENT_ENABLED=false`: containers only, no processes.
    containers_only: bool,
    interval_s: u64,
    /// The agent's host pid (its identity in `urn:process:/…`).
    self_pid: u32,
    /// What the receiver advertises (set by the app before each run; none by default).
    pub features: Features,
    /// `STS_REPORT_CHECK_HEALTH_STATE` (default true): self topology and health even when the
    /// receiver does not advertise `health-states` (the process agent sends them when either holds).
    report_health: bool,
    /// What the last reporting run sent, for `incremental-topology`'s increments: its processes
    /// `(pid, createTime ms)` and containers `(id, tags hash)`, sorted; and when the last full
    /// `CollectorProc` went out (monotonic seconds).
    prev_procs: Vec<(u32, i64)>,
    prev_ctrs: Vec<([u8; 64], u64)>,
    commands: Vec<process_msg::Command>,
    last_full: Option<f64>,
}

/// With `incremental-topology`, a full `CollectorProc` at least this often (seconds;
/// `IncrementalPublishingRefreshInterval`, spec/protocol.md §7), increments in between.
const FULL_EVERY_S: f64 = 60.0;

/// A container's tags as one number: a change of tags makes its command an "update".
fn tags_hash(meta: &Metadata, id: &[u8; 64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in meta.get(id).map_or(&[][..], |m| &m.tags[..]) {
        for &b in t.as_bytes().iter().chain(b"\0") {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
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
    /// How the check found its processes, for `/status`.
    pub fn source_status(&self) -> super::status::ProcessSourceStatus {
        let n = &self.source.new_pids;
        super::status::ProcessSourceStatus {
            listings_by_reason: n.listings_by_reason,
            probes: n.probes,
            probe_usable: n.usable,
            processes: self.table.procs.len() as u64,
            unread_last_cycle: u64::from(self.table.unread),
            skipped_no_fds_total: self.source.no_fds_total,
            descriptor_counts_total: self.source.fd_counts_total,
        }
    }

    pub fn new(cfg: &Config, containers_only: bool) -> io::Result<ProcessCheck> {
        let mut source = ProcessSource::open(&cfg.host_proc)?;
        // Nothing is reported in containers-only mode: no file is worth its kernel memory.
        source.hold_files =
            if containers_only { crate::sources::process::HoldFiles::None } else { cfg.process_hold_files };
        source.held_files_max_kib = cfg.process_held_files_max_kib;
        source.skip_idle = cfg.process_skip_idle;
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
            system_info: crate::sources::sysinfo::encode_system_info(&cfg.host_proc, &cfg.host_sys),
            proto: Vec::with_capacity(64 * 1024),
            group_id: (std::process::id() as i32).wrapping_mul(7919),
            runs: 0,
            containers_only,
            interval_s: cfg.process_check_interval.as_secs(),
            features: Features::default(),
            report_health: cfg.report_check_health_state,
            prev_procs: Vec::new(),
            prev_ctrs: Vec::new(),
            commands: Vec::new(),
            last_full: None,
        })
    }

    /// The agent's own `(host pid, create time ms)`: its `urn:process:/…` identity.
    pub fn agent_identity(&self) -> (u32, i64) {
        let me = self.self_pid;
        let create = self.table.index_of(me).map_or(0, |i| self.table.procs[i].create_time_ms);
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
        zstd: &mut Zstd,
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
        // `incremental-topology` (spec §9.12): the increment every run (all "update" on the
        // first), and besides it the full snapshot when the refresh interval has passed.
        let incremental = !json && self.features.incremental_topology;
        if incremental {
            self.emit_increments(host, unix_ms, meta, msg, zstd, emit);
        }
        if !incremental || self.last_full.is_none_or(|t| mono_secs - t >= FULL_EVERY_S) {
            if incremental {
                // The snapshot is a message group of its own.
                self.group_id = self.group_id.wrapping_add(1);
            }
            self.emit_full(host, unix_ms, json, meta, msg, zstd, emit);
            self.last_full = Some(mono_secs);
        }
        self.remember_sent(meta);
        self.emit_side_channel(host, unix_ms, meta, msg, emit);
    }

    /// Every reported process, and every container, in `CollectorProc` messages.
    #[allow(clippy::too_many_arguments)]
    fn emit_full(
        &mut self,
        host: &str,
        unix_ms: i64,
        json: bool,
        meta: &Metadata,
        msg: &mut Vec<u8>,
        zstd: &mut Zstd,
        emit: &mut dyn FnMut(Encoded<'_>),
    ) {
        let chunks = self.selection.reported.len().div_ceil(MAX_PER_MESSAGE).max(1);
        let source = &self.source;
        let user = |uid| source.user_name(uid);
        // Without `upgrade-to-multi-metrics` the container metrics ride inside `Container`.
        let rates_inside = !self.features.multi_metrics;
        for k in 0..chunks {
            let lo = (k * MAX_PER_MESSAGE).min(self.selection.reported.len());
            let hi = ((k + 1) * MAX_PER_MESSAGE).min(self.selection.reported.len());
            let part = &self.selection.reported[lo..hi];
            // All containers ride in the first message of the cycle.
            let ctrs = (k == 0).then_some((&self.containers, meta));
            if json {
                process_json::collector_proc(
                    msg,
                    host,
                    &self.table,
                    part,
                    user,
                    ctrs,
                    rates_inside,
                    self.group_id,
                    chunks as i32,
                );
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
                    rates_inside,
                    self.group_id,
                    chunks as i32,
                );
                if !frame(msg, process_msg::TYPE_COLLECTOR_PROC, unix_ms, &self.proto, zstd, ZSTD_LEVEL_PROCESSES) {
                    continue;
                }
            }
            emit(Encoded::Collector(msg));
        }
    }

    /// What changed since the last run, in `CollectorCommands` messages of at most 100
    /// commands: new processes and containers (or containers with new tags) as "update", the
    /// others as "metrics", those gone as "delete".
    fn emit_increments(
        &mut self,
        host: &str,
        unix_ms: i64,
        meta: &Metadata,
        msg: &mut Vec<u8>,
        zstd: &mut Zstd,
        emit: &mut dyn FnMut(Encoded<'_>),
    ) {
        use process_msg::Command;
        let cmds = &mut self.commands;
        cmds.clear();
        let key = |i: u32| self.table.procs.get(i as usize).map_or((0, 0), |p| (p.pid, p.create_time_ms));
        for &i in &self.selection.reported {
            let known = self.prev_procs.binary_search(&key(i)).is_ok();
            cmds.push(if known { Command::UpdateProcessMetrics(i) } else { Command::UpdateProcess(i) });
        }
        // `reported` is in ascending table order, and the table is sorted by pid.
        for &(pid, create) in &self.prev_procs {
            let still = self.selection.reported.binary_search_by_key(&(pid, create), |&i| key(i)).is_ok();
            if !still {
                cmds.push(Command::DeleteProcess(pid, create));
            }
        }
        for (i, c) in self.containers.containers.iter().enumerate() {
            let hash = tags_hash(meta, &c.id);
            let same = self.prev_ctrs.binary_search_by_key(&c.id, |p| p.0).ok().map(|k| self.prev_ctrs[k].1 == hash);
            cmds.push(match same {
                Some(true) => Command::UpdateContainerMetrics(i as u32),
                _ => Command::UpdateContainer(i as u32),
            });
        }
        for (id, _) in &self.prev_ctrs {
            if !self.containers.containers.iter().any(|c| c.id == *id) {
                cmds.push(Command::DeleteContainer(*id));
            }
        }
        // Nothing reported, nothing gone: no message (as the process agent).
        let chunks = cmds.len().div_ceil(MAX_PER_MESSAGE);
        let source = &self.source;
        let user = |uid| source.user_name(uid);
        for k in 0..chunks {
            let part = &cmds[(k * MAX_PER_MESSAGE).min(cmds.len())..((k + 1) * MAX_PER_MESSAGE).min(cmds.len())];
            self.proto.clear();
            process_msg::collector_commands(
                &mut self.proto,
                host,
                &self.table,
                part,
                user,
                &self.system_info,
                (&self.containers, meta),
                !self.features.multi_metrics,
                self.group_id,
                chunks as i32,
            );
            if frame(msg, process_msg::TYPE_COLLECTOR_COMMANDS, unix_ms, &self.proto, zstd, ZSTD_LEVEL_PROCESSES) {
                emit(Encoded::Collector(msg));
            }
        }
    }

    /// Notes what this run sent (sorted), for the next run's increments.
    fn remember_sent(&mut self, meta: &Metadata) {
        self.prev_procs.clear();
        let procs = &self.table.procs;
        self.prev_procs.extend(
            self.selection.reported.iter().filter_map(|&i| procs.get(i as usize)).map(|p| (p.pid, p.create_time_ms)),
        );
        self.prev_procs.sort_unstable();
        self.prev_ctrs.clear();
        self.prev_ctrs.extend(self.containers.containers.iter().map(|c| (c.id, tags_hash(meta, &c.id))));
        self.prev_ctrs.sort_unstable_by_key(|p| p.0);
    }

    fn emit_side_channel(
        &mut self,
        host: &str,
        unix_ms: i64,
        meta: &Metadata,
        msg: &mut Vec<u8>,
        emit: &mut dyn FnMut(Encoded<'_>),
    ) {
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
            (self.report_health || self.features.health_states).then_some(&health),
            &metrics,
            Some((&self.containers, meta, self.features.multi_metrics)),
        );
        emit(Encoded::Intake(msg));
    }
}

/// A process-agent message: the 16-byte header, then `proto` compressed as one zstd frame at
/// `level`. `false` when compression failed (the message is skipped).
pub(crate) fn frame(msg: &mut Vec<u8>, msg_type: u8, unix_ms: i64, proto: &[u8], zstd: &mut Zstd, level: i32) -> bool {
    msg.clear();
    process_msg::header(msg, msg_type, unix_ms);
    let bound = zstd::zstd_safe::compress_bound(proto.len()) + msg.len();
    if msg.capacity() < bound {
        msg.reserve(bound * 2 - msg.len());
    }
    let mut cursor = Cursor::new(&mut *msg);
    cursor.set_position(16);
    zstd.compress_at(level, proto, &mut cursor)
}
