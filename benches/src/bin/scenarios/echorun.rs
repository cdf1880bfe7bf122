//! One measured run of the raw quinn baseline: this binary's `echo-server` pinned like
//! the game server, its `echo-client` pinned like the swarm, CPU of the echo server
//! over a steady window divided by the answers delivered in that window.

use crate::child::{self, ChildGuard, Placement};
use crate::drive;
use crate::echo::EchoCounts;
use crate::procfs;
use anyhow::Context;
use serde::Serialize;
use std::process::Stdio;
use std::time::Duration;

/// Estimated QUIC bytes around one datagram payload in a 1-RTT packet: 1 flags byte,
/// 8-byte connection id, up to 4 packet-number bytes, DATAGRAM frame type and length
/// (3), 16-byte AEAD tag. The swarm's byte rates include it; the payloads exclude it.
pub(crate) const QUIC_OVERHEAD_BYTES: f64 = 30.0;

/// The traffic to reproduce without a game.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct EchoSpec {
    /// Connections.
    pub(crate) conns: u64,
    /// Datagrams each way per connection per second.
    pub(crate) rate_hz: f64,
    /// Client-to-server payload bytes.
    pub(crate) up_bytes: usize,
    /// Server-to-client payload bytes.
    pub(crate) down_bytes: usize,
    /// Run length, seconds.
    pub(crate) secs: f64,
}

/// What one baseline run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EchoRun {
    /// The traffic.
    pub(crate) spec: EchoSpec,
    /// The client's counters.
    pub(crate) counts: EchoCounts,
    /// Echo-server CPU over the window, seconds.
    pub(crate) window_cpu_s: f64,
    /// Window length, seconds.
    pub(crate) window_s: f64,
}

impl EchoRun {
    /// Echo-server CPU microseconds per answer delivered in the window.
    pub(crate) fn us_per_datagram(&self) -> f64 {
        if self.counts.received_in_window == 0 {
            return f64::NAN;
        }
        self.window_cpu_s / self.counts.received_in_window as f64 * 1e6
    }
}

/// Payload bytes of one datagram from a per-second UDP byte rate and datagram rate.
pub(crate) fn payload_bytes(bytes_per_s: f64, datagrams_per_s: f64) -> usize {
    if datagrams_per_s <= 0.0 {
        return 2;
    }
    let bytes = bytes_per_s / datagrams_per_s - QUIC_OVERHEAD_BYTES;
    bytes.clamp(2.0, 1400.0).round() as usize
}

/// Runs the baseline once.
pub(crate) fn run(placement: &Placement, clk_tck: u64, spec: &EchoSpec) -> anyhow::Result<EchoRun> {
    let me = std::env::current_exe().context("cannot find this binary")?;
    let dir = tempfile::tempdir().context("cannot create a directory")?;
    let cert = dir.path().join("echo-cert.pem");
    let mut server_cmd = Placement::command(&me, placement.server_core);
    server_cmd
        .arg("echo-server")
        .arg("--cert-out")
        .arg(&cert)
        .args(["--max-secs", &(spec.secs as u64 + 120).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = ChildGuard::spawn(server_cmd, "echo server")?;
    let (stdout, _) = server.take_pipes();
    let rx = child::watch_listening(stdout.context("echo server stdout not piped")?);
    let addr = child::await_listening(&rx, Duration::from_secs(15), "echo server", None)?;
    // Let the echo server finish starting up (TLS set-up, first allocations) before its
    // CPU is sampled, so the baseline counts only per-datagram work.
    std::thread::sleep(Duration::from_secs(1));

    let (window_start, window_end) = (3.0_f64.min(spec.secs / 3.0), spec.secs - 1.0);
    let out_path = dir.path().join("echo-client.json");
    let out = std::fs::File::create(&out_path).context("cannot create the client output")?;
    let mut client_cmd = Placement::command(&me, placement.load_core);
    client_cmd
        .arg("echo-client")
        .args(["--server", &addr.to_string()])
        .arg("--cert")
        .arg(&cert)
        .args(["--conns", &spec.conns.to_string()])
        .args(["--rate-hz", &spec.rate_hz.to_string()])
        .args(["--up-bytes", &spec.up_bytes.to_string()])
        .args(["--down-bytes", &spec.down_bytes.to_string()])
        .args(["--secs", &spec.secs.to_string()])
        .args(["--window-start", &window_start.to_string()])
        .args(["--window-end", &window_end.to_string()])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null());
    let mut client = ChildGuard::spawn(client_cmd, "echo client")?;
    let server_pid = server.pid();
    let limit = Duration::from_secs_f64(spec.secs + 30.0);
    let driven = drive::drive(
        &mut || procfs::sample(server_pid, clk_tck),
        &mut client,
        clk_tck,
        limit,
    )?;
    let text = std::fs::read_to_string(&out_path).context("no echo client output")?;
    let counts: EchoCounts = serde_json::from_str(text.trim())
        .with_context(|| format!("echo client printed {text:?}, not its counts"))?;
    let (window_cpu_s, window_s) = drive::cpu_over(&driven.server, window_start, window_end)
        .context("too few echo-server samples in the window")?;
    Ok(EchoRun {
        spec: spec.clone(),
        counts,
        window_cpu_s,
        window_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_from_rates() {
        // 20 datagrams of 730 UDP bytes a second: 700 payload bytes each.
        assert_eq!(payload_bytes(14_600.0, 20.0), 700);
        assert_eq!(payload_bytes(100.0, 0.0), 2);
        assert_eq!(payload_bytes(10.0, 20.0), 2);
        assert_eq!(payload_bytes(1e9, 20.0), 1400);
    }
}
