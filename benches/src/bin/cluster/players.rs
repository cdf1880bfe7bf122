//! The failover benchmark's players: SDK clients that stay connected, reconnecting
//! (through any node, following redirects) whenever their session ends, and record
//! when each session first showed them their own entity. A player sends no input, so
//! it stays in the zone it spawned in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use zonemesh_client::{Client, ClientConfig};

/// Overall time one connect may take, retries and redirects included.
const CONNECT_DEADLINE: Duration = Duration::from_secs(15);
/// A session whose node went silent ends after this (a SIGKILLed node sends no
/// close; the settings of `server/tests/cluster_processes.rs`).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Keep-alives, well inside the idle timeout.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Pause after a connect that failed before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The players' addresses of the cluster's nodes, by node index; replaced when a
/// node restarts (it listens on a new port).
pub(crate) type Addresses = Arc<Mutex<Vec<SocketAddr>>>;

/// What one player's task reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlayerState {
    /// The zone of its latest session (the zone it spawned in).
    pub(crate) zone: Option<u32>,
    /// When its latest session began (`Welcome`), if one is open.
    pub(crate) session_since: Option<Instant>,
    /// When a session last first showed the player its own entity.
    pub(crate) ready_at: Option<Instant>,
    /// Sessions begun.
    pub(crate) sessions: u64,
    /// Why the latest connect failed, if it did (for error messages).
    pub(crate) last_error: Option<String>,
    /// When the latest session ended.
    pub(crate) lost_at: Option<Instant>,
    /// How the latest session was reached.
    pub(crate) route: Route,
}

/// How a session was reached: the connects since the session before it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Route {
    /// Connects that failed (each after the SDK's own retries) before this one.
    pub(crate) failed_connects: u32,
    /// How long the successful connect took, to `Welcome`.
    pub(crate) connect: Duration,
    /// Redirects it followed.
    pub(crate) redirects: u32,
}

impl PlayerState {
    /// True when a session is open and has shown the player its own entity.
    pub(crate) fn playing(&self) -> bool {
        matches!((self.session_since, self.ready_at), (Some(s), Some(r)) if r >= s)
    }
}

/// The players' tasks; aborted (their connections dropped) when dropped.
#[derive(Debug)]
pub(crate) struct Players {
    /// Each player's name and state, in start order.
    pub(crate) states: Vec<(String, Arc<Mutex<PlayerState>>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Players {
    /// Starts one task per name; player `k` begins at node `k % nodes`.
    pub(crate) fn start(
        runtime: &Runtime,
        names: &[String],
        shared: &Path,
        addrs: &Addresses,
    ) -> Self {
        let mut states = Vec::new();
        let mut tasks = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let state = Arc::new(Mutex::new(PlayerState::default()));
            let player = Player {
                name: name.clone(),
                shared: shared.to_owned(),
                addrs: Arc::clone(addrs),
                state: Arc::clone(&state),
            };
            tasks.push(runtime.spawn(player.play(k)));
            states.push((name.clone(), state));
        }
        Self { states, tasks }
    }

    /// A copy of every player's state.
    pub(crate) fn snapshot(&self) -> Vec<PlayerState> {
        self.states.iter().map(|(_, s)| lock(s).clone()).collect()
    }
}

impl Drop for Players {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One player's task.
struct Player {
    name: String,
    shared: PathBuf,
    addrs: Addresses,
    state: Arc<Mutex<PlayerState>>,
}

impl Player {
    /// Connects and plays, again and again, until aborted.
    async fn play(self, first: usize) {
        let mut start = first;
        let mut failed_connects = 0;
        loop {
            let addrs = lock(&self.addrs).clone();
            let Some(config) = self.config(&addrs, start) else {
                lock(&self.state).last_error = Some("no address or identity files".into());
                return;
            };
            let began = Instant::now();
            let limit = CONNECT_DEADLINE + Duration::from_secs(5);
            let failure = match tokio::time::timeout(limit, Client::connect(config)).await {
                Ok(Ok(client)) => {
                    let route = Route {
                        failed_connects,
                        connect: began.elapsed(),
                        redirects: client.redirects_followed(),
                    };
                    failed_connects = 0;
                    start = self.session(client, route, &addrs).await;
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connect timed out".to_owned(),
            };
            failed_connects += 1;
            lock(&self.state).last_error = Some(failure);
            start = (start + 1) % addrs.len().max(1);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Starts at node `start` (modulo their number), then the others in order (the SDK
    /// moves on by itself when a node does not answer). `None` when there are no
    /// addresses or the identity files cannot be read.
    fn config(&self, addrs: &[SocketAddr], start: usize) -> Option<ClientConfig> {
        let n = addrs.len();
        let first = *addrs.get(start % n.max(1))?;
        let mut config = ClientConfig::from_dev_data(first, &self.shared, &self.name).ok()?;
        config.other_servers = (1..n).map(|k| addrs[(start + k) % n]).collect();
        config.connect_deadline = CONNECT_DEADLINE;
        config.idle_timeout = IDLE_TIMEOUT;
        config.keep_alive_interval = KEEP_ALIVE;
        Some(config)
    }

    /// Plays one session until it ends; returns the node to start the next at: the
    /// one after the node this session was on, which may be dead.
    async fn session(&self, mut client: Client, route: Route, addrs: &[SocketAddr]) -> usize {
        let node = client.remote_address();
        {
            let mut state = lock(&self.state);
            state.zone = Some(client.zone().0);
            state.session_since = Some(Instant::now());
            state.sessions += 1;
            state.last_error = None;
            state.route = route;
        }
        let mut seen_self = false;
        // Ends when the connection does: closed by the node, or silent for the idle
        // timeout, so never waits unbounded.
        while client.wait_snapshot().await.is_ok() {
            if !seen_self && client.replica().get(client.player()).is_some() {
                seen_self = true;
                lock(&self.state).ready_at = Some(Instant::now());
            }
        }
        {
            let mut state = lock(&self.state);
            state.session_since = None;
            state.lost_at = Some(Instant::now());
        }
        addrs
            .iter()
            .position(|a| *a == node)
            .map_or(0, |i| (i + 1) % addrs.len())
    }
}

/// Locks `m`, taking the data of a poisoned lock (a panicked task cannot leave a
/// `PlayerState` half-written: its fields are plain values).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playing_needs_an_open_session_that_showed_the_player() {
        let now = Instant::now();
        let later = now + Duration::from_millis(5);
        let mut s = PlayerState::default();
        assert!(!s.playing());
        s.session_since = Some(now);
        assert!(!s.playing());
        s.ready_at = Some(later);
        assert!(s.playing());
        // A new session, not yet showing the player: the old sighting does not count.
        s.session_since = Some(later + Duration::from_millis(1));
        assert!(!s.playing());
        s.session_since = None;
        assert!(!s.playing());
    }
}
