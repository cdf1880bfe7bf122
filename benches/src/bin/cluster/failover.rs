//! `cluster failover`: three nodes under reconnecting players; a node holding zones is
//! SIGKILLed, again and again, and the survivors' `/status` is polled every 20 ms to
//! measure how long until
//! - **detection**: no survivor lists the dead run as a member;
//! - **zones back**: every zone it held is held by a survivor;
//! - **players back**: every player whose zone was there has a new session that shows
//!   it its own entity (exact, from the players' own clocks, not the poll).
//!
//! Then the node is started again from the same data directory (a new incarnation)
//! and the next round waits until everyone sees three members, every lease is live and
//! every player plays. A killed node's zones stay where they went, so the victim of
//! each round is the next node, round-robin, that holds at least one zone.

use crate::fixture::{Fixture, PHASE_LIMIT};
use crate::node::{Node, all_see_each_other, members_are, wait_until};
use crate::players::{Addresses, IDLE_TIMEOUT, Players, Route, lock};
use crate::stats::{max, median, ms};
use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use zonemesh_client::{Client, ClientConfig};
use zonemesh_shared::ids::ZoneId;

/// Nodes in the cluster.
const NODES: usize = 3;
/// Zones along each side of the world: 4 zones for 3 nodes.
pub(crate) const WORLD_ZONES: u16 = 2;
/// How often the survivors are polled while measuring.
const MEASURE_POLL: Duration = Duration::from_millis(20);
/// How often state is polled while waiting between rounds.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// Player names tried while spreading zones over the nodes.
const PLACEMENT_TRIES: usize = 100;
/// The targets of the acceptance item.
const DETECTION_TARGET: Duration = Duration::from_secs(5);
const ZONES_BACK_TARGET: Duration = Duration::from_secs(10);
/// The cluster size `zonemesh serve` tunes SWIM for (`EXPECTED_NODES` in
/// `server/src/serve.rs`, private there), to print its timing.
const SERVE_EXPECTED_NODES: u32 = 16;

/// What one kill measured.
#[derive(Debug)]
struct Round {
    victim: usize,
    run: String,
    lost: BTreeSet<u32>,
    affected: usize,
    detection: Option<Duration>,
    zones_back: Option<Duration>,
    players_back: Option<Duration>,
    /// How each player there came back, for the progress line.
    each_player: Vec<Back>,
    rejoin: Option<Duration>,
}

impl Round {
    fn recovered(&self) -> bool {
        self.detection.is_some() && self.zones_back.is_some() && self.players_back.is_some()
    }
}

/// Runs `kills` rounds with `players` players and prints the report.
pub(crate) fn run(
    runtime: &Runtime,
    fixture: &Fixture,
    kills: usize,
    players: usize,
) -> anyhow::Result<()> {
    let mut nodes = fixture.start_cluster(NODES)?;
    let addrs: Addresses = Arc::new(Mutex::new(nodes.iter().map(|n| n.players).collect()));
    let names = place_players(runtime, &fixture.shared, &nodes, players)?;
    let players = Players::start(runtime, &names, &fixture.shared, &addrs);
    eprintln!(
        "{} players, zones held: {}",
        names.len(),
        describe_holders(&nodes)
    );
    let mut rounds = Vec::new();
    let mut outcome = Ok(());
    for round in 0..kills {
        match one_kill(fixture, &mut nodes, &players, &addrs, round) {
            Ok(r) => {
                eprintln!("kill {}/{kills}: {}", round + 1, describe(&r));
                let recovered = r.recovered();
                rounds.push(r);
                if !recovered {
                    outcome = Err(anyhow::anyhow!(
                        "kill {}: not recovered within {PHASE_LIMIT:?}; stopped",
                        round + 1
                    ));
                    break;
                }
            }
            Err(e) => {
                outcome = Err(e.context(format!("kill {}", round + 1)));
                break;
            }
        }
    }
    print_report(&rounds, names.len());
    if outcome.is_err() {
        print_logs(&nodes);
    }
    outcome
}

