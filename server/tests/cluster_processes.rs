//! Three `zonemesh serve` processes on PostgreSQL, played by SDK clients that pick up
//! coins (durable actions) and reconnect through any node when their session ends.
//! The node holding the most zones is killed with SIGKILL. Then:
//! - its zones are served by the others again;
//! - every client plays on and has more actions acknowledged;
//! - no acknowledged action is missing from the store;
//! - no zone ever had two owners: every `(zone, epoch)` activation in the nodes' logs
//!   belongs to one node, and the store's epoch of each zone is the last one logged.
//!
//! Runs when `ZONEMESH_TEST_POSTGRES_URL` is set (as `.ci/run` sets it), in a schema
//! of its own that it drops at the end.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zonemesh_client::{Client, ClientConfig, Event};
use zonemesh_server::demo::ACTION_PICK_UP_COIN;
use zonemesh_shared::status::NodeStatusReport;
use zonemesh_store::{PostgresOptions, Store};

/// Longest any phase of the test may take.
const PHASE: Duration = Duration::from_secs(40);
/// Players in the run.
const PLAYERS: usize = 12;

/// One `zonemesh serve` process.
struct NodeProcess {
    child: Child,
    /// Its run, as printed (`node-id/incarnation`).
    run: String,
    players: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl NodeProcess {
    /// Starts a node from `config` and reads its addresses from its first lines.
    fn start(config: &Path, log: PathBuf) -> Self {
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_zonemesh"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("ZONEMESH_CLUSTER_SECRET")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("zonemesh starts");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut next = || {
            lines
                .next()
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("node exited; log: {}", tail(&log)))
        };
        let node_line = next();
        let admin_line = next();
        let run = word_after(&node_line, "ZoneMesh node ");
        let players = word_after(&node_line, "listening on ")
            .parse()
            .expect("players addr");
        let admin = word_after(&admin_line, "http://")
            .parse()
            .expect("admin addr");
        Self {
            child,
            run,
            players,
            admin,
            log,
        }
    }

    fn status(&self) -> Option<NodeStatusReport> {
        http_status(self.admin)
    }

    fn node_addr(&self) -> String {
        let status = self.status().expect("status");
        let cluster = status.cluster.expect("clustered");
        cluster
            .members
            .iter()
            .find(|m| m.node == self.run)
            .expect("itself a member")
            .node_addr
            .clone()
    }

    fn held_zones(&self) -> Vec<(u32, u64)> {
        self.status()
            .and_then(|s| s.cluster)
            .map(|c| c.held_zones.iter().map(|z| (z.zone, z.epoch)).collect())
            .unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn word_after(line: &str, marker: &str) -> String {
    let (_, rest) = line
        .split_once(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {line:?}"));
    rest.split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches([';', ','])
        .to_owned()
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The node's `/status`, read as operators' tools read it.
fn http_status(addr: SocketAddr) -> Option<NodeStatusReport> {
    zonemesh_ctl::AdminClient::new(addr).status().ok()
}

/// Waits (polling) until `done` holds, failing the test after [`PHASE`].
fn until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PHASE, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// The configuration of one node.
fn write_config(dir: &Path, i: usize, url: &str, schema: &str, seed: Option<&str>) -> PathBuf {
    let shared = dir.join("shared");
    let seeds = seed.map_or(String::new(), |s| format!("seeds = [\"{s}\"]"));
    let text = format!(
        r#"listen = "127.0.0.1:0"
data = "{data}"
store = "{url}"
store_schema = "{schema}"
token_secret_file = "{shared}/dev-secret.hex"

[tls]
cert = "{shared}/dev-cert.pem"
key = "{shared}/dev-key.pem"

[cluster]
node_listen = "127.0.0.1:0"
secret_file = "{shared}/cluster-secret.hex"
{seeds}

[world]
zones = 2
zone_size = 32.0
npcs = 8
aoi_radius = 200.0
checkpoint_secs = 1.0
workers = 1

[admin]
listen = "127.0.0.1:0"
"#,
        data = dir.join(format!("node-{i}")).display(),
        shared = shared.display(),
    );
    let path = dir.join(format!("node-{i}.toml"));
    std::fs::write(&path, text).expect("config written");
    path
}

/// What one player saw: its acknowledged actions and its sessions.
#[derive(Default)]
struct Ledger {
    acknowledged: Vec<u128>,
    acknowledged_after_kill: usize,
    sessions: usize,
}

/// Plays until `stop`: picks up a coin every 300 ms; when the session ends in a way
/// worth retrying, the SDK reconnects it (to any node), else a new client starts at
/// the next node.
async fn play(
    configs: Vec<ClientConfig>,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut attempt = 0;
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut session = match client.take() {
            Some(mut old) if old.disconnect_reason().is_some_and(|r| r.can_reconnect()) => {
                match old.reconnect().await {
                    Ok(()) => old,
                    Err(_) => continue,
                }
            }
            _ => {
                attempt += 1;
                match Client::connect(configs[attempt % configs.len()].clone()).await {
                    Ok(new) => new,
                    Err(_) => continue,
                }
            }
        };
        ledger.lock().expect("ledger").sessions += 1;
        play_session(&mut session, &stop, &killed, &ledger).await;
        client = Some(session);
    }
}

/// One session, until it ends or `stop`.
async fn play_session(
    client: &mut Client,
    stop: &AtomicBool,
    killed: &AtomicBool,
    ledger: &Mutex<Ledger>,
) {
    let mut pick = tokio::time::interval(Duration::from_millis(300));
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = pick.tick() => {
                if client.send_durable_action(ACTION_PICK_UP_COIN, Vec::new()).await.is_err() {
                    return;
                }
            }
            event = client.next_event() => match event {
                Some(Event::ActionCommitted { id }) => {
                    let mut l = ledger.lock().expect("ledger");
                    l.acknowledged.push(id);
                    if killed.load(Ordering::Relaxed) {
                        l.acknowledged_after_kill += 1;
                    }
                }
                Some(Event::Disconnected(_)) | None => return,
                Some(_) => {}
            },
        }
    }
}

