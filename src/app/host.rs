//! The host check runner: source → checks → encoders, with its reused state.

use crate::checks::host_metrics;
use crate::encode::{intake, series::SeriesEncoder};
use crate::model::host::HostSample;
use crate::sources::host::{HostSource, HOST_FILES};

/// The host check's state: its source, two samples (previous and current, swapped each cycle)
/// and the reused encode buffers.
pub struct HostCheck {
    source: HostSource,
    prev: HostSample,
    cur: HostSample,
    reported_problems: u16,
}

impl HostCheck {
    pub fn new(source: HostSource) -> HostCheck {
        HostCheck { source, prev: HostSample::default(), cur: HostSample::default(), reported_problems: 0 }
    }

    /// The last sample taken (the host's inventory: interfaces, disks, filesystems, and their
    /// counters).
    pub fn sample(&self) -> &HostSample {
        &self.cur
    }

    /// Takes a sample and encodes the series payload into `series` and the host topology into
    /// `topology`. Allocates nothing once the buffers have grown to size.
    pub fn run(
        &mut self,
        mono_secs: f64,
        unix_secs: u64,
        host: &str,
        interval: u64,
        series: &mut Vec<u8>,
        topology: &mut Vec<u8>,
    ) -> usize {
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.source.collect(&mut self.cur, mono_secs, unix_secs);
        if self.cur.problems != self.reported_problems {
            for (bit, file) in HOST_FILES.iter().enumerate() {
                let now_bad = self.cur.problems & (1 << bit) != 0;
                let was_bad = self.reported_problems & (1 << bit) != 0;
                if now_bad && !was_bad {
                    warn!("host check: could not read or parse {file}; its metrics are skipped until it can");
                } else if was_bad && !now_bad {
                    info!("host check: {file} is readable again");
                }
            }
            self.reported_problems = self.cur.problems;
        }
        let mut enc = SeriesEncoder::begin(series, host, unix_secs, interval);
        host_metrics::emit(&self.prev, &self.cur, &mut enc);
        let n = enc.finish();
        intake::host_topology(topology, host, &self.cur);
        n
    }
}
