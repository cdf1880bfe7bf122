//! `cluster handoff`: how long players go without snapshots while their zone moves
//! to another node with a live handoff, against disconnecting and reconnecting (a new
//! session that reads the player's record from the store again), in the same run.
//!
//! Two nodes, a world of one zone with NPCs, `--players` SDK players wandering in it
//! (an input every 50 ms each). The zone moves from node to node `--moves` times,
//! each started on its holder's admin endpoint (`zonemesh-ctl move-zone`), one after
//! the other with a second of play between. A player's pause in a move is the
//! longest interval between its consecutive snapshots that overlaps the move (from
//! the request until the holder's moves report says it ended, plus [`TAIL`]).
//!
//! Two baselines, afterwards, in the same run:
//! - every player closes its session and connects again as a new one (the least a
//!   reconnect costs: the zone is warm, only the record is read again); its pause is
//!   from its last snapshot before closing to the first of the new session; rounds
//!   of it until as many samples as the moves gave;
//! - the node holding the zone stops (SIGTERM, no drain: the zone is saved and
//!   released) and every player reconnects (`Client::reconnect`) through the other
//!   node, which loads the zone from the store: what moving the zone costs without a
//!   live handoff; its pause is from the last snapshot before the stop to the first
//!   of the new session.

use crate::anchors::{AbortOnDrop, see_itself};
use crate::fixture::{Fixture, NodeSettings};
use crate::node::Node;
use crate::stats::{max, median, ms, quantile};
use crate::walker::{first_from, last_before, longest_gap};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;
use zonemesh_client::{Client, ClientConfig, MoveTiming, ReplicaScope};
use zonemesh_shared::quant::Vec2;
use zonemesh_shared::status::{MoveReport, MoveStep};

/// NPCs in the zone: load for the zone to tick and to hand over.
const NPCS: u64 = 200;
/// Time after a move ended still counted as part of it (a snapshot in flight).
const TAIL: Duration = Duration::from_millis(300);
/// Play between two moves.
const BETWEEN_MOVES: Duration = Duration::from_secs(1);
/// Longest a move may take before the run fails.
const MOVE_LIMIT: Duration = Duration::from_secs(15);
/// Longest a reconnect may take before the run fails.
const RECONNECT_LIMIT: Duration = Duration::from_secs(15);
/// Pause between two reconnects of a player whose node stopped.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Longest a player may take to play again after its node stopped, reconnects
/// called again included, before the run fails.
const STOP_RECOVERY_LIMIT: Duration = Duration::from_secs(40);
/// How often an input is sent.
const INPUT_EVERY: Duration = Duration::from_millis(50);
/// Most snapshot instants kept per player.
const SNAPSHOTS_MAX: usize = 1 << 20;

/// The nodes' configuration: one zone of 64 units with [`NPCS`] NPCs, an area of
/// interest of `aoi` units (the default, 200, puts the whole zone in every player's
/// view).
pub(crate) fn settings(aoi: f32) -> NodeSettings {
    NodeSettings {
        zone_size: 64.0,
        npcs: NPCS,
        aoi_radius: aoi,
        ..NodeSettings::small(1)
    }
}

/// One player's session and what it saw.
pub(crate) struct Player {
    pub(crate) name: String,
    config: ClientConfig,
    pub(crate) client: Client,
    pub(crate) snapshots: Vec<Instant>,
    /// Each completed move's timing, by the client's clock.
    pub(crate) moves: Vec<MoveTiming>,
}

/// Plays `p` (wandering) until `stop`; returns it with the instants its snapshots
/// came, or why its session ended.
pub(crate) async fn play(mut p: Player, stop: Arc<AtomicBool>) -> anyhow::Result<Player> {
    let mut inputs = tokio::time::interval(INPUT_EVERY);
    let mut seen = p.client.stats().snapshots;
    let mut turn = 0u32;
    while !stop.load(Ordering::Acquire) {
        tokio::select! {
            done = p.client.wait_snapshot() => {
                done.with_context(|| format!("{}: the session ended", p.name))?;
            }
            _ = inputs.tick() => {
                turn = turn.wrapping_add(1);
                let angle = (turn / 40) as f32;
                let v = Vec2::new(angle.cos(), angle.sin());
                p.client.send_input(v, 0).with_context(|| format!("{}: input refused", p.name))?;
            }
        }
        let now = p.client.stats().snapshots;
        if now != seen && p.snapshots.len() < SNAPSHOTS_MAX {
            seen = now;
            p.snapshots.push(Instant::now());
        }
        if let Some(timing) = p.client.last_move()
            && p.moves.last() != Some(&timing)
            && p.moves.len() < SNAPSHOTS_MAX
        {
            p.moves.push(timing);
        }
    }
    Ok(p)
}

