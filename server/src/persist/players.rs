//! Loading player records for joining players, once per player however many attempts
//! its client makes. A slow store must not turn into one read per retry, nor hold a
//! connection attempt longer than the client waits: the first attempt starts the read,
//! later ones find it running (and are told to retry) or finished (and take it).
//!
//! Bounded: at most [`PLAYER_LOADS_MAX`] players being loaded or waiting to be taken;
//! finished loads nobody took expire after [`READY_TTL`].

use super::writer::CheckpointWriter;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use zonemesh_store::{PlayerRecord, Store};

/// Most players whose record is being loaded or waiting to be taken.
pub const PLAYER_LOADS_MAX: usize = 16_384;
/// How long a loaded record waits for its player's next attempt.
pub const READY_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
enum Load {
    Running,
    Ready(Option<PlayerRecord>, Instant),
    Failed(String),
}

/// What a joining player's record lookup came to.
#[derive(Debug)]
pub enum PlayerLookup {
    /// The newest record (`None`: a new player).
    Found(Option<PlayerRecord>),
    /// Still loading: answer `Loading` and let the client retry.
    Loading,
    /// Too many loads at once: answer `Busy`.
    Busy,
    /// The store failed; the next attempt tries again.
    Failed(String),
}

/// Single-flight player record loads.
#[derive(Debug)]
pub struct PlayerLoader {
    store: Arc<dyn Store>,
    writer: Arc<CheckpointWriter>,
    loads: Mutex<HashMap<String, Load>>,
    changed: Notify,
}

impl PlayerLoader {
    /// A loader reading from `store`, preferring records `writer` has not saved yet.
    pub fn new(store: Arc<dyn Store>, writer: Arc<CheckpointWriter>) -> Self {
        Self {
            store,
            writer,
            loads: Mutex::default(),
            changed: Notify::new(),
        }
    }

    /// Looks `player` up, waiting at most `wait` for a load to finish.
    pub async fn lookup(self: &Arc<Self>, player: &str, wait: Duration) -> PlayerLookup {
        if let Some(unsaved) = self.writer.unsaved_player(player) {
            return PlayerLookup::Found(Some(unsaved));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            match self.poll(player) {
                Some(done) => return done,
                None if tokio::time::timeout_at(deadline, changed).await.is_err() => {
                    return PlayerLookup::Loading;
                }
                None => {}
            }
        }
    }

    /// [`Self::lookup`], first waiting up to `forward_wait` for the record of a player
    /// another node redirected here, which that node forwards ([`Self::provide`]),
    /// before reading the store.
    pub async fn lookup_forwarded(
        self: &Arc<Self>,
        player: &str,
        forward_wait: Duration,
        wait: Duration,
    ) -> PlayerLookup {
        let deadline = tokio::time::Instant::now() + forward_wait;
        while !forward_wait.is_zero() {
            let changed = self.changed.notified();
            if crate::link::lock(&self.loads).contains_key(player) {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        self.lookup(player, wait).await
    }

    /// One look at the table; `None` while the load runs.
    fn poll(self: &Arc<Self>, player: &str) -> Option<PlayerLookup> {
        let mut loads = crate::link::lock(&self.loads);
        match loads.remove(player) {
            Some(Load::Ready(record, at)) => {
                // Kept until the join succeeds ([`Self::forget`]): an attempt that ends
                // in `Loading` for the zone must not cost the next one a store read.
                loads.insert(player.to_owned(), Load::Ready(record.clone(), at));
                Some(PlayerLookup::Found(record))
            }
            Some(Load::Failed(e)) => Some(PlayerLookup::Failed(e)),
            Some(Load::Running) => {
                loads.insert(player.to_owned(), Load::Running);
                None
            }
            None => {
                expire(&mut loads);
                if loads.len() >= PLAYER_LOADS_MAX {
                    return Some(PlayerLookup::Busy);
                }
                loads.insert(player.to_owned(), Load::Running);
                self.start(player.to_owned());
                None
            }
        }
    }

    fn start(self: &Arc<Self>, player: String) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = match this.store.load_player(&player).await {
                Ok(record) => Load::Ready(record, Instant::now()),
                Err(e) => Load::Failed(e.to_string()),
            };
            crate::link::lock(&this.loads).insert(player, outcome);
            this.changed.notify_waiters();
        });
    }

    /// Takes `record` as `player`'s, read by another node that redirected the player
    /// here, so its join needs no read. Nothing changes while a load of the player
    /// runs or the table is full. The join's claim tells whether the record is still
    /// the newest; if not, it is forgotten and read afresh.
    pub fn provide(&self, player: &str, record: Option<PlayerRecord>) {
        let mut loads = crate::link::lock(&self.loads);
        if matches!(loads.get(player), Some(Load::Running)) {
            return;
        }
        expire(&mut loads);
        if loads.len() >= PLAYER_LOADS_MAX && !loads.contains_key(player) {
            return;
        }
        loads.insert(player.to_owned(), Load::Ready(record, Instant::now()));
        drop(loads);
        self.changed.notify_waiters();
    }

    /// Drops what was loaded for `player` (its session has joined; from now on its
    /// zone holds the truth and saves it).
    pub fn forget(&self, player: &str) {
        let mut loads = crate::link::lock(&self.loads);
        if matches!(loads.get(player), Some(Load::Ready(..) | Load::Failed(_))) {
            loads.remove(player);
        }
    }
}

/// Drops finished loads nobody came back for.
fn expire(loads: &mut HashMap<String, Load>) {
    loads.retain(|_, l| match l {
        Load::Ready(_, at) => at.elapsed() < READY_TTL,
        Load::Running | Load::Failed(_) => true,
    });
}
