//! The process check against real processes this test spawns, sent to a real TLS receiver and
//! decoded independently (ruzstd + prost structs written from the spec).

mod common;
#[path = "support/test_cgroup.rs"]
mod test_cgroup;
use common::pa_proto::{self, CollectorProc, Process};
use common::*;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: &str = "proc-test-key-0123456789";
/// The CPU-based tests must not see each other's busy loops.
static SERIAL: Mutex<()> = Mutex::new(());

fn spawn(cmd: &str, args: &[&str]) -> Child {
    Command::new(cmd).args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

fn marker(tag: &str) -> String {
    format!(
        "sts-test-{tag}-{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
    )
}

/// Runs `--once` against a fresh receiver; returns the decoded messages and the raw requests.
fn run_once(extra: &[(&str, &str)]) -> (Vec<CollectorProc>, Vec<Request>) {
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    let mut env = vec![
        ("STS_STS_URL", url.as_str()),
        ("STS_API_KEY", KEY),
        ("STS_HOSTNAME", "proc-host"),
        ("STS_SKIP_SSL_VALIDATION", "true"),
    ];
    env.extend_from_slice(extra);
    let out = run_agent(&["--once"], &env, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reqs = rx.requests();
    let msgs = reqs
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v1/collector")
        .map(|r| {
            let (version, encoding, kind, sub, org, ts) = pa_proto::header(&r.body);
            assert_eq!((version, encoding, kind, sub, org), (3, 2, 12, 0, 0));
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
            assert!((now - 120_000..=now).contains(&ts), "timestamp {ts}");
            pa_proto::collector_proc(&r.body)
        })
        .collect();
    (msgs, reqs)
}

fn find(msgs: &[CollectorProc], pid: u32) -> Option<&Process> {
    msgs.iter().flat_map(|m| &m.processes).find(|p| p.pid == pid as i32)
}

fn proc_file(pid: u32, f: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap()
}

#[test]
fn reports_real_processes_with_their_fields() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = marker("fields");
    let mem_code = "import time; x = b'\\x01' * (64 << 20); time.sleep(120)";
    let kids = Kids(vec![
        spawn("python3", &["-c", mem_code, "--password", "hunter2", &m]),
        spawn("python3", &["-c", "while True: pass", &format!("{m}-busy")]),
        spawn("bash", &["-c", &format!("sleep 120; echo {m}-blacklisted")]),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let (msgs, reqs) = run_once(&[("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")]);
    assert!(!msgs.is_empty());

    let mem_pid = kids.0[0].id();
    let p = find(&msgs, mem_pid).expect("the python process is reported");
    let cmd = p.command.as_ref().unwrap();
    // `python3` may be a shim that re-executes the interpreter by its full path.
    assert!(cmd.args[0].ends_with("python3") && cmd.args[1] == "-c", "{:?}", cmd.args);
    let pw = cmd.args.iter().position(|a| a == "--password").unwrap();
    assert_eq!(cmd.args[pw + 1], "********", "the password is scrubbed");
    assert!(msgs
        .iter()
        .flat_map(|m| &m.processes)
        .all(|p| p.command.as_ref().is_none_or(|c| !c.args.iter().any(|a| a.contains("hunter2")))));
    assert_eq!(cmd.args.last().unwrap(), &m);
    assert_eq!(cmd.ppid, std::process::id() as i32);
    assert!(cmd.exe.contains("python3"), "{}", cmd.exe);
    assert_eq!(cmd.cwd, std::env::current_dir().unwrap().to_str().unwrap());
    let user = p.user.as_ref().unwrap();
    let uid = proc_file(mem_pid, "status")
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<i32>()
        .unwrap();
    assert_eq!(user.uid, uid);
    let name = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.split(':').nth(2) == Some(&uid.to_string()))
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(user.name, name);
    assert!(
        (p.create_time - create_time_ms(mem_pid)).abs() <= 1000,
        "{} vs {}",
        p.create_time,
        create_time_ms(mem_pid)
    );
    let vm_rss_kib: f64 = proc_file(mem_pid, "status")
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let rss = p.memory.as_ref().unwrap().rss as f64;
    assert!(rss >= 64.0 * 1024.0 * 1024.0, "rss {rss}");
    assert!((rss / (vm_rss_kib * 1024.0) - 1.0).abs() < 0.15, "rss {rss} vs VmRSS {vm_rss_kib} KiB");
    assert_eq!(p.state, 3, "sleeping");
    assert!(p.open_fd_count >= 3, "fds {}", p.open_fd_count);
    assert!(p.voluntary_ctx_switches > 0);
    let io = p.io_stat.as_ref().unwrap();
    assert!(io.read_rate >= 0.0, "io readable as root");

    let busy = find(&msgs, kids.0[1].id()).expect("the busy process is reported");
    let cpu = busy.cpu.as_ref().unwrap();
    // One thread is at most one core (100); process and host ticks are read moments apart at
    // 10 ms granularity over a 1 s window, so allow a few percent either way.
    assert!(cpu.total_pct > 50.0 && cpu.total_pct <= 105.0, "busy loop at {}%", cpu.total_pct);
    assert!(cpu.user_pct > 40.0 && cpu.num_threads >= 1 && cpu.last_cpu.starts_with("cpu"));
    assert_eq!(busy.state, 2, "running");

    assert!(find(&msgs, kids.0[2].id()).is_none(), "bash is blacklisted (^bash)");

    let info = msgs[0].info.as_ref().unwrap();
    let os = info.os.as_ref().unwrap();
    assert_eq!(os.kernel_version, nix::sys::utsname::uname().unwrap().release().to_str().unwrap());
    assert_eq!(os.name, "linux");
    assert_eq!(info.cpus.len(), std::thread::available_parallelism().unwrap().get());
    assert!(info.total_memory > 0);
    assert!(msgs.iter().all(|m| m.host_name == "proc-host"));

    let collector = reqs.iter().find(|r| r.target == "/stsAgent/api/v1/collector").unwrap();
    assert_eq!(collector.header("content-encoding"), Some("x-zip"));
    assert_eq!(collector.header("sts-api-key"), Some(KEY));
    assert_eq!(collector.header("sts-hostname"), Some("proc-host"));
    assert!(collector.header("sts-processagentversion").is_some());
    let side =
        reqs.iter().find(|r| r.target.starts_with("/stsAgent/intake?api_key=")).expect("the /intake side channel");
    assert_eq!(side.header("content-encoding"), Some("gzip"));
    let v = side.json();
    assert_eq!(v["topologies"][0]["components"][0]["externalId"], "urn:stackstate-agent:process:/proc-host");
    assert_eq!(v["health"][0]["check_states"][0]["health"], "CLEAR");
    let total = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == "stackstate.process_agent.processes.total_count")
        .unwrap();
    assert!(total[2].as_f64().unwrap() >= 3.0);
}

/// `/proc/<pid>/statm` and `stat`'s `rss`, in bytes: `[size, resident, shared, text, data]`, and
/// stat's rss.
fn memory_bytes(pid: u32) -> ([u64; 5], u64) {
    let page = rustix::param::page_size() as u64;
    let statm: Vec<u64> =
        proc_file(pid, "statm").split_whitespace().map(|v| v.parse::<u64>().unwrap() * page).collect();
    let stat = proc_file(pid, "stat");
    let rss = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().nth(21).unwrap().parse::<u64>().unwrap() * page;
    ([statm[0], statm[1], statm[2], statm[3], statm[5]], rss)
}

/// The memory figures as sent (each cycle's process-agent messages decoded), for a real Python
/// process that touches 50 MiB more (anonymous, written) on SIGUSR1: rss and vms are `stat`'s,
/// so the next cycle after it grew carries the new rss; shared, text and data equal `statm`'s
/// (read when the process is found, then every fourth cycle while reported), so the 50 MiB of
/// data reach the receiver within four cycles.
#[test]
fn memory_as_sent_follows_stat_every_cycle_and_statm_within_four() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let code = "import signal\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n\
        keep = []\n\
        print('ready', flush=True)\n\
        signal.sigwait({signal.SIGUSR1})\n\
        keep.append(b'\\x01' * (50 << 20))\n\
        print('grown', flush=True)\n\
        signal.sigwait({signal.SIGUSR1})\n";
    let mut kids = Kids(vec![Command::new("python3")
        .args(["-c", code])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()]);
    let pid = kids.0[0].id();
    let mut out = std::io::BufReader::new(kids.0[0].stdout.take().unwrap());
    let mut expect = |what: &str| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), what);
        // Asleep in sigwait, its memory still (statm the same 20 ms apart).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let a = proc_file(pid, "statm");
            std::thread::sleep(Duration::from_millis(20));
            let stat = proc_file(pid, "stat");
            if stat[stat.rfind(')').unwrap() + 2..].starts_with('S') && proc_file(pid, "statm") == a {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the python child did not settle within 10 s");
        }
    };
    expect("ready");
    let mut check = sts_agent::app::ProcessCheck::new(&report_everything(), false).unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut t = 0.0;
    let mut zstd = sts_agent::app::zstd_context().unwrap();
    // One cycle: this process's figures as sent, `[vms, rss, shared, text, data]` and rss.
    let mut sent = |check: &mut sts_agent::app::ProcessCheck| {
        t += 1.0;
        let mut found = None;
        check.run(
            t,
            1_700_000_000_000 + (t * 1000.0) as i64,
            "h",
            false,
            &meta,
            &mut Vec::new(),
            &mut zstd,
            &mut |e| {
                if let sts_agent::app::Encoded::Collector(body) = e {
                    let msg = pa_proto::collector_proc(body);
                    if let Some(m) = find(&[msg], pid).and_then(|p| p.memory.clone()) {
                        found = Some([m.vms, m.rss, m.shared, m.text, m.data]);
                    }
                }
            },
        );
        found.expect("the python child is reported")
    };
    quiet_cycle(&mut check, 0.0, &meta);
    let ours = sent(&mut check);
    let (before, rss) = memory_bytes(pid);
    assert!(before[2] > 0 && before[3] > 0 && before[4] > 0, "shared, text, data {before:?}");
    assert_eq!(ours, [before[0], rss, before[2], before[3], before[4]], "statm's figures, stat's rss");
    let st = Command::new("kill").args(["-USR1", &pid.to_string()]).status().unwrap();
    assert!(st.success());
    expect("grown");
    let (after, rss_after) = memory_bytes(pid);
    assert!(after[4] >= before[4] + (50 << 20) && rss_after >= rss + (40 << 20), "{after:?} rss {rss_after}");
    let ours = sent(&mut check);
    assert_eq!([ours[0], ours[1]], [after[0], rss_after], "vms and rss: the next cycle");
    let mut cycles = 1;
    let mut ours = ours;
    while ours[4] != after[4] {
        assert_eq!(ours[2..], before[2..], "statm's figures until its next read");
        assert!(cycles < 4, "data still {} after {cycles} cycles: statm's is {}", ours[4], after[4]);
        ours = sent(&mut check);
        cycles += 1;
    }
    assert_eq!(ours, [after[0], rss_after, after[2], after[3], after[4]], "after {cycles} cycles");
}

