//! `zonemesh-ctl`: ask a running node's admin endpoint how it is doing.
//!
//! `zonemesh-ctl --admin 127.0.0.1:9100 status` prints the node's tick figures and
//! zones; `--json` prints the status document as the endpoint served it.
//! `move-zone X:Y --to NODE` moves a zone the node holds to another node while its
//! players stay connected; `moves` lists the moves in progress and recent ones.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use zonemesh_ctl::AdminClient;
use zonemesh_shared::status::{ClusterStatusReport, MovesReport, NodeStatusReport};

#[derive(Debug, Parser)]
#[command(name = "zonemesh-ctl", version, about = "ZoneMesh admin client")]
struct Cli {
    /// The node's admin endpoint (its `--admin` address).
    #[arg(long)]
    admin: SocketAddr,
    /// File whose first line is the endpoint's bearer token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tick figures, sessions and zones of the node.
    Status,
    /// Moves a zone this node holds to another node, players and all.
    MoveZone {
        /// The zone, as `X:Y` (as `status` lists zones).
        zone: String,
        /// The node to move it to: its id, as `status` lists members.
        #[arg(long)]
        to: String,
    },
    /// Zone moves in progress and recent ones, with their pauses.
    Moves,
    /// Moves every zone off the node (the one behind `--admin`) so it can be stopped;
    /// `status` then says `drained`.
    Drain {
        /// The node's id, as `status` shows it (a check that the right node drains).
        node: String,
    },
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut client = AdminClient::new(cli.admin);
    if let Some(path) = &cli.token_file {
        let token = zonemesh_ctl::read_token_file(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?;
        client.token = Some(token);
    }
    match &cli.command {
        Command::MoveZone { zone, to } => {
            let (x, y) = parse_zone(zone)?;
            let id = client.move_zone(x, y, to)?;
            println!("moving zone {x}:{y} to {to} (move {id}); `moves` follows it");
        }
        Command::Drain { node } => {
            let status = client.status()?;
            let me = status
                .cluster
                .as_ref()
                .map(|c| c.node.clone())
                .context("the node is not in a cluster: there is nowhere to move its zones")?;
            if me != *node && !me.starts_with(&format!("{node}/")) {
                anyhow::bail!(
                    "{node} is not the node behind {} (that is {me}); ask {node}'s own admin endpoint",
                    cli.admin
                );
            }
            client.drain()?;
            println!(
                "draining {me}: its zones move to other nodes; `status` says `drained` when it may be stopped"
            );
        }
        Command::Moves => {
            let moves = client.moves()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&moves)?);
            } else {
                print!("{}", moves_table(&moves));
            }
        }
        Command::Status => {
            let status = client.status()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status_table(&status));
            }
        }
    }
    Ok(())
}

/// `X:Y` (or `X,Y`) as zone coordinates.
fn parse_zone(text: &str) -> anyhow::Result<(u16, u16)> {
    let (x, y) = text
        .split_once([':', ','])
        .with_context(|| format!("zone {text:?}: expected X:Y, as `status` lists zones"))?;
    let coord = |v: &str| {
        v.trim()
            .parse::<u16>()
            .with_context(|| format!("zone {text:?}: {v:?} is not a zone coordinate (0-65535)"))
    };
    Ok((coord(x)?, coord(y)?))
}

/// The human form of the moves report.
fn moves_table(m: &MovesReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>20} {:>8} {:>8} {:>9} {:>9} {:>9}  {:<24} outcome / reason",
        "move", "zone", "players", "age s", "pause ms", "took ms", "to"
    );
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for mv in &m.moves {
        let outcome = mv.outcome.as_deref().unwrap_or("in progress");
        let _ = writeln!(
            out,
            "{:>20} {:>8} {:>8} {:>9.1} {:>9} {:>9}  {:<24} {outcome} / {}",
            mv.id,
            format!("{}:{}", mv.zone & 0xffff, mv.zone >> 16),
            mv.players,
            mv.age_ms as f64 / 1000.0,
            opt(mv.pause_ms),
            opt(mv.took_ms),
            mv.to,
            mv.reason
        );
        if !mv.steps.is_empty() {
            let steps: Vec<String> = mv
                .steps
                .iter()
                .map(|s| format!("{} {:.1} ms", s.step, s.at_us as f64 / 1000.0))
                .collect();
            let _ = writeln!(out, "{:>20} steps: {}", "", steps.join(", "));
        }
    }
    out
}

/// The human form of a status document.
fn status_table(s: &NodeStatusReport) -> String {
    let t = &s.ticks;
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node: version {}, up {:.0} s, {} Hz, {} workers, {} sessions",
        s.version, s.uptime_s, s.tick_hz, s.workers, s.sessions
    );
    let _ = writeln!(
        out,
        "ticks: {} rounds, {} overran, {} missed ticks; zone tick p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        t.rounds,
        t.overruns,
        t.missed_ticks,
        ms(t.zone_tick_us.value_at_quantile(0.5)),
        ms(t.zone_tick_us.value_at_quantile(0.99)),
        ms(t.zone_tick_us.max()),
    );
    let _ = writeln!(
        out,
        "{:>6} {:>8} {:>9} {:>10} {:>9}",
        "zone", "players", "entities", "tick p99", "missed"
    );
    for z in &s.zones {
        let _ = writeln!(
            out,
            "{:>6} {:>8} {:>9} {:>7.2} ms {:>9}",
            format!("{}:{}", z.x, z.y),
            z.players,
            z.entities,
            z.tick_p99_ms,
            z.missed_ticks
        );
    }
    if let Some(c) = &s.cluster {
        cluster_lines(&mut out, c);
    }
    out
}

