//! One `zonemesh serve` child process: started from a configuration file (pinned to a
//! core with `taskset` when asked), its addresses read from the lines it prints on
//! stdout, its `/status` read through the admin client, SIGKILLed on demand and killed
//! (and reaped) when dropped.
//!
//! Shared by the `cluster` binary and the `scenarios` binary's cluster-overhead
//! scenario (which includes this file with `#[path]`), so that both start, watch and
//! stop nodes the same way.

use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};
use zonemesh_ctl::AdminClient;
use zonemesh_shared::status::{ClusterStatusReport, NodeStatusReport};

/// Longest a node may take to print its addresses (it connects to PostgreSQL and
/// creates its tables first).
const START_LIMIT: Duration = Duration::from_secs(30);
/// Deadline of one `/status` request: polls are every 20 ms, so a stuck request must
/// not hold a measurement up for long.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts of [`Node::status`]: a node on a loaded core may miss one deadline, and a
/// measurement that reads every node before and after its window should not be lost
/// to that.
const STATUS_TRIES: usize = 3;
/// Log lines shown when a node fails.
const LOG_TAIL_LINES: usize = 20;

/// A running `zonemesh serve` process.
#[derive(Debug)]
pub(crate) struct Node {
    /// Which of the cluster's nodes (its configuration and data directory).
    pub(crate) index: usize,
    /// Its run, as printed (`node-id/incarnation`).
    pub(crate) run: String,
    /// Where players connect.
    pub(crate) players: SocketAddr,
    /// Where other nodes reach it.
    pub(crate) node_addr: SocketAddr,
    admin: AdminClient,
    log: PathBuf,
    child: ChildGuard,
}

