//! Forwarder benchmark: the istio-e2e TCP forwarder side by side with the tools it replaces.
//!
//! Run with `cargo bench -p istio-e2e-harness --bench forwarder` (a release build). It starts a
//! private nginx on 127.0.0.1 serving a 4 KiB page and a 1 GiB file, and the targets — nginx
//! directly, the forwarder in both copy modes, `socat` and `ncat --sh-exec` — then measures
//! three figures for each: keep-alive requests/s and new-connection requests/s (wrk, 2 threads,
//! 8 connections) and the time to download the 1 GiB file once. The targets take turns within
//! each round, so background load drifting during the run hits them alike; each figure is the
//! best over the rounds. It prints a Markdown table with each target's ratio to direct. See
//! `harness/benches/README.md`.
//!
//! Environment (all optional):
//! - `FWD_BENCH_SECS` (3): seconds of each wrk run; 0 skips them (downloads only).
//! - `FWD_BENCH_ROUNDS` (3): rounds over all targets; the best figure of each counts.
//! - `FWD_BENCH_BIG_MIB` (1024): size of the big file in MiB.
//! - `FWD_BENCH_BIG_TIMEOUT_SECS` (60): a download taking longer is abandoned.
//! - `FWD_BENCH_NGINX_WORKERS` (2): nginx worker processes.
//! - `FWD_BENCH_TARGETS` (all): comma-separated subset of
//!   `forwarder,forwarder-buffered,socat,ncat` (direct nginx is always measured); may also
//!   name `forwarder-2`, the forwarder with two relay threads, which is not run otherwise.
//!
//! Exit status: 0 after printing the table, 1 on a failure to set up, 2 when a tool is missing.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use harness::forwarder::{CopyMode, Forwarder, ForwarderConfig};

/// The external programs the bench drives, with the Debian package that provides each.
const TOOLS: [(&str, &str); 4] = [
    ("nginx", "nginx-light"),
    ("wrk", "wrk"),
    ("socat", "socat"),
    ("ncat", "ncat"),
];

/// Size of the small page, close to a typical HTML page.
const PAGE_BYTES: usize = 4096;

fn main() -> ExitCode {
    let missing: Vec<(&str, &str)> = TOOLS
        .iter()
        .copied()
        .filter(|(bin, _)| find_program(bin).is_none())
        .collect();
    if !missing.is_empty() {
        for (bin, package) in &missing {
            eprintln!("forwarder bench: `{bin}` not found on PATH (Debian package: {package})");
        }
        let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        eprintln!(
            "forwarder bench: install with: apt-get install -y {}",
            packages.join(" ")
        );
        return ExitCode::from(2);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forwarder bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the environment asks for.
struct Settings {
    secs: u64,
    rounds: u32,
    big_bytes: u64,
    big_timeout: Duration,
    nginx_workers: u32,
    targets: Option<Vec<String>>,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        Ok(Settings {
            secs: env_num("FWD_BENCH_SECS", 3)?,
            rounds: env_num("FWD_BENCH_ROUNDS", 3)?.clamp(1, 20) as u32,
            big_bytes: env_num("FWD_BENCH_BIG_MIB", 1024)?.max(1) << 20,
            big_timeout: Duration::from_secs(env_num("FWD_BENCH_BIG_TIMEOUT_SECS", 60)?.max(1)),
            nginx_workers: env_num("FWD_BENCH_NGINX_WORKERS", 2)?.clamp(1, 64) as u32,
            targets: std::env::var("FWD_BENCH_TARGETS")
                .ok()
                .map(|s| s.split(',').map(|t| t.trim().to_owned()).collect()),
        })
    }

    fn wants(&self, target: &str) -> bool {
        self.targets
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| t == target))
    }
}

fn env_num(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| format!("{name}={v:?} is not a whole number: {e}")),
        Err(_) => Ok(default),
    }
}

/// The best figures of one target so far.
struct Row {
    name: String,
    keep_alive: Result<f64, String>,
    new_conn: Result<f64, String>,
    big: Result<Duration, String>,
    /// Lowest relay CPU cost seen (and nginx's in the same run): per keep-alive request (us),
    /// per new-connection request (us), per GiB downloaded (ms).
    cpu: (CostSlot, CostSlot, CostSlot),
    notes: Vec<String>,
}