/// Runs the moves and the baseline and prints the report.
pub(crate) fn run(
    runtime: &Runtime,
    fixture: &Fixture,
    moves: usize,
    players: usize,
    scope: ReplicaScope,
) -> anyhow::Result<()> {
    let mut nodes = fixture.start_cluster(2)?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.players).collect();
    let joined = runtime.block_on(join_all(&addrs, &fixture.shared, players, scope))?;
    eprintln!("{players} players in the zone on node 0; {moves} moves");
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = joined
        .into_iter()
        .map(|p| AbortOnDrop(runtime.spawn(play(p, Arc::clone(&stop)))))
        .collect();
    let done = move_back_and_forth(&nodes, moves)?;
    let windows: Vec<Window> = done.iter().map(|m| (m.started, m.ended + TAIL)).collect();
    stop.store(true, Ordering::Release);
    let mut players_after = Vec::new();
    for mut task in tasks {
        let p = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), &mut task.0).await })
            .context("a player did not stop")?
            .context("a player task panicked")??;
        players_after.push(p);
    }
    let pauses = pauses_in(&players_after, &windows)?;
    let (behind, extra_hops) = followed(&players_after, moves);
    let moved_all = behind.is_empty();
    // Printed before the baselines run, so a failing baseline loses nothing.
    print_pauses(&pauses, &done, players, moved_all);
    if extra_hops > 0 {
        println!(
            "{extra_hops} players took extra hops: a node the zone had already left sent them \
             on to where it was (a client slower than two moves in a row)."
        );
    }
    print_breakdown(&done, &players_after);
    let holder = usize::from(!moves.is_multiple_of(2));
    let acked = runtime.block_on(last_inputs_acked(&mut players_after));
    let sent: u64 = players_after
        .iter()
        .map(|p| p.client.stats().inputs_sent)
        .sum();
    let whole = zone_is_whole(&nodes, holder, players, sent)?;
    println!(
        "After the moves: {acked} of {players} players had their last input applied by the \
         zone's final node; {whole}."
    );
    let (players_after, baseline) =
        runtime.block_on(reconnect_rounds(players_after, pauses.len()))?;
    let stopped = node_stop_round(runtime, &mut nodes, holder, players_after)?;
    print_report(&pauses, &baseline, &stopped, moved_all);
    let panics: Vec<String> = nodes.iter().filter_map(Node::panic_in_log).collect();
    if !panics.is_empty() {
        bail!(
            "a node panicked, the figures are void: {}",
            panics.join("; ")
        );
    }
    if !moved_all {
        bail!(
            "not every player followed every move without a reconnect: {}",
            behind.join("; ")
        );
    }
    if acked != players {
        bail!("{} players' last input was not applied", players - acked);
    }
    Ok(())
}

/// The players that did not follow every one of the `moves` without a reconnect
/// (with their counts), and how many followed some move in more than one hop.
fn followed(players: &[Player], moves: usize) -> (Vec<String>, usize) {
    let behind = players
        .iter()
        .filter(|p| (p.client.moves() as usize) < moves || p.client.reconnects() > 0)
        .map(|p| {
            format!(
                "{}: {} moves, {} reconnects",
                p.name,
                p.client.moves(),
                p.client.reconnects()
            )
        })
        .collect();
    let extra = players
        .iter()
        .filter(|p| p.client.moves() as usize > moves)
        .count();
    (behind, extra)
}

/// Each player sends one more input and waits (at most [`RECONNECT_LIMIT`]) until
/// the zone acknowledges it as applied; returns how many were. After every move,
/// nothing a player sent is lost: the numbering carried on and the newest input is
/// applied where the zone is now.
async fn last_inputs_acked(players: &mut [Player]) -> usize {
    let mut acked = 0;
    for p in players {
        let Ok(seq) = p.client.send_input(Vec2::ZERO, 0) else {
            continue;
        };
        let applied = tokio::time::timeout(RECONNECT_LIMIT, async {
            while p.client.last_input_ack() < seq {
                p.client.wait_snapshot().await?;
            }
            anyhow::Ok(())
        })
        .await;
        if matches!(applied, Ok(Ok(()))) {
            acked += 1;
        }
    }
    acked
}

