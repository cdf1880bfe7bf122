//! `cluster redirect`: what a redirect costs a connecting player. Three nodes, a world
//! of one zone (so every player's zone is the same), placed on a node by one player
//! that stays connected. Then, round after round: a fresh player connects straight to
//! the zone's node, a fresh player connects through another node (which answers
//! `Redirect`, and the SDK follows), and the first leg of a redirect is timed on its
//! own (handshake, `Hello`, the `Redirect` answer; see [`crate::leg`]).
//!
//! Each connect is timed from the `Client::connect` call to its return (`Welcome`)
//! and to the first snapshot showing the player its own entity. The identity files
//! are read and the token minted before the clock starts. The zone sends `Welcome` at
//! its next tick, so each connect starts after a random pause of up to one tick
//! period: back-to-back connects would otherwise lock onto the tick's phase, each
//! kind at its own, and compare phases instead of paths.

use crate::anchors::{AbortOnDrop, CONNECT_LIMIT, connect, keep_reading, see_itself};
use crate::fixture::{Fixture, PHASE_LIMIT};
use crate::leg::{Answer, Leg, SecondLeg, redirect_legs};
use crate::node::{Node, wait_until};
use crate::stats::{max, median, ms, ms_difference, quantile};
use anyhow::{Context, bail};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use zonemesh_client::{Client, ClientConfig};
use zonemesh_cluster::admission::LOADING_RETRY_MS;

/// Nodes in the cluster.
const NODES: usize = 3;
/// Zones along each side of the world: one zone.
pub(crate) const WORLD_ZONES: u16 = 1;
/// Rounds measured first and left out: the first redirect through each node looks
/// the zone up in the directory; later ones use the node's cache.
const WARMUP_ROUNDS: usize = 5;
/// What a node answering `Loading` tells the client to wait.
const LOADING_HINT: Duration = Duration::from_millis(LOADING_RETRY_MS as u64);

/// One timed connect.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// From the call to `Welcome` (`connect` returning).
    welcome: Duration,
    /// From the call to the first snapshot with the player's own entity.
    seen: Duration,
    /// quinn's RTT estimate once the player saw itself.
    rtt: Duration,
    redirects: u32,
}

/// Everything measured.
#[derive(Debug, Default)]
struct Measured {
    direct: Vec<Sample>,
    redirected: Vec<Sample>,
    /// First legs of redirects, on their own.
    legs: Vec<Leg>,
    /// Second legs of the redirects among them.
    seconds: Vec<SecondLeg>,
    /// Samples left out because their route was not the intended one (a direct connect
    /// that was redirected, a redirected one that was not, or more than once).
    wrong_route: usize,
    /// Connects that failed, with why.
    failures: Vec<String>,
}

/// Runs `samples` rounds (after the warm-up) and prints the report.
pub(crate) fn run(runtime: &Runtime, fixture: &Fixture, samples: usize) -> anyhow::Result<()> {
    let nodes = fixture.start_cluster(NODES)?;
    // This player places the zone (on the node it asks, node 0) and keeps it held.
    let anchor = runtime.block_on(connect(nodes[0].players, &fixture.shared, "anchor"))?;
    let _anchor = AbortOnDrop(runtime.spawn(keep_reading(anchor)));
    let host = zone_host(&nodes)?;
    let tick_hz = nodes[host]
        .tick_hz()
        .context("the zone's node does not answer")?;
    let tick = Duration::from_secs(1) / u32::from(tick_hz.max(1));
    let entries: Vec<SocketAddr> = nodes
        .iter()
        .filter(|n| n.index != host)
        .map(|n| n.players)
        .collect();
    eprintln!("zone held by node {host}; {WARMUP_ROUNDS} warm-up rounds, then {samples} rounds");
    let paths = Paths {
        host: nodes[host].players,
        entries,
        tick,
    };
    let measured = runtime.block_on(measure(&paths, &fixture.shared, samples));
    print_report(&measured, host, tick);
    if measured.failures.len() > samples / 10 {
        bail!(
            "{} of {} connects failed, first: {}",
            measured.failures.len(),
            2 * (samples + WARMUP_ROUNDS),
            measured.failures[0]
        );
    }
    Ok(())
}

/// The index of the node holding the zone, once one does.
fn zone_host(nodes: &[Node]) -> anyhow::Result<usize> {
    let mut host = None;
    wait_until(
        "a node holds the zone",
        PHASE_LIMIT,
        Duration::from_millis(50),
        || {
            host = nodes.iter().position(|n| !n.held_zones().is_empty());
            host.is_some()
        },
    )?;
    host.context("a node holds the zone")
}

