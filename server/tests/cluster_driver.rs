//! The cluster driver over real QUIC on loopback: three nodes that know only a seed
//! find each other through SWIM over the authenticated node transport, a node that
//! stops is dropped from the others' views, and while the store cannot be reached no
//! node takes a lease, so none accepts inputs and players are told to wait. On a real
//! (embedded) store: a zone gets one holder, the other nodes redirect to it, and when
//! its node stops the zone comes back on another node by itself, once.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use zonemesh_cluster::ZoneId;
use zonemesh_cluster::admission::Admission;
use zonemesh_cluster::lease::LeaseConfig;
use zonemesh_cluster::membership::static_list::StaticConfig;
use zonemesh_cluster::membership::swim::lan_config;
use zonemesh_cluster::membership::table::TableConfig;
use zonemesh_cluster::msg::{StoreCall, StoreReply};
use zonemesh_cluster::node::NodeConfig;
use zonemesh_server::cluster::driver::{
    Cluster, ClusterConfig, ClusterEvents, MembershipConfig, StoreCalls,
};
use zonemesh_server::cluster::store_calls::StoreAdapter;
use zonemesh_server::dev::load_or_create;
use zonemesh_shared::node::NodeRef;
use zonemesh_store::{RedbStore, Store};

const SECRET: &[u8] = b"cluster-secret-0123456789abcdef!";
const WAIT: Duration = Duration::from_secs(20);

/// A store that cannot be reached: every call fails, as during an outage.
struct UnreachableStore;

impl StoreCalls for UnreachableStore {
    fn call(
        &self,
        _node: NodeRef,
        call: StoreCall,
    ) -> Pin<Box<dyn Future<Output = StoreReply> + Send>> {
        Box::pin(async move { StoreReply::Unavailable { call } })
    }
}

/// Zone changes are not expected here: no activation can succeed without the store.
struct NoZones;

impl ClusterEvents for NoZones {
    fn zone_active(&self, zone: ZoneId, epoch: u64) {
        panic!("{zone} became active at epoch {epoch} without a store");
    }
    fn zone_lost(&self, _zone: ZoneId) {}
    fn superseded(&self) {}
    fn end_session(&self, _player: &str, _session: u64) {}
}