/// Checks that node `holder` alone holds zone 0 with every player once and every NPC
/// (no entity lost or doubled by the moves), and that the zone counted each of the
/// `sent` inputs its players sent once, as applied or as superseded by a newer one,
/// over every node that held it (none applied twice, none missing). Returns what it
/// found, for the report.
fn zone_is_whole(
    nodes: &[Node],
    holder: usize,
    players: usize,
    sent: u64,
) -> anyhow::Result<String> {
    let mut status = nodes[holder].status()?;
    // A zone publishes its counters after its worker's round, which may come just
    // after the snapshot that acknowledged the players' last inputs.
    for _ in 0..COUNTERS_POLLS {
        if counted_inputs(&status) >= sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        status = nodes[holder].status()?;
    }
    let zone = status
        .zones
        .iter()
        .find(|z| (z.x, z.y) == (0, 0))
        .context("the final node does not run the zone")?;
    let other = nodes[1 - holder].status()?;
    let elsewhere = other.zones.iter().any(|z| (z.x, z.y) == (0, 0));
    let expected = players + usize::try_from(NPCS).unwrap_or(usize::MAX);
    if zone.players != players || zone.entities != expected || elsewhere {
        bail!(
            "zone 0 after the moves: {} players, {} entities on node {holder} (expected \
             {players} and {expected}); also on the other node: {elsewhere}",
            zone.players,
            zone.entities
        );
    }
    let counted = zone.inputs_applied + zone.inputs_superseded;
    if counted != sent {
        bail!(
            "the players sent {sent} inputs; the zone counted {counted} ({} applied, {} \
             superseded)",
            zone.inputs_applied,
            zone.inputs_superseded
        );
    }
    Ok(format!(
        "node {holder} runs the zone with {players} players and {expected} entities, the \
         other node not at all; the players sent {sent} inputs and the zone, over the \
         nodes that held it, counted each once ({} applied, {} superseded by a newer one)",
        zone.inputs_applied, zone.inputs_superseded
    ))
}

/// Reads of a node's status while its zone's counters catch up (100 ms apart).
const COUNTERS_POLLS: usize = 20;

/// Inputs zone 0 counted (applied or superseded) in `status`.
fn counted_inputs(status: &zonemesh_shared::status::NodeStatusReport) -> u64 {
    status
        .zones
        .iter()
        .find(|z| (z.x, z.y) == (0, 0))
        .map_or(0, |z| z.inputs_applied + z.inputs_superseded)
}

/// Connects `count` players through `addrs[0]` (which then holds their zones), with
/// the other nodes to reconnect to, their replicas keeping `scope`.
pub(crate) async fn join_all(
    addrs: &[SocketAddr],
    shared: &Path,
    count: usize,
    scope: ReplicaScope,
) -> anyhow::Result<Vec<Player>> {
    let mut players = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("mover-{i}");
        let mut config = ClientConfig::from_dev_data(addrs[0], shared, &name)?;
        config.other_servers = addrs[1..].to_vec();
        config.replica_scope = scope;
        let mut client = tokio::time::timeout(RECONNECT_LIMIT, Client::connect(config.clone()))
            .await
            .with_context(|| format!("{name}: connect timed out"))??;
        see_itself(&mut client, &name).await?;
        players.push(Player {
            name,
            config,
            client,
            snapshots: Vec::new(),
            moves: Vec::new(),
        });
    }
    Ok(players)
}

/// The span of one move: its request, and its end plus [`TAIL`].
type Window = (Instant, Instant);

/// One move as the benchmark saw it.
struct DoneMove {
    /// When it was requested.
    started: Instant,
    /// When the source started it, on this process's clock (from the wall clock the
    /// processes share).
    source_started: Instant,
    /// When the source's moves report first said it ended.
    ended: Instant,
    /// How long the source had the zone frozen.
    frozen: Duration,
    /// The source's steps, from its moves report.
    steps: Vec<MoveStep>,
}

impl DoneMove {
    /// When the source got through `step`, on this process's clock.
    fn step_at(&self, step: &str) -> Option<Instant> {
        let at = self.steps.iter().find(|s| s.step == step)?.at_us;
        Some(self.source_started + Duration::from_micros(at))
    }
}

