//! Walks one player around a ZoneMesh dev server and reports what it saw.
//!
//! ```sh
//! cargo run -p zonemesh-client --example walk -- --server 127.0.0.1:4433 \
//!     --dev-data ./zonemesh-data --seconds 10
//! ```
//!
//! It pins the dev certificate, mints a token from the dev secret, walks in a slowly
//! turning direction at 20 Hz, prints a status line every second and a summary at the
//! end, and exits non-zero if it could not connect or never received a snapshot.

use anyhow::Context;
use clap::Parser;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use zonemesh_client::{BlockingClient, ClientConfig, DisconnectReason, Event, NetId, Vec2};

/// Input rate of the walker.
const INPUT_INTERVAL: Duration = Duration::from_millis(50);
/// How often a status line is printed.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How fast the walking direction turns, in radians per second.
const TURN_RATE: f32 = 0.4;

/// Walk a player around a ZoneMesh server.
#[derive(Debug, Parser)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: SocketAddr,
    /// The `zonemesh dev --data` directory (certificate and token secret).
    #[arg(long, default_value = "./zonemesh-data")]
    dev_data: PathBuf,
    /// Player name [default: walker-<random>].
    #[arg(long)]
    player: Option<String>,
    /// How long to walk, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Walking speed, in world units per second.
    #[arg(long, default_value_t = 4.0)]
    speed: f32,
    /// Give up connecting (retries included) after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
}

/// What the walk observed.
#[derive(Debug, Default)]
struct Tally {
    seen: HashSet<NetId>,
    spawns: u64,
    despawns: u64,
    zone_changes: u64,
    game_events: u64,
    disconnected: Option<DisconnectReason>,
}

impl Tally {
    fn observe(&mut self, event: Event) {
        match event {
            Event::Spawned { id, kind } => {
                tracing::debug!(%id, kind, "spawned");
                self.seen.insert(id);
                self.spawns += 1;
            }
            // This example sends no durable actions, so none are answered.
            Event::Updated { .. }
            | Event::ActionCommitted { .. }
            | Event::ActionRejected { .. } => {}
            Event::Despawned { id } => {
                tracing::debug!(%id, "despawned");
                self.despawns += 1;
            }
            Event::ZoneChanged { zone } => {
                println!("entered {zone}");
                self.zone_changes += 1;
            }
            Event::GameEvent { kind, payload } => {
                tracing::info!(kind, bytes = payload.len(), "game event");
                self.game_events += 1;
            }
            Event::Reconnected { player, zone } => {
                println!("reconnected as {player} in {zone}");
                self.disconnected = None;
            }
            Event::Disconnected(reason) => {
                println!("disconnected: {reason}");
                self.disconnected = Some(reason);
            }
        }
    }
}

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs on stderr, what it saw on stdout; colour only on a terminal without NO_COLOR.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    match run(Args::parse()) {
        Ok(snapshots) if snapshots > 0 => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("error: connected but never received a snapshot");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects, walks, prints the summary; returns the number of snapshots received.
fn run(args: Args) -> anyhow::Result<u64> {
    let player = args
        .player
        .clone()
        .unwrap_or_else(|| format!("walker-{:04x}", rand::random::<u16>()));
    let mut config = ClientConfig::from_dev_data(args.server, &args.dev_data, &player)
        .with_context(|| format!("cannot use dev data in {}", args.dev_data.display()))?;
    config.connect_deadline = Duration::try_from_secs_f64(args.connect_timeout)
        .context("--connect-timeout must be a non-negative number of seconds")?;
    let mut client = BlockingClient::connect(config)
        .with_context(|| format!("cannot connect to {} as {player}", args.server))?;
    println!(
        "connected to {} as {player}: entity {}, {}, {} Hz",
        args.server,
        client.player(),
        client.zone(),
        client.tick_hz()
    );
    let mut tally = Tally::default();
    walk(&mut client, &args, &mut tally);
    let stats = client.stats();
    print_summary(&client, &tally);
    client.close();
    Ok(stats.snapshots)
}

/// Sends inputs at 20 Hz until the time is up or the session ends.
fn walk(client: &mut BlockingClient, args: &Args, tally: &mut Tally) {
    let duration = Duration::from_secs_f64(args.seconds.max(0.0));
    let started = Instant::now();
    let mut next_input = started;
    let mut next_status = started + STATUS_INTERVAL;
    let mut events = Vec::new();
    while started.elapsed() < duration {
        client.poll_events(&mut events);
        events.drain(..).for_each(|e| tally.observe(e));
        if tally.disconnected.is_some() {
            return;
        }
        let heading = started.elapsed().as_secs_f32() * TURN_RATE;
        let velocity = Vec2::new(heading.cos(), heading.sin()) * args.speed;
        if let Err(e) = client.send_input(velocity, 0) {
            tracing::warn!(error = %e, "input not sent");
        }
        if Instant::now() >= next_status {
            print_status(client, started);
            next_status += STATUS_INTERVAL;
        }
        next_input += INPUT_INTERVAL;
        std::thread::sleep(next_input.saturating_duration_since(Instant::now()));
    }
}

fn print_status(client: &BlockingClient, started: Instant) {
    let own = client.replica().get(client.player()).map(|e| e.position);
    let position = own.map_or_else(
        || "unknown".to_owned(),
        |p| format!("({:.1}, {:.1})", p.x, p.y),
    );
    println!(
        "t={:>5.1}s  entities={:<4} position={position:<16} {}  rtt={:.1}ms  snapshots={}",
        started.elapsed().as_secs_f64(),
        client.replica().len(),
        client.zone(),
        client.rtt().as_secs_f64() * 1000.0,
        client.stats().snapshots,
    );
}

fn print_summary(client: &BlockingClient, tally: &Tally) {
    let s = client.stats();
    println!("--- summary ---");
    println!(
        "snapshots:      {} ({} stale)",
        s.snapshots, s.stale_snapshots
    );
    println!("entities seen:  {}", tally.seen.len());
    println!("spawns:         {}", tally.spawns);
    println!("despawns:       {}", tally.despawns);
    println!("zone changes:   {}", tally.zone_changes);
    println!("game events:    {}", tally.game_events);
    println!(
        "inputs sent:    {} (server applied up to #{})",
        s.inputs_sent, s.last_input_ack
    );
    println!("bytes down/up:  {} / {}", s.bytes_down, s.bytes_up);
    println!("decode errors:  {}", s.decode_errors);
    println!("events dropped: {}", s.events_dropped);
    if let Some(reason) = &tally.disconnected {
        println!("ended by:       {reason}");
    }
}
