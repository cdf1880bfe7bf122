//! The development identity `zonemesh dev` keeps under its data directory: a
//! self-signed certificate (for `localhost` and `127.0.0.1`), its key, and the secret
//! that signs session tokens. Created on first run, reused afterwards, so clients that
//! pinned the certificate keep working across restarts.
//!
//! [`start_dev_server`] is `zonemesh dev` itself: that identity plus the demo world on
//! one node. Tests, the swarm and the benchmarks start their servers with it too.

use crate::cluster::driver::MembershipConfig;
use crate::cluster::runtime::ClusterSetup;
use crate::demo::{DemoConfig, demo_game};
use crate::net::{NetLimits, Server, ServerConfig};
use crate::node::NodeConfig;
use crate::persist::KeepWarm;
use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zonemesh_cluster::membership::swim::lan_config;
use zonemesh_cluster::node::NodeConfig as ClusterNodeConfig;
use zonemesh_shared::dev_files;
use zonemesh_shared::quant::Vec2;
use zonemesh_shared::token::SECRET_MIN;

/// Bytes of a freshly generated token secret.
const SECRET_LEN: usize = 32;

/// A TLS certificate chain and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// A copy (the node endpoint presents the same identity as the client endpoint).
    pub fn clone_identity(&self) -> Self {
        Self {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }

    /// Loads a PEM certificate chain and PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let certs = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("cannot read certificate {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("certificate {} is not valid PEM", cert.display()))?;
        if certs.is_empty() {
            bail!("certificate file {} holds no certificate", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("cannot read private key {}", key.display()))?;
        Ok(Self { certs, key })
    }
}

/// Where the dev identity lives and what it holds.
#[derive(Debug)]
pub struct DevIdentity {
    /// The certificate clients pin.
    pub cert_path: PathBuf,
    /// The token-signing secret's file.
    pub secret_path: PathBuf,
    /// Certificate and key.
    pub tls: TlsIdentity,
    /// The token-signing secret.
    pub secret: Vec<u8>,
    /// True when this call created the files.
    pub created: bool,
}

/// Loads the dev identity from `dir`, creating what is missing.
pub fn load_or_create(dir: &Path) -> anyhow::Result<DevIdentity> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let cert_path = dir.join(dev_files::CERT);
    let key_path = dir.join(dev_files::KEY);
    let secret_path = dir.join(dev_files::SECRET);
    let mut created = false;
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {}
        (false, false) => {
            create_certificate(&cert_path, &key_path)?;
            created = true;
        }
        _ => bail!(
            "{} and {} must both exist or both be absent; delete the other to regenerate",
            cert_path.display(),
            key_path.display()
        ),
    }
    let (secret, created_secret) = ensure_secret(&secret_path)?;
    created |= created_secret;
    let tls = TlsIdentity::from_pem_files(&cert_path, &key_path)?;
    Ok(DevIdentity {
        cert_path,
        secret_path,
        tls,
        secret,
        created,
    })
}

/// Reads the hex secret at `path`, creating a random one first if there is none;
/// true when it was created.
pub fn ensure_secret(path: &Path) -> anyhow::Result<(Vec<u8>, bool)> {
    let created = !path.exists();
    if created {
        let secret: [u8; SECRET_LEN] = rand::random();
        write_private(path, hex::encode(secret).as_bytes())?;
    }
    Ok((read_secret(path)?, created))
}

/// Reads a hex-encoded token secret.
pub fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read token secret {}", path.display()))?;
    let secret = hex::decode(text.trim())
        .with_context(|| format!("token secret {} is not hex", path.display()))?;
    if secret.len() < SECRET_MIN {
        bail!(
            "token secret {} is {} bytes; at least {SECRET_MIN} are required",
            path.display(),
            secret.len()
        );
    }
    Ok(secret)
}

fn create_certificate(cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).context("cannot generate dev certificate")?;
    write_private(key_path, certified.key_pair.serialize_pem().as_bytes())?;
    write_file(cert_path, certified.cert.pem().as_bytes(), false)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_file(path, bytes, true)
}