/// Where the connects go.
#[derive(Debug)]
struct Paths {
    /// The zone's node.
    host: SocketAddr,
    /// The other nodes, used in turn for redirected connects.
    entries: Vec<SocketAddr>,
    /// The zones' tick period.
    tick: Duration,
}

/// The rounds: a direct connect, a redirected one (through each other node in turn)
/// and a first leg alone, interleaved so that noise hits all three alike.
async fn measure(paths: &Paths, shared: &Path, samples: usize) -> Measured {
    let mut m = Measured::default();
    for i in 0..WARMUP_ROUNDS + samples {
        let keep = i >= WARMUP_ROUNDS;
        tokio::time::sleep(random_below(paths.tick)).await;
        let direct = timed_connect(paths.host, shared, &format!("direct-{i}")).await;
        tokio::time::sleep(random_below(paths.tick)).await;
        let entry = paths.entries[i % paths.entries.len()];
        let redirected = timed_connect(entry, shared, &format!("redirected-{i}")).await;
        // Through the other entry node: a node's first redirect after its cache entry
        // expired differs (see the report), and each kind should meet that by chance.
        let other = paths.entries[(i + 1) % paths.entries.len()];
        let legs = redirect_legs(other, shared, &format!("leg-{i}")).await;
        if keep {
            m.record(direct, 0, true);
            m.record(redirected, 1, false);
            match legs {
                Ok(l) => {
                    m.legs.push(l.first);
                    m.seconds.extend(l.second);
                }
                Err(e) => m.failures.push(format!("legs: {e:#}")),
            }
        }
    }
    m
}

/// A uniformly random duration in `[0, limit)` (std's randomly keyed hasher as the
/// source: no statistical quality is needed to break a phase lock).
fn random_below(limit: Duration) -> Duration {
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    // The top 53 bits as a fraction in [0, 1).
    limit.mul_f64((bits >> 11) as f64 / (1u64 << 53) as f64)
}

impl Measured {
    /// Keeps `sample` when it took `redirects` redirects.
    fn record(&mut self, sample: anyhow::Result<Sample>, redirects: u32, direct: bool) {
        match sample {
            Ok(s) if s.redirects != redirects => self.wrong_route += 1,
            Ok(s) if direct => self.direct.push(s),
            Ok(s) => self.redirected.push(s),
            Err(e) => self.failures.push(format!("{e:#}")),
        }
    }
}

/// A fresh player's connect through `addr`, timed to `Welcome` and to seeing itself;
/// closed after.
async fn timed_connect(addr: SocketAddr, shared: &Path, name: &str) -> anyhow::Result<Sample> {
    // Reading the identity files and minting the token are not the connect's cost.
    let config = ClientConfig::from_dev_data(addr, shared, name)?;
    let start = Instant::now();
    let mut client = tokio::time::timeout(CONNECT_LIMIT, Client::connect(config))
        .await
        .with_context(|| format!("{name}: connect timed out"))??;
    let welcome = start.elapsed();
    see_itself(&mut client, name).await?;
    let seen = start.elapsed();
    let sample = Sample {
        welcome,
        seen,
        rtt: client.rtt(),
        redirects: client.redirects_followed(),
    };
    client.close().await;
    Ok(sample)
}

