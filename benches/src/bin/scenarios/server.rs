//! The server under test: `zonemesh dev` started from the prebuilt binary on a fresh
//! data directory, pinned, with its admin endpoint on loopback. Its stdout is parsed
//! for the QUIC and admin addresses; its stderr (logs) is kept only for error
//! messages. Missed ticks and tick times come from the server's own counters, read
//! by the swarm from the admin endpoint.

use crate::child::{self, ChildGuard, LogWatch, Placement};
use crate::procfs;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for the server's `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The world and limits the server runs with (its `zonemesh dev` flags).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct ServerSpec {
    /// `--tick-hz`.
    pub(crate) tick_hz: u32,
    /// `--zones` (per side).
    pub(crate) zones: u32,
    /// `--zone-size`, world units.
    pub(crate) zone_size: f64,
    /// `--npcs` in the whole world.
    pub(crate) npcs: u64,
    /// `--aoi-radius`, world units.
    pub(crate) aoi_radius: f64,
    /// `--workers` (zone worker threads).
    pub(crate) workers: u32,
    /// `--budget-bytes`: snapshot bytes per client per tick.
    pub(crate) budget_bytes: u64,
}

impl ServerSpec {
    /// The demo world's defaults with one zone worker.
    pub(crate) fn demo() -> Self {
        Self {
            tick_hz: 20,
            zones: 4,
            zone_size: 256.0,
            npcs: 4000,
            aoi_radius: 64.0,
            workers: 1,
            budget_bytes: 4000,
        }
    }

    /// The world's side length, world units.
    pub(crate) fn world_side(&self) -> f64 {
        f64::from(self.zones) * self.zone_size
    }

    fn args(&self, data: &Path) -> Vec<String> {
        let mut args = vec!["dev".to_owned(), "--listen".into(), "127.0.0.1:0".into()];
        args.extend(["--data".into(), data.display().to_string()]);
        for (flag, value) in [
            ("--tick-hz", self.tick_hz.to_string()),
            ("--zones", self.zones.to_string()),
            ("--zone-size", self.zone_size.to_string()),
            ("--npcs", self.npcs.to_string()),
            ("--aoi-radius", self.aoi_radius.to_string()),
            ("--workers", self.workers.to_string()),
            ("--budget-bytes", self.budget_bytes.to_string()),
            // The whole world stays loaded: no zone retires during a run.
            ("--keep-warm", "all".to_owned()),
            ("--max-connections", "20000".to_owned()),
            ("--admin", "127.0.0.1:0".to_owned()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        args
    }
}

/// A running server; killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// Where it listens (QUIC).
    pub(crate) addr: SocketAddr,
    /// Its admin endpoint (HTTP).
    pub(crate) admin: SocketAddr,
    /// Its stderr, watched.
    pub(crate) log: Arc<LogWatch>,
    /// Its data directory (dev certificate and secret for the swarm); removed on drop,
    /// after the process (fields drop in order).
    guard: ChildGuard,
    data: tempfile::TempDir,
}

impl Server {
    /// Starts `zonemesh dev` with `spec` on a fresh data directory.
    pub(crate) fn start(placement: &Placement, spec: &ServerSpec) -> anyhow::Result<Self> {
        let program = placement.binary("zonemesh")?;
        let data = tempfile::tempdir().context("cannot create a data directory")?;
        let mut cmd = Placement::command(&program, placement.server_core);
        cmd.args(spec.args(data.path()))
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(cmd, "server")?;
        let (stdout, stderr) = guard.take_pipes();
        let log = child::watch_log(stderr.context("server stderr not piped")?);
        let listening = child::watch_listening(stdout.context("server stdout not piped")?);
        let addr = child::await_listening(&listening, START_TIMEOUT, "server", Some(&log))?;
        let admin =
            child::await_listening(&listening, START_TIMEOUT, "admin endpoint", Some(&log))?;
        Ok(Self {
            addr,
            admin,
            log,
            guard,
            data,
        })
    }

    /// The data directory (`--dev-data` for the swarm).
    pub(crate) fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// A /proc sample; an error (with its last log lines) if it died.
    pub(crate) fn sample(&mut self, clk_tck: u64) -> anyhow::Result<procfs::Sample> {
        if self.guard.try_reap()?.is_some() {
            anyhow::bail!(
                "the server exited early; its last log lines:\n{}",
                self.log.tail()
            );
        }
        procfs::sample(self.pid(), clk_tck)
    }
}