#[test]
fn top_cpu_inclusion_overrides_the_blacklist() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = marker("incl");
    let kids = Kids(vec![spawn("bash", &["-c", "while :; do :; done", &m])]);
    std::thread::sleep(Duration::from_millis(300));
    let (msgs, _) = run_once(&[("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")]);
    assert!(find(&msgs, kids.0[0].id()).is_none(), "blacklisted without an inclusion");
    // Two slots, so one stray CPU hog elsewhere on the machine cannot crowd it out.
    let (msgs, _) = run_once(&[
        ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU", "2"),
    ]);
    let p = find(&msgs, kids.0[0].id()).expect("the busy blacklisted bash is included as top CPU");
    assert!(p.cpu.as_ref().unwrap().total_pct > 50.0);
    // A threshold above what the host uses disables the list.
    let (msgs, _) = run_once(&[
        ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU", "2"),
        ("STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD", "100000"),
    ]);
    assert!(find(&msgs, kids.0[0].id()).is_none());
}

#[test]
fn fresh_processes_are_short_lived_by_default() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = marker("fresh");
    let kids = Kids(vec![spawn("python3", &["-c", "import time; time.sleep(60)", &m])]);
    let (msgs, _) = run_once(&[]);
    assert!(find(&msgs, kids.0[0].id()).is_none(), "a process seconds old is short-lived under the 60 s default");
    assert!(
        find(&msgs, 1).is_some() || msgs.iter().map(|m| m.processes.len()).sum::<usize>() > 0,
        "older processes are still reported"
    );
}

