//! A small fixed pool of PostgreSQL connections.
//!
//! Policy: `pool_size` slots, each holding at most one `tokio_postgres::Client` (opened
//! lazily, so an idle store holds one connection). A call takes the first free slot
//! starting from a round-robin index, or waits for that index's slot when all are busy;
//! the number of connections is therefore fixed and waiting callers queue on the slot's
//! mutex (bounded by the callers themselves, the store keeps no queue of its own).
//!
//! A slot whose connection broke (or whose call timed out mid-transaction) is emptied,
//! and the call fails with [`StoreError::ConnectionLost`] or [`StoreError::Timeout`]:
//! such a write may or may not have committed, so it is not retried here. The next call
//! on that slot reconnects. Serialization failures and deadlocks (`40001`, `40P01`)
//! abort the transaction with nothing written, so those are retried a few times.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::StoreError;

/// Attempts of one operation that keeps hitting serialization failures.
const MAX_ATTEMPTS: u32 = 4;
/// Base backoff between those attempts; attempt `n` waits `n` times this.
const RETRY_BACKOFF: Duration = Duration::from_millis(5);

/// What an operation on one connection fails with: a store-level verdict (fencing,
/// corrupt row) or a raw driver error that the pool classifies.
#[derive(Debug)]
pub(crate) enum OpError {
    Store(StoreError),
    Pg(tokio_postgres::Error),
}

impl From<StoreError> for OpError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<tokio_postgres::Error> for OpError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Pg(error)
    }
}

/// The future of one attempt of an operation on a connection.
pub(crate) type OpFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, OpError>> + Send + 'c>>;

/// Connection settings shared by every slot.
#[derive(Debug)]
pub(crate) struct PoolConfig {
    pub(crate) config: Config,
    /// The validated schema name, set as `search_path` on every connection.
    pub(crate) schema: String,
    /// Host, port and database, for errors (no credentials).
    pub(crate) target: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) op_timeout: Duration,
}

