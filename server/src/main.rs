//! `zonemesh`: run a zone server or mint session tokens.
//!
//! - `zonemesh dev` hosts the demo world on one node with a self-signed certificate and
//!   a token secret kept under `--data` (created on first run).
//! - `zonemesh dev --nodes N` runs an N-node cluster of it in one process.
//! - `zonemesh serve --config FILE` runs one node of a real cluster.
//! - `zonemesh config check FILE` / `config default` check or print a configuration.
//! - `zonemesh token --player NAME` prints a session token signed with that secret.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mimalloc::MiMalloc;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zonemesh_server::admin::{self, AdminConfig, AdminServer};
use zonemesh_server::config::ServeConfig;
use zonemesh_server::dev::{self, DevServer, DevWorld};
use zonemesh_server::net::limits::RateLimit;
use zonemesh_server::persist::KeepWarm;
use zonemesh_server::serve;
use zonemesh_server::zone::{WorldLayout, ZoneConfig};
use zonemesh_server::{NetLimits, NodeConfig};
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::token::{self, Claims};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "zonemesh", version, about = "ZoneMesh game server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node hosting the demo world (development setup, nothing to install).
    Dev(DevArgs),
    /// Run one node of a cluster from a configuration file (see `config default`).
    Serve(ServeArgs),
    /// Check a configuration file, or print a commented default one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a session token for a player, signed with the data directory's secret.
    Token(TokenArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// The node's configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Read and validate FILE; print what is wrong, or that it is fine.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print a commented configuration with every key and its default.
    Default,
    /// Create in DIR the files every node of a cluster shares: a self-signed
    /// certificate and key for players (dev-cert.pem, dev-key.pem), the token secret
    /// (dev-secret.hex) and the cluster secret (cluster-secret.hex). Existing files
    /// are kept.
    Init {
        /// Where to put them (created if missing).
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct DevArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// Directory for the dev certificate, key and token secret.
    #[arg(long, default_value = "./zonemesh-data")]
    data: PathBuf,
    /// Simulation rate in ticks per second.
    #[arg(long, default_value_t = 20)]
    tick_hz: u16,
    /// Zones along each side of the square world.
    #[arg(long, default_value_t = 4)]
    zones: u16,
    /// Side length of one zone, world units.
    #[arg(long, default_value_t = 256.0)]
    zone_size: f32,
    /// Wandering NPCs in the whole world.
    #[arg(long, default_value_t = 4000)]
    npcs: usize,
    /// Area-of-interest radius, world units.
    #[arg(long, default_value_t = 64.0)]
    aoi_radius: f32,
    /// Snapshot bytes per client per tick.
    #[arg(long, default_value_t = 4000)]
    budget_bytes: usize,
    /// Authenticated sessions at once; more are told busy.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Reliable game events each client may send per second (bursts up to twice
    /// that); a client going over ends its session. Raise it for load tests.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    event_rate: u32,
    /// Zone worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Where zones and players are saved: `embedded` (a redb file in --data) or a
    /// `postgres://user@host:port/db` URL.
    #[arg(long, default_value = "embedded", env = "ZONEMESH_STORE")]
    store: String,
    /// Add this much latency to every store operation (to see slow first loads).
    #[arg(long, default_value_t = 0)]
    store_latency_ms: u64,
    /// Seconds between zone checkpoints.
    #[arg(long, default_value_t = 5.0)]
    checkpoint_secs: f64,
    /// Seconds a zone not kept warm stays in memory without players (saved first).
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Zones to load at start-up and keep in memory: `all`, `none`, or a list like
    /// `0:0,1:0` (x:y); the others load on first use.
    #[arg(long, default_value = "all", value_parser = parse_keep_warm)]
    keep_warm: KeepWarm,
    /// Serve the admin HTTP endpoint (`/healthz`, `/status` JSON) on this TCP address;
    /// off unless given. Any address but a loopback one needs --admin-token-file.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// File whose first line is the bearer token the admin endpoint requires.
    #[arg(long, requires = "admin")]
    admin_token_file: Option<PathBuf>,
    /// Run a cluster of this many nodes in this process, on loopback: node i serves
    /// players on the --listen port plus i; the nodes share the store and the dev
    /// identity. With more than one node, zones load where the cluster places them
    /// (--keep-warm is not used) and the admin endpoint reports node 0.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
}

/// Parses `--keep-warm`.
fn parse_keep_warm(value: &str) -> Result<KeepWarm, String> {
    match value {
        "all" => Ok(KeepWarm::All),
        "none" => Ok(KeepWarm::None),
        list => list
            .split(',')
            .map(|item| {
                let (x, y) = item
                    .split_once(':')
                    .ok_or_else(|| format!("{item:?} is not x:y"))?;
                let x = x.trim().parse().map_err(|_| format!("bad x in {item:?}"))?;
                let y = y.trim().parse().map_err(|_| format!("bad y in {item:?}"))?;
                Ok(ZoneId::grid(x, y))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(KeepWarm::Zones),
    }
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// Player name (1-32 characters: letters, digits, '-', '_', '.').
    #[arg(long)]
    player: String,
    /// Data directory holding the token secret.
    #[arg(long, default_value = "./zonemesh-data")]
    data: PathBuf,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => run_dev(args),
        Command::Serve(args) => run_serve(&args),
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Config(ConfigCommand::Init { dir }) => init_cluster_files(&dir),
        Command::Config(ConfigCommand::Default) => {
            print!("{}", zonemesh_server::config::default_toml());
            Ok(())
        }
        Command::Token(args) => print_token(&args),
    }
}

/// Logs go to stderr, so stdout carries only what programs parse (the listening
/// addresses, tokens); colour only on a terminal and never when `NO_COLOR` is set.
fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .init();
}

/// The async runtime the network and the cluster run on.
fn net_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("zonemesh-net")
        .build()
        .context("cannot start the async runtime")
}

fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let world = dev_world(&args)?;
    let admin = admin_config(&args)?;
    let runtime = net_runtime()?;
    runtime.block_on(async move {
        let nodes = if args.nodes > 1 {
            dev::start_dev_cluster(args.listen, &args.data, &world, args.nodes).await?
        } else {
            vec![dev::start_dev_server(args.listen, &args.data, &world).await?]
        };
        let admin = match admin {
            Some(config) => {
                Some(AdminServer::start(config, nodes[0].server.status_source()).await?)
            }
            None => None,
        };
        print_welcome(&nodes, admin.as_ref(), &args)?;
        wait_for_signal().await;
        tracing::info!("shutting down");
        if let Some(admin) = admin {
            admin.stop().await;
        }
        // One after the other: each node's zones are saved and released before the
        // next one stops, so no zone is left waiting for a lease to lapse.
        for node in nodes {
            node.server.shutdown().await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

fn admin_config(args: &DevArgs) -> anyhow::Result<Option<AdminConfig>> {
    args.admin
        .map(|listen| admin_endpoint(listen, args.admin_token_file.as_deref()))
        .transpose()
}

/// The admin endpoint on `listen`, with the bearer token in `token_file` if given.
fn admin_endpoint(
    listen: SocketAddr,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<AdminConfig> {
    let token = token_file.map(admin::read_token_file).transpose()?;
    let config = AdminConfig { listen, token };
    config.validate()?;
    Ok(config)
}

/// Reads, overrides from the environment and validates a configuration file.
fn load_config(file: &std::path::Path) -> anyhow::Result<ServeConfig> {
    let env = |key: &str| std::env::var(key).ok();
    let mut config = ServeConfig::load(file)?;
    config.apply_env(env)?;
    config.validate()?;
    Ok(config)
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = load_config(file)?;
    config.cluster_secret(|key| std::env::var(key).ok())?;
    println!("{}: ok", file.display());
    Ok(())
}

fn init_cluster_files(dir: &std::path::Path) -> anyhow::Result<()> {
    let identity = dev::load_or_create(dir)?;
    let cluster_secret = dir.join(dev::DEV_CLUSTER_SECRET_FILE);
    dev::ensure_secret(&cluster_secret)?;
    let key = dir.join(zonemesh_shared::dev_files::KEY);
    println!("certificate:    {}", identity.cert_path.display());
    println!("key:            {}", key.display());
    println!("token secret:   {}", identity.secret_path.display());
    println!("cluster secret: {}", cluster_secret.display());
    Ok(())
}

fn run_serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let admin = config
        .admin
        .as_ref()
        .map(|a| admin_endpoint(a.listen, a.token_file.as_deref()))
        .transpose()?;
    let runtime = net_runtime()?;
    runtime.block_on(async move {
        let node = serve::start(&config, |key| std::env::var(key).ok()).await?;
        let admin = match admin {
            Some(admin) => Some(AdminServer::start(admin, node.server.status_source()).await?),
            None => None,
        };
        let (players, nodes) = serve::addresses(&node)?;
        println!(
            "ZoneMesh node {} listening on {players} (QUIC, ALPN zonemesh/1); node endpoint on {nodes}",
            node.node
        );
        if let Some(admin) = &admin {
            println!(
                "ZoneMesh admin endpoint listening on http://{}",
                admin.local_addr()
            );
        }
        eprintln!(
            "  store: {}; data: {}",
            if config.store.starts_with("postgres") {
                "PostgreSQL"
            } else {
                "embedded"
            },
            config.data.display()
        );
        wait_for_signal().await;
        let grace = Duration::from_secs(config.cluster.drain_grace_secs);
        drain_before_stop(&node.server, grace).await;
        tracing::info!("shutting down");
        if let Some(admin) = admin {
            admin.stop().await;
        }
        node.server.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn dev_world(args: &DevArgs) -> anyhow::Result<DevWorld> {
    let checkpoint_interval = Duration::try_from_secs_f64(args.checkpoint_secs)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--checkpoint-secs must be a positive number of seconds")?;
    let mut world = DevWorld {
        node: NodeConfig {
            layout: WorldLayout {
                zones_x: args.zones,
                zones_y: args.zones,
                zone_size: args.zone_size,
            },
            zone: ZoneConfig {
                tick_hz: args.tick_hz,
                checkpoint_interval,
                ..ZoneConfig::default()
            },
            workers: args.workers,
            idle_deactivate_after: Duration::from_secs(args.idle_secs.max(1)),
        },
        npcs: args.npcs,
        limits: NetLimits {
            max_connections: args.max_connections,
            event_rate: event_rate(args.event_rate),
            ..NetLimits::default()
        },
        store: args.store.clone(),
        store_latency: Duration::from_millis(args.store_latency_ms),
        keep_warm: args.keep_warm.clone(),
        rebalance: Some(zonemesh_cluster::rebalance::RebalanceConfig::default()),
    }
    .with_aoi_radius(args.aoi_radius);
    world.node.zone.view.budget_bytes_per_tick = args.budget_bytes;
    Ok(world)
}

/// The game-event limit for `--event-rate N`: N per second, bursts of 2N (30 gives the
/// default limit).
fn event_rate(per_second: u32) -> RateLimit {
    RateLimit::per_second_with_double_burst(per_second)
}

/// Prints the addresses on stdout (one line each, for programs to parse) and the
/// rest of the welcome for people on stderr.
fn print_welcome(
    nodes: &[DevServer],
    admin: Option<&AdminServer>,
    args: &DevArgs,
) -> anyhow::Result<()> {
    let dev = &nodes[0];
    let addr = dev.server.local_addr()?;
    let data = args.data.display();
    let verb = if dev.created_identity {
        "created"
    } else {
        "reusing"
    };
    if nodes.len() == 1 {
        println!("ZoneMesh dev server listening on {addr} (QUIC, ALPN zonemesh/1)");
    }
    for (i, node) in nodes.iter().enumerate().filter(|_| nodes.len() > 1) {
        let node_addr = node.server.cluster().map(|c| c.node_addr()).transpose()?;
        println!(
            "ZoneMesh dev cluster node {i} listening on {} (QUIC, ALPN zonemesh/1); node {} on {}",
            node.server.local_addr()?,
            node.node,
            node_addr.map_or_else(|| "-".to_owned(), |a| a.to_string()),
        );
    }
    if let Some(admin) = admin {
        println!(
            "ZoneMesh admin endpoint listening on http://{}",
            admin.local_addr()
        );
    }
    eprintln!(
        "  world: {0}x{0} zones of {1} units, {2} NPCs, {3} Hz",
        args.zones, args.zone_size, args.npcs, args.tick_hz
    );
    eprintln!(
        "  {verb} dev certificate: {} (clients pin it)",
        dev.cert_path.display()
    );
    eprintln!(
        "  {verb} token secret:    {} (keep private)",
        dev.secret_path.display()
    );
    eprintln!(
        "  connect a client:  cargo run --release -p zonemesh-client --example walk -- --server {addr} --dev-data {data}"
    );
    if nodes.len() > 1 {
        eprintln!(
            "  cluster:           {} nodes; connect to any of them, players are redirected to their zone's node",
            nodes.len()
        );
    }
    let store = if args.store.starts_with("postgres") {
        "PostgreSQL (from --store)".to_owned()
    } else {
        format!(
            "embedded, {}",
            args.data.join(zonemesh_store::EMBEDDED_FILE_NAME).display()
        )
    };
    eprintln!("  store:             {store}");
    eprintln!("  mint a token:      zonemesh token --player NAME --data {data}");
    eprintln!("  stop with Ctrl-C");
    Ok(())
}

/// Moves a clustered node's zones to the other nodes before it stops, for at most
/// `grace` (zero, or a node outside a cluster: nothing to do).
async fn drain_before_stop(server: &zonemesh_server::Server, grace: Duration) {
    let Some(cluster) = server.cluster_runtime() else {
        return;
    };
    if grace.is_zero() {
        return;
    }
    tracing::info!(
        grace_secs = grace.as_secs(),
        "stopping: moving this node's zones to other nodes first"
    );
    if let Err(e) = cluster.drain() {
        tracing::warn!("cannot drain before stopping: {e}");
        return;
    }
    if !cluster.wait_drained(grace).await {
        tracing::warn!(
            "the grace period ended before every zone moved; the rest are saved and released"
        );
    }
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn print_token(args: &TokenArgs) -> anyhow::Result<()> {
    zonemesh_shared::ids::validate_player_name(&args.player)
        .map_err(|e| anyhow::anyhow!("invalid player name {:?}: {e}", args.player))?;
    let secret_path = args.data.join(zonemesh_shared::dev_files::SECRET);
    let secret = dev::read_secret(&secret_path).with_context(|| {
        format!(
            "run `zonemesh dev --data {}` once to create the secret",
            args.data.display()
        )
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let claims = Claims {
        player: args.player.clone(),
        expires_unix_s: now.as_secs().saturating_add(args.ttl_secs),
        nonce: rand::random(),
    };
    println!("{}", token::sign(&secret, &claims)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_event_rate_flag_keeps_the_default_limit() {
        assert_eq!(event_rate(30), NetLimits::default().event_rate);
        let cli = Cli::try_parse_from(["zonemesh", "dev", "--event-rate", "5000"]).expect("parse");
        let Command::Dev(args) = cli.command else {
            panic!("not dev");
        };
        assert_eq!(event_rate(args.event_rate).per_second, 5000.0);
        assert!(Cli::try_parse_from(["zonemesh", "dev", "--event-rate", "0"]).is_err());
    }
}