impl Node {
    /// Starts `zonemesh serve --config CONFIG` (on core `pin` when given, its logs at
    /// `log_level` appended to `log`; `CLUSTER_BENCH_NODE_LOG` in this process's
    /// environment replaces `log_level`, to look closer at one run with `--keep-dir`),
    /// and waits (at most [`START_LIMIT`]) for the lines naming its addresses.
    pub(crate) fn start(
        zonemesh: &Path,
        pin: Option<usize>,
        index: usize,
        config: &Path,
        log: PathBuf,
        log_level: &str,
    ) -> anyhow::Result<Self> {
        // Appended: a restarted node's logs follow those of its earlier runs.
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let log_level =
            std::env::var("CLUSTER_BENCH_NODE_LOG").unwrap_or_else(|_| log_level.to_owned());
        let mut command = pinned_command(zonemesh, pin);
        command
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", log_level)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // The environment may override the store, the address and the secret; the
        // configuration written for the benchmark must be what runs.
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"ZONEMESH_") {
                command.env_remove(key);
            }
        }
        let mut child = ChildGuard::spawn(&mut command)
            .with_context(|| format!("cannot start {}", zonemesh.display()))?;
        // `child` kills the process if anything below fails.
        let lines = drain_lines(&mut child.0)?;
        let addrs = await_addresses(&mut child.0, &lines, index, &log)?;
        Ok(Self {
            index,
            run: addrs.run,
            players: addrs.players,
            node_addr: addrs.node,
            admin: AdminClient {
                timeout: STATUS_TIMEOUT,
                ..AdminClient::new(addrs.admin)
            },
            log,
            child,
        })
    }

    /// The node's view of its cluster, or `None` when it does not answer (one try: a
    /// poll asks again soon).
    pub(crate) fn cluster(&self) -> Option<ClusterStatusReport> {
        self.admin.status().ok().and_then(|s| s.cluster)
    }

    /// Its whole `/status`, asked up to [`STATUS_TRIES`] times: for reads a
    /// measurement cannot do without.
    pub(crate) fn status(&self) -> anyhow::Result<NodeStatusReport> {
        let mut last = None;
        for _ in 0..STATUS_TRIES {
            match self.admin.status() {
                Ok(status) => return Ok(status),
                Err(e) => last = Some(e),
            }
        }
        bail!(
            "node {} did not answer /status {STATUS_TRIES} times: {last:?}",
            self.index
        )
    }

    /// Its process id (the program itself when pinned: taskset execs it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// An error, with its last log lines, if it exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.0.try_wait().context("waiting for a node")? {
            bail!(
                "node {} exited ({status}); its last log lines:\n{}",
                self.index,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The first line of its log reporting a panic, and the line after it (a zone
    /// worker that panicked stops ticking its zones, and every figure after that is
    /// void).
    pub(crate) fn panic_in_log(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let mut lines = text.lines().skip_while(|l| !l.contains("panicked at"));
        let line = lines.next()?;
        let why = lines.next().unwrap_or_default();
        Some(format!(
            "node {}: {} {}",
            self.index,
            line.trim(),
            why.trim()
        ))
    }

    /// Its simulation rate, ticks per second, or `None` when it does not answer.
    pub(crate) fn tick_hz(&self) -> Option<u16> {
        self.admin.status().ok().map(|s| s.tick_hz)
    }

    /// The zones it holds now (empty when it does not answer).
    pub(crate) fn held_zones(&self) -> BTreeSet<u32> {
        self.cluster()
            .map(|c| c.held_zones.iter().map(|z| z.zone).collect())
            .unwrap_or_default()
    }

    /// Asks it to move the zone at (`x`, `y`), which it holds, to node `to` (a run as
    /// printed, or a node id): a live handoff.
    pub(crate) fn move_zone(&self, x: u16, y: u16, to: &str) -> anyhow::Result<u64> {
        let node_id = to.split('/').next().unwrap_or(to);
        self.admin
            .move_zone(x, y, node_id)
            .with_context(|| format!("node {} did not start the move", self.index))
    }

    /// Asks it to move every zone to the other nodes.
    pub(crate) fn drain(&self) -> anyhow::Result<()> {
        self.admin
            .drain()
            .with_context(|| format!("node {} did not start draining", self.index))
    }

    /// The moves it started, newest first (one try).
    pub(crate) fn moves(&self) -> Option<zonemesh_shared::status::MovesReport> {
        self.admin.moves().ok()
    }

    /// Stops it with SIGTERM (a clean stop: with `drain_grace_secs = 0` its zones are
    /// saved and released at once) and reaps it, at most `limit`.
    pub(crate) fn sigterm(&mut self, limit: Duration) -> anyhow::Result<()> {
        self.child.stop_and_reap(limit)
    }

    /// Kills it with SIGKILL (no clean shutdown, no hand-over) and reaps it.
    pub(crate) fn sigkill(&mut self) -> anyhow::Result<()> {
        self.child.kill_and_reap()
    }

    /// The last lines of its log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// Process ids of the nodes alive now, for [`kill_all_running`].
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// SIGKILLs every node alive now. For a signal handler: the process then exits
/// without running destructors, so the nodes' guards cannot.
pub(crate) fn kill_all_running() {
    let pids = running().clone();
    for pid in pids {
        // Best effort on the way out; `kill` is in every Linux base system.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// A command running `program`, pinned to `core` with `taskset` when given.
pub(crate) fn pinned_command(program: &Path, core: Option<usize>) -> Command {
    match core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A child process that is killed and reaped when dropped, and listed in [`RUNNING`]
/// until it is reaped (not after: its id may then be another process's).
#[derive(Debug)]
struct ChildGuard(Child);

impl ChildGuard {
    fn spawn(command: &mut Command) -> std::io::Result<Self> {
        let child = command.spawn()?;
        running().push(child.id());
        Ok(Self(child))
    }

    /// SIGTERM (a clean stop), then wait for the exit, at most `limit` (then SIGKILL).
    fn stop_and_reap(&mut self, limit: Duration) -> anyhow::Result<()> {
        let pid = self.0.id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.0.try_wait().context("waiting for the node")?.is_some() {
                running().retain(|&p| p != pid);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_and_reap()?;
        bail!("node {pid} did not stop within {limit:?} of SIGTERM")
    }

    /// SIGKILL, then wait for the exit.
    fn kill_and_reap(&mut self) -> anyhow::Result<()> {
        let killed = self.0.kill().context("SIGKILL");
        let reaped = self.0.wait().context("reaping the killed node");
        let pid = self.0.id();
        running().retain(|&p| p != pid);
        killed.and(reaped.map(drop))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Errors mean it is already gone; nothing else to do.
        let _ = self.kill_and_reap();
    }
}

/// The list of live nodes, locked.
fn running() -> MutexGuard<'static, Vec<u32>> {
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The last lines of a log file.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Reads stdout lines until both address lines came, the node exited or
/// [`START_LIMIT`] passed.
fn await_addresses(
    child: &mut Child,
    lines: &mpsc::Receiver<String>,
    index: usize,
    log: &Path,
) -> anyhow::Result<Addresses> {
    let deadline = Instant::now() + START_LIMIT;
    let mut node_line = None;
    let mut admin = None;
    while node_line.is_none() || admin.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            let exited = child.try_wait().ok().flatten();
            bail!(
                "node {index} printed no addresses within {START_LIMIT:?} (exit status: \
                 {exited:?}); its log {}:\n{}",
                log.display(),
                log_tail(log)
            );
        };
        node_line = node_line.or_else(|| parse_node_line(&line));
        admin = admin.or_else(|| parse_admin_line(&line));
    }
    let (run, players, node) = node_line.context("node line")?;
    let admin = admin.context("admin line")?;
    Ok(Addresses {
        run,
        players,
        node,
        admin,
    })
}

/// What a node prints about itself when it starts.
struct Addresses {
    run: String,
    players: SocketAddr,
    node: SocketAddr,
    admin: SocketAddr,
}

/// Sends the child's stdout lines on a channel from a thread, which keeps reading
/// until the pipe closes so the child never blocks on a full pipe.
fn drain_lines(child: &mut Child) -> anyhow::Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // Nobody listens after start-up; keep draining anyway.
            let _ = tx.send(line);
        }
    });
    Ok(rx)
}

