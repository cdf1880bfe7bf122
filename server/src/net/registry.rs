//! Who is connected: the count of connections and admitted sessions (for the
//! connection limit) and which session plays which name (one session per player).

use crate::game::SessionId;
use crate::link::{ClientLink, lock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use zonemesh_shared::control::ErrorCode;

/// Number of distinct [`ErrorCode`] values (wire values are `0..ERROR_CODES`).
const ERROR_CODES: usize = ErrorCode::ALL.len();

/// Connection and session bookkeeping shared by all connection tasks.
#[derive(Debug)]
pub(super) struct Sessions {
    connections: Arc<AtomicUsize>,
    admitted: Arc<AtomicUsize>,
    busy_answers: AtomicU64,
    /// Connections the server closed, by [`ErrorCode`] wire value.
    closed_by_code: [AtomicU64; ERROR_CODES],
    /// The last session id handed out. Starts at a random 62-bit value per run, so
    /// that ids from different nodes (and different runs of one node) do not collide:
    /// two runs' ranges overlap with probability about (sessions per run × runs) /
    /// 2^62, negligible for any real cluster. 62 bits leave 2^62 ids before overflow.
    next_session: AtomicU64,
    by_name: Mutex<HashMap<String, Arc<ClientLink>>>,
    /// Sessions that ended while the server was stopping, whose claims the stop
    /// releases itself once their zones are saved (a task per session would die
    /// with the process). At most one per admitted session.
    ended_at_stop: Mutex<Vec<Arc<ClientLink>>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            connections: Arc::default(),
            admitted: Arc::default(),
            busy_answers: AtomicU64::default(),
            closed_by_code: std::array::from_fn(|_| AtomicU64::default()),
            next_session: AtomicU64::new(rand::random::<u64>() >> 2),
            by_name: Mutex::default(),
            ended_at_stop: Mutex::default(),
        }
    }
}

/// Decrements a counter when dropped, so every exit path gives its slot back.
#[derive(Debug)]
pub(super) struct CountGuard(Arc<AtomicUsize>);

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Sessions {
    /// Counts a connection for its lifetime.
    pub(super) fn connection_opened(&self) -> CountGuard {
        self.connections.fetch_add(1, Ordering::AcqRel);
        CountGuard(Arc::clone(&self.connections))
    }

    /// Connections open (authenticated or not).
    pub(super) fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Sessions admitted and not yet ended.
    pub(super) fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Connections told `Busy`.
    pub(super) fn busy_answers(&self) -> u64 {
        self.busy_answers.load(Ordering::Relaxed)
    }

    /// Counts a connection the server closed with `code`.
    pub(super) fn count_close(&self, code: ErrorCode) {
        if let Some(counter) = self.closed_by_code.get(code as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections closed by the server so far, per code (codes never used are left out).
    pub(super) fn closes(&self) -> Vec<(ErrorCode, u64)> {
        (0..ERROR_CODES)
            .filter_map(|i| {
                let n = self.closed_by_code[i].load(Ordering::Relaxed);
                let code = ErrorCode::from_u16(u16::try_from(i).ok()?);
                (n > 0).then_some((code, n))
            })
            .collect()
    }

    /// Takes a session slot if fewer than `max` are taken.
    pub(super) fn try_admit(&self, max: usize) -> Option<CountGuard> {
        let taken = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            self.busy_answers.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(CountGuard(Arc::clone(&self.admitted)))
    }

    /// A fresh session id.
    pub(super) fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Keeps a session that ended while the server stops, for
    /// [`Self::take_ended_at_stop`].
    pub(super) fn ended_at_stop(&self, link: Arc<ClientLink>) {
        lock(&self.ended_at_stop).push(link);
    }

    /// The sessions that ended while the server stops, once.
    pub(super) fn take_ended_at_stop(&self) -> Vec<Arc<ClientLink>> {
        std::mem::take(&mut *lock(&self.ended_at_stop))
    }

    /// Makes `link` the session of its player, returning the one it replaces.
    pub(super) fn claim_name(&self, link: &Arc<ClientLink>) -> Option<Arc<ClientLink>> {
        lock(&self.by_name).insert(link.name().to_owned(), Arc::clone(link))
    }

    /// `player`'s current session if it is `session`.
    pub(super) fn session_of(&self, player: &str, session: SessionId) -> Option<Arc<ClientLink>> {
        lock(&self.by_name)
            .get(player)
            .filter(|link| link.session() == session)
            .cloned()
    }

    /// Forgets `link` if it is still its player's current session. By identity, not
    /// session id: a session that left for another node and came back has a new link
    /// under the same id, which the old one's end must not forget.
    pub(super) fn release_name(&self, link: &ClientLink) {
        let mut map = lock(&self.by_name);
        if map
            .get(link.name())
            .is_some_and(|current| std::ptr::eq(current.as_ref(), link))
        {
            map.remove(link.name());
        }
    }

    /// Whether `player` has a live session here other than `session`.
    pub(super) fn has_other_session(&self, player: &str, session: SessionId) -> bool {
        lock(&self.by_name).get(player).is_some_and(|link| {
            link.session() != session && !link.is_closed() && !link.moved_away()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonemesh_shared::ids::ZoneId;

    #[test]
    fn admission_stops_at_the_limit_and_frees_on_drop() {
        let s = Sessions::default();
        let a = s.try_admit(2).expect("first");
        let _b = s.try_admit(2).expect("second");
        assert!(s.try_admit(2).is_none());
        assert_eq!(s.busy_answers(), 1);
        drop(a);
        assert!(s.try_admit(2).is_some());
    }

    #[test]
    fn session_ids_grow_and_two_runs_start_apart() {
        let (a, b) = (Sessions::default(), Sessions::default());
        let first = a.next_session_id();
        assert!(a.next_session_id() > first, "ids grow within a run");
        // Two runs (two nodes, or one node restarted) draw independent 62-bit starts;
        // equal starts would mean the random source is broken.
        assert_ne!(first, b.next_session_id());
        assert!(first.0 <= 1 << 62, "room left before overflow");
    }

    #[test]
    fn newer_session_replaces_and_old_release_keeps_it() {
        let s = Sessions::default();
        let old = Arc::new(ClientLink::new(SessionId(1), "p".into(), ZoneId(0), 1200));
        let new = Arc::new(ClientLink::new(SessionId(2), "p".into(), ZoneId(0), 1200));
        assert!(s.claim_name(&old).is_none());
        let replaced = s.claim_name(&new).expect("old returned");
        assert_eq!(replaced.session(), SessionId(1));
        s.release_name(&old);
        assert!(
            lock(&s.by_name).contains_key("p"),
            "the newer session stays"
        );
        s.release_name(&new);
        assert!(lock(&s.by_name).is_empty());
    }
}
