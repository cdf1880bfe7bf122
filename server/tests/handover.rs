//! Players crossing between zones, persistence side: a player whose session ends while
//! it is in flight (a transfer in the neighbour's inbox, or a transfer that bounced and
//! is retried) is saved, not dropped, and its record versions keep increasing across
//! the border; and a zone freezing for a live handoff does so right after a tick sent
//! its snapshots. Two zones are ticked by hand over an in-memory store: no network, no
//! worker threads, so each step happens exactly when the test says.

use std::sync::Arc;
use std::time::Duration;

use zonemesh_server::demo::{DemoConfig, demo_game};
use zonemesh_server::game::{Game, Player, Position, SessionId};
use zonemesh_server::link::ClientLink;
use zonemesh_server::persist::lifecycle::Lifecycle;
use zonemesh_server::persist::{
    CheckpointWriter, KeepWarm, RecordVersions, ZoneActivation, ZoneDirectory,
};
use zonemesh_server::zone::elsewhere::GhostOrigin;
use zonemesh_server::zone::{
    SendError, WorldLayout, Zone, ZoneConfig, ZoneContext, ZoneMessage, ZonePersistence, ZoneRouter,
};
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::quant::Vec2;
use zonemesh_store::{PlayerRecord, RedbStore, Store};

/// The west zone: x in [0, 32).
const WEST: ZoneId = ZoneId::grid(0, 0);
/// The east zone: x in [32, 64).
const EAST: ZoneId = ZoneId::grid(1, 0);
/// Where the player joins: in the west zone, near the border.
const SPAWN: Vec2 = Vec2::new(30.0, 16.0);
/// Where the player is put to cross: just inside the east zone.
const ACROSS: Vec2 = Vec2::new(34.0, 16.0);

/// Two active zones side by side, sharing a store and its writer.
struct TwoZones {
    west: Zone,
    east: Zone,
    ctx: Arc<ZoneContext>,
    writer: Arc<CheckpointWriter>,
    store: Arc<dyn Store>,
    /// Kept so the directory's load queue stays open (both zones are already active).
    _loads: tokio::sync::mpsc::Receiver<ZoneId>,
}

impl TwoZones {
    /// Both zones activated in a fresh store; each inbox holds `inbox_capacity`.
    async fn start(inbox_capacity: usize) -> Self {
        let layout = WorldLayout {
            zones_x: 2,
            zones_y: 1,
            zone_size: 32.0,
        };
        let game = two_zone_game();
        let store: Arc<dyn Store> = Arc::new(RedbStore::in_memory().expect("in-memory store"));
        let mut lifecycle = Lifecycle::new([WEST, EAST], Duration::from_millis(250));
        let mut epochs = Vec::new();
        for zone in [WEST, EAST] {
            let epoch = store.activate_zone(zone.0, "test").await.expect("activate");
            lifecycle.request(zone);
            lifecycle.loaded(zone, epoch.epoch);
            epochs.push(epoch.epoch);
        }
        let (loads_tx, loads) = tokio::sync::mpsc::channel(2);
        let writer = Arc::new(CheckpointWriter::new(Arc::clone(&store)));
        let config = ZoneConfig {
            inbox_capacity,
            // No periodic checkpoint during a test: every save is one the test causes.
            checkpoint_interval: Duration::from_secs(3600),
            ..ZoneConfig::default()
        };
        let (router, mut inboxes) = ZoneRouter::new([WEST, EAST], inbox_capacity);
        let ctx = Arc::new(ZoneContext {
            router: Arc::new(router),
            layout,
            config,
            rules: game.rules().clone(),
            persistence: Some(ZonePersistence {
                writer: Arc::clone(&writer),
                directory: Arc::new(ZoneDirectory::new(lifecycle, loads_tx)),
                keep_warm: KeepWarm::All,
                idle_after: Duration::from_secs(3600),
            }),
            other_nodes: None,
        });
        let mut build = |zone: ZoneId, epoch: u64| {
            let inbox = inboxes.remove(&zone).expect("inbox");
            let activation = ZoneActivation { epoch, saved: None };
            Zone::new(zone, &game, Arc::clone(&ctx), inbox, activation)
        };
        let west = build(WEST, epochs[0]);
        let east = build(EAST, epochs[1]);
        Self {
            west,
            east,
            ctx,
            writer,
            store,
            _loads: loads,
        }
    }

