//! The store's error type: one enum for both backends, so callers handle fencing,
//! limits and outages the same way whatever the store is.

use std::path::PathBuf;

/// A boxed error from a backend library, kept as the `source` of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The write carried an epoch older than the zone's latest: a newer owner exists.
    /// Nothing was written; the caller must stop acting as the zone's owner.
    #[error("stale epoch for zone {zone}: attempted {attempted}, current {current}")]
    StaleEpoch {
        /// The zone written to.
        zone: u32,
        /// The zone's latest epoch.
        current: u64,
        /// The epoch the write carried.
        attempted: u64,
    },
    /// The write carried an epoch the store never granted (the zone was never activated,
    /// or the epoch is newer than the latest). This is a caller bug; nothing was written.
    #[error("epoch {attempted} was never granted for zone {zone} (latest: {current:?})")]
    EpochNotGranted {
        /// The zone written to.
        zone: u32,
        /// The zone's latest epoch, `None` if it was never activated.
        current: Option<u64>,
        /// The epoch the write carried.
        attempted: u64,
    },
    /// An input exceeded a limit of [`limits`](crate::limits); nothing was written.
    #[error("{what} too large: {size} > {max}")]
    TooLarge {
        /// What was too large (e.g. "players per batch", "zone state bytes").
        what: &'static str,
        /// The offending size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An input was malformed (empty name, non-finite position, wrong zone, duplicate
    /// player in a batch); nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store spec is neither empty, `embedded`, nor a `postgres://` URL, or the URL
    /// does not parse.
    #[error("invalid store spec {spec:?}: {reason}")]
    InvalidSpec {
        /// The spec as given (with any password removed).
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Stored data failed to decode or failed its integrity check. Never retried.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// A file or directory operation failed.
    #[error("i/o error on {path}: {source}", path = path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded database file is already open (in this or another process).
    #[error("database file {path} is already open", path = path.display())]
    AlreadyOpen {
        /// The database file.
        path: PathBuf,
    },
    /// The database could not be reached (connect failed or timed out).
    #[error("database {target} unreachable: {source}")]
    Unreachable {
        /// Host, port and database name (no credentials).
        target: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The connection broke during this call. The call may or may not have taken effect
    /// (a commit can be lost in flight); the next call reconnects.
    #[error("database connection lost: {source}")]
    ConnectionLost {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The operation did not finish within the configured time. As with
    /// [`ConnectionLost`](Self::ConnectionLost), it may or may not have taken effect.
    #[error("store operation timed out after {after_ms} ms")]
    Timeout {
        /// The timeout that expired.
        after_ms: u64,
    },
    /// The stored schema is newer than this build understands; refusing to touch it.
    #[error("store schema version {found} is newer than supported {supported}")]
    SchemaTooNew {
        /// The version found in the store.
        found: u64,
        /// The newest version this build knows.
        supported: u64,
    },
    /// Any other error the database reported.
    #[error("database error: {source}")]
    Database {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The store's clock read a time before the Unix epoch or beyond what the store
    /// keeps (`i64::MAX` ms): lease times would be meaningless. Nothing was written.
    #[error("store clock unusable: {0}")]
    Clock(String),
    /// A blocking task running a transaction failed (panicked or was cancelled).
    #[error("store task failed: {0}")]
    TaskFailed(String),
}

impl StoreError {
    /// Whether this is a fencing rejection ([`StaleEpoch`](Self::StaleEpoch) or
    /// [`EpochNotGranted`](Self::EpochNotGranted)).
    pub fn is_fencing(&self) -> bool {
        matches!(self, Self::StaleEpoch { .. } | Self::EpochNotGranted { .. })
    }

    /// Whether the caller may retry the same call later with a chance of success:
    /// outages and timeouts, not fencing, limits or corruption.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::ConnectionLost { .. } | Self::Timeout { .. }
        )
    }

    /// A [`TooLarge`](Self::TooLarge) error; sizes are widened to `u64` here once.
    pub(crate) fn too_large(what: &'static str, size: usize, max: usize) -> Self {
        Self::TooLarge {
            what,
            size: u64::try_from(size).unwrap_or(u64::MAX),
            max: u64::try_from(max).unwrap_or(u64::MAX),
        }
    }
}
