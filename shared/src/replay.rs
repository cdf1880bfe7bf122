//! Replay guard: remembers the nonces of admitted single-use tokens until the tokens
//! expire, so each token is admitted at most once. Sans-IO: the time is passed in.
//!
//! Bounded, with this policy: a nonce is forgotten once its token has expired (it can
//! no longer be admitted then, so forgetting it is safe); when the guard holds
//! `capacity` unexpired nonces, a new one is refused with [`ReplayError::Full`] rather
//! than making room by forgetting a live nonce (refusing is safe, forgetting would let
//! that token be replayed). Callers size `capacity` as at least the rate of admitted
//! tokens times their lifetime.

use std::collections::{BTreeSet, HashSet};

use thiserror::Error;

/// Why a nonce was refused; nothing was remembered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    /// The nonce was admitted before and its token has not expired.
    #[error("nonce already used")]
    Replayed,
    /// The token has expired by the guard's clock (the latest time it was given).
    #[error("token expired")]
    Expired,
    /// The guard already holds `capacity` unexpired nonces.
    #[error("replay guard full ({capacity} unexpired nonces)")]
    Full {
        /// The guard's capacity.
        capacity: usize,
    },
}

/// Remembers admitted nonces until their expiry; see the [module docs](self).
///
/// The guard's clock is the latest `now` it was given and never runs backwards: had it
/// followed a wall clock stepping back, a nonce forgotten at the later time would be
/// admitted again while its token looked unexpired. A clock that jumps forward by
/// mistake therefore makes the guard refuse tokens as expired until real time catches
/// up, which is safe.
#[derive(Debug)]
pub struct ReplayGuard {
    /// Most nonces remembered at once.
    capacity: usize,
    /// The guard's clock: the latest time seen, Unix milliseconds.
    now_unix_ms: u64,
    /// `(expires_unix_ms, nonce)` of every remembered nonce, soonest expiry first, so
    /// forgetting the expired ones touches only those.
    by_expiry: BTreeSet<(u64, u64)>,
    /// The remembered nonces, for the replay check; the same set as in `by_expiry`.
    nonces: HashSet<u64>,
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` unexpired nonces.
    ///
    /// # Panics
    /// If `capacity` is zero (a configuration error: the guard would refuse everything).
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a replay guard needs room for one nonce");
        Self {
            capacity,
            now_unix_ms: 0,
            by_expiry: BTreeSet::new(),
            nonces: HashSet::new(),
        }
    }

    /// Admits `nonce` of a token expiring at `expires_unix_ms` and remembers it until
    /// then, or refuses it (expired, already used, or the guard is full).
    pub fn check_and_remember(
        &mut self,
        nonce: u64,
        expires_unix_ms: u64,
        now_unix_ms: u64,
    ) -> Result<(), ReplayError> {
        self.forget_expired(now_unix_ms);
        if expires_unix_ms <= self.now_unix_ms {
            return Err(ReplayError::Expired);
        }
        if self.nonces.contains(&nonce) {
            return Err(ReplayError::Replayed);
        }
        if self.nonces.len() >= self.capacity {
            return Err(ReplayError::Full {
                capacity: self.capacity,
            });
        }
        self.nonces.insert(nonce);
        self.by_expiry.insert((expires_unix_ms, nonce));
        debug_assert_eq!(self.nonces.len(), self.by_expiry.len());
        Ok(())
    }

    /// Whether `nonce` was admitted and has not expired yet (as of the guard's clock).
    pub fn contains(&self, nonce: u64) -> bool {
        self.nonces.contains(&nonce)
    }

    /// Advances the guard's clock to `now_unix_ms` (if later) and forgets every nonce
    /// whose token has expired by then. [`check_and_remember`](Self::check_and_remember)
    /// does this itself; call it to release memory when no tokens arrive.
    pub fn forget_expired(&mut self, now_unix_ms: u64) {
        self.now_unix_ms = self.now_unix_ms.max(now_unix_ms);
        // Bounded: each iteration removes one of at most `capacity` entries.
        while let Some(&(expires_unix_ms, nonce)) = self.by_expiry.first() {
            if expires_unix_ms > self.now_unix_ms {
                break;
            }
            self.by_expiry.pop_first();
            let was_remembered = self.nonces.remove(&nonce);
            assert!(was_remembered, "both indexes hold the same nonces");
        }
    }

    /// Nonces remembered now (some may have expired since the last call).
    pub fn len(&self) -> usize {
        self.nonces.len()
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.nonces.is_empty()
    }

    /// Most nonces remembered at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
