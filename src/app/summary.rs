//! `--once`'s closing summary on stderr: what was sent (or printed, in a dry run) per endpoint,
//! and what the checks found, so a newcomer sees at a glance what the agent reports.

use super::sink::ENDPOINTS;
use super::App;
use std::fmt::Write as _;

impl App {
    pub(super) fn once_summary(&self) {
        let mut s = String::new();
        let dry = self.sink.dry_run();
        let _ = writeln!(s, "sts-agent --once: {}", if dry { "printed on stdout (dry run)" } else { "sent" });
        for (kind, (payloads, bytes)) in self.sink.handed.iter().enumerate() {
            if *payloads == 0 {
                continue;
            }
            let _ = write!(s, "  {:<22} {payloads} payload(s), {bytes} bytes", ENDPOINTS[kind]);
            if let (Some(f), Some(route)) = (self.sink.forwarder(), self.sink.route(kind)) {
                let st = f.stats(route);
                let _ = write!(s, ", {} delivered, {} dropped", st.delivered, st.dropped.total());
            }
            s.push('\n');
        }
        if self.sink.handed.iter().all(|(n, _)| *n == 0) {
            s.push_str("  nothing\n");
        }
        let processes = match &self.process {
            Some(p) => {
                let st = p.stats();
                format!("{} processes ({} reported)", st.total, st.reported)
            }
            None => "processes off".to_string(),
        };
        let containers = self.process.as_ref().map_or(0, |p| p.containers.containers.len());
        let connections = match self.connections {
            Some(_) => format!("{} connections reported", self.connection_status.last_count),
            None => "connections off".to_string(),
        };
        // The trace intake does not run with --once (it only runs the checks).
        let spans = self.traces.as_ref().map_or(0, |t| t.stats.spans);
        let _ = writeln!(
            s,
            "found: 1 host ({:?}), {processes}, {containers} containers, {connections}, {spans} spans",
            self.hostname
        );
        eprint!("{s}");
    }
}