/// A relay cost (none for direct nginx) and nginx's cost in the same run.
type CostSlot = Option<(Option<f64>, f64)>;

impl Row {
    fn new(name: &str) -> Row {
        Row {
            name: name.to_owned(),
            keep_alive: Err("not run".to_owned()),
            new_conn: Err("not run".to_owned()),
            big: Err("not run".to_owned()),
            cpu: (None, None, None),
            notes: Vec::new(),
        }
    }
}

/// Keeps the larger rate; an error only replaces another error.
fn keep_max(best: &mut Result<f64, String>, new: Result<f64, String>) {
    match (&*best, new) {
        (Ok(b), Ok(n)) if n <= *b => {}
        (Ok(_), Err(_)) => {}
        (_, new) => *best = new,
    }
}

/// Keeps the shorter time; an error only replaces another error.
fn keep_min(best: &mut Result<Duration, String>, new: Result<Duration, String>) {
    match (&*best, new) {
        (Ok(b), Ok(n)) if n >= *b => {}
        (Ok(_), Err(_)) => {}
        (_, new) => *best = new,
    }
}

/// What keeps a target running until the end of the bench.
enum Holder {
    /// nginx itself: nothing in between.
    Direct,
    /// An in-process forwarder (on its own thread) and a runtime to stop it with.
    InProcess(tokio::runtime::Runtime, Forwarder),
    /// An external forwarder process.
    Process(Running),
}

/// One thing to measure.
struct Target {
    addr: SocketAddr,
    holder: Holder,
    row: Row,
}