/// The connection pool.
#[derive(Debug)]
pub(crate) struct Pool {
    settings: PoolConfig,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool of `size` (≥ 1) lazily opened connections.
    pub(crate) fn new(settings: PoolConfig, size: usize) -> Self {
        assert!(size >= 1, "pool size validated to be at least 1");
        Self {
            settings,
            slots: (0..size).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The schema this pool works in.
    pub(crate) fn schema(&self) -> &str {
        &self.settings.schema
    }

    /// Runs `op` on a connection, retrying serialization failures.
    pub(crate) async fn run<T, F>(&self, mut op: F) -> Result<T, StoreError>
    where
        F: for<'c> FnMut(&'c mut Client) -> OpFuture<'c, T>,
    {
        let mut attempt = 1;
        loop {
            let mut slot = self.acquire().await;
            let outcome = self.attempt(&mut slot, &mut op).await;
            match outcome {
                Err(Verdict::Retry(_)) if attempt < MAX_ATTEMPTS => {
                    drop(slot);
                    tokio::time::sleep(RETRY_BACKOFF * attempt).await;
                    attempt += 1;
                }
                Err(Verdict::Retry(error) | Verdict::Fail(error)) => return Err(error),
                Ok(value) => return Ok(value),
            }
        }
    }

    /// One attempt of `op` on the connection in `slot`, reconnecting first if needed.
    async fn attempt<T, F>(&self, slot: &mut Option<Client>, op: &mut F) -> Result<T, Verdict>
    where
        F: for<'c> FnMut(&'c mut Client) -> OpFuture<'c, T>,
    {
        let client = self.ensure_connected(slot).await.map_err(Verdict::Fail)?;
        let outcome = tokio::time::timeout(self.settings.op_timeout, op(client)).await;
        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(OpError::Store(error))) => return Err(Verdict::Fail(error)),
            Ok(Err(OpError::Pg(error))) => error,
            Err(_elapsed) => {
                // The transaction may be half done on this connection: drop it.
                *slot = None;
                return Err(Verdict::Fail(StoreError::Timeout {
                    after_ms: duration_ms(self.settings.op_timeout),
                }));
            }
        };
        let closed = slot.as_ref().is_none_or(Client::is_closed);
        Err(classify(error, closed, slot))
    }

    /// A free slot if there is one, else the round-robin slot once it frees up.
    async fn acquire(&self) -> MutexGuard<'_, Option<Client>> {
        let n_slots = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n_slots;
        for offset in 0..n_slots {
            if let Ok(guard) = self.slots[(start + offset) % n_slots].try_lock() {
                return guard;
            }
        }
        self.slots[start].lock().await
    }

    /// The slot's client, (re)connecting when it is missing or closed.
    async fn ensure_connected<'s>(
        &self,
        slot: &'s mut Option<Client>,
    ) -> Result<&'s mut Client, StoreError> {
        let healthy = slot.as_ref().is_some_and(|client| !client.is_closed());
        if !healthy {
            *slot = None;
            *slot = Some(self.connect().await?);
        }
        slot.as_mut()
            .ok_or_else(|| StoreError::TaskFailed("connection slot empty after connect".into()))
    }

    /// Opens one connection, spawns its driver task and selects the schema.
    pub(crate) async fn connect(&self) -> Result<Client, StoreError> {
        let settings = &self.settings;
        let unreachable = |source: crate::error::BoxError| StoreError::Unreachable {
            target: settings.target.clone(),
            source,
        };
        let connecting = settings.config.connect(NoTls);
        let (client, connection) = tokio::time::timeout(settings.connect_timeout, connecting)
            .await
            .map_err(|_| {
                unreachable(
                    format!(
                        "no answer within {} ms",
                        duration_ms(settings.connect_timeout)
                    )
                    .into(),
                )
            })?
            .map_err(|error| unreachable(Box::new(error)))?;
        let target = settings.target.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%target, %error, "postgres connection ended");
            }
        });
        let search_path = format!("SET search_path TO \"{}\"", settings.schema);
        client
            .batch_execute(&search_path)
            .await
            .map_err(|error| unreachable(Box::new(error)))?;
        Ok(client)
    }
}

/// How a failed attempt ends.
#[derive(Debug)]
enum Verdict {
    /// Nothing was written; running the operation again may succeed.
    Retry(StoreError),
    /// Final.
    Fail(StoreError),
}

/// Classifies a driver error. A broken connection empties the slot so the next call
/// reconnects.
fn classify(error: tokio_postgres::Error, closed: bool, slot: &mut Option<Client>) -> Verdict {
    let code = error.code().cloned();
    if closed || error.is_closed() || code.as_ref().is_some_and(is_connection_failure) {
        *slot = None;
        return Verdict::Fail(StoreError::ConnectionLost {
            source: Box::new(error),
        });
    }
    let source = Box::new(error);
    if code.as_ref().is_some_and(is_retryable) {
        return Verdict::Retry(StoreError::Database { source });
    }
    Verdict::Fail(StoreError::Database { source })
}

/// Serialization failures and deadlocks roll the transaction back entirely.
fn is_retryable(code: &SqlState) -> bool {
    *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// Class 08 (connection exception) and the shutdown codes of class 57.
fn is_connection_failure(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
}

/// A duration in whole milliseconds, saturating.
fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rolled_back_transactions_are_retried() {
        assert!(is_retryable(&SqlState::T_R_SERIALIZATION_FAILURE));
        assert!(is_retryable(&SqlState::T_R_DEADLOCK_DETECTED));
        assert!(!is_retryable(&SqlState::UNIQUE_VIOLATION));
        assert!(is_connection_failure(&SqlState::ADMIN_SHUTDOWN));
        assert!(is_connection_failure(&SqlState::CONNECTION_FAILURE));
        assert!(!is_connection_failure(&SqlState::T_R_SERIALIZATION_FAILURE));
    }

    #[test]
    fn durations_saturate() {
        assert_eq!(duration_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }
}
