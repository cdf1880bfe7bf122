//! `zonemesh serve`: one node of a real cluster, from a configuration file
//! ([`ServeConfig`]). It hosts the demo world (a game's own server is a library user,
//! not this command), keeps its node id and incarnation in the data directory, and
//! joins the cluster named in `[cluster]`: SWIM seeds or a static list, the cluster
//! secret from a file or `ZONEMESH_CLUSTER_SECRET`.
//!
//! Without `tls` and `token_secret_file` the node uses the development certificate and
//! token secret of its data directory (created if missing), like `zonemesh dev`. Every
//! node of one cluster must present a certificate its players trust and verify tokens
//! with the same secret: point them at the same files.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use zonemesh_cluster::membership::static_list::StaticConfig;
use zonemesh_cluster::membership::table::TableConfig;
use zonemesh_cluster::node::NodeConfig as ClusterNodeConfig;
use zonemesh_shared::node::NodeRef;
use zonemesh_store::{DEFAULT_SCHEMA, PostgresOptions};

use crate::cluster::driver::MembershipConfig;
use crate::cluster::runtime::ClusterSetup;
use crate::config::{MembershipKind, ServeConfig};
use crate::dev::{self, DevWorld, TlsIdentity};
use crate::net::limits::RateLimit;
use crate::net::{NetLimits, Server, ServerConfig};
use crate::node::NodeConfig;
use crate::persist::KeepWarm;
use crate::zone::{WorldLayout, ZoneConfig};

/// Cluster size SWIM is tuned for: it sets how many times an update is repeated
/// (`[cluster.swim]` sets the timing, `SwimTiming::LAN` by default).
const EXPECTED_NODES: u32 = 16;

/// A running `zonemesh serve` node.
#[derive(Debug)]
pub struct ServeNode {
    /// The server.
    pub server: Server,
    /// This run of the node.
    pub node: NodeRef,
}

/// Starts the node `config` describes (already validated); `env` reads environment
/// variables (the cluster secret may come from one). Must run inside a tokio runtime.
pub async fn start(
    config: &ServeConfig,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ServeNode> {
    let secret = config.cluster_secret(&env)?;
    let membership = membership(config)?;
    let world = world(config);
    world.node.validate().map_err(anyhow::Error::msg)?;
    let (tls, token_secret) = player_identity(config)?;
    let node = crate::identity::start_incarnation(&config.data)?;
    tracing::info!(%node, "node identity (id/incarnation)");
    let postgres = PostgresOptions {
        schema: config
            .store_schema
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()),
        ..PostgresOptions::default()
    };
    let store = zonemesh_store::open_store_with(&config.store, &config.data, postgres).await?;
    let server_config = ServerConfig {
        listen: config.listen,
        tls,
        secret: token_secret,
        node: world.node.clone(),
        limits: world.limits.clone(),
        store,
        keep_warm: KeepWarm::None,
        cluster: Some(ClusterSetup {
            me: node,
            node_listen: config.cluster.node_listen,
            node_advertise: config.cluster.node_advertise,
            advertise: config.advertise,
            membership,
            secret,
            node: cluster_node_config(config),
            rebalance: config
                .cluster
                .rebalance
                .then(|| config.cluster.rebalancer.config()),
        }),
    };
    let server = Server::start(server_config, &dev::demo_game_for(&world)).await?;
    Ok(ServeNode { server, node })
}

/// The cluster cores' settings: defaults, with the placement the file chose.
fn cluster_node_config(config: &ServeConfig) -> ClusterNodeConfig {
    let mut node = ClusterNodeConfig::default();
    node.directory.placement = config.cluster.placement_policy();
    node
}

/// The certificate players verify and the secret their tokens are checked with.
fn player_identity(config: &ServeConfig) -> anyhow::Result<(TlsIdentity, Vec<u8>)> {
    let needs_dev = config.tls.is_none() || config.token_secret_file.is_none();
    let dev = needs_dev
        .then(|| dev::load_or_create(&config.data))
        .transpose()?;
    let missing = "the development identity is loaded when a file is not configured";
    let tls = match &config.tls {
        Some(files) => TlsIdentity::from_pem_files(&files.cert, &files.key)?,
        None => dev.as_ref().context(missing)?.tls.clone_identity(),
    };
    let secret = match &config.token_secret_file {
        Some(path) => dev::read_secret(path)?,
        None => dev.context(missing)?.secret,
    };
    Ok((tls, secret))
}