fn run() -> Result<(), String> {
    let started = Instant::now();
    let settings = Settings::from_env()?;
    let dir = tempfile::Builder::new()
        .prefix("fwd-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let nginx_port = free_port()?;
    let nginx = start_nginx(dir.path(), nginx_port, &settings)?;
    let upstream = SocketAddr::from(([127, 0, 0, 1], nginx_port));
    wait_listening(upstream, "nginx")?;
    eprintln!(
        "forwarder bench: nginx (pid {}) on {upstream}; {} round(s) of {} s wrk runs and a {} MiB download",
        nginx.child.id(),
        settings.rounds,
        settings.secs,
        settings.big_bytes >> 20,
    );

    let mut targets = vec![Target {
        addr: upstream,
        holder: Holder::Direct,
        row: Row::new("direct nginx"),
    }];
    for (name, mode, workers) in [
        ("forwarder", CopyMode::Splice, None),
        ("forwarder-buffered", CopyMode::Buffered, None),
        ("forwarder-2", CopyMode::Splice, Some(2)),
    ] {
        // forwarder-2 (two relay threads) only when asked for by name.
        let wanted = match workers {
            None => settings.wants(name),
            Some(_) => settings
                .targets
                .as_ref()
                .is_some_and(|ts| ts.iter().any(|t| t == name)),
        };
        if wanted {
            targets.push(start_forwarder(name, mode, workers, upstream)?);
        }
    }
    if settings.wants("socat") {
        let port = free_port()?;
        let args = vec![
            format!("TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1"),
            format!("TCP:{upstream}"),
        ];
        targets.push(start_process("socat", "socat", &args, port)?);
    }
    if settings.wants("ncat") {
        let port = free_port()?;
        // ncat hands this string to /bin/sh itself: it holds only our own address and port.
        let args = vec![
            "--sh-exec".to_owned(),
            format!("ncat {} {}", upstream.ip(), upstream.port()),
            "-l".to_owned(),
            "127.0.0.1".to_owned(),
            port.to_string(),
            "--keep-open".to_owned(),
        ];
        targets.push(start_process("ncat --sh-exec", "ncat", &args, port)?);
    }

    // Warm the page cache so the first target is not charged for reading the big file.
    let _ = download(upstream, settings.big_bytes, settings.big_timeout);
    for round in 1..=settings.rounds {
        for t in &mut targets {
            eprintln!(
                "forwarder bench: [{:.0} s] round {round}/{}: {} on {}",
                started.elapsed().as_secs_f64(),
                settings.rounds,
                t.row.name,
                t.addr
            );
            measure_round(t, &settings, nginx.child.id());
        }
    }

    let mut rows = Vec::new();
    for t in targets {
        let mut row = t.row;
        match t.holder {
            Holder::InProcess(rt, fwd) => {
                let stats = rt.block_on(fwd.stop(Duration::from_secs(2)));
                if stats.failed > 0 {
                    row.notes
                        .push(format!("{} upstream connects failed", stats.failed));
                }
                rt.shutdown_timeout(Duration::from_secs(2));
            }
            Holder::Process(p) => drop(p),
            Holder::Direct => {}
        }
        rows.push(row);
    }
    drop(nginx);
    println!("{}", table(&rows, &settings));
    eprintln!(
        "forwarder bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts an in-process forwarder (it makes its own threads and runtimes), with its default
/// number of workers unless `workers` says otherwise.
fn start_forwarder(
    name: &str,
    mode: CopyMode,
    workers: Option<usize>,
    upstream: SocketAddr,
) -> Result<Target, String> {
    // The forwarder runs on threads of its own; this runtime only starts and stops it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let mut cfg = ForwarderConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), upstream.to_string());
    if let Some(n) = workers {
        cfg.workers = n;
    }
    let fwd = rt
        .block_on(Forwarder::start_with_mode(cfg, mode))
        .map_err(|e| format!("{name}: {e}"))?;
    let addr = fwd.local_addr();
    wait_listening(addr, name)?;
    Ok(Target {
        addr,
        holder: Holder::InProcess(rt, fwd),
        row: Row::new(name),
    })
}

/// Starts an external forwarder process listening on `port`.
fn start_process(name: &str, program: &str, args: &[String], port: u16) -> Result<Target, String> {
    let running = Running::spawn(
        name,
        Command::new(program)
            .args(args)
            // A pipe kept open for the process's life: ncat in listen mode exits once its
            // stdin reaches end-of-file, --keep-open or not.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, name)?;
    Ok(Target {
        addr,
        holder: Holder::Process(running),
        row: Row::new(name),
    })
}

/// One round of the three figures for one target, keeping the best of each.
fn measure_round(t: &mut Target, settings: &Settings, nginx_pid: u32) {
    let url = format!("http://{}/index.html", t.addr);
    let relay_pid = match &t.holder {
        Holder::Process(p) => Some(p.child.id()),
        _ => None,
    };
    let in_process = matches!(t.holder, Holder::InProcess(..));
    // CPU time of the relay (the forwarder's threads, or the relay process and its children)
    // and of nginx, for the cost table.
    let cpu = || {
        let relay = if in_process {
            Some(other_threads_cpu())
        } else {
            relay_pid.map(|pid| {
                // A forking relay's children count once reaped: let them finish first.
                wait_no_children(pid, Duration::from_millis(500));
                tree_cpu(pid)
            })
        };
        (relay, tree_cpu(nginx_pid))
    };
    let per =
        |before: (Option<Duration>, Duration), after: (Option<Duration>, Duration), n: f64| {
            let relay = before
                .0
                .zip(after.0)
                .map(|(b, a)| a.saturating_sub(b).as_secs_f64() * 1e6 / n);
            let nginx = after.1.saturating_sub(before.1).as_secs_f64() * 1e6 / n;
            (relay, nginx)
        };
    // New connections last: a slow forwarder (ncat) may still be working off a queue of them
    // after wrk stops, which would be charged to whatever comes next.
    for close in [false, true] {
        let kind = if close { "new-conn" } else { "keep-alive" };
        if settings.secs > 0 {
            let before = cpu();
            let result = wait_serving(&url, settings.big_timeout)
                .and_then(|()| wrk(&url, settings.secs, close));
            let result = result.map(|(rps, errors)| {
                if let Some(errors) = errors {
                    t.row.notes.push(format!("{kind}: {errors}"));
                }
                let (relay, nginx) = per(before, cpu(), rps * settings.secs as f64);
                eprintln!(
                    "forwarder bench:   {kind}: {rps:.0} req/s; CPU per request: relay {}, nginx {nginx:.0} us",
                    relay.map_or("-".to_owned(), |r| format!("{r:.0} us")),
                );
                let slot = if close { &mut t.row.cpu.1 } else { &mut t.row.cpu.0 };
                keep_min_cost(slot, relay, nginx);
                rps
            });
            let best = if close {
                &mut t.row.new_conn
            } else {
                &mut t.row.keep_alive
            };
            keep_max(best, result);
        }
        if !close {
            let before = cpu();
            let result = wait_serving(&url, settings.big_timeout)
                .and_then(|()| download(t.addr, settings.big_bytes, settings.big_timeout));
            if let Ok(took) = &result {
                let gib = settings.big_bytes as f64 / f64::from(1u32 << 30);
                // Per GiB, in milliseconds.
                let (relay, nginx) = per(before, cpu(), gib * 1000.0);
                eprintln!(
                    "forwarder bench:   download: {:.2} s; CPU per GiB: relay {}, nginx {nginx:.0} ms",
                    took.as_secs_f64(),
                    relay.map_or("-".to_owned(), |r| format!("{r:.0} ms")),
                );
                keep_min_cost(&mut t.row.cpu.2, relay, nginx);
            }
            keep_min(&mut t.row.big, result);
        }
    }
}

/// Keeps the lowest relay cost seen (with the nginx cost of the same run).
fn keep_min_cost(slot: &mut Option<(Option<f64>, f64)>, relay: Option<f64>, nginx: f64) {
    let better = match slot {
        None => true,
        Some((Some(old), _)) => relay.is_some_and(|r| r < *old),
        Some((None, old)) => relay.is_none() && nginx < *old,
    };
    if better {
        *slot = Some((relay, nginx));
    }
}

/// CPU time (user + system) of every thread of this process but the calling one: the
/// in-process forwarder's, as the bench's other threads are idle.
fn other_threads_cpu() -> Duration {
    let get = |who| {
        // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(usage.ru_utime) + tv(usage.ru_stime)
    };
    get(libc::RUSAGE_SELF).saturating_sub(get(libc::RUSAGE_THREAD))
}

/// The parent pid and the CPU clock ticks (own and reaped children's) of a process, from
/// /proc/PID/stat.
fn stat_of(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state is [0], ppid [1], utime [11] .. cstime [14].
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f
        .get(11..15)?
        .iter()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Some((ppid, ticks))
}

/// The children of `pid` (live or not yet reaped) with their clock ticks.
fn children_of(pid: u32) -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| {
            let (ppid, ticks) = stat_of(child)?;
            (ppid == pid).then_some((child, ticks))
        })
        .collect()
}

/// Waits (up to `limit`) until `pid` has no children left.
fn wait_no_children(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !children_of(pid).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time of a process, of its children reaped so far and of its live children, from /proc
/// (clock-tick resolution).
fn tree_cpu(pid: u32) -> Duration {
    let own = stat_of(pid).map_or(0, |(_, t)| t);
    let ticks = own + children_of(pid).iter().map(|(_, t)| t).sum::<u64>();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Waits (bounded) until one GET of the page through `url` succeeds.
fn wait_serving(url: &str, limit: Duration) -> Result<(), String> {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("bad url {url}"))?;
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match get_page(addr) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(format!(
        "{addr} did not serve the page within {limit:?}: {last}"
    ))
}

/// One HTTP/1.0 GET of the page, with a bounded wait.
fn get_page(addr: SocketAddr) -> Result<(), String> {
    http_get(
        addr,
        "/index.html",
        PAGE_BYTES as u64,
        Duration::from_secs(5),
    )
    .map(|_| ())
}

/// Runs wrk for `secs` seconds with 2 threads and 8 connections; returns requests/s and a
/// summary of errors, if any.
fn wrk(url: &str, secs: u64, close: bool) -> Result<(f64, Option<String>), String> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c8", &format!("-d{secs}s"), "--timeout", "5s"]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk exited with {}: {}{}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output: {}", text.trim()))?;
    let errors: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx"))
        .collect();
    Ok((rps, (!errors.is_empty()).then(|| errors.join("; "))))
}