/// The cluster part of the table: this node, its members and the zones it holds.
fn cluster_lines(out: &mut String, c: &ClusterStatusReport) {
    let lease = if c.lease_valid { "live" } else { "NOT live" };
    let drain = match (c.draining, c.drained) {
        (_, true) => ", drained (holds no zone; may be stopped)",
        (true, false) => ", draining",
        (false, false) => "",
    };
    let _ = writeln!(
        out,
        "cluster: node {}, lease {lease}{drain}, {} members, {} redirects, {} B to nodes, {} B from nodes",
        c.node,
        c.members.len(),
        c.redirects,
        c.node_bytes_sent,
        c.node_bytes_received
    );
    for m in &c.members {
        let load = m.load.as_ref().map_or_else(
            || "load unknown".to_owned(),
            |l| {
                let costliest: Vec<String> = l
                    .costliest_zones
                    .iter()
                    .map(|z| format!("{}:{:.1}%", z.zone, f64::from(z.us_per_s) / 1e4))
                    .collect();
                format!(
                    "{} zones, {} players, {} entities, tick p99 {:.2} ms, ticking {:.1}% of a core (costliest zones {})",
                    l.zones,
                    l.players,
                    l.entities,
                    f64::from(l.tick_p99_us) / 1000.0,
                    f64::from(l.tick_us_per_s) / 1e4,
                    costliest.join(" ")
                )
            },
        );
        let _ = writeln!(
            out,
            "  member {} players at {}, nodes at {}; {load}",
            m.node, m.client_addr, m.node_addr
        );
    }
    let held: Vec<String> = c
        .held_zones
        .iter()
        .map(|z| format!("{}@{}", z.zone, z.epoch))
        .collect();
    let _ = writeln!(out, "  holds zones (zone@epoch): {}", held.join(" "));
    let x = &c.crossings;
    let _ = writeln!(
        out,
        "  players crossed to other nodes {}, from other nodes {}, taken back {}, never arrived {}; ghost batches out {}, in {}",
        x.players_out,
        x.players_in,
        x.players_taken_back,
        x.arrivals_expired,
        x.ghost_batches_out,
        x.ghost_batches_in
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonemesh_shared::status::{
        BucketCounts, CrossingReport, HeldZoneReport, LoadReport, MemberReport, TickTotals,
        ZoneCostReport, ZoneStatusReport,
    };

    #[test]
    fn the_table_shows_ticks_and_every_zone() {
        let status = NodeStatusReport {
            version: "0.1.0".into(),
            uptime_s: 12.0,
            tick_hz: 20,
            workers: 1,
            sessions: 3,
            busy_answers: 0,
            inbox_input_drops: 0,
            ticks: TickTotals {
                rounds: 240,
                overruns: 2,
                missed_ticks: 5,
                zone_ticks: 240,
                zone_tick_us: BucketCounts(vec![(1500, 238), (120_000, 2)]),
                round_us: BucketCounts(vec![(1600, 240)]),
            },
            zones: vec![ZoneStatusReport {
                x: 1,
                y: 0,
                ticks: 240,
                missed_ticks: 5,
                tick_p50_ms: 1.5,
                tick_p99_ms: 120.0,
                players: 3,
                entities: 4003,
                inputs_applied: 100,
                inputs_superseded: 2,
            }],
            cluster: None,
        };
        let mut table = status_table(&status);
        assert!(!table.contains("cluster"), "{table}");
        let clustered = NodeStatusReport {
            cluster: Some(ClusterStatusReport {
                node: "00000000000000aa/3".into(),
                lease_valid: true,
                members: vec![MemberReport {
                    node: "00000000000000aa/3".into(),
                    node_addr: "127.0.0.1:7433".into(),
                    client_addr: "127.0.0.1:4433".into(),
                    load: Some(LoadReport {
                        zones: 1,
                        players: 3,
                        entities: 40,
                        tick_p99_us: 1_500,
                        tick_us_per_s: 25_000,
                        costliest_zones: vec![ZoneCostReport {
                            zone: 4,
                            us_per_s: 25_000,
                        }],
                        draining: false,
                    }),
                }],
                held_zones: vec![HeldZoneReport { zone: 4, epoch: 2 }],
                redirects: 7,
                node_bytes_sent: 1200,
                node_bytes_received: 900,
                crossings: CrossingReport {
                    players_out: 4,
                    players_in: 3,
                    ..CrossingReport::default()
                },
                draining: true,
                drained: false,
            }),
            ..status
        };
        table = status_table(&clustered);
        for needle in [
            "cluster: node 00000000000000aa/3, lease live, draining, 1 members, 7 redirects, 1200 B to nodes",
            "players at 127.0.0.1:4433",
            "1 zones, 3 players, 40 entities, tick p99 1.50 ms, ticking 2.5% of a core (costliest zones 4:2.5%)",
            "4@2",
            "players crossed to other nodes 4, from other nodes 3",
            "20 Hz, 1 workers, 3 sessions",
            "240 rounds, 2 overran, 5 missed ticks",
            "p50 1.50 ms",
            "max 120.00 ms",
            "1:0",
            "4003",
        ] {
            assert!(table.contains(needle), "{needle:?} missing from\n{table}");
        }
    }
}