/// The membership provider of `[cluster]`.
fn membership(config: &ServeConfig) -> anyhow::Result<MembershipConfig> {
    Ok(match config.cluster.membership {
        MembershipKind::Swim => MembershipConfig::Swim {
            seeds: config
                .resolve_seeds()
                .context("cannot resolve cluster.seeds")?,
            config: config.cluster.swim.timing().config(EXPECTED_NODES),
        },
        MembershipKind::Static => MembershipConfig::Static {
            peers: config
                .resolve_peers()
                .context("cannot resolve cluster.peers")?,
            config: StaticConfig::default(),
        },
        MembershipKind::Table => MembershipConfig::Table {
            config: TableConfig::default(),
        },
    })
}

/// The world of `[world]` and `[limits]`.
fn world(config: &ServeConfig) -> DevWorld {
    let w = &config.world;
    let mut world = DevWorld {
        node: NodeConfig {
            layout: WorldLayout {
                zones_x: w.zones,
                zones_y: w.zones,
                zone_size: w.zone_size,
            },
            zone: ZoneConfig {
                tick_hz: w.tick_hz,
                checkpoint_interval: Duration::from_secs_f64(w.checkpoint_secs),
                ..ZoneConfig::default()
            },
            workers: w.workers,
            idle_deactivate_after: Duration::from_secs(w.idle_secs.max(1)),
        },
        npcs: w.npcs,
        limits: NetLimits {
            max_connections: config.limits.max_connections,
            event_rate: RateLimit::per_second_with_double_burst(config.limits.event_rate),
            ..NetLimits::default()
        },
        store: config.store.clone(),
        ..DevWorld::default()
    }
    .with_aoi_radius(w.aoi_radius);
    world.node.zone.view.budget_bytes_per_tick = w.budget_bytes;
    world
}

/// Where players and other nodes reach `node`, for the start-up lines.
pub fn addresses(node: &ServeNode) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let players = node.server.local_addr()?;
    let cluster = node
        .server
        .cluster()
        .context("a served node is always in a cluster")?;
    Ok((players, cluster.node_addr()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_gives_the_dev_world() {
        let config = ServeConfig::parse(crate::config::default_toml(), "default.toml".as_ref())
            .expect("the default parses");
        let world = world(&config);
        let dev = DevWorld::default();
        assert_eq!(world.node.layout, dev.node.layout);
        assert_eq!(world.npcs, dev.npcs);
        assert_eq!(world.node.zone.tick_hz, dev.node.zone.tick_hz);
        assert_eq!(world.limits.event_rate, NetLimits::default().event_rate);
    }

    #[test]
    fn swim_runs_with_the_configured_timing() {
        let text = crate::config::default_toml().replace(
            "[cluster.swim]\n",
            "[cluster.swim]\nprobe_period_ms = 800\nsuspect_to_down_ms = 3000\n",
        );
        let config = ServeConfig::parse(&text, "node.toml".as_ref()).expect("parses");
        config.validate().expect("valid");
        let MembershipConfig::Swim { config: swim, .. } = membership(&config).unwrap() else {
            panic!("the default membership is swim");
        };
        assert_eq!(swim.probe_period, Duration::from_millis(800));
        assert_eq!(swim.probe_rtt, Duration::from_millis(250));
        assert_eq!(swim.suspect_to_down_after, Duration::from_secs(3));

        let default = ServeConfig::parse(crate::config::default_toml(), "d.toml".as_ref())
            .expect("the default parses");
        let MembershipConfig::Swim { config: swim, .. } = membership(&default).unwrap() else {
            panic!("the default membership is swim");
        };
        let lan = zonemesh_cluster::membership::swim::lan_config(EXPECTED_NODES);
        assert_eq!(swim.probe_period, lan.probe_period);
        assert_eq!(swim.suspect_to_down_after, lan.suspect_to_down_after);
    }
}