/// `ZoneMesh node RUN listening on PLAYERS (QUIC, ALPN zonemesh/1); node endpoint on
/// NODE` as `(RUN, PLAYERS, NODE)`.
fn parse_node_line(line: &str) -> Option<(String, SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("ZoneMesh node ")?;
    let (run, rest) = rest.split_once(" listening on ")?;
    let players = rest.split_whitespace().next()?.parse().ok()?;
    let (_, node) = rest.split_once("node endpoint on ")?;
    let node = node.split_whitespace().next()?.parse().ok()?;
    Some((run.to_owned(), players, node))
}

/// `ZoneMesh admin endpoint listening on http://ADDR` as `ADDR`.
fn parse_admin_line(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("admin endpoint listening on http://")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Polls `done` every `every` until it holds; the time it took, or an error naming
/// `what` after `limit`.
pub(crate) fn wait_until(
    what: &str,
    limit: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting until {what}");
        }
        std::thread::sleep(every);
    }
    Ok(start.elapsed())
}

/// True when every node answers and lists exactly the runs of `nodes` as members.
pub(crate) fn all_see_each_other(nodes: &[Node]) -> bool {
    nodes
        .iter()
        .all(|n| n.cluster().is_some_and(|c| members_are(&c, nodes)))
}

/// True when `view` lists exactly the runs of `nodes` as members.
pub(crate) fn members_are(view: &ClusterStatusReport, nodes: &[Node]) -> bool {
    let runs: BTreeSet<&str> = nodes.iter().map(|n| n.run.as_str()).collect();
    let seen: BTreeSet<&str> = view.members.iter().map(|m| m.node.as_str()).collect();
    seen == runs
}

/// The path as TOML string content (configurations hold paths of a temporary
/// directory, which has no quotes or backslashes, but say so rather than assume).
pub(crate) fn toml_path(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    if text.contains(['"', '\\']) {
        bail!("{text:?}: quotes and backslashes are not supported in paths");
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_line_gives_run_and_both_addresses() {
        let line = "ZoneMesh node 7f3a/2 listening on 127.0.0.1:40123 (QUIC, ALPN \
                    zonemesh/1); node endpoint on 127.0.0.1:40999";
        let (run, players, node) = parse_node_line(line).expect("parsed");
        assert_eq!(run, "7f3a/2");
        assert_eq!(players, "127.0.0.1:40123".parse().expect("addr"));
        assert_eq!(node, "127.0.0.1:40999".parse().expect("addr"));
        assert_eq!(parse_node_line("  store: PostgreSQL; data: x"), None);
    }

    #[test]
    fn the_admin_line_gives_its_address() {
        let line = "ZoneMesh admin endpoint listening on http://127.0.0.1:9100";
        assert_eq!(
            parse_admin_line(line),
            Some("127.0.0.1:9100".parse().expect("addr"))
        );
        assert_eq!(parse_admin_line("ZoneMesh node x listening on y"), None);
    }

    #[test]
    fn paths_with_quotes_are_refused() {
        assert!(toml_path(Path::new("/tmp/a\"b")).is_err());
        assert_eq!(toml_path(Path::new("/tmp/ab")).expect("plain"), "/tmp/ab");
    }
}