/// Moves zone 0 from its holder to the other node `moves` times.
fn move_back_and_forth(nodes: &[Node], moves: usize) -> anyhow::Result<Vec<DoneMove>> {
    let mut done = Vec::with_capacity(moves);
    let mut holder = 0;
    for n in 0..moves {
        std::thread::sleep(BETWEEN_MOVES);
        let target = 1 - holder;
        let (started, started_wall) = (Instant::now(), SystemTime::now());
        let id = nodes[holder].move_zone(0, 0, &nodes[target].run)?;
        let (ended, report) = wait_move_end(&nodes[holder], id)?;
        let wall_us = started_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let source_started =
            started + Duration::from_micros(report.started_unix_us.saturating_sub(wall_us));
        done.push(DoneMove {
            started,
            source_started,
            ended,
            frozen: Duration::from_millis(report.pause_ms.unwrap_or(0)),
            steps: report.steps,
        });
        if !nodes[target].held_zones().contains(&0) {
            bail!("move {n}: node {target} does not hold the zone after the move");
        }
        holder = target;
    }
    std::thread::sleep(TAIL);
    Ok(done)
}

/// Waits until move `id` of `source` ended, and checks it moved the zone; returns
/// when, and the source's report of it.
fn wait_move_end(source: &Node, id: u64) -> anyhow::Result<(Instant, MoveReport)> {
    let until = Instant::now() + MOVE_LIMIT;
    while Instant::now() < until {
        let report = source
            .moves()
            .and_then(|r| r.moves.into_iter().find(|m| m.id == id));
        if let Some(m) = report.filter(|m| !m.in_progress) {
            let outcome = m.outcome.clone().unwrap_or_default();
            if !outcome.starts_with("moved") {
                bail!("move {id}: {outcome}");
            }
            return Ok((Instant::now(), m));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    bail!("move {id} did not end within {MOVE_LIMIT:?}")
}

/// Where the pauses go: each of the source's steps (time since the previous one),
/// and on the players' side the time from their last snapshot to the redirect (the
/// last snapshot from the source, built just before the freeze, may arrive after the
/// freeze is noted; none comes after the redirect) and from the redirect to their
/// first snapshot from the target.
fn print_breakdown(done: &[DoneMove], players: &[Player]) {
    println!();
    println!(
        "| part of a move (the source's steps, then the players' side) | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|");
    let row = |name: &str, s: &[Duration]| {
        println!(
            "| {name} | {} | {} | {} |",
            ms(median(s), 1),
            ms(quantile(s, 0.99), 1),
            ms(max(s), 1)
        );
    };
    let mut previous = "start";
    for step in ["frozen", "saved", "released", "activated", "redirected"] {
        let spans: Vec<Duration> = done
            .iter()
            .filter_map(|m| {
                let from = if previous == "start" {
                    m.source_started
                } else {
                    m.step_at(previous)?
                };
                Some(m.step_at(step)?.saturating_duration_since(from))
            })
            .collect();
        row(&format!("{previous} → {step}"), &spans);
        previous = step;
    }
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut client = ClientSide::default();
    for m in done {
        let Some(redirected) = m.step_at("redirected") else {
            continue;
        };
        for p in players {
            if let Some(last) = last_before(&p.snapshots, redirected) {
                before.push(redirected.saturating_duration_since(last));
            }
            if let Some(first) = first_from(&p.snapshots, redirected) {
                after.push(first.saturating_duration_since(redirected));
            }
            client.add(p, redirected, m.ended);
        }
    }
    row("player: last snapshot from the source → redirect", &before);
    row("player: redirect → first snapshot from the target", &after);
    row(
        "  of which: redirect sent → read by the client",
        &client.read,
    );
    row("  read → welcomed by the target", &client.welcomed);
    row(
        "  welcomed → first snapshot from the target",
        &client.first_snapshot,
    );
}

/// The client's side of the moves: where the time from the source's redirect to the
/// first snapshot from the target goes.
#[derive(Default)]
struct ClientSide {
    read: Vec<Duration>,
    welcomed: Vec<Duration>,
    first_snapshot: Vec<Duration>,
}

impl ClientSide {
    /// Adds `p`'s move redirected at `redirected` (the source's clock, shared) if the
    /// player completed it before `ended` plus [`TAIL`].
    fn add(&mut self, p: &Player, redirected: Instant, ended: Instant) {
        let Some(t) = p
            .moves
            .iter()
            .find(|t| t.welcomed >= redirected && t.welcomed <= ended + TAIL)
        else {
            return;
        };
        self.read
            .push(t.redirected.saturating_duration_since(redirected));
        self.welcomed
            .push(t.welcomed.saturating_duration_since(t.redirected));
        if let Some(first) = first_from(&p.snapshots, t.welcomed) {
            self.first_snapshot
                .push(first.saturating_duration_since(t.welcomed));
        }
    }
}

/// Each player's pause in each move.
fn pauses_in(players: &[Player], windows: &[Window]) -> anyhow::Result<Vec<Duration>> {
    let mut pauses = Vec::with_capacity(players.len() * windows.len());
    let mut stuck = Vec::new();
    for p in players {
        for (i, (from, to)) in windows.iter().enumerate() {
            match longest_gap(&p.snapshots, *from, *to) {
                Some(gap) => pauses.push(gap),
                None => {
                    stuck.push(stuck_player(p, i, windows));
                    break;
                }
            }
        }
    }
    if !stuck.is_empty() {
        bail!(
            "{} players saw no snapshot after a move began: {}",
            stuck.len(),
            stuck.join("; ")
        );
    }
    Ok(pauses)
}

/// What a player that saw no snapshot after move `i` began looked like at the end.
fn stuck_player(p: &Player, i: usize, windows: &[Window]) -> String {
    let last = p.snapshots.last().map_or_else(
        || "none".to_owned(),
        |t| {
            format!(
                "{:?} after that move began",
                t.saturating_duration_since(windows[i].0)
            )
        },
    );
    format!(
        "{} from move {i} (of {}): {} moves followed, moving now: {}, on {}, {} snapshots, last {last}",
        p.name,
        windows.len(),
        p.client.moves(),
        p.client.is_moving(),
        p.client.remote_address(),
        p.snapshots.len(),
    )
}

/// Rounds of closing every session and connecting again, until `samples` pauses;
/// returns the players (on their new sessions) and the pauses.
async fn reconnect_rounds(
    mut players: Vec<Player>,
    samples: usize,
) -> anyhow::Result<(Vec<Player>, Vec<Duration>)> {
    let mut pauses = Vec::with_capacity(samples);
    while pauses.len() < samples {
        let tasks: Vec<_> = players
            .into_iter()
            .map(|p| AbortOnDrop(tokio::spawn(reconnect(p))))
            .collect();
        players = Vec::with_capacity(tasks.len());
        for mut task in tasks {
            let (p, pause) = (&mut task.0).await.context("a reconnect task panicked")??;
            players.push(p);
            pauses.push(pause);
        }
    }
    pauses.truncate(samples);
    Ok((players, pauses))
}

/// Closes `p`'s session and connects it again as a new one; its pause is from its
/// last snapshot before closing to the first snapshot of the new session.
async fn reconnect(p: Player) -> anyhow::Result<(Player, Duration)> {
    let Player {
        name,
        config,
        mut client,
        mut snapshots,
        moves,
    } = p;
    // The session was idle since the moves: its last snapshot is the next one.
    tokio::time::timeout(RECONNECT_LIMIT, client.wait_snapshot())
        .await
        .with_context(|| format!("{name}: no snapshot before reconnecting"))??;
    let last = Instant::now();
    client.close().await;
    let mut client = tokio::time::timeout(RECONNECT_LIMIT, Client::connect(config.clone()))
        .await
        .with_context(|| format!("{name}: reconnect timed out"))??;
    tokio::time::timeout(RECONNECT_LIMIT, client.wait_snapshot())
        .await
        .with_context(|| format!("{name}: no snapshot after reconnecting"))??;
    let first = Instant::now();
    see_itself(&mut client, &name).await?;
    snapshots.push(first);
    let pause = first.duration_since(last);
    Ok((
        Player {
            name,
            config,
            client,
            snapshots,
            moves,
        },
        pause,
    ))
}

/// Stops node `holder` (which holds the zone) while every player plays, and returns
/// each player's pause until its new session through the other node shows snapshots.
fn node_stop_round(
    runtime: &Runtime,
    nodes: &mut [Node],
    holder: usize,
    players: Vec<Player>,
) -> anyhow::Result<Vec<Duration>> {
    let tasks: Vec<_> = players
        .into_iter()
        .map(|p| AbortOnDrop(runtime.spawn(outlive_stop(p))))
        .collect();
    std::thread::sleep(BETWEEN_MOVES);
    nodes[holder].sigterm(RECONNECT_LIMIT)?;
    let mut pauses = Vec::with_capacity(tasks.len());
    for mut task in tasks {
        let pause = runtime
            .block_on(async {
                tokio::time::timeout(STOP_RECOVERY_LIMIT + RECONNECT_LIMIT, &mut task.0).await
            })
            .context("a player did not come back")?
            .context("a player task panicked")??;
        pauses.push(pause);
    }
    Ok(pauses)
}

/// Plays until the session ends (its node stopped), reconnects, and returns the
/// time from the last snapshot of the old session to the first of the new one. A
/// reconnect that gives up (the SDK's connect deadline, 10 s, while the other node
/// still answers `Loading`) is called again, as a game would, within
/// [`STOP_RECOVERY_LIMIT`]: the pause is until the player plays again.
async fn outlive_stop(mut p: Player) -> anyhow::Result<Duration> {
    let mut last = Instant::now();
    while p.client.wait_snapshot().await.is_ok() {
        last = Instant::now();
    }
    let gave_up = Instant::now() + STOP_RECOVERY_LIMIT;
    loop {
        match tokio::time::timeout(RECONNECT_LIMIT, p.client.reconnect()).await {
            Ok(Ok(_)) => break,
            failed if Instant::now() >= gave_up => {
                let why = match failed {
                    Ok(Err(e)) => format!("{e}"),
                    _ => "timed out".to_owned(),
                };
                bail!(
                    "{}: no new session within {STOP_RECOVERY_LIMIT:?}: {why}",
                    p.name
                );
            }
            Ok(Err(e)) => eprintln!("{}: reconnect gave up ({e}); trying again", p.name),
            Err(_) => eprintln!("{}: reconnect timed out; trying again", p.name),
        }
        // A reconnect that fails at once must not spin until the limit.
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    tokio::time::timeout(RECONNECT_LIMIT, p.client.wait_snapshot())
        .await
        .with_context(|| format!("{}: no snapshot after reconnecting", p.name))??;
    Ok(last.elapsed())
}

/// Prints the handoff's own figures as soon as the moves are done.
fn print_pauses(pauses: &[Duration], done: &[DoneMove], players: usize, moved_all: bool) {
    let frozen: Vec<Duration> = done.iter().map(|m| m.frozen).collect();
    println!(
        "Live handoff: {} moves of a zone with {players} players and {NPCS} NPCs between two \
         nodes (PostgreSQL). Pause a player saw: p50 {} ms, p99 {} ms, max {} ms over {} \
         samples; every player followed every move without a reconnect: {moved_all}. The \
         source had the zone frozen (freeze to redirect): p50 {} ms, p99 {} ms, max {} ms.",
        done.len(),
        ms(median(pauses), 1),
        ms(quantile(pauses, 0.99), 1),
        ms(max(pauses), 1),
        pauses.len(),
        ms(median(&frozen), 1),
        ms(quantile(&frozen, 0.99), 1),
        ms(max(&frozen), 1)
    );
}

/// Prints the markdown for BENCHMARKS.md.
fn print_report(pauses: &[Duration], baseline: &[Duration], stopped: &[Duration], moved_all: bool) {
    let row = |name: &str, s: &[Duration]| {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            s.len(),
            ms(median(s), 1),
            ms(quantile(s, 0.99), 1),
            ms(max(s), 1),
            ms(quantile(s, 0.9), 1),
        );
    };
    println!();
    println!("| pause a player saw | samples | p50 | p99 | max | p90 |");
    println!("|---|---|---|---|---|---|");
    row("zone handed over (live handoff)", pauses);
    row(
        "baseline: disconnect and reconnect (record read again)",
        baseline,
    );
    row(
        "baseline: node stopped, reconnect elsewhere (zone loaded from the store)",
        stopped,
    );
    let ratio = |base: &[Duration], q: f64| {
        let (a, b) = (quantile(pauses, q)?, quantile(base, q)?);
        Some(b.as_secs_f64() / a.as_secs_f64().max(1e-6))
    };
    println!();
    println!(
        "Baselines over handoff: reconnect p50 {:.1}x, p99 {:.1}x; node stopped p50 {:.1}x, \
         p99 {:.1}x. Every player followed every move without a reconnect: {moved_all}.",
        ratio(baseline, 0.5).unwrap_or(0.0),
        ratio(baseline, 0.99).unwrap_or(0.0),
        ratio(stopped, 0.5).unwrap_or(0.0),
        ratio(stopped, 0.99).unwrap_or(0.0),
    );
}