fn start_node(id: u64, seeds: Vec<SocketAddr>) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = load_or_create(dir.path()).expect("dev identity");
    let config = ClusterConfig {
        me: NodeRef::new(id, 1),
        node_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        node_advertise: None,
        client_addr: SocketAddr::from(([127, 0, 0, 1], 40_000 + id as u16)),
        membership: MembershipConfig::Swim {
            seeds,
            config: lan_config(3),
        },
        secret: SECRET.to_vec(),
        tls: identity.tls,
        node: Default::default(),
    };
    let cluster = Cluster::start(config, Arc::new(UnreachableStore), Arc::new(NoZones))
        .expect("cluster starts");
    (cluster, dir)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_and_a_stopped_node_leaves_every_view() {
    let (a, _a_dir) = start_node(1, Vec::new());
    let seed = a.node_addr().expect("addr");
    let (b, _b_dir) = start_node(2, vec![seed]);
    let (c, _c_dir) = start_node(3, vec![seed]);

    until("every node sees three members", || {
        [&a, &b, &c].iter().all(|n| n.members().len() == 3)
    })
    .await;
    assert_eq!(
        b.client_addr_of(c.me()),
        Some(SocketAddr::from(([127, 0, 0, 1], 40_003)))
    );

    // Without a store nobody holds a lease: players are told to try elsewhere, and
    // nobody accepts inputs.
    for node in [&a, &b, &c] {
        assert!(matches!(
            node.admit(ZoneId(5), false),
            Admission::Busy { .. }
        ));
        assert!(!node.accepts_inputs(ZoneId(5)));
        assert!(node.active_zones().is_empty());
    }

    let gone = c.me();
    c.stop().await;
    until("the stopped node left both views", || {
        [&a, &b]
            .iter()
            .all(|n| n.members().iter().all(|m| m.node != gone))
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// Records the zones the cluster made active here.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<(ZoneId, u64)>>);

impl ClusterEvents for Recorded {
    fn zone_active(&self, zone: ZoneId, epoch: u64) {
        self.0.lock().expect("lock").push((zone, epoch));
    }
    fn zone_lost(&self, _zone: ZoneId) {}
    fn superseded(&self) {}
    fn end_session(&self, _player: &str, _session: u64) {}
}

/// Short leases so that failover in the test takes seconds, not tens of seconds.
fn short_leases() -> NodeConfig {
    NodeConfig {
        lease: LeaseConfig {
            duration_ms: 2_000,
            renew_every_ms: 500,
            drift_margin_ms: 200,
        },
        ..NodeConfig::default()
    }
}

fn start_on_store(
    id: u64,
    seeds: Vec<SocketAddr>,
    store: &Arc<dyn Store>,
) -> (Cluster, Arc<Recorded>, tempfile::TempDir) {
    let membership = MembershipConfig::Swim {
        seeds,
        config: lan_config(3),
    };
    start_with_membership(id, membership, store)
}

fn start_with_membership(
    id: u64,
    membership: MembershipConfig,
    store: &Arc<dyn Store>,
) -> (Cluster, Arc<Recorded>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = load_or_create(dir.path()).expect("dev identity");
    let node = short_leases();
    let config = ClusterConfig {
        me: NodeRef::new(id, 1),
        node_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        node_advertise: None,
        client_addr: SocketAddr::from(([127, 0, 0, 1], 41_000 + (id % 1_000) as u16)),
        membership,
        secret: SECRET.to_vec(),
        tls: identity.tls,
        node,
    };
    let lease = Duration::from_millis(node.lease.duration_ms);
    let calls = Arc::new(StoreAdapter::new(Arc::clone(store), lease));
    let events = Arc::new(Recorded::default());
    let cluster = Cluster::start(config, calls, Arc::clone(&events) as Arc<dyn ClusterEvents>)
        .expect("cluster starts");
    (cluster, events, dir)
}

async fn admitted(node: &Cluster, zone: ZoneId) -> Admission {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = node.admit(zone, false);
        if !matches!(answer, Admission::Loading { .. }) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{zone} still loading"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_has_one_holder_others_redirect_and_it_fails_over_when_its_node_stops() {
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(store_dir.path().join("zonemesh.redb")).expect("store"));
    let (a, a_events, _a_dir) = start_on_store(1, Vec::new(), &store);
    let seed = a.node_addr().expect("addr");
    let (b, _b_events, _b_dir) = start_on_store(2, vec![seed], &store);
    let (c, _c_events, _c_dir) = start_on_store(3, vec![seed], &store);
    until("every node sees three members", || {
        [&a, &b, &c].iter().all(|n| n.members().len() == 3)
    })
    .await;

    let zone = ZoneId(7);
    assert!(matches!(
        admitted(&a, zone).await,
        Admission::Welcome { epoch: 1 }
    ));
    assert!(a.accepts_inputs(zone));
    assert_eq!(a_events.0.lock().expect("lock").as_slice(), &[(zone, 1)]);
    for other in [&b, &c] {
        assert_eq!(
            admitted(other, zone).await,
            Admission::Redirect { to: a.me() }
        );
        assert!(!other.accepts_inputs(zone));
    }
    let holder = store
        .zone_holder(zone.0)
        .await
        .expect("read")
        .expect("held");
    assert_eq!((holder.0.id, holder.1), (1, 1));

    // a stops: once its lease has run out, the zone comes back on b or c by itself.
    let gone = a.me();
    a.stop().await;
    until("the zone is held again", || {
        [&b, &c].iter().any(|n| n.accepts_inputs(zone))
    })
    .await;
    let holder = store
        .zone_holder(zone.0)
        .await
        .expect("read")
        .expect("held");
    assert_ne!(holder.0.id, gone.id.0);
    assert_eq!(holder.1, 2, "one new activation, epoch 2");
    assert_eq!(
        [&b, &c].iter().filter(|n| n.accepts_inputs(zone)).count(),
        1,
        "exactly one node accepts inputs"
    );
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_players_racing_for_ten_cold_zones_cause_ten_activations() {
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(store_dir.path().join("zonemesh.redb")).expect("store"));
    race_for_cold_zones(&store, 1, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_too_racing_players_cause_one_activation_per_zone() {
    let Ok(url) = std::env::var("ZONEMESH_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped on_postgres_too_racing_players_cause_one_activation_per_zone: ZONEMESH_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let store = zonemesh_store::open_store(&url, std::path::Path::new("."))
        .await
        .expect("postgres");
    // The database outlives the test: fresh node ids and zones per run.
    let first_node = rand::random::<u64>() >> 8;
    let first_zone = 1_000_000 + (rand::random::<u32>() >> 8);
    race_for_cold_zones(&store, first_node, first_zone).await;
}

/// Three nodes on `store`; 100 players race for 10 zones from `first_zone` on;
/// each zone must be activated once and served by one node.
async fn race_for_cold_zones(store: &Arc<dyn Store>, first_node: u64, first_zone: u32) {
    let (a, _a_events, _a_dir) = start_on_store(first_node, Vec::new(), store);
    let seed = a.node_addr().expect("addr");
    let (b, _b_events, _b_dir) = start_on_store(first_node + 1, vec![seed], store);
    let (c, _c_events, _c_dir) = start_on_store(first_node + 2, vec![seed], store);
    let nodes = [a, b, c];
    until("every node sees three members", || {
        nodes.iter().all(|n| n.members().len() == 3)
    })
    .await;

    // 100 players, each asking a node for one of 10 zones, all at once; each keeps
    // asking (following redirects) until welcomed.
    let nodes = Arc::new(nodes);
    let mut players = tokio::task::JoinSet::new();
    for player in 0..100_u32 {
        let nodes = Arc::clone(&nodes);
        players.spawn(async move {
            let zone = ZoneId(first_zone + player % 10);
            let mut at = (player % 3) as usize;
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                match nodes[at].admit(zone, false) {
                    Admission::Welcome { epoch } => return (zone, nodes[at].me(), epoch),
                    Admission::Redirect { to } => {
                        at = nodes
                            .iter()
                            .position(|n| n.me() == to)
                            .expect("redirect to a member");
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "player never welcomed"
                );
            }
        });
    }
    let mut welcomed = std::collections::HashMap::new();
    while let Some(result) = players.join_next().await {
        let (zone, node, epoch) = result.expect("player task");
        let first = *welcomed.entry(zone).or_insert((node, epoch));
        assert_eq!(
            first,
            (node, epoch),
            "{zone} was served by two nodes or epochs"
        );
    }
    assert_eq!(welcomed.len(), 10);
    for zone in welcomed.keys() {
        assert_eq!(
            store.zone_epoch(zone.0).await.expect("read"),
            Some(1),
            "{zone} activated more than once"
        );
    }
    let nodes = Arc::into_inner(nodes).expect("players done");
    for node in nodes {
        node.stop().await;
    }
}

/// The real store behind a switch: while `cut` is set, this node's calls fail as if
/// the store were unreachable (a partition between one node and the store).
struct Partitionable {
    store: StoreAdapter,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl StoreCalls for Partitionable {
    fn call(
        &self,
        node: NodeRef,
        call: StoreCall,
    ) -> Pin<Box<dyn Future<Output = StoreReply> + Send>> {
        if self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async move { StoreReply::Unavailable { call } });
        }
        self.store.call(node, call)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_store_stops_before_another_takes_its_zone() {
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(store_dir.path().join("zonemesh.redb")).expect("store"));
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let node = short_leases();
    let lease = Duration::from_millis(node.lease.duration_ms);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ClusterConfig {
        me: NodeRef::new(1, 1),
        node_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        node_advertise: None,
        client_addr: SocketAddr::from(([127, 0, 0, 1], 42_001)),
        membership: MembershipConfig::Swim {
            seeds: Vec::new(),
            config: lan_config(2),
        },
        secret: SECRET.to_vec(),
        tls: load_or_create(dir.path()).expect("dev identity").tls,
        node,
    };
    let calls = Arc::new(Partitionable {
        store: StoreAdapter::new(Arc::clone(&store), lease),
        cut: Arc::clone(&cut),
    });
    let a = Cluster::start(config, calls, Arc::new(Recorded::default())).expect("a starts");
    let (b, _b_events, _b_dir) = start_on_store(2, vec![a.node_addr().expect("addr")], &store);
    until("both nodes see each other", || {
        a.members().len() == 2 && b.members().len() == 2
    })
    .await;

    let zone = ZoneId(3);
    assert!(matches!(
        admitted(&a, zone).await,
        Admission::Welcome { .. }
    ));
    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    let cut_at = tokio::time::Instant::now();

    // b keeps asking for the zone; at no moment may both accept inputs for it.
    let deadline = cut_at + WAIT;
    let mut a_stopped_after = None;
    while !b.accepts_inputs(zone) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never took the zone over"
        );
        let (a_accepts, b_accepts) = (a.accepts_inputs(zone), b.accepts_inputs(zone));
        assert!(
            !(a_accepts && b_accepts),
            "two nodes accepted inputs for {zone}"
        );
        if !a_accepts && a_stopped_after.is_none() {
            a_stopped_after = Some(cut_at.elapsed());
        }
        let _ = b.admit(zone, false);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !a.accepts_inputs(zone),
        "a accepts inputs after b took over"
    );
    let stopped = a_stopped_after.expect("a stopped before b took over");
    // The stated bound: lease minus margin after the last answered renewal, which was
    // at most one renewal interval before the cut.
    assert!(
        stopped <= Duration::from_millis(2_000 - 200 + 100),
        "a stopped only after {stopped:?}"
    );
    let holder = store
        .zone_holder(zone.0)
        .await
        .expect("read")
        .expect("held");
    assert_eq!((holder.0.id, holder.1), (2, 2));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_list_is_marked_up_and_down_by_probes() {
    // Bind three endpoints first to learn their addresses, then list them all.
    let probe = StaticConfig {
        probe_every_ms: 100,
        probe_timeout_ms: 80,
        down_after_misses: 3,
    };
    let ports: Vec<SocketAddr> = (0..3)
        .map(|_| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.local_addr().expect("addr")
        })
        .collect();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for (i, listen) in ports.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ClusterConfig {
            me: NodeRef::new(10 + i as u64, 1),
            node_listen: *listen,
            node_advertise: None,
            client_addr: SocketAddr::from(([127, 0, 0, 1], 43_000 + i as u16)),
            membership: MembershipConfig::Static {
                peers: ports.clone(),
                config: probe,
            },
            secret: SECRET.to_vec(),
            tls: load_or_create(dir.path()).expect("dev identity").tls,
            node: Default::default(),
        };
        nodes.push(
            Cluster::start(config, Arc::new(UnreachableStore), Arc::new(NoZones)).expect("starts"),
        );
        dirs.push(dir);
    }
    until("every node sees three members", || {
        nodes.iter().all(|n| n.members().len() == 3)
    })
    .await;
    assert_eq!(
        nodes[0].client_addr_of(nodes[2].me()),
        Some(SocketAddr::from(([127, 0, 0, 1], 43_002)))
    );
    let gone = nodes[2].me();
    let stopped = nodes.pop().expect("three nodes");
    stopped.stop().await;
    until("the stopped node is marked down", || {
        nodes
            .iter()
            .all(|n| n.members().iter().all(|m| m.node != gone))
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_membership_table_nodes_see_each_other_and_a_stopped_one_leaves() {
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(store_dir.path().join("zonemesh.redb")).expect("store"));
    table_membership(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_too_the_membership_table_gives_one_view() {
    let Ok(url) = std::env::var("ZONEMESH_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped on_postgres_too_the_membership_table_gives_one_view: ZONEMESH_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    // A schema of its own: the table is the whole cluster's view.
    let schema = format!("zm_members_{:08x}", rand::random::<u32>());
    let options = zonemesh_store::PostgresOptions {
        schema: schema.clone(),
        ..zonemesh_store::PostgresOptions::default()
    };
    let store = zonemesh_store::open_store_with(&url, std::path::Path::new("."), options)
        .await
        .expect("postgres");
    table_membership(&store).await;
    drop(store);
    common::drop_postgres_schema(&url, &schema).await;
}

/// Three nodes on `store` with the membership table: one view, and a stopped node
/// removes its row and leaves the others' views.
async fn table_membership(store: &Arc<dyn Store>) {
    let table = || MembershipConfig::Table {
        config: TableConfig {
            heartbeat_every_ms: 200,
            row_ttl_ms: 1_000,
            read_every_ms: 200,
            call_timeout_ms: 1_000,
        },
    };
    let first = rand::random::<u64>() >> 8;
    let (a, _a_events, _a_dir) = start_with_membership(first, table(), store);
    let (b, _b_events, _b_dir) = start_with_membership(first + 1, table(), store);
    let (c, _c_events, _c_dir) = start_with_membership(first + 2, table(), store);
    until("every node sees three members from the table", || {
        [&a, &b, &c].iter().all(|n| n.members().len() == 3)
    })
    .await;
    // One view: the same members everywhere, with the addresses each node published.
    let b_in_a = a.live_member(b.me()).expect("b is in a's view");
    assert_eq!(b_in_a.addr, b.node_addr().expect("bound"));
    c.stop().await;
    until("the stopped node left the table and the views", || {
        a.members().len() == 2 && b.members().len() == 2
    })
    .await;
    let rows = store.member_table().await.expect("table readable");
    assert_eq!(rows.members.len(), 2, "the leaving node removed its row");
    a.stop().await;
    b.stop().await;
}