/// Connects one probe player at a time, each through the node holding the fewest
/// zones (placement prefers the node asked first, so a zone nobody holds goes there),
/// until every node holds a zone, every zone has a player and there are `want`
/// players. Returns the players' names.
fn place_players(
    runtime: &Runtime,
    shared: &Path,
    nodes: &[Node],
    want: usize,
) -> anyhow::Result<Vec<String>> {
    let all_zones = usize::from(WORLD_ZONES) * usize::from(WORLD_ZONES);
    let mut names = Vec::new();
    let mut covered = BTreeSet::new();
    for k in 0..PLACEMENT_TRIES {
        let held: Vec<usize> = nodes.iter().map(|n| n.held_zones().len()).collect();
        if held.iter().all(|&h| h > 0) && covered.len() == all_zones && names.len() >= want {
            return Ok(names);
        }
        let target = (0..nodes.len()).min_by_key(|&i| held[i]).unwrap_or(0);
        let name = format!("player-{k}");
        let zone = runtime.block_on(probe(nodes[target].players, shared, &name))?;
        if covered.insert(zone) || names.len() < want {
            names.push(name);
        }
    }
    bail!(
        "after {PLACEMENT_TRIES} players, still not every node holds a zone and every \
         zone a player: {}",
        describe_holders(nodes)
    )
}

/// Connects `name` through `addr` (placing its zone if nobody holds it), then leaves;
/// returns the player's zone.
async fn probe(addr: SocketAddr, shared: &Path, name: &str) -> anyhow::Result<u32> {
    let config = ClientConfig::from_dev_data(addr, shared, name)?;
    let client = Client::connect(config)
        .await
        .with_context(|| format!("{name} cannot connect through {addr}"))?;
    let zone = client.zone().0;
    client.close().await;
    Ok(zone)
}

/// One round: settle, kill, measure, restart.
fn one_kill(
    fixture: &Fixture,
    nodes: &mut [Node],
    players: &Players,
    addrs: &Addresses,
    round: usize,
) -> anyhow::Result<Round> {
    wait_settled(nodes, players)?;
    let (victim, lost) = pick_victim(nodes, round).context("no node holds a zone")?;
    let affected: Vec<usize> = players
        .snapshot()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.zone.is_some_and(|z| lost.contains(&z)))
        .map(|(k, _)| k)
        .collect();
    let killed_at = Instant::now();
    nodes[victim].sigkill()?;
    let mut r = measure(nodes, victim, &lost, players, &affected, killed_at);
    if r.recovered() {
        r.rejoin = Some(restart(fixture, nodes, victim, addrs)?);
    }
    Ok(r)
}

/// `None` when every node answers, sees exactly the others, has a live lease, and
/// every player plays in a zone some node holds; else what is not so yet.
fn unsettled(nodes: &[Node], players: &Players) -> Option<String> {
    let mut views = Vec::new();
    for node in nodes {
        let Some(view) = node.cluster() else {
            return Some(format!("node {} does not answer", node.index));
        };
        if !view.lease_valid || !members_are(&view, nodes) {
            return Some(format!(
                "node {}: lease valid {}, members {:?}",
                node.index,
                view.lease_valid,
                view.members.iter().map(|m| &m.node).collect::<Vec<_>>()
            ));
        }
        views.push(view);
    }
    let held: BTreeSet<u32> = views
        .iter()
        .flat_map(|v| v.held_zones.iter().map(|z| z.zone))
        .collect();
    let waiting: Vec<String> = players
        .states
        .iter()
        .zip(players.snapshot())
        .filter(|(_, s)| !(s.playing() && s.zone.is_some_and(|z| held.contains(&z))))
        .map(|((name, _), s)| match s.last_error {
            Some(e) => format!("{name} ({e})"),
            None => name.clone(),
        })
        .collect();
    (!waiting.is_empty()).then(|| {
        format!(
            "players not yet playing in a held zone: {waiting:?}; zones held: {}",
            zones(&held)
        )
    })
}

/// Waits until [`unsettled`] has nothing to say, at most [`PHASE_LIMIT`].
fn wait_settled(nodes: &[Node], players: &Players) -> anyhow::Result<()> {
    let mut reason = None;
    let waited = wait_until("the cluster settles", PHASE_LIMIT, SETTLE_POLL, || {
        reason = unsettled(nodes, players);
        reason.is_none()
    });
    waited.map(drop).with_context(|| reason.unwrap_or_default())
}

/// The first node from `round` on (round-robin) that holds a zone, and its zones.
fn pick_victim(nodes: &[Node], round: usize) -> Option<(usize, BTreeSet<u32>)> {
    (0..nodes.len())
        .map(|k| (round + k) % nodes.len())
        .find_map(|i| {
            let held = nodes[i].held_zones();
            (!held.is_empty()).then_some((i, held))
        })
}