/// Every `(zone, epoch)` the node logged as activated.
fn activations(log: &Path) -> Vec<(u32, u64)> {
    let text = std::fs::read_to_string(log).expect("log");
    text.lines()
        .filter(|l| l.contains("zone active"))
        .map(|l| {
            let zone = word_after(l, "zone=").parse().expect("zone");
            let epoch = word_after(l, "epoch=").parse().expect("epoch");
            (zone, epoch)
        })
        .collect()
}

/// One player's task and what it saw.
struct Player {
    name: String,
    ledger: Arc<Mutex<Ledger>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts three nodes, the first being the others' seed, and waits until each sees all.
fn start_cluster(dir: &Path, url: &str, schema: &str) -> Vec<NodeProcess> {
    let first = NodeProcess::start(
        &write_config(dir, 0, url, schema, None),
        dir.join("node-0.log"),
    );
    let seed = first.node_addr();
    let mut nodes = vec![first];
    for i in 1..3 {
        let config = write_config(dir, i, url, schema, Some(&seed));
        nodes.push(NodeProcess::start(
            &config,
            dir.join(format!("node-{i}.log")),
        ));
    }
    until("every node sees three members", || {
        nodes.iter().all(|n| {
            n.status()
                .and_then(|s| s.cluster)
                .is_some_and(|c| c.members.len() == 3)
        })
    });
    nodes
}

/// Starts [`PLAYERS`] players, each starting its sessions at another node.
fn spawn_players(
    runtime: &tokio::runtime::Runtime,
    nodes: &[NodeProcess],
    shared: &Path,
    stop: &Arc<AtomicBool>,
    killed: &Arc<AtomicBool>,
) -> Vec<Player> {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.players).collect();
    (0..PLAYERS)
        .map(|p| {
            let name = format!("survivor-{p}");
            // Each session starts at another node; the SDK moves on to the others itself.
            let configs: Vec<ClientConfig> = (0..addrs.len())
                .map(|k| {
                    let at = (p + k) % addrs.len();
                    let mut c =
                        ClientConfig::from_dev_data(addrs[at], shared, &name).expect("config");
                    c.other_servers = addrs.iter().copied().filter(|a| *a != addrs[at]).collect();
                    c.connect_deadline = Duration::from_secs(15);
                    c.idle_timeout = Duration::from_secs(3);
                    c
                })
                .collect();
            let ledger = Arc::new(Mutex::new(Ledger::default()));
            let task = runtime.spawn(play(
                configs,
                Arc::clone(stop),
                Arc::clone(killed),
                Arc::clone(&ledger),
            ));
            Player { name, ledger, task }
        })
        .collect()
}

/// Kills the node holding the most zones with SIGKILL; returns it and its zones.
fn kill_busiest(nodes: &mut Vec<NodeProcess>) -> (NodeProcess, Vec<u32>) {
    let victim = (0..nodes.len())
        .max_by_key(|i| nodes[*i].held_zones().len())
        .expect("nodes");
    let lost: Vec<u32> = nodes[victim].held_zones().iter().map(|z| z.0).collect();
    assert!(!lost.is_empty(), "the victim holds zones");
    let mut dead = nodes.remove(victim);
    dead.child.kill().expect("SIGKILL");
    dead.child.wait().expect("reaped");
    (dead, lost)
}