    /// A new session of `name` joining the west zone at [`SPAWN`].
    fn join_west(&mut self, name: &str) -> Arc<ClientLink> {
        let link = Arc::new(ClientLink::new(SessionId(1), name.to_owned(), WEST, 1200));
        let join = ZoneMessage::Join {
            link: Arc::clone(&link),
            spawn: SPAWN,
            saved: None,
            versions: RecordVersions::after(None),
        };
        self.ctx
            .router
            .send(WEST, join)
            .expect("west inbox has room");
        self.west.tick();
        assert_eq!(position_of(&mut self.west, name), Some(SPAWN), "joined");
        link
    }

    /// Ticks `zone` once (its player `name`'s session has ended) and returns the
    /// record the tick saved, checking the player left the world.
    async fn tick_and_find_saved(&mut self, zone: ZoneId, name: &str) -> PlayerRecord {
        let zone = if zone == WEST {
            &mut self.west
        } else {
            &mut self.east
        };
        zone.tick();
        assert_eq!(position_of(zone, name), None, "{name} is not in the world");
        self.saved(name).await.expect("saved, not dropped")
    }

    /// Writes everything handed to the writer and reads `name`'s stored record.
    async fn saved(&self, name: &str) -> Option<PlayerRecord> {
        self.writer.flush().await;
        self.store.load_player(name).await.expect("load")
    }
}

/// The demo game over the two zones, without NPCs.
fn two_zone_game() -> Game {
    demo_game(DemoConfig {
        npcs: 0,
        zones: 2,
        world_size: Vec2::new(64.0, 32.0),
    })
}

/// Where `name`'s entity is in `zone`'s world, if it is there.
fn position_of(zone: &mut Zone, name: &str) -> Option<Vec2> {
    let world = zone.world_mut();
    let mut players = world.query::<(&Player, &Position)>();
    players
        .iter(world)
        .find(|(player, _)| player.name == name)
        .map(|(_, position)| position.0)
}

/// Moves `name`'s entity in `zone` to `to` (as walking would, in one step).
fn teleport(zone: &mut Zone, name: &str, to: Vec2) {
    let world = zone.world_mut();
    let mut players = world.query::<(&Player, &mut Position)>();
    let (_, mut position) = players
        .iter_mut(world)
        .find(|(player, _)| player.name == name)
        .expect("the player is in this zone");
    position.0 = to;
}

#[tokio::test]
async fn a_player_whose_session_ends_in_flight_is_saved_by_the_receiving_zone() {
    let mut zones = TwoZones::start(64).await;
    let link = zones.join_west("courier");
    teleport(&mut zones.west, "courier", ACROSS);
    zones.west.tick(); // Hands the player to the east zone's inbox.
    assert_eq!(
        position_of(&mut zones.west, "courier"),
        None,
        "left the west"
    );
    assert_eq!(zones.saved("courier").await, None, "nothing saved yet");

    link.close(); // The connection ends while the transfer waits in the inbox.
    let record = zones.tick_and_find_saved(EAST, "courier").await;
    assert_eq!(record.zone, EAST.0);
    assert!((record.x - ACROSS.x).abs() < 0.1 && (record.y - ACROSS.y).abs() < 0.1);
    assert_eq!(record.version >> 32, 1, "the session's generation");
}

#[tokio::test]
async fn a_player_whose_transfer_bounced_is_saved_where_it_stayed() {
    // One-message inboxes: a ghost batch fills the east zone's, so the hand-over fails
    // and the player stays in the west zone for a retry.
    let mut zones = TwoZones::start(1).await;
    let link = zones.join_west("stuck");
    let filler = || ZoneMessage::Ghosts {
        origin: GhostOrigin {
            zone: WEST,
            epoch: 1,
            tick: 0,
        },
        states: Vec::new(),
    };
    // The west zone's tick may already have sent one; either way the inbox is full.
    let _ = zones.ctx.router.send(EAST, filler());
    let refused = zones.ctx.router.send(EAST, filler());
    assert!(matches!(refused, Err(SendError::Full(_))), "{refused:?}");
    teleport(&mut zones.west, "stuck", ACROSS);
    zones.west.tick();
    let kept = position_of(&mut zones.west, "stuck").expect("kept for a retry");

    link.close();
    let record = zones.tick_and_find_saved(WEST, "stuck").await;
    assert_eq!(record.zone, WEST.0);
    assert!((record.x - kept.x).abs() < 0.1 && (record.y - kept.y).abs() < 0.1);
}

