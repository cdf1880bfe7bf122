//! Shared set-up for the swarm's integration tests: a real ZoneMesh server on
//! 127.0.0.1:0 hosting the demo game (started as `zonemesh dev` starts it), and a swarm
//! configuration pointed at it.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;
use zonemesh_server::admin::{AdminConfig, AdminServer};
use zonemesh_server::dev::{DevWorld, start_dev_server};
use zonemesh_server::zone::{WorldLayout, ZoneConfig};
use zonemesh_server::{NodeConfig, Server};
use zonemesh_shared::dev_files;
use zonemesh_swarm::{Auth, SwarmConfig};

/// Longest any test run may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running test server and its data directory (`zonemesh dev` layout).
pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    /// Its admin endpoint (loopback, no token).
    pub admin: AdminServer,
    pub data: TempDir,
}

impl TestServer {
    /// A 2x2 world of 64-unit zones with a few NPCs; bots see 48 units around them.
    pub async fn start() -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir")).await
    }

    /// Another server with `other`'s dev identity (certificate, key, token secret) in
    /// a data directory of its own, so one swarm's credentials work on both, as on
    /// the nodes of a cluster.
    pub async fn start_sharing_identity(other: &Self) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        for file in [dev_files::CERT, dev_files::KEY, dev_files::SECRET] {
            std::fs::copy(other.data.path().join(file), data.path().join(file))
                .expect("copy the dev identity");
        }
        Self::start_in(data).await
    }

    async fn start_in(data: TempDir) -> Self {
        let world = DevWorld {
            node: NodeConfig {
                layout: WorldLayout {
                    zones_x: 2,
                    zones_y: 2,
                    zone_size: 64.0,
                },
                zone: ZoneConfig::default(),
                workers: Some(2),
                ..NodeConfig::default()
            },
            npcs: 8,
            ..DevWorld::default()
        }
        .with_aoi_radius(48.0);
        let listen = "127.0.0.1:0".parse().expect("addr");
        let dev = start_dev_server(listen, data.path(), &world)
            .await
            .expect("server starts");
        let addr = dev.server.local_addr().expect("bound");
        let admin_config = AdminConfig {
            listen,
            token: None,
        };
        let admin = AdminServer::start(admin_config, dev.server.status_source())
            .await
            .expect("admin endpoint starts");
        Self {
            server: dev.server,
            addr,
            admin,
            data,
        }
    }

    /// A swarm against this server using its dev data directory, like `--dev-data`.
    pub fn swarm_config(&self, n_bots: u32, duration: Duration) -> SwarmConfig {
        let mut config = SwarmConfig::new(self.addr, Auth::DevData(self.data.path().to_owned()));
        config.n_bots = n_bots;
        config.duration = duration;
        config.n_endpoints = 2;
        config.seed = 1;
        config.interval = Duration::from_millis(500);
        config.server_admin = Some(zonemesh_ctl::AdminClient::new(self.admin.local_addr()));
        config
    }
}

/// Runs a swarm with the test deadline and no external shutdown.
pub async fn run_swarm(config: &SwarmConfig) -> zonemesh_swarm::Report {
    tokio::time::timeout(WAIT, zonemesh_swarm::run(config, std::future::pending()))
        .await
        .expect("the swarm ends by itself")
        .expect("the swarm runs")
}
