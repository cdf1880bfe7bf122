//! TLS session resumption that every node of a cluster honours, so a client sent from
//! one node to another (a `Redirect` at connect time, a player crossing into a zone
//! held elsewhere) reaches the new node with 0-RTT: its `Hello` travels in the first
//! flight and the answer comes back after one round trip instead of two.
//!
//! rustls accepts 0-RTT only for *stateful* resumption: the ticket a client holds is a
//! random id, and the session it names is kept in the server's [`StoresServerSessions`].
//! [`SharedSessions`] is that store, and in a cluster it also queues every session it
//! stores for sharing: the node's sharer ([`share`]) sends them over the authenticated,
//! encrypted node links to every live member, which keep them the same way (without
//! sharing them on). The session is shared when the node issues the ticket, right
//! after the client's handshake, and a node about to answer `Redirect` sends what is
//! still queued at once, so the session travels ahead of the `Redirect` and is at the
//! target before the redirected client. A session that did not arrive in time, was evicted or has expired
//! only costs the client a full handshake.
//!
//! Replay: rustls takes a session out of the store when a client resumes with it, so
//! a ticket resumes once per node. 0-RTT data may still be replayed to another node
//! that holds a copy; the connection task therefore admits a player from a `Hello`
//! carried in 0-RTT only for a redirect token (single-use, checked against the replay
//! guard of the one node it names) and waits for the handshake to complete before it
//! admits a session token (an attacker replaying a captured flight cannot complete it).
//!
//! Bounds: at most [`SESSIONS_MAX`] sessions, the oldest evicted first, each kept at
//! most [`SESSION_TTL`]; at most [`OUTBOX_MAX`] sessions waiting to be shared, the
//! oldest dropped first (counted); ids and values larger than the wire allows are not
//! shared (they stay usable on this node).

use rustls::server::StoresServerSessions;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use zonemesh_cluster::session_msg::{
    SHARED_SESSION_ID_MAX, SHARED_SESSION_VALUE_MAX, SharedSession,
};

use crate::cluster::runtime::ClusterRuntime;

/// Sessions a node keeps, its own and those shared by the other nodes (about 300
/// bytes each: a few megabytes at most).
pub const SESSIONS_MAX: usize = 16_384;
/// How long a session is kept: long enough for the moves of a long play session
/// (its ticket was issued when the client connected), short enough to bound the
/// damage of a leaked session.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// Sessions waiting to be shared with the other nodes.
pub const OUTBOX_MAX: usize = 1_024;
/// Encoded bytes of sessions packed into one message to the other nodes: one QUIC
/// datagram.
const SHARE_BYTES_MAX: usize = 1_000;

/// Figures of a [`SharedSessions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFigures {
    /// Sessions held now.
    pub held: usize,
    /// Sessions this node issued.
    pub issued: u64,
    /// Sessions other nodes shared with this one.
    pub received: u64,
    /// Sessions clients resumed here (taken out of the store).
    pub resumed: u64,
    /// Sessions not shared because the outbox was full (the oldest waiting went).
    pub share_dropped: u64,
}

/// The TLS session store of a node's client endpoint; see the module documentation.
#[derive(Debug)]
pub struct SharedSessions {
    inner: Mutex<Inner>,
    /// Woken when a session is queued for sharing.
    queued: Notify,
    /// Whether sessions are queued for sharing (a node in a cluster).
    sharing: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Id → (insertion sequence, when stored, value).
    by_id: HashMap<Vec<u8>, (u64, Instant, Vec<u8>)>,
    /// Insertion sequence → id, oldest first: what eviction and expiry walk.
    by_age: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
    outbox: VecDeque<SharedSession>,
    figures: SessionFigures,
}

impl SharedSessions {
    /// A store for a single node: nothing is shared.
    pub fn local() -> Arc<Self> {
        Arc::new(Self::new(false))
    }