/// Every acknowledged action of every player is in the store.
async fn check_no_acknowledged_action_lost(store: &dyn Store, players: &[Player]) {
    for player in players {
        let stored: BTreeSet<u128> = store
            .actions_for_player(&player.name)
            .await
            .expect("actions readable")
            .iter()
            .map(|a| a.id.0)
            .collect();
        for id in &player.ledger.lock().expect("ledger").acknowledged {
            assert!(
                stored.contains(id),
                "{}: acknowledged action {id} lost",
                player.name
            );
        }
    }
}

/// Each `(zone, epoch)` was activated by one node, the store's epoch of each zone is
/// the last logged, and the dead node's zones were taken over at a later epoch.
async fn check_one_owner_per_epoch(store: &dyn Store, logs: &[(String, PathBuf)], lost: &[u32]) {
    let mut owners: BTreeMap<(u32, u64), String> = BTreeMap::new();
    let mut latest: BTreeMap<u32, u64> = BTreeMap::new();
    for (run, log) in logs {
        for (zone, epoch) in activations(log) {
            if let Some(other) = owners.insert((zone, epoch), run.clone()) {
                panic!("zone {zone} epoch {epoch} activated by {other} and {run}");
            }
            let e = latest.entry(zone).or_default();
            *e = (*e).max(epoch);
        }
    }
    for (zone, epoch) in &latest {
        let stored = store.zone_epoch(*zone).await.expect("epoch readable");
        assert_eq!(
            stored,
            Some(*epoch),
            "zone {zone}: the store's epoch is the last logged"
        );
    }
    for zone in lost {
        assert!(
            latest[zone] >= 2,
            "zone {zone} was taken over at a later epoch"
        );
    }
}

#[test]
fn three_serve_processes_on_postgres_survive_a_sigkill() {
    let Ok(url) = std::env::var("ZONEMESH_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped three_serve_processes_on_postgres_survive_a_sigkill: ZONEMESH_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = dir.path().join("shared");
    zonemesh_server::dev::load_or_create(&shared).expect("shared identity");
    zonemesh_server::dev::ensure_secret(&shared.join("cluster-secret.hex")).expect("secret");
    let schema = format!("zm_proc_{:08x}", rand::random::<u32>());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut nodes = start_cluster(dir.path(), &url, &schema);
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let players = spawn_players(&runtime, &nodes, &shared, &stop, &killed);
    until("every player has an acknowledged action", || {
        players
            .iter()
            .all(|p| !p.ledger.lock().expect("ledger").acknowledged.is_empty())
    });

    let (dead, lost) = kill_busiest(&mut nodes);
    killed.store(true, Ordering::Relaxed);
    let served_again = until("the dead node's zones are served elsewhere", || {
        let held: BTreeSet<u32> = nodes
            .iter()
            .flat_map(|n| n.held_zones().into_iter().map(|z| z.0))
            .collect();
        lost.iter().all(|z| held.contains(z))
    });
    eprintln!("zones {lost:?} served again {served_again:?} after the kill");
    until("every player plays on after the kill", || {
        players
            .iter()
            .all(|p| p.ledger.lock().expect("ledger").acknowledged_after_kill >= 2)
    });
    stop.store(true, Ordering::Relaxed);
    players.iter().for_each(|p| p.task.abort());

    // A clean stop of the survivors, then the checks against the store and the logs.
    for node in &nodes {
        let _ = Command::new("kill")
            .args(["-TERM", &node.child.id().to_string()])
            .status();
    }
    for node in &mut nodes {
        let _ = node.child.wait();
    }
    let logs: Vec<(String, PathBuf)> = nodes
        .iter()
        .chain(std::iter::once(&dead))
        .map(|n| (n.run.clone(), n.log.clone()))
        .collect();
    runtime.block_on(async {
        let options = PostgresOptions {
            schema: schema.clone(),
            ..PostgresOptions::default()
        };
        let store = zonemesh_store::PostgresStore::connect_with(&url, options)
            .await
            .expect("store");
        check_no_acknowledged_action_lost(&store, &players).await;
        check_one_owner_per_epoch(&store, &logs, &lost).await;
        drop(store);
        common::drop_postgres_schema(&url, &schema).await;
    });
}