#[test]
fn more_than_100_processes_are_chunked() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kids = Kids((0..130).map(|_| spawn("cat", &[])).collect());
    std::thread::sleep(Duration::from_millis(200));
    let (msgs, _) = run_once(&[("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")]);
    assert!(msgs.len() >= 2, "{} messages", msgs.len());
    let gid = msgs[0].group_id;
    for m in &msgs {
        assert_eq!(m.group_id, gid, "one groupId per cycle");
        assert_eq!(m.group_size as usize, msgs.len());
        assert!(m.processes.len() <= 100);
    }
    for k in &kids.0 {
        let n = msgs.iter().flat_map(|m| &m.processes).filter(|p| p.pid == k.id() as i32).count();
        assert_eq!(n, 1, "pid {} reported {n} times", k.id());
    }
}

#[test]
fn process_agent_modes() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (msgs, reqs) =
        run_once(&[("STS_PROCESS_AGENT_ENABLED", "false"), ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")]);
    assert!(!msgs.is_empty() && msgs.iter().all(|m| m.processes.is_empty()), "containers only: no processes");
    assert!(reqs.iter().any(|r| r.target.contains("/api/v1/series")));
    let (msgs, reqs) = run_once(&[("STS_PROCESS_AGENT_ENABLED", "disabled")]);
    assert!(msgs.is_empty());
    assert!(!reqs.iter().any(|r| r.target.starts_with("/stsAgent/intake?")), "no process-agent side channel");
    assert!(reqs.iter().any(|r| r.target.contains("/api/v1/series")), "host metrics still flow");
}

#[test]
fn a_process_that_execs_is_judged_again() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = marker("exec");
    // First a blacklisted `bash`, then (same pid, same start time) python with the marker.
    let kids =
        Kids(vec![spawn("bash", &["-c", &format!("sleep 1.5; exec python3 -c 'import time; time.sleep(60)' {m}")])]);
    let pid = kids.0[0].id();
    let child = spawn_agent(
        &["--dry-run"],
        &[
            ("STS_HOSTNAME", "exec-host"),
            ("STS_PROCESS_CHECK_INTERVAL", "1"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("PATH", &std::env::var("PATH").unwrap_or_default()),
        ],
    );
    // Read stdout all along: a pipe left unread blocks the agent's writes once it holds 64 KiB
    // (two process reports of a busy host).
    let mut child = child;
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut pipe, &mut b);
        b
    });
    std::thread::sleep(Duration::from_millis(5000));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = wait_with_timeout(child, Duration::from_secs(10));
    let stdout = reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&stdout);
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["endpoint"] == "/api/v1/collector")
        .collect();
    assert!(reports.len() >= 2, "{stdout}");
    let mine =
        |v: &serde_json::Value| v["payload"]["processes"].as_array().unwrap().iter().find(|p| p["pid"] == pid).cloned();
    assert!(mine(&reports[0]).is_none(), "bash is blacklisted before the exec");
    let after = reports.iter().rev().find_map(mine).expect("reported once it became python");
    let args: Vec<&str> = after["command"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args.last(), Some(&m.as_str()), "{args:?}");
    assert!(after["command"]["exe"].as_str().unwrap().contains("python"));
}