/// The markdown report.
fn print_report(m: &Measured, host: usize, tick: Duration) {
    println!(
        "Zone on node {host}, ticking every {} ms; {} rounds after {WARMUP_ROUNDS} warm-up \
         rounds, each connect after a random pause of up to one tick; left out: {} wrong \
         routes, {} failures.",
        tick.as_millis(),
        m.legs.len().max(m.direct.len()),
        m.wrong_route,
        m.failures.len()
    );
    println!();
    println!(
        "| connect (ms) | samples | Welcome p50 | p99 | max | sees itself p50 | p99 | max | \
         RTT p50 | over {LOADING_RETRY_MS} ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let direct = Columns::of(&m.direct);
    let redirected = Columns::of(&m.redirected);
    direct.print_row("straight to the zone's node", m.direct.len());
    redirected.print_row("through another node (1 redirect)", m.redirected.len());
    let difference =
        |a: &[Duration], b: &[Duration], q: f64| ms_difference(quantile(a, q), quantile(b, q), 2);
    println!(
        "| **difference** (p50 − p50, p99 − p99) | | {} | {} | | {} | {} | | | |",
        difference(&redirected.welcome, &direct.welcome, 0.5),
        difference(&redirected.welcome, &direct.welcome, 0.99),
        difference(&redirected.seen, &direct.seen, 0.5),
        difference(&redirected.seen, &direct.seen, 0.99),
    );
    println!();
    print_legs(&m.legs);
    println!();
    print_second_legs(&m.seconds, &m.legs, &m.direct);
}

/// The second legs, resumed and fresh, and what a redirect costs in round trips.
fn print_second_legs(seconds: &[SecondLeg], legs: &[Leg], direct: &[Sample]) {
    let resumed: Vec<Duration> = seconds.iter().map(|s| s.resumed.answered).collect();
    let fresh: Vec<Duration> = seconds.iter().map(|s| s.fresh.answered).collect();
    let n_early = seconds.iter().filter(|s| s.zero_rtt).count();
    println!(
        "| second leg alone (ms), {} redirects: connect to the named node, `Hello`, answer | p50 | p99 | max |",
        seconds.len()
    );
    println!("|---|---:|---:|---:|");
    for (label, samples) in [
        (
            format!("resumed TLS session, `Hello` in the first packet (taken as 0-RTT: {n_early})"),
            &resumed,
        ),
        (
            "fresh TLS (full handshake, then `Hello`): a first connection's cost".to_owned(),
            &fresh,
        ),
    ] {
        println!(
            "| {label} | {} | {} | {} |",
            ms(median(samples), 2),
            ms(quantile(samples, 0.99), 2),
            ms(max(samples), 2)
        );
    }
    let first: Vec<Duration> = legs
        .iter()
        .filter(|l| l.answer == Answer::Redirect)
        .map(|l| l.answered)
        .collect();
    let rtts: Vec<Duration> = direct.iter().map(|s| s.rtt).collect();
    let (Some(first), Some(resumed), Some(fresh)) =
        (median(&first), median(&resumed), median(&fresh))
    else {
        println!("No redirect completed both legs: no cost to report.");
        return;
    };
    // A direct connect's protocol part is one fresh leg; a redirected one is a first
    // leg and a resumed second leg.
    let cost = (first + resumed).saturating_sub(fresh);
    println!();
    println!(
        "Redirect cost, protocol part, p50: first leg {} + resumed second leg {} − fresh \
         leg {} = {} ms; resuming saved {} ms; client RTT p50 {} ms.",
        ms(Some(first), 2),
        ms(Some(resumed), 2),
        ms(Some(fresh), 2),
        ms(Some(cost), 2),
        ms(Some(fresh.saturating_sub(resumed)), 2),
        ms(median(&rtts), 3),
    );
}

/// The first legs: handshake, answer, and which answers came.
fn print_legs(legs: &[Leg]) {
    let redirects: Vec<&Leg> = legs
        .iter()
        .filter(|l| l.answer == Answer::Redirect)
        .collect();
    let handshake: Vec<Duration> = redirects.iter().map(|l| l.handshake).collect();
    let answered: Vec<Duration> = redirects.iter().map(|l| l.answered).collect();
    let hello: Vec<Duration> = redirects
        .iter()
        .map(|l| l.answered.saturating_sub(l.handshake))
        .collect();
    println!(
        "| first leg alone (ms), the {} answered `Redirect` | p50 | p99 | max |",
        redirects.len()
    );
    println!("|---|---:|---:|---:|");
    for (label, samples) in [
        ("QUIC handshake (new endpoint, TLS 1.3)", &handshake),
        ("`Hello` → `Redirect`", &hello),
        ("whole leg: handshake + `Hello` → `Redirect`", &answered),
    ] {
        println!(
            "| {label} | {} | {} | {} |",
            ms(median(samples), 2),
            ms(quantile(samples, 0.99), 2),
            ms(max(samples), 2)
        );
    }
    let count = |a: Answer| legs.iter().filter(|l| l.answer == a).count();
    println!();
    println!(
        "Answers to the first leg's `Hello`: {} `Redirect`, {} `Loading` (retry after \
         {LOADING_RETRY_MS} ms), {} `Busy`, {} `Welcome`, {} other.",
        count(Answer::Redirect),
        count(Answer::Loading),
        count(Answer::Busy),
        count(Answer::Welcome),
        count(Answer::Other)
    );
}

/// The samples of one kind, column by column.
struct Columns {
    welcome: Vec<Duration>,
    seen: Vec<Duration>,
    rtt: Vec<Duration>,
}

impl Columns {
    fn of(samples: &[Sample]) -> Self {
        Self {
            welcome: samples.iter().map(|s| s.welcome).collect(),
            seen: samples.iter().map(|s| s.seen).collect(),
            rtt: samples.iter().map(|s| s.rtt).collect(),
        }
    }

    fn print_row(&self, label: &str, n: usize) {
        println!(
            "| {label} | {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ms(median(&self.welcome), 2),
            ms(quantile(&self.welcome, 0.99), 2),
            ms(max(&self.welcome), 2),
            ms(median(&self.seen), 2),
            ms(quantile(&self.seen, 0.99), 2),
            ms(max(&self.seen), 2),
            ms(median(&self.rtt), 3),
            self.welcome.iter().filter(|&&w| w > LOADING_HINT).count(),
        );
    }
}