    /// A store for a node in a cluster: every session issued here is queued for
    /// sharing with the other nodes.
    pub fn clustered() -> Arc<Self> {
        Arc::new(Self::new(true))
    }

    fn new(sharing: bool) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            queued: Notify::new(),
            sharing,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent whatever a panicking holder did: every update is
        // a single insert or remove on each side.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps sessions another node shared (not shared on).
    pub fn receive(&self, sessions: Vec<SharedSession>) {
        let now = Instant::now();
        let mut inner = self.lock();
        for session in sessions {
            inner.insert(now, session.id, session.value);
            inner.figures.received += 1;
        }
    }

    /// Takes up to [`SHARE_BYTES_MAX`] encoded bytes of queued sessions (at least one
    /// when any is queued), oldest first.
    pub fn take_queued(&self) -> Vec<SharedSession> {
        let mut inner = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = inner.outbox.front() {
            let size = next.encoded_len();
            if !batch.is_empty() && bytes + size > SHARE_BYTES_MAX {
                break;
            }
            bytes += size;
            batch.extend(inner.outbox.pop_front());
        }
        batch
    }

    /// Waits until a session is queued for sharing.
    pub async fn queued(&self) {
        self.queued.notified().await;
    }

    /// The figures so far.
    pub fn figures(&self) -> SessionFigures {
        let inner = self.lock();
        SessionFigures {
            held: inner.by_id.len(),
            ..inner.figures
        }
    }

    fn queue(&self, inner: &mut Inner, id: &[u8], value: &[u8]) {
        if id.len() > SHARED_SESSION_ID_MAX || value.len() > SHARED_SESSION_VALUE_MAX {
            return;
        }
        if inner.outbox.len() >= OUTBOX_MAX {
            inner.outbox.pop_front();
            inner.figures.share_dropped += 1;
        }
        inner.outbox.push_back(SharedSession {
            id: id.to_vec(),
            value: value.to_vec(),
        });
        self.queued.notify_one();
    }
}

impl Inner {
    fn insert(&mut self, now: Instant, id: Vec<u8>, value: Vec<u8>) {
        self.expire(now);
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some((old_seq, ..)) = self.by_id.insert(id.clone(), (seq, now, value)) {
            self.by_age.remove(&old_seq);
        }
        self.by_age.insert(seq, id);
        while self.by_id.len() > SESSIONS_MAX {
            self.evict_oldest();
        }
    }

    fn take(&mut self, id: &[u8]) -> Option<Vec<u8>> {
        self.expire(Instant::now());
        let (seq, _, value) = self.by_id.remove(id)?;
        self.by_age.remove(&seq);
        Some(value)
    }

    fn get(&mut self, id: &[u8]) -> Option<Vec<u8>> {
        self.expire(Instant::now());
        self.by_id.get(id).map(|(_, _, value)| value.clone())
    }

    /// Drops the sessions older than [`SESSION_TTL`].
    fn expire(&mut self, now: Instant) {
        while let Some((_, id)) = self.by_age.first_key_value() {
            let stale = self
                .by_id
                .get(id)
                .is_none_or(|(_, at, _)| now.saturating_duration_since(*at) > SESSION_TTL);
            if !stale {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, id)) = self.by_age.pop_first() {
            self.by_id.remove(&id);
        }
    }
}

impl StoresServerSessions for SharedSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut inner = self.lock();
        if self.sharing {
            self.queue(&mut inner, &key, &value);
        }
        inner.insert(Instant::now(), key, value);
        inner.figures.issued += 1;
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut inner = self.lock();
        let value = inner.take(key)?;
        inner.figures.resumed += 1;
        Some(value)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Sends the sessions this node issues to every other live member until the node