/// Writes via a temporary file and a rename, so a crash never leaves half a key.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reuses_the_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path()).expect("create");
        assert!(first.created);
        assert_eq!(first.secret.len(), SECRET_LEN);
        let second = load_or_create(dir.path()).expect("reuse");
        assert!(!second.created);
        assert_eq!(first.secret, second.secret);
        assert_eq!(first.tls.certs, second.tls.certs);
    }

    #[test]
    fn half_present_certificate_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        load_or_create(dir.path()).expect("create");
        fs::remove_file(dir.path().join(dev_files::KEY)).expect("rm");
        let err = load_or_create(dir.path()).expect_err("must fail");
        assert!(err.to_string().contains("must both exist"), "{err}");
    }

    #[test]
    fn short_or_garbled_secret_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s.hex");
        fs::write(&p, "abcd").expect("write");
        assert!(
            read_secret(&p)
                .unwrap_err()
                .to_string()
                .contains("at least")
        );
        fs::write(&p, "not hex at all").expect("write");
        assert!(read_secret(&p).unwrap_err().to_string().contains("not hex"));
    }
}

/// What a development node hosts: the demo world's layout and zone settings, its NPCs,
/// and the connection limits.
#[derive(Debug, Clone)]
pub struct DevWorld {
    /// Zones, tick rate, view settings and worker threads.
    pub node: NodeConfig,
    /// Wandering NPCs in the whole world.
    pub npcs: usize,
    /// Connection limits.
    pub limits: NetLimits,
    /// The store: empty or `embedded` for the redb file in the data directory, or a
    /// `postgres://` URL.
    pub store: String,
    /// Delay added to every store operation (a fault knob to see slow loads).
    pub store_latency: std::time::Duration,
    /// Zones activated at start-up.
    pub keep_warm: KeepWarm,
    /// The rebalancer of each node of `dev --nodes` (`None`: off).
    pub rebalance: Option<zonemesh_cluster::rebalance::RebalanceConfig>,
}

impl Default for DevWorld {
    /// What `zonemesh dev` runs without flags: 4x4 zones of 256 units, 4000 NPCs, the
    /// embedded store, every zone kept warm.
    fn default() -> Self {
        Self {
            node: NodeConfig::default(),
            npcs: 4000,
            limits: NetLimits::default(),
            store: String::new(),
            store_latency: std::time::Duration::ZERO,
            keep_warm: KeepWarm::All,
            rebalance: Some(zonemesh_cluster::rebalance::RebalanceConfig::default()),
        }
    }
}

impl DevWorld {
    /// Sets the area-of-interest radius, and the ghost margin with it so players near
    /// a border see as far into the neighbour zone as into their own.
    pub fn with_aoi_radius(mut self, radius: f32) -> Self {
        self.node.zone.view.aoi_radius = radius;
        self.node.zone.ghost_margin = radius;
        self
    }
}

/// A running development server and where its clients find the identity.
#[derive(Debug)]
pub struct DevServer {
    /// The server.
    pub server: Server,
    /// The certificate clients pin.
    pub cert_path: PathBuf,
    /// The token-signing secret's file.
    pub secret_path: PathBuf,
    /// True when this start created the identity.
    pub created_identity: bool,
    /// This run of the node: the id kept in the data directory and the incarnation
    /// this start took.
    pub node: zonemesh_shared::node::NodeRef,
}

/// Starts the demo world on `listen` with the dev identity kept under `data`.
/// Must run inside a tokio runtime.
pub async fn start_dev_server(
    listen: SocketAddr,
    data: &Path,
    world: &DevWorld,
) -> anyhow::Result<DevServer> {
    world.node.layout.validate().map_err(anyhow::Error::msg)?;
    let identity = load_or_create(data)?;
    let node = crate::identity::start_incarnation(data)?;
    tracing::info!(%node, "node identity (id/incarnation)");
    let game = demo_game_for(world);
    let store = open_dev_store(world, data).await?;
    let config = ServerConfig {
        listen,
        tls: identity.tls,
        secret: identity.secret,
        node: world.node.clone(),
        limits: world.limits.clone(),
        store,
        keep_warm: world.keep_warm.clone(),
        cluster: None,
    };
    Ok(DevServer {
        server: Server::start(config, &game).await?,
        cert_path: identity.cert_path,
        secret_path: identity.secret_path,
        created_identity: identity.created,
        node,
    })
}