#[tokio::test]
async fn record_versions_keep_increasing_across_the_border() {
    let mut zones = TwoZones::start(64).await;
    let link = zones.join_west("traveller");
    let before = zones.west.checkpoint_job(false).expect("west checkpoint");
    let before = before.players[0].version;
    zones
        .writer
        .submit(zones.west.checkpoint_job(false).expect("again"));

    teleport(&mut zones.west, "traveller", ACROSS);
    zones.west.tick();
    zones.east.tick();
    assert_eq!(position_of(&mut zones.east, "traveller"), Some(ACROSS));
    let after = zones.east.checkpoint_job(false).expect("east checkpoint");
    let east_version = after.players[0].version;
    assert!(
        east_version > before + 1,
        "{east_version:#x} after {before:#x}"
    );
    zones.writer.submit(after);

    // The east zone's newer record wins, whatever order the two zones' writes land in.
    let stored = zones.saved("traveller").await.expect("saved");
    assert_eq!((stored.zone, stored.version), (EAST.0, east_version));
    assert!(!link.is_closed());
}

#[tokio::test]
async fn a_zone_freezes_for_a_handoff_right_after_a_tick_has_sent_its_snapshots() {
    let mut zones = TwoZones::start(64).await;
    let link = zones.join_west("mover");
    zones.west.status().request_freeze(true);

    // Woken between two ticks: durable actions are refused from now on, but the zone
    // does not freeze there (its players' last snapshot would be a part-tick old).
    zones.west.handle_pending_messages();
    assert!(!zones.west.is_frozen(), "no freeze between ticks");
    assert!(
        link.begin_action().is_none(),
        "new durable actions are held off"
    );
    let _ = link.take_snapshot();

    // The player moves, so the tick has something to send.
    teleport(&mut zones.west, "mover", Vec2::new(20.0, 16.0));
    zones.west.tick();
    assert!(zones.west.is_frozen(), "frozen at the end of the tick");
    let last = link.take_snapshot().expect("the tick sent a snapshot");
    assert_eq!(
        last.tick,
        zones.west.completed_tick(),
        "the freezing tick's"
    );
    let tick = zones.west.completed_tick();
    zones.west.tick();
    assert_eq!(
        zones.west.completed_tick(),
        tick,
        "a frozen zone does not tick"
    );
}

#[tokio::test]
async fn a_zone_handed_over_ticks_as_soon_as_it_arrives_and_only_once() {
    let mut zones = TwoZones::start(64).await;
    let link = zones.join_west("arriving");
    zones.west.status().request_freeze(true);
    zones.west.tick();
    assert!(zones.west.is_frozen());
    let TwoZones { mut west, ctx, .. } = zones;
    let image = west.capture_image();
    let tick = west.completed_tick();
    let epoch = west.epoch() + 1;
    let inbox = west.into_inbox();
    let game = two_zone_game();
    let mut arrived =
        Zone::from_image(WEST, &game, ctx, inbox, epoch, image, |_| Arc::clone(&link));
    let _ = link.take_snapshot();
    assert!(
        arrived.ticks_on_arrival(),
        "a handed-over zone asks to tick at once"
    );
    assert!(arrived.tick_if_just_arrived());
    assert_eq!(
        arrived.completed_tick(),
        tick + 1,
        "one tick, where the source stopped"
    );
    let first = link
        .take_snapshot()
        .expect("its players get a snapshot at once");
    assert_eq!(first.tick, tick + 1);
    assert!(!arrived.tick_if_just_arrived(), "only once");
    assert_eq!(arrived.completed_tick(), tick + 1);
}