/// stops (the runtime goes away). Run as a task of its own.
pub(crate) async fn share(sessions: Arc<SharedSessions>, cluster: Weak<ClusterRuntime>) {
    loop {
        sessions.queued().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        cluster.flush_tls_sessions();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Vec<u8> {
        n.to_be_bytes().repeat(8)
    }

    #[test]
    fn a_session_resumes_once() {
        let store = SharedSessions::local();
        assert!(store.put(id(1), b"session".to_vec()));
        assert_eq!(store.get(&id(1)).as_deref(), Some(&b"session"[..]));
        assert_eq!(store.take(&id(1)).as_deref(), Some(&b"session"[..]));
        assert_eq!(store.take(&id(1)), None, "a ticket resumes once");
        let figures = store.figures();
        assert_eq!((figures.issued, figures.resumed, figures.held), (1, 1, 0));
    }

    #[test]
    fn a_single_node_shares_nothing() {
        let store = SharedSessions::local();
        store.put(id(1), vec![1; 100]);
        assert!(store.take_queued().is_empty());
    }

    #[test]
    fn the_oldest_session_goes_when_the_store_is_full() {
        let store = SharedSessions::local();
        for n in 0..=SESSIONS_MAX as u32 {
            store.put(id(n), vec![0; 4]);
        }
        assert_eq!(store.figures().held, SESSIONS_MAX);
        assert_eq!(store.get(&id(0)), None, "the oldest was evicted");
        assert!(store.get(&id(1)).is_some());
        assert!(store.get(&id(SESSIONS_MAX as u32)).is_some());
    }

    #[test]
    fn a_session_stored_again_is_not_evicted_by_its_old_place() {
        let store = SharedSessions::local();
        store.put(id(0), vec![0]);
        store.put(id(1), vec![1]);
        store.put(id(0), vec![2]);
        for n in 2..=SESSIONS_MAX as u32 {
            store.put(id(n), vec![0]);
        }
        // id(1) is now the oldest and went; id(0) was stored after it and stays.
        assert_eq!(store.get(&id(1)), None);
        assert_eq!(store.get(&id(0)), Some(vec![2]));
    }

    #[test]
    fn expired_sessions_are_dropped() {
        let mut inner = Inner::default();
        let start = Instant::now();
        inner.insert(start, id(1), vec![1]);
        inner.insert(start + SESSION_TTL / 2, id(2), vec![2]);
        inner.expire(start + SESSION_TTL + Duration::from_millis(1));
        assert!(!inner.by_id.contains_key(&id(1)));
        assert!(inner.by_id.contains_key(&id(2)));
        assert_eq!(inner.by_age.len(), 1);
    }

    #[test]
    fn a_clustered_store_queues_what_it_issues_in_datagram_sized_batches() {
        let store = SharedSessions::clustered();
        for n in 0..10 {
            store.put(id(n), vec![7; 300]);
        }
        store.receive(vec![SharedSession {
            id: id(99),
            value: vec![1; 10],
        }]);
        let mut shared = Vec::new();
        loop {
            let batch = store.take_queued();
            if batch.is_empty() {
                break;
            }
            let bytes: usize = batch.iter().map(SharedSession::encoded_len).sum();
            assert!(bytes <= SHARE_BYTES_MAX, "{bytes} bytes in one batch");
            shared.extend(batch);
        }
        let ids: Vec<Vec<u8>> = shared.into_iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            (0..10).map(id).collect::<Vec<_>>(),
            "received ones are not shared on"
        );
        assert!(store.get(&id(99)).is_some(), "received ones are kept");
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_it() {
        let store = SharedSessions::clustered();
        for n in 0..OUTBOX_MAX as u32 + 3 {
            store.put(id(n), vec![0; 8]);
        }
        assert_eq!(store.figures().share_dropped, 3);
        let first = store.take_queued();
        assert_eq!(first[0].id, id(3));
    }

    #[test]
    fn sessions_too_large_for_the_wire_stay_local() {
        let store = SharedSessions::clustered();
        store.put(id(1), vec![0; SHARED_SESSION_VALUE_MAX + 1]);
        assert!(store.take_queued().is_empty());
        assert!(store.get(&id(1)).is_some());
    }
}
