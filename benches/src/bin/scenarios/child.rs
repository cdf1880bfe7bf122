//! Child processes of a scenario: locating the prebuilt binaries, pinning with
//! `taskset`, a guard that kills and reaps on drop, the parser for the addresses the
//! children print on stdout (`listening on ADDR`), and a bounded tail of their logs.

use anyhow::{Context, bail};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Log lines of a child kept for error messages.
const LOG_TAIL_LINES: usize = 20;
/// Longest line read from a child; longer ones are cut (bounded memory).
const LINE_BYTES_MAX: u64 = 64 * 1024;

/// Where the prebuilt binaries are and which cores to pin to.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    /// Directory holding `zonemesh` and `zonemesh-swarm` (and this binary).
    pub(crate) bin_dir: PathBuf,
    /// Core of the server under test (and the echo server); `None`: not pinned.
    pub(crate) server_core: Option<usize>,
    /// Core of the load generators (swarm, echo client); `None`: not pinned.
    pub(crate) load_core: Option<usize>,
}

impl Placement {
    /// The path of a prebuilt binary, or an error telling how to build it.
    pub(crate) fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.bin_dir.join(name);
        if !path.is_file() {
            bail!(
                "{} is missing: the runner builds nothing itself; run \
                 `cargo build --release --bins` first (or pass --bin-dir)",
                path.display()
            );
        }
        Ok(path)
    }

    /// A command running `program`, pinned to `core` with taskset when given.
    pub(crate) fn command(program: &Path, core: Option<usize>) -> Command {
        crate::node::pinned_command(program, core)
    }
}

/// Cores to pin to: server on 0 and load on 1 when this process may use both and
/// `taskset` runs; otherwise nothing is pinned (and the report says so).
pub(crate) fn choose_cores(no_pin: bool) -> (Option<usize>, Option<usize>) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let taskset_works = Command::new("taskset")
        .args(["-c", "0", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if no_pin || cores < 2 || !taskset_works {
        (None, None)
    } else {
        (Some(0), Some(1))
    }
}

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    child: Child,
    name: &'static str,
}

impl ChildGuard {
    /// Starts `command` (stdio already configured) as `name`.
    pub(crate) fn spawn(mut command: Command, name: &'static str) -> anyhow::Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("cannot start the {name}: {command:?}"))?;
        Ok(Self { child, name })
    }

    /// Its process id (the pinned program itself: taskset execs it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stdout and stderr pipes (each only once).
    pub(crate) fn take_pipes(
        &mut self,
    ) -> (
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    /// Reaps the child if it exited; `Some(success)` then.
    pub(crate) fn try_reap(&mut self) -> anyhow::Result<Option<bool>> {
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("cannot wait for the {}", self.name))?;
        Ok(status.map(|s| s.success()))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Errors mean it is already gone; nothing else to do.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a child's stderr (its logs), for error messages. Nothing is
/// measured from log text: figures come from the server's own counters.
#[derive(Debug, Default)]
pub(crate) struct LogWatch {
    tail: Mutex<VecDeque<String>>,
}

impl LogWatch {
    /// The last lines seen, joined.
    pub(crate) fn tail(&self) -> String {
        let tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn observe(&self, line: &str) {
        let mut tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tail.len() == LOG_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_owned());
    }
}

/// Reads `stderr` line by line into a [`LogWatch`] on a thread (ends at EOF).
pub(crate) fn watch_log(stderr: impl Read + Send + 'static) -> Arc<LogWatch> {
    let watch = Arc::new(LogWatch::default());
    let sink = Arc::clone(&watch);
    std::thread::spawn(move || for_each_line(stderr, |line| sink.observe(line)));
    watch
}

/// Reads `stdout` on a thread and sends every `listening on ADDR` address, in order.
pub(crate) fn watch_listening(stdout: impl Read + Send + 'static) -> mpsc::Receiver<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the addresses so the child never blocks on a full pipe.
        for_each_line(stdout, |line| {
            if let Some(addr) = parse_listening(line) {
                let _ = tx.send(addr);
            }
        });
    });
    rx
}

/// Waits for the address a child announced, at most `timeout`.
pub(crate) fn await_listening(
    rx: &mpsc::Receiver<SocketAddr>,
    timeout: Duration,
    what: &str,
    log: Option<&LogWatch>,
) -> anyhow::Result<SocketAddr> {
    rx.recv_timeout(timeout).map_err(|_| {
        let tail = log.map(LogWatch::tail).unwrap_or_default();
        anyhow::anyhow!(
            "the {what} printed no `listening on ADDR` line within {timeout:?}; its last log lines:\n{tail}"
        )
    })
}

/// Calls `f` on every line of `input` (lossy UTF-8, each at most [`LINE_BYTES_MAX`]).
fn for_each_line(input: impl Read, mut f: impl FnMut(&str)) {
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(LINE_BYTES_MAX)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => f(String::from_utf8_lossy(&buf).trim_end()),
        }
    }
}

/// The address in a line like `ZoneMesh dev server listening on 127.0.0.1:4433 (QUIC)`
/// or `ZoneMesh admin endpoint listening on http://127.0.0.1:9100`.
pub(crate) fn parse_listening(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    let addr = rest.split_whitespace().next()?;
    addr.strip_prefix("http://").unwrap_or(addr).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_of_the_server_and_the_echo_server() {
        let line = "ZoneMesh dev server listening on 127.0.0.1:40123 (QUIC, ALPN zonemesh/1)";
        assert_eq!(
            parse_listening(line),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(
            parse_listening("echo listening on [::1]:9"),
            Some("[::1]:9".parse().unwrap())
        );
        assert_eq!(parse_listening("  world: 4x4 zones"), None);
        assert_eq!(parse_listening("listening on nowhere"), None);
    }

    #[test]
    fn admin_endpoint_line() {
        let line = "ZoneMesh admin endpoint listening on http://127.0.0.1:9100";
        assert_eq!(
            parse_listening(line),
            Some("127.0.0.1:9100".parse().unwrap())
        );
    }

    #[test]
    fn log_watch_keeps_a_bounded_tail() {
        let w = LogWatch::default();
        for i in 0..50 {
            w.observe(&format!("line {i}"));
        }
        assert_eq!(w.tail().lines().count(), LOG_TAIL_LINES);
        assert!(w.tail().ends_with("line 49"));
    }

    #[test]
    fn missing_binary_names_the_build_command() {
        let p = Placement {
            bin_dir: PathBuf::from("/nonexistent-dir"),
            server_core: None,
            load_core: None,
        };
        let e = p.binary("zonemesh").unwrap_err().to_string();
        assert!(e.contains("cargo build --release --bins"), "{e}");
    }
}