/// Downloads the big file once and returns the wall time from connect to the last byte.
fn download(addr: SocketAddr, len: u64, limit: Duration) -> Result<Duration, String> {
    http_get(addr, "/big.bin", len, limit).map_err(|e| format!("download: {e}"))
}

/// GETs `path` over HTTP/1.0 and reads the body up to its Content-Length, which must be `len`;
/// returns the wall time from connect to the last byte. The end is found by the length, not by
/// the connection closing: `ncat --sh-exec` does not close the client's side when the upstream
/// closes.
fn http_get(addr: SocketAddr, path: &str, len: u64, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut sock =
        TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect {addr}: {e}"))?;
    sock.set_read_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    write!(sock, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("send request: {e}"))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    // Body bytes received and expected, once the headers are in.
    let mut body: Option<(u64, u64)> = None;
    loop {
        if let Some((got, expected)) = body
            && got >= expected
        {
            break;
        }
        if started.elapsed() > limit {
            return Err(format!("over {limit:?}, abandoned"));
        }
        let n = match sock.read(&mut buf) {
            Ok(0) => return Err(format!("connection closed early (body: {body:?})")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        if let Some((got, _)) = &mut body {
            *got += n as u64;
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
            if head.len() > 64 * 1024 {
                return Err("no end of headers".to_owned());
            }
            continue;
        };
        let headers = String::from_utf8_lossy(&head[..end]).into_owned();
        if !headers.starts_with("HTTP/1.1 200") && !headers.starts_with("HTTP/1.0 200") {
            return Err(format!("unexpected response {:?}", headers.lines().next()));
        }
        let expected = headers
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<u64>().ok())?
            })
            .ok_or("no Content-Length")?;
        body = Some(((head.len() - end - 4) as u64, expected));
    }
    let took = started.elapsed();
    match body {
        Some((got, expected)) if got == expected && expected == len => Ok(took),
        other => Err(format!(
            "body (got, announced) {other:?}, expected {len} bytes"
        )),
    }
}