/// Polls the survivors every [`MEASURE_POLL`] until the three moments were all seen
/// or [`PHASE_LIMIT`] passed (those not seen stay `None`).
fn measure(
    nodes: &[Node],
    victim: usize,
    lost: &BTreeSet<u32>,
    players: &Players,
    affected: &[usize],
    killed_at: Instant,
) -> Round {
    let dead = nodes[victim].run.as_str();
    let survivors: Vec<&Node> = nodes.iter().filter(|n| n.index != victim).collect();
    let mut r = Round {
        victim,
        run: dead.to_owned(),
        lost: lost.clone(),
        affected: affected.len(),
        detection: None,
        zones_back: None,
        players_back: None,
        each_player: Vec::new(),
        rejoin: None,
    };
    while !r.recovered() && killed_at.elapsed() < PHASE_LIMIT {
        let views: Vec<_> = survivors.iter().map(|n| n.cluster()).collect();
        // Stamped after the answers came: the moments are at most one poll late.
        let now = killed_at.elapsed();
        let gone = views.iter().all(|v| {
            v.as_ref()
                .is_some_and(|c| c.members.iter().all(|m| m.node != dead))
        });
        if r.detection.is_none() && gone {
            r.detection = Some(now);
        }
        let held: BTreeSet<u32> = views
            .iter()
            .flatten()
            .flat_map(|c| c.held_zones.iter().map(|z| z.zone))
            .collect();
        if r.zones_back.is_none() && lost.is_subset(&held) {
            r.zones_back = Some(now);
        }
        if r.players_back.is_none()
            && let Some(each) = players_back(players, affected, killed_at)
        {
            r.players_back = each.iter().map(|b| b.at).max();
            r.each_player = each;
        }
        std::thread::sleep(MEASURE_POLL);
    }
    r
}

/// How each player there came back.
#[derive(Debug, Clone, Copy)]
struct Back {
    /// Since the kill, when it saw itself again.
    at: Duration,
    /// Since the kill, when its session ended.
    lost: Option<Duration>,
    route: Route,
}

/// How each of `affected` came back, once all saw themselves in a session begun after
/// the kill.
fn players_back(players: &Players, affected: &[usize], killed_at: Instant) -> Option<Vec<Back>> {
    affected
        .iter()
        .map(|&k| {
            let state = lock(&players.states[k].1).clone();
            Some(Back {
                at: state.ready_at?.checked_duration_since(killed_at)?,
                lost: state
                    .lost_at
                    .and_then(|t| t.checked_duration_since(killed_at)),
                route: state.route,
            })
        })
        .collect()
}

/// Starts node `victim` again (same configuration and data directory, seeded with the
/// survivors: it listens on new ports) and waits until all three see each other.
fn restart(
    fixture: &Fixture,
    nodes: &mut [Node],
    victim: usize,
    addrs: &Addresses,
) -> anyhow::Result<Duration> {
    let seeds: Vec<SocketAddr> = nodes
        .iter()
        .filter(|n| n.index != victim)
        .map(|n| n.node_addr)
        .collect();
    let started = Instant::now();
    nodes[victim] = fixture.start_node(victim, &seeds)?;
    lock(addrs)[victim] = nodes[victim].players;
    wait_until(
        "all three nodes see each other after the restart",
        PHASE_LIMIT,
        SETTLE_POLL,
        || all_see_each_other(nodes),
    )?;
    Ok(started.elapsed())
}

/// `node i: zones` for every node, for progress lines.
fn describe_holders(nodes: &[Node]) -> String {
    let parts: Vec<String> = nodes
        .iter()
        .map(|n| format!("node {}: {}", n.index, zones(&n.held_zones())))
        .collect();
    parts.join("; ")
}

/// Zone ids as `(x,y)` cells.
fn zones(ids: &BTreeSet<u32>) -> String {
    let cells: Vec<String> = ids
        .iter()
        .map(|&z| {
            let z = ZoneId(z);
            format!("({},{})", z.x(), z.y())
        })
        .collect();
    if cells.is_empty() {
        "none".to_owned()
    } else {
        cells.join(" ")
    }
}

/// One round as progress lines: the figures, then how each player came back.
fn describe(r: &Round) -> String {
    let mut each = r.each_player.clone();
    each.sort_unstable_by_key(|b| b.at);
    let each: Vec<String> = each
        .iter()
        .map(|b| {
            format!(
                "\n    back at {} ms: session lost at {} ms, {} failed connects, then a \
                 connect of {} ms with {} redirects",
                ms(Some(b.at), 0),
                ms(b.lost, 0),
                b.route.failed_connects,
                ms(Some(b.route.connect), 0),
                b.route.redirects
            )
        })
        .collect();
    format!(
        "node {} ({}) held {}; detection {} ms, zones back {} ms, {} players back {} ms, \
         rejoin {} ms{}",
        r.victim,
        r.run,
        zones(&r.lost),
        ms(r.detection, 0),
        ms(r.zones_back, 0),
        r.affected,
        ms(r.players_back, 0),
        ms(r.rejoin, 0),
        each.concat()
    )
}