/// A shell as pid 1 of a new pid namespace with its own procfs, driven line by line.
struct PidNs {
    sh: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    /// That procfs, reached from the host through the shell's root.
    proc: std::path::PathBuf,
}

impl PidNs {
    fn new() -> PidNs {
        let mut sh = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount-proc", "sh"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare");
        let out = std::io::BufReader::new(sh.stdout.take().unwrap());
        let mut ns = PidNs { sh, out, proc: Default::default() };
        // unshare forks the namespace's pid 1; its host pid is the child of unshare.
        let children = format!("/proc/{0}/task/{0}/children", ns.sh.id());
        let host_pid = ns
            .ask("echo $$")
            .parse::<u32>()
            .ok()
            .filter(|p| *p == 1)
            .and_then(|_| std::fs::read_to_string(&children).ok()?.split_whitespace().next()?.parse::<u32>().ok());
        ns.proc = format!("/proc/{}/root/proc", host_pid.expect("a shell as pid 1 of a new pid namespace")).into();
        ns
    }

    /// Runs `cmd` in the shell and returns the line it prints.
    fn ask(&mut self, cmd: &str) -> String {
        use std::io::{BufRead, Write};
        let stdin = self.sh.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

impl Drop for PidNs {
    fn drop(&mut self) {
        // unshare's death kills the namespace's pid 1 (--kill-child), and with it every process
        // in the namespace.
        let _ = self.sh.kill();
        let _ = self.sh.wait();
    }
}

/// A new process at a pid whose previous process exited between two cycles is a new process
/// (key `(pid, start time)`): seen in the cycle after the exit, reported from its second
/// observation, as any new process. The pid is reused for real (`ns_last_pid` in a pid
/// namespace of the test's own, whose procfs the check reads as `HOST_PROC`).
#[test]
fn a_new_process_at_a_reused_pid_is_seen_at_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ns = PidNs::new();
    let mut cfg = report_everything();
    cfg.host_proc = ns.proc.clone();
    let mut check = sts_agent::app::ProcessCheck::new(&cfg, false).unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut t = 0.0;
    let mut cycle = |check: &mut sts_agent::app::ProcessCheck| {
        t += 1.0;
        quiet_cycle(check, t, &meta);
    };
    let at = |check: &sts_agent::app::ProcessCheck, pid: u32| {
        let i = check.table.procs.binary_search_by_key(&pid, |p| p.pid).ok()?;
        let p = &check.table.procs[i];
        let args: Vec<String> = p.args().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        Some((args.join(" "), p.start_ticks, check.selection.reported.contains(&(i as u32))))
    };
    let first: u32 = ns.ask("echo 99 > /proc/sys/kernel/ns_last_pid; /bin/sleep 1000 & echo $!").parse().unwrap();
    assert_eq!(first, 100, "ns_last_pid chose the pid");
    // Past the fork, into sleep (by its path: `^sleep` is blacklisted): until the forked shell
    // has exec'd, pid 100 is an `sh` with the shell's command line.
    let comm = ns.proc.join("100/comm");
    let exec_done = || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
            assert!(std::time::Instant::now() < deadline, "pid 100 did not exec sleep within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    exec_done();
    cycle(&mut check);
    cycle(&mut check);
    let (args, old_start, reported) = at(&check, 100).expect("the first process");
    assert_eq!((args.as_str(), reported), ("/bin/sleep 1000", true));
    let held =
        |check: &sts_agent::app::ProcessCheck| check.table.procs.iter().any(|p| p.pid == 100 && p.held.stat.is_some());
    // So that the new process below is seen through the held `stat` of the old one (ESRCH).
    assert!(held(&check), "the first process's stat is held");

    std::thread::sleep(Duration::from_millis(30));
    let second: u32 = ns
        .ask("kill $!; wait $! 2>/dev/null; echo 99 > /proc/sys/kernel/ns_last_pid; /bin/sleep 1001 & echo $!")
        .parse()
        .unwrap();
    assert_eq!(second, 100, "the pid was reused");
    exec_done();
    cycle(&mut check);
    let (args, start, reported) = at(&check, 100).expect("the new process is in the table in the cycle after the exit");
    assert_eq!(args, "/bin/sleep 1001");
    assert_ne!(start, old_start, "another process");
    assert!(!reported, "its first observation only primes");
    assert!(held(&check), "the new process's stat is held, not the old one's");
    cycle(&mut check);
    let (args, _, reported) = at(&check, 100).unwrap();
    assert_eq!((args.as_str(), reported), ("/bin/sleep 1001", true), "reported from its second observation");
}

/// A process that execs keeps its pid and start time, but its program, user and container may
/// change (a runtime joins the container's cgroup and drops privileges before it execs the
/// entrypoint). Here `sh` joins a Docker-style cgroup, drops to nobody through `setpriv` and
/// execs `sh` again, so even the name stays the same: the exec is seen from the new image in
/// `stat`, and the command line, user and container are read again.
#[test]
fn a_process_that_execs_gets_its_user_and_container_read_again() {
    use std::io::Write;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let id = test_cgroup::hex_id("exec-ids", 64);
    let cg = test_cgroup::TestCgroup::new(&[format!("sts-test-{}-docker", std::process::id())], &id)
        .expect("this test needs the cgroup v1 memory controller at /sys/fs/cgroup/memory");
    let m = marker("exec-ids");
    let script = format!(
        "read x; echo $$ > {}; exec setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'read y' {m}",
        cg.path("memory", "cgroup.procs")
    );
    let mut kids = Kids(vec![spawn("sh", &["-c", &script])]);
    let pid = kids.0[0].id();
    let mut check = sts_agent::app::ProcessCheck::new(&report_everything(), false).unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut t = 0.0;
    let mut cycle = |check: &mut sts_agent::app::ProcessCheck| {
        t += 1.0;
        quiet_cycle(check, t, &meta);
    };
    let facts = |check: &sts_agent::app::ProcessCheck| {
        let i = check.table.procs.binary_search_by_key(&pid, |p| p.pid).expect("in the table");
        let p = &check.table.procs[i];
        let args: Vec<String> = p.args().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        (args, p.uid, p.gid, p.container_id.map(|c| String::from_utf8_lossy(&c).into_owned()), p.start_ticks)
    };
    std::thread::sleep(Duration::from_millis(100));
    cycle(&mut check);
    cycle(&mut check);
    let (args, uid, gid, ctr, start) = facts(&check);
    assert_eq!((args.last().map(String::as_str), uid, gid, ctr), (Some(script.as_str()), 0, 0, None), "before");

    writeln!(kids.0[0].stdin.as_mut().unwrap(), "go").unwrap();
    let second_sh = || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sh\0-c\0read y\0"));
    for _ in 0..300 {
        if second_sh() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(second_sh(), "the second sh is running");
    assert_eq!(proc_file(pid, "comm").trim(), "sh", "the same name before and after the exec");
    cycle(&mut check);
    let (args, uid, gid, ctr, start_after) = facts(&check);
    assert_eq!(start_after, start, "the same process");
    assert_eq!(args, ["sh", "-c", "read y", m.as_str()], "the command line is read again");
    assert_eq!((uid, gid), (65534, 65534), "the user is read again");
    assert_eq!(ctr.as_deref(), Some(id.as_str()), "the container is read again");
    drop(cg);
}

/// The agent's `--once` run under `prlimit --nofile=<limits>`, with the process filters off.
fn run_once_with_nofile(limits: &str) -> std::process::Output {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let child = Command::new("prlimit")
        .args([&format!("--nofile={limits}"), "--", AGENT, "--once"])
        .env_clear()
        .envs([
            ("STS_EC2_METADATA_URL", "http://127.0.0.1:9"),
            ("STS_APM_RECEIVER_PORT", port.as_str()),
            ("STS_HOSTNAME", "nofds-host"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit");
    wait_with_timeout(child, Duration::from_secs(60))
}

/// Out of file descriptors (the agent holds one per process): a real run under a low
/// `RLIMIT_NOFILE` (`prlimit`) on a host with more processes than that. The processes it cannot
/// open are counted (a self-metric, a DEVIATING health state) and logged, once although both
/// process cycles of the run hit the limit, and the table stops short of the limit so that the
/// rest of the agent still has descriptors. With a higher hard limit, the agent raises its soft
/// limit (at start, `app`) and none is skipped.
#[test]
fn running_out_of_file_descriptors_is_counted_and_logged_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Enough processes to pass the limit on any host.
    let kids = Kids((0..100).map(|_| spawn("cat", &[])).collect());
    std::thread::sleep(Duration::from_millis(200));
    let out = run_once_with_nofile("64:64");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("out of file descriptors")).collect();
    assert_eq!(lines.len(), 1, "logged once: {stderr}");
    assert!(lines[0].contains("WARN") && lines[0].contains("RLIMIT_NOFILE"), "{}", lines[0]);
    // The process table leaves descriptors to the rest of the agent: the host check still reads.
    assert!(!stderr.contains("host check: could not read"), "{stderr}");
    assert!(!stderr.contains("Too many open files"), "{stderr}");
    let intake: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["endpoint"] == "/intake")
        .map(|v| v["payload"].clone())
        .filter(|p| p["health"][0]["check_states"][0]["checkStateId"].as_str().is_some_and(|c| c.ends_with(":process")))
        .collect();
    assert!(!intake.is_empty(), "the process check's side channel: {}", String::from_utf8_lossy(&out.stdout));
    let p = &intake[0];
    let skipped = p["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == "stackstate.process_agent.processes.skipped_no_fds")
        .map(|m| m[2].as_f64().unwrap());
    assert!(skipped.is_some_and(|n| n > 0.0), "counted in the second cycle too: {skipped:?}");
    assert_eq!(p["health"][0]["check_states"][0]["health"], "DEVIATING");

    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(1 << 20);
    assert!(hard >= 1024, "a hard limit of {hard} leaves no room to test the raise");
    let out = run_once_with_nofile(&format!("64:{hard}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("out of file descriptors"), "the soft limit was raised to the hard one: {stderr}");
    let reported: std::collections::BTreeSet<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["endpoint"] == "/api/v1/collector")
        .flat_map(|v| v["payload"]["processes"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    let missing = kids.0.iter().filter(|k| !reported.contains(&u64::from(k.id()))).count();
    assert_eq!(missing, 0, "all 100 processes are reported under a soft limit of 64");
}

/// The test process with every file descriptor taken (a soft `RLIMIT_NOFILE` just above the
/// lowest free one, all below it open): the in-process check's reads fail with EMFILE. Restored
/// on drop. The tests of this file run one at a time (`SERIAL`), so no other test is short.
struct NoFds {
    held: Vec<std::fs::File>,
    limit: rustix::process::Rlimit,
}

impl NoFds {
    fn take_all() -> NoFds {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        let probe = std::fs::File::open("/dev/null").unwrap();
        let lowest = std::os::fd::AsRawFd::as_raw_fd(&probe) as u64;
        let mut me = NoFds { held: vec![probe], limit };
        setrlimit(Resource::Nofile, Rlimit { current: Some(lowest + 8), maximum: limit.maximum }).unwrap();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => me.held.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                    break;
                }
            }
            assert!(me.held.len() < 100, "the lowered limit did not bite");
        }
        me
    }
}

impl Drop for NoFds {
    fn drop(&mut self) {
        self.held.clear();
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, self.limit);
    }
}

/// The test process's soft `RLIMIT_NOFILE` set to 100 above its lowest free descriptor: room
/// for the process table's directories but none for held files (the agent gives those up first,
/// see `hold_ceiling` in src/sources/process.rs). Restored on drop.
struct TightNofile {
    limit: rustix::process::Rlimit,
}

impl TightNofile {
    fn set() -> TightNofile {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        let lowest = std::os::fd::AsRawFd::as_raw_fd(&std::fs::File::open("/dev/null").unwrap()) as u64;
        setrlimit(Resource::Nofile, Rlimit { current: Some(lowest + 100), maximum: limit.maximum }).unwrap();
        TightNofile { limit }
    }
}

impl Drop for TightNofile {
    fn drop(&mut self) {
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, self.limit);
    }
}

/// A known process is kept through a cycle in which its files cannot be read for want of file
/// descriptors (none held: the table was filled under a tight limit; held files would still be
/// read): the same entry (its held descriptor and first-seen time, not discovered again as
/// new), reported that cycle with the figures of its last one, counted; the cycle after, the next
/// sample is not paired with one two intervals old (no rates, not reported), and from the one
/// after that it is reported as before.
#[test]
fn a_known_process_is_kept_through_a_cycle_without_file_descriptors() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ns = PidNs::new();
    let mut cfg = report_everything();
    cfg.host_proc = ns.proc.clone();
    let mut check = sts_agent::app::ProcessCheck::new(&cfg, false).unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut t = 0.0;
    let mut cycle = |check: &mut sts_agent::app::ProcessCheck| {
        t += 1.0;
        quiet_cycle(check, t, &meta);
    };
    let pid: u32 = ns.ask("/bin/sleep 1000 & echo $!").parse().unwrap();
    let comm = ns.proc.join(format!("{pid}/comm"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
        assert!(std::time::Instant::now() < deadline, "{pid} did not exec sleep within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // (first seen, held descriptor, reported)
    let at = |check: &sts_agent::app::ProcessCheck| {
        let i = check.table.procs.binary_search_by_key(&pid, |p| p.pid).ok()?;
        let p = &check.table.procs[i];
        let fd = std::os::fd::AsRawFd::as_raw_fd(&p.dir);
        Some((p.first_seen_mono, fd, check.selection.reported.contains(&(i as u32))))
    };
    let tight = TightNofile::set();
    cycle(&mut check);
    cycle(&mut check);
    assert!(check.table.procs.iter().all(|p| p.held.stat.is_none()), "no files held under a tight limit");
    let (seen, fd, reported) = at(&check).expect("in the table");
    assert!(reported, "reported from its second cycle");
    let cpu = check.table.procs.iter().find(|p| p.pid == pid).map(|p| (p.prev, p.cur)).unwrap();
    // Every entry: the namespace's shell (pid 1) and the sleep. Dropping one would free its held
    // descriptor for the reads of the next: all must stay.
    let entries = |check: &sts_agent::app::ProcessCheck| -> Vec<(u32, f64, i32)> {
        check.table.procs.iter().map(|p| (p.pid, p.first_seen_mono, std::os::fd::AsRawFd::as_raw_fd(&p.dir))).collect()
    };
    let all = entries(&check);
    assert_eq!(all.len(), 2, "{all:?}");

    let no_fds = NoFds::take_all();
    cycle(&mut check);
    let kept = at(&check);
    let counted = check.table.no_fds;
    let samples = check.table.procs.iter().find(|p| p.pid == pid).map(|p| (p.prev, p.cur));
    let all_kept = entries(&check);
    drop(no_fds);
    assert_eq!(all_kept, all, "none dropped");
    assert_eq!(counted, 2, "the failed reads are counted");
    assert_eq!(kept, Some((seen, fd, true)), "kept (not dropped), and reported with its last figures");
    assert_eq!(samples, Some(cpu), "with its last two samples as they were");

    cycle(&mut check);
    assert_eq!(check.table.no_fds, 0);
    assert_eq!(at(&check), Some((seen, fd, false)), "the same entry, not discovered again; no rates this cycle");
    assert!(check.table.procs.iter().find(|p| p.pid == pid).unwrap().prev.is_none());
    assert_eq!(entries(&check), all, "none discovered again");
    cycle(&mut check);
    assert_eq!(at(&check), Some((seen, fd, true)), "reported again");
    drop(tight);
}

/// With `STS_PROCESS_HOLD_FILES=all` and descriptors plentiful, every process's `stat`, `statm`
/// and `io` are held open and re-read; when the limit falls so that holding them would crowd out the table's directories,
/// they are closed as they are next read and the files are opened and read as before (no process
/// skipped, rates go on); with the limit back, they are held again.
#[test]
fn held_files_are_given_back_when_descriptors_run_short() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ns = PidNs::new();
    let mut cfg = report_everything();
    cfg.host_proc = ns.proc.clone();
    cfg.process_hold_files = sts_agent::sources::process::HoldFiles::All;
    let mut check = sts_agent::app::ProcessCheck::new(&cfg, false).unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut t = 0.0;
    let mut cycle = |check: &mut sts_agent::app::ProcessCheck| {
        t += 1.0;
        quiet_cycle(check, t, &meta);
    };
    let pid: u32 = ns.ask("/bin/sleep 1000 & echo $!").parse().unwrap();
    let comm = ns.proc.join(format!("{pid}/comm"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
        assert!(std::time::Instant::now() < deadline, "{pid} did not exec sleep within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // (held stat, statm, io; has rates; reported)
    let state = |check: &sts_agent::app::ProcessCheck| {
        let i = check.table.procs.binary_search_by_key(&pid, |p| p.pid).expect("in the table");
        let p = &check.table.procs[i];
        let held = [p.held.stat.is_some(), p.held.statm.is_some(), p.held.io.is_some()];
        (held, p.prev.is_some(), check.selection.reported.contains(&(i as u32)))
    };
    cycle(&mut check);
    cycle(&mut check);
    assert_eq!(state(&check), ([true; 3], true, true), "held, sampled and reported");
    // The namespace's procfs has no `self` for this process: its pids are not this process's
    // namespace's, so CPU clocks (looked up by pid here) cannot tell whether they ran, and every
    // process is read every cycle.
    assert_eq!(check.table.unread, 0, "a procfs of another pid namespace: no process left unread");
    let tight = TightNofile::set();
    cycle(&mut check);
    let short = (state(&check), check.table.no_fds, check.table.procs.iter().all(|p| p.held.stat.is_none()));
    drop(tight);
    assert_eq!(short, (([false; 3], true, true), 0, true), "given back, read as before, none skipped");
    cycle(&mut check);
    assert_eq!(state(&check), ([true; 3], true, true), "held again");
}

/// What is held by configuration: by default only `stat` (for every process while the budget
/// lasts); `STS_PROCESS_HELD_FILES_MAX_KIB` caps the count (6 KiB a file: 6 KiB holds one, the
/// lowest pid's, and the other process's files are opened each cycle, still sampled and
/// reported); `none` and containers-only mode (nothing reported) hold nothing.
#[test]
fn held_files_follow_the_mode_and_the_kernel_memory_budget() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ns = PidNs::new();
    let pid: u32 = ns.ask("/bin/sleep 1000 & echo $!").parse().unwrap();
    let comm = ns.proc.join(format!("{pid}/comm"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
        assert!(std::time::Instant::now() < deadline, "{pid} did not exec sleep within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let meta = sts_agent::sources::docker::Metadata::default();
    // Per pid in the namespace: ([held stat, statm, io], has rates, reported), after two cycles.
    let run = |hold: sts_agent::sources::process::HoldFiles, max_kib: u64, containers_only: bool| {
        let mut cfg = report_everything();
        cfg.host_proc = ns.proc.clone();
        cfg.process_hold_files = hold;
        cfg.process_held_files_max_kib = max_kib;
        let mut check = sts_agent::app::ProcessCheck::new(&cfg, containers_only).unwrap();
        for t in [1.0, 2.0] {
            quiet_cycle(&mut check, t, &meta);
        }
        check
            .table
            .procs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let held = [p.held.stat.is_some(), p.held.statm.is_some(), p.held.io.is_some()];
                // The namespace's shell (pid 1) is not reported by the filters either way.
                (p.pid, held, p.prev.is_some(), p.pid == 1 || check.selection.reported.contains(&(i as u32)))
            })
            .collect::<Vec<_>>()
    };
    use sts_agent::sources::process::HoldFiles;
    let (t, f) = (true, false);
    assert_eq!(
        run(HoldFiles::Stat, 2048, false),
        vec![(1, [t, f, f], t, t), (pid, [t, f, f], t, t)],
        "default: stat held for each"
    );
    assert_eq!(
        run(HoldFiles::Stat, 6, false),
        vec![(1, [t, f, f], t, t), (pid, [f, f, f], t, t)],
        "a budget of one file"
    );
    assert_eq!(
        run(HoldFiles::All, 12, false),
        vec![(1, [t, t, f], t, t), (pid, [f, f, f], t, t)],
        "a budget of two files in `all` mode"
    );
    assert_eq!(run(HoldFiles::None, 2048, false), vec![(1, [f, f, f], t, t), (pid, [f, f, f], t, t)], "none");
    assert_eq!(
        run(HoldFiles::Stat, 2048, true),
        vec![(1, [f, f, f], t, t), (pid, [f, f, f], t, f)],
        "containers only: nothing reported, nothing held"
    );
}

/// One process-check cycle at `t` seconds (the wall clock `t` s after a fixed instant), its
/// payloads not looked at.
fn quiet_cycle(check: &mut sts_agent::app::ProcessCheck, t: f64, meta: &sts_agent::sources::docker::Metadata) {
    let now_ms = 1_700_000_000_000 + (t * 1000.0) as i64;
    let mut zstd = sts_agent::app::zstd_context().unwrap();
    check.run(t, now_ms, "h", false, meta, &mut Vec::new(), &mut zstd, &mut |_| {});
}

/// A process that does not run can still lose resident pages: here its cgroup's memory limit
/// is lowered below its use, and the kernel reclaims the file pages it had mapped, while it sleeps
/// (its CPU clock does not move). On its round-robin turn the agent reads its `stat` (resident,
/// lower) and, since the resident size moved, `statm` again: `shared` as sent follows the
/// reclaim. (Not run and the same resident size, `status` and `statm` are not read again: that
/// path is the one every idle process takes; this is what keeps it honest.)
#[test]
fn an_idle_process_losing_pages_to_reclaim_has_its_statm_read_again_on_its_turn() {
    use sts_agent::model::process::ProcessTable;
    use sts_agent::sources::process::{ProcessSource, FULL_READ_CYCLES};
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("reclaim");
    let file = dir.0.join("mapped");
    std::fs::write(&file, vec![7u8; 32 << 20]).unwrap();
    // Out of the page cache, so the child's reads bring the pages in, charged to its cgroup.
    let f = std::fs::File::open(&file).unwrap();
    f.sync_all().unwrap();
    rustix::fs::fadvise(&f, 0, 0, rustix::fs::Advice::DontNeed).unwrap();
    drop(f);
    let mut cg = test_cgroup::TestCgroup::require(&[format!("sts-test-{}-reclaim", std::process::id())], "idle");
    // It maps and touches the file only once inside the cgroup (so the pages are charged there),
    // then sleeps.
    let code = format!(
        "import mmap, time\n\
         while 'sts-test-' not in open('/proc/self/cgroup').read(): time.sleep(0.01)\n\
         f = open({:?}, 'rb')\n\
         m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n\
         s = sum(m[i] for i in range(0, len(m), 4096))\n\
         time.sleep(1000)\n",
        file.to_str().unwrap()
    );
    let pid = cg.run(&code);
    let page = rustix::param::page_size() as u64;
    let rss = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(21).unwrap().parse::<u64>().unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rss() < (32 << 20) / page {
        assert!(std::time::Instant::now() < deadline, "the child never mapped its file");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let shared = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap().split(' ').nth(2).unwrap().parse().unwrap()
    };
    let mut src = ProcessSource::open(std::path::Path::new("/proc")).unwrap();
    let mut t = ProcessTable::default();
    let mut cycles = 0u64;
    let mut cycle = |t: &mut ProcessTable| {
        cycles += 1;
        src.collect(t, cycles as f64, cycles as i64 * 1000);
        let i = t.procs.binary_search_by_key(&pid, |p| p.pid).expect("the child is in the table");
        src.enrich(t, &[i as u32]);
        (t.procs[i].cur.statm, t.procs[i].unread, cycles)
    };
    let (before, _, _) = cycle(&mut t);
    assert!(before.shared >= (32 << 20) / page, "the mapped file is shared: {before:?}");
    // Idle from here: unread but on its turn.
    let turn = |c: u64| (u64::from(pid) + c) % FULL_READ_CYCLES == 0;
    let mut c = 1;
    while !turn(c + 1) {
        let (m, unread, n) = cycle(&mut t);
        assert!(unread, "cycle {n}: a sleeping process is left unread");
        assert_eq!(m, before);
        c = n;
    }
    let clock = sts_agent::sys::cpu_clock::process_cpu_ns(pid).unwrap();
    // Reclaim: a limit below what the cgroup uses (its anonymous memory cannot go without swap,
    // so the write may fail with EBUSY once the file pages are gone).
    let _ = std::fs::write(cg.path("memory", "memory.limit_in_bytes"), (4u64 << 20).to_string());
    let (rss_now, shared_now) = (rss(), shared(pid));
    assert!(rss_now + (16 << 20) / page <= before.resident, "reclaimed: {} -> {rss_now} pages", before.resident);
    assert_eq!(sts_agent::sys::cpu_clock::process_cpu_ns(pid), Some(clock), "the child did not run");
    let (m, unread, n) = cycle(&mut t);
    assert!(turn(n) && !unread, "its turn: read");
    assert_eq!(m.resident, rss_now, "stat's resident, read on its turn");
    assert_eq!(m.shared, shared_now, "statm read again: the resident size moved ({} before)", before.shared);
}