/// A child process in a process group of its own (with whatever it forks: nginx's workers,
/// socat's and ncat's per-connection children), stopped and reaped when dropped.
struct Running {
    name: String,
    child: Child,
}

impl Running {
    /// Spawns `cmd` as the leader of a new process group that gets SIGTERM if the bench dies.
    fn spawn(name: &str, cmd: &mut Command) -> Result<Running, String> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        // SAFETY: the closure runs between fork and exec and only calls prctl, which is
        // async-signal-safe; it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Killing nginx's master with SIGKILL would orphan its workers: if the bench
                // itself dies, have the kernel send the gentler SIGTERM instead.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Running {
            name: name.to_owned(),
            child,
        })
    }

    /// Sends `signal` to the whole process group.
    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: kill only sends a signal, to the group this child leads (pgid = its pid).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), signal) };
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM to the group: nginx's master and workers, socat and ncat with their
        // children all exit; SIGKILL whatever is left after 5 s.
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    eprintln!("forwarder bench: waiting for {}: {e}", self.name);
                    break;
                }
            }
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Writes nginx's config, page and big file under `dir`, and starts it in the foreground.
fn start_nginx(dir: &Path, port: u16, settings: &Settings) -> Result<Running, String> {
    let io_err = |what: &str, e: io::Error| format!("{what}: {e}");
    let www = dir.join("www");
    let temp = dir.join("temp");
    std::fs::create_dir(&www).map_err(|e| io_err("www dir", e))?;
    std::fs::create_dir(&temp).map_err(|e| io_err("temp dir", e))?;
    let mut page =
        String::from("<!DOCTYPE html>\n<html><head><title>forwarder bench</title></head><body>\n");
    let mut i = 0;
    while page.len() < PAGE_BYTES - 20 {
        let _ = writeln!(page, "<p>line {i} of the benchmark page</p>");
        i += 1;
    }
    let tail = "</body></html>\n";
    page.truncate(PAGE_BYTES - tail.len());
    page.push_str(tail);
    std::fs::write(www.join("index.html"), page).map_err(|e| io_err("page", e))?;
    // Sparse: instant to create; nginx serves the zeros from the page cache.
    let big = std::fs::File::create(www.join("big.bin")).map_err(|e| io_err("big file", e))?;
    big.set_len(settings.big_bytes)
        .map_err(|e| io_err("big file", e))?;
    // nginx workers drop root privileges; let them read the files.
    for p in [dir, &www, &temp] {
        set_mode(p, 0o755)?;
    }
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {d}/temp/body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
    types {{ text/html html; }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        root {d}/www;
    }}
}}
"#,
        workers = settings.nginx_workers,
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| io_err("nginx.conf", e))?;
    let program = find_program("nginx").ok_or("nginx vanished")?;
    let log = std::fs::File::create(dir.join("nginx.stderr")).map_err(|e| io_err("log", e))?;
    let mut running = Running::spawn(
        "nginx",
        Command::new(program)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    // nginx exits at once on a bad config: say why instead of timing out later.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = running.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("nginx.stderr")).unwrap_or_default();
            let errors = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(format!(
                "nginx exited with {status}: {}{}",
                log.trim(),
                errors.trim()
            ));
        }
        if TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(running)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// Finds `program` on PATH, or in the sbin directories where nginx lives.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// Waits (up to 10 s) until `addr` accepts a connection.