/// The cluster secret of a development cluster, kept in the data directory.
pub const DEV_CLUSTER_SECRET_FILE: &str = "cluster-secret.hex";

/// Starts `nodes` nodes of one cluster in this process, on loopback: node `i` serves
/// players on `listen`'s port plus `i` (every node on an ephemeral port when that
/// port is 0) and talks to the others on an ephemeral node port. They share the dev
/// identity (one certificate to pin, one token secret), the store and a cluster
/// secret kept under `data`; each keeps its own node id under `data/node-<i>`. Nodes
/// find each other by SWIM gossip, the first node being every other's seed.
pub async fn start_dev_cluster(
    listen: SocketAddr,
    data: &Path,
    world: &DevWorld,
    nodes: u16,
) -> anyhow::Result<Vec<DevServer>> {
    world.node.layout.validate().map_err(anyhow::Error::msg)?;
    if nodes == 0 {
        bail!("a cluster needs at least one node");
    }
    if listen.port() != 0 && listen.port().checked_add(nodes - 1).is_none() {
        bail!(
            "ports {} and {nodes} nodes above it do not fit",
            listen.port()
        );
    }
    let identity = load_or_create(data)?;
    let (cluster_secret, _) = ensure_secret(&data.join(DEV_CLUSTER_SECRET_FILE))?;
    let game = demo_game_for(world);
    let store = open_dev_store(world, data).await?;
    let mut started: Vec<DevServer> = Vec::with_capacity(usize::from(nodes));
    for i in 0..nodes {
        let node = crate::identity::start_incarnation(&data.join(format!("node-{i}")))?;
        let seeds = match started.first() {
            Some(first) => vec![
                first
                    .server
                    .cluster()
                    .context("first node has no cluster")?
                    .node_addr()?,
            ],
            None => Vec::new(),
        };
        let port = if listen.port() == 0 {
            0
        } else {
            listen.port() + i
        };
        let config = ServerConfig {
            listen: SocketAddr::new(listen.ip(), port),
            tls: identity.tls.clone_identity(),
            secret: identity.secret.clone(),
            node: world.node.clone(),
            limits: world.limits.clone(),
            store: Arc::clone(&store),
            keep_warm: KeepWarm::None,
            cluster: Some(ClusterSetup {
                me: node,
                node_listen: SocketAddr::new(listen.ip(), 0),
                node_advertise: None,
                advertise: None,
                // SWIM's LAN profile (`SwimTiming::LAN`), as `zonemesh serve` by
                // default: a killed node is declared down in about 3 s.
                membership: MembershipConfig::Swim {
                    seeds,
                    config: lan_config(u32::from(nodes)),
                },
                secret: cluster_secret.clone(),
                node: ClusterNodeConfig::default(),
                rebalance: world.rebalance,
            }),
        };
        tracing::info!(%node, index = i, "starting cluster node");
        started.push(DevServer {
            server: Server::start(config, &game).await?,
            cert_path: identity.cert_path.clone(),
            secret_path: identity.secret_path.clone(),
            created_identity: identity.created,
            node,
        });
    }
    Ok(started)
}

/// The demo game for `world`.
pub fn demo_game_for(world: &DevWorld) -> crate::game::Game {
    let bounds = world.node.layout.world_bounds().max;
    demo_game(DemoConfig {
        npcs: world.npcs,
        zones: world.node.layout.n_zones(),
        world_size: Vec2::new(bounds.x, bounds.y),
    })
}

/// Opens `world`'s store (slowed down by its fault knob, if set).
async fn open_dev_store(
    world: &DevWorld,
    data: &Path,
) -> anyhow::Result<Arc<dyn zonemesh_store::Store>> {
    let mut store = zonemesh_store::open_store(&world.store, data).await?;
    if !world.store_latency.is_zero() {
        store = Arc::new(zonemesh_store::SlowStore::new(store, world.store_latency));
    }
    Ok(store)
}