/// The markdown report: settings, one row per kill, medians and maxima, targets.
fn print_report(rounds: &[Round], players: usize) {
    print_settings(players);
    println!(
        "| kill | victim (run) | zones held | players there | detection (ms) | zones back \
         (ms) | players back (ms) | restart to 3 members (ms) |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | node {} ({}) | {} | {} | {} | {} | {} | {} |",
            i + 1,
            r.victim,
            r.run,
            zones(&r.lost),
            r.affected,
            ms(r.detection, 0),
            ms(r.zones_back, 0),
            ms(r.players_back, 0),
            ms(r.rejoin, 0)
        );
    }
    let column = |f: fn(&Round) -> Option<Duration>| -> Vec<Duration> {
        rounds.iter().filter_map(f).collect()
    };
    let columns = [
        column(|r| r.detection),
        column(|r| r.zones_back),
        column(|r| r.players_back),
        column(|r| r.rejoin),
    ];
    for (label, stat) in [("median", median as fn(&[Duration]) -> _), ("max", max)] {
        let cells: Vec<String> = columns.iter().map(|c| ms(stat(c), 0)).collect();
        println!("| **{label}** | | | | {} |", cells.join(" | "));
    }
    println!();
    print_targets(&columns[0], &columns[1], rounds.len());
}

/// The lease, SWIM and player settings the figures depend on.
fn print_settings(players: usize) {
    let lease = zonemesh_cluster::node::NodeConfig::default().lease;
    let swim = zonemesh_cluster::membership::swim::lan_config(SERVE_EXPECTED_NODES);
    println!(
        "Lease {} ms, renewed every {} ms, drift margin {} ms. SWIM (`lan_config({})`, as \
         `zonemesh serve`): probe every {} ms, probe RTT {} ms, {} indirect probes, suspect \
         → down after {} ms, each update sent {} times. {players} players (idle timeout {} \
         s, keep-alive 1 s); survivors polled every {} ms.",
        lease.duration_ms,
        lease.renew_every_ms,
        lease.drift_margin_ms,
        SERVE_EXPECTED_NODES,
        swim.probe_period.as_millis(),
        swim.probe_rtt.as_millis(),
        swim.num_indirect_probes,
        swim.suspect_to_down_after.as_millis(),
        swim.max_transmissions,
        IDLE_TIMEOUT.as_secs(),
        MEASURE_POLL.as_millis(),
    );
    println!();
}

/// The acceptance targets against the medians and maxima.
fn print_targets(detection: &[Duration], zones_back: &[Duration], kills: usize) {
    println!("| over {kills} kills | target | median (ms) | max (ms) | verdict |");
    println!("|---|---:|---:|---:|---|");
    for (what, target, samples) in [
        ("failure detection", DETECTION_TARGET, detection),
        ("every zone served again", ZONES_BACK_TARGET, zones_back),
    ] {
        println!(
            "| {what} | ≤ {} | {} | {} | {} |",
            target.as_millis(),
            ms(median(samples), 0),
            ms(max(samples), 0),
            verdict(samples, target, kills)
        );
    }
}

/// `met` when every kill was within `target`; else how far it got.
fn verdict(samples: &[Duration], target: Duration, kills: usize) -> &'static str {
    match (median(samples), max(samples)) {
        _ if samples.len() < kills => "not measured for every kill",
        (_, Some(m)) if m <= target => "met",
        (Some(m), _) if m <= target => "missed at max (median met)",
        _ => "missed",
    }
}

/// Each node's last log lines, after a failure.
fn print_logs(nodes: &[Node]) {
    for node in nodes {
        eprintln!(
            "--- node {} ({}) log tail:\n{}",
            node.index,
            node.run,
            node.log_tail()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let s =
            |v: &[u64]| -> Vec<Duration> { v.iter().map(|&m| Duration::from_millis(m)).collect() };
        let t = Duration::from_millis(10);
        assert_eq!(verdict(&s(&[5, 10]), t, 2), "met");
        assert_eq!(verdict(&s(&[5, 6, 11]), t, 3), "missed at max (median met)");
        assert_eq!(verdict(&s(&[11, 12]), t, 2), "missed");
        assert_eq!(verdict(&s(&[5]), t, 2), "not measured for every kill");
    }

    #[test]
    fn zones_print_as_cells() {
        let ids: BTreeSet<u32> = [ZoneId::grid(1, 0).0, ZoneId::grid(0, 1).0].into();
        assert_eq!(zones(&ids), "(1,0) (0,1)");
        assert_eq!(zones(&BTreeSet::new()), "none");
    }
}