fn wait_listening(addr: SocketAddr, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("{what} did not listen on {addr} within 10 s: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A ratio with two decimals, or three significant digits when small (ncat's new-conn).
fn ratio_text(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.2e}")
    }
}

/// The Markdown table of all rows, with each target's ratio to direct nginx.
fn table(rows: &[Row], settings: &Settings) -> String {
    let direct = &rows[0];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nforwarder bench, {}, {} CPUs, wrk -t2 -c8 -d{}s, {} MiB download, best of {} round(s)\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.secs,
        settings.big_bytes >> 20,
        settings.rounds,
    );
    let size = if settings.big_bytes == 1 << 30 {
        "1 GiB".to_owned()
    } else {
        format!("{} MiB", settings.big_bytes >> 20)
    };
    let _ = writeln!(
        out,
        "| target | keep-alive req/s | x direct | new-conn req/s | x direct | {size} time | x direct |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let is_direct = std::ptr::eq(row, direct);
        let ratio = |mine: &Result<f64, String>, theirs: &Result<f64, String>| match (mine, theirs)
        {
            _ if is_direct => "1.00".to_owned(),
            (Ok(m), Ok(d)) if *d > 0.0 => ratio_text(m / d),
            _ => "-".to_owned(),
        };
        let secs = |r: &Result<Duration, String>| r.as_ref().ok().map(Duration::as_secs_f64);
        // For time, lower is better: the ratio is direct / target.
        let time_ratio = match (secs(&direct.big), secs(&row.big)) {
            _ if is_direct => "1.00".to_owned(),
            (Some(d), Some(m)) if m > 0.0 => ratio_text(d / m),
            _ => "-".to_owned(),
        };
        let rate = |r: &Result<f64, String>| match r {
            Ok(v) => format!("{v:.0}"),
            Err(_) => "error".to_owned(),
        };
        let time = match &row.big {
            Ok(t) => format!("{:.2} s", t.as_secs_f64()),
            Err(_) => "error".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            rate(&row.keep_alive),
            ratio(&row.keep_alive, &direct.keep_alive),
            rate(&row.new_conn),
            ratio(&row.new_conn, &direct.new_conn),
            time,
            time_ratio,
        );
    }
    let _ = writeln!(
        out,
        "\nCPU cost (lowest seen; relay = the forwarder's threads, or the relay process with its children):\n"
    );
    let _ = writeln!(
        out,
        "| target | relay us/req keep-alive | nginx us/req | relay us/req new-conn | nginx us/req | relay ms/GiB | nginx ms/GiB |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let cell = |slot: &CostSlot| match slot {
            Some((relay, nginx)) => (
                relay.map_or("-".to_owned(), |r| format!("{r:.0}")),
                format!("{nginx:.0}"),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let (ka, ka_n) = cell(&row.cpu.0);
        let (nc, nc_n) = cell(&row.cpu.1);
        let (big, big_n) = cell(&row.cpu.2);
        let _ = writeln!(
            out,
            "| {} | {ka} | {ka_n} | {nc} | {nc_n} | {big} | {big_n} |",
            row.name
        );
    }
    let mut notes = Vec::new();
    for row in rows {
        for (what, err) in [
            ("keep-alive", row.keep_alive.as_ref().err()),
            ("new-conn", row.new_conn.as_ref().err()),
            ("download", row.big.as_ref().err()),
        ] {
            if let Some(e) = err {
                notes.push(format!("{}: {what} failed: {e}", row.name));
            }
        }
        notes.extend(row.notes.iter().map(|n| format!("{}: {n}", row.name)));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}
