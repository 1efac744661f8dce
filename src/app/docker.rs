//! The docker check's pass (spec/docker-check.md §2, §3), every `STS_DOCKER_CHECK_INTERVAL`:
//! the `docker.*` series of every running, non-pause container (from its cgroup, through the
//! directories the process check holds), `docker.containers.*` over every container Docker
//! lists, and the container topology on `/intake/`. Rates are computed here between passes.
//!
//! No file is read twice in one moment: when the pass is due in the same loop turn as the
//! process check, that check's cycle reads the pass's figures too, from the same reads
//! (`ContainerTable::docker_wanted`), and the pass reads nothing of those containers; otherwise
//! the pass reads each file once itself. The pass is put off to the process check's next cycle
//! (`timers.rs` `on_process_grid`) so that it is in the same turn, when the process check runs
//! at least as often as the pass (the default 30 s and 40 s).

use super::process::ProcessCheck;
use crate::checks::docker::{container_counts, container_series, container_tags, is_pause};
use crate::checks::docker::{ContainerPass, DeviceNames, GroupKeys, Tags};
use crate::encode::container_topology::container_topology;
use crate::encode::series::SeriesEncoder;
use crate::parse::docker::ContainerMeta;
use crate::parse::{diskstats, proc_stat};
use crate::sources::docker::Metadata;
use crate::sources::procfs::{ProcRoot, ReadBuf};
use std::path::Path;

pub struct DockerCheck {
    proc_root: Option<ProcRoot>,
    buf: ReadBuf,
    devices: DeviceNames,
    /// `docker.containers.*` group keys, kept from pass to pass.
    keys: GroupKeys,
    host_cpu_pct: f64,
    /// Said once: more block devices than [`DeviceNames`] has room for.
    devices_dropped_logged: bool,
    /// The list was not current at the last pass (counts and topology held back); said once
    /// until it is current again.
    list_stale: bool,
}

/// What one pass produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassCounts {
    pub containers_measured: usize,
    /// Of those, how many the process check's cycle of the same moment sampled (its reads
    /// shared); the others the pass read itself.
    pub from_process_reads: usize,
    pub series: usize,
    pub components: usize,
}

/// Whether the pass reports series for this container: Docker says it runs, and it is not an
/// ECS pause container.
fn measured(meta: &ContainerMeta) -> bool {
    meta.state_text == "running" && !is_pause(meta)
}

impl DockerCheck {
    pub fn new(host_proc: &Path) -> DockerCheck {
        let proc_root = ProcRoot::open(host_proc).ok();
        let mut buf = ReadBuf::with_capacity(16 * 1024);
        // The CPU limit of a container without one: the host's CPUs (online at start).
        let cpus = proc_root
            .as_ref()
            .and_then(|r| buf.read_file(r.fd(), c"stat").ok())
            .and_then(|b| proc_stat::parse(b).ok())
            .map_or(1, |s| s.cpu_count.max(1));
        DockerCheck {
            proc_root,
            buf,
            devices: DeviceNames::default(),
            keys: GroupKeys::default(),
            host_cpu_pct: f64::from(cpus) * 100.0,
            devices_dropped_logged: false,
            list_stale: false,
        }
    }

    /// One pass at `mono_secs` (the loop's clock; `unix_secs` stamps the points). Series go to
    /// `series` (an `/api/v1/series` body), topology to `topology` (an `/intake/` body, empty
    /// when Docker lists no container).
    ///
    /// `list_current`: Docker's last list attempt succeeded, recently (see
    /// [`Metadata::current`]). When not, the counts and the topology — which say what Docker
    /// lists now — are held back (said once), rather than repeating the last list's for as long
    /// as Docker is away. The per-container series go on: they are read from the cgroups of the
    /// containers running now; only their tags and the running/pause verdict come from the last
    /// list, and a container that stops loses its cgroup, so none is measured past its end.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        process: &mut ProcessCheck,
        meta: &Metadata,
        list_current: bool,
        mono_secs: f64,
        unix_secs: u64,
        host: &str,
        series: &mut Vec<u8>,
        topology: &mut Vec<u8>,
    ) -> PassCounts {
        series.clear();
        topology.clear();
        // Nothing to say of containers before Docker listed them (no counts of 0).
        if !meta.listed {
            return PassCounts::default();
        }
        self.read_device_names();
        // Sampled already by the process check's cycle of this moment.
        let already = (process.containers.containers.iter())
            .filter(|c| c.docker.cur_at == Some(mono_secs) && meta.get(&c.id).is_some_and(measured))
            .count();
        let table = process.sample_for_docker(mono_secs, |id| meta.get(id).is_some_and(measured));
        let mut enc = SeriesEncoder::begin(series, host, unix_secs, 0).with_source_type("System");
        let mut counts = PassCounts::default();
        let mut tags = Tags::new();
        for c in &mut table.containers {
            let Some(m) = meta.get(&c.id).filter(|m| measured(m)) else { continue };
            // Sampled for this moment (by this pass, or by the process check's cycle of it).
            if c.docker.cur_at != Some(mono_secs) {
                continue;
            }
            container_tags(m, &mut tags);
            // A previous sample of the same cgroup (a restart in place starts afresh).
            let prev = c.docker.prev.filter(|p| p.2 == c.created_ms).map(|(s, at, _)| (s, mono_secs - at));
            let uptime = (c.created_ms > 0).then(|| unix_secs as f64 - c.created_ms as f64 / 1000.0);
            let one_network = match &m.networks[..] {
                [one] => Some(one.as_str()),
                _ => None,
            };
            let cur = c.docker.cur;
            let pass = ContainerPass {
                tags: &tags,
                cur: &cur,
                prev: prev.as_ref().map(|(s, dt)| (s, *dt)),
                uptime_secs: uptime,
                host_cpu_pct: self.host_cpu_pct,
                devices: &self.devices,
                network: one_network,
            };
            counts.series += container_series(&mut enc, &pass);
            counts.containers_measured += 1;
            c.docker.prev = Some((cur, mono_secs, c.created_ms));
        }
        counts.from_process_reads = already;
        if list_current {
            if std::mem::take(&mut self.list_stale) {
                info!("docker pass: Docker's container list is current again: container counts and topology resume");
            }
            counts.series += container_counts(&mut enc, &mut self.keys, &meta.by_id);
        } else if !std::mem::replace(&mut self.list_stale, true) {
            info!(
                "docker pass: Docker's container list is not current (its last look-up failed, or it is old): \
                 no docker.containers.* and no container topology until Docker answers; docker.* series go on"
            );
        }
        enc.finish();
        if list_current {
            counts.components = container_topology(topology, host, meta.by_id.iter().map(|(id, m)| (id, m)));
        }
        counts
    }

    /// Block device names by number, for `device:` tags.
    fn read_device_names(&mut self) {
        self.devices.clear();
        let Some(root) = &self.proc_root else { return };
        if let Ok(b) = self.buf.read_file(root.fd(), c"diskstats") {
            for d in diskstats::iter(b).filter_map(Result::ok) {
                self.devices.push(d.major, d.minor, d.name);
            }
        }
        if self.devices.dropped() > 0 && !std::mem::replace(&mut self.devices_dropped_logged, true) {
            info!(
                "docker pass: {} block devices beyond the first 64 (or with names over 32 bytes): \
                 docker.io.* leaves out their I/O (it is reported per named device)",
                self.devices.dropped()
            );
        }
    }
}
