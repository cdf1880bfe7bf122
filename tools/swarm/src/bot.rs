//! One bot: a tokio task driving real SDK sessions (a series of them when churning)
//! over a shared client endpoint. It connects, sends inputs on its fixed schedule,
//! follows snapshots and records what it measures; the measuring itself is done by the
//! sans-IO parts ([`InputSchedule`], [`InputTracker`], [`JitterTracker`], [`Steering`]).
//!
//! A `Client` has no background task, so the session loop selects between the stop
//! signal, the churn deadline, the next input slot and `wait_snapshot` (cancel-safe);
//! every wait in here is bounded by the run's stop time.

use crate::config::Credentials;
use crate::latency::{InputTracker, JitterTracker, PENDING_INPUTS_MAX};
use crate::metrics::{Metric, MetricSet, Recorder};
use crate::schedule::InputSchedule;
use crate::steering::{Behavior, Steering};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use zonemesh_client::{Client, ClientError, DisconnectReason, Event, ReplicaScope, quinn};

/// Most sessions one bot runs; churn periods of at least 1 s over at most an hour stay
/// far below it.
const SESSIONS_PER_BOT_MAX: u32 = 10_000;
/// A churning bot waits this long between leaving and rejoining, so the server has
/// processed the leave and the rejoin is a fresh join rather than a replacement.
const CHURN_PAUSE: Duration = Duration::from_millis(500);
/// Sessions shorter than this give no per-second rates (too noisy to mean anything).
const RATE_WINDOW_MIN: Duration = Duration::from_millis(500);
/// Upper bound on a polite close (the SDK lingers at most about a second).
const CLOSE_MAX: Duration = Duration::from_secs(2);

/// The end of the run, as a bot sees it: a deadline plus an early-stop signal (Ctrl-C,
/// or the run ending before the deadline).
#[derive(Debug, Clone)]
pub struct Stop {
    at: tokio::time::Instant,
    signal: watch::Receiver<bool>,
}

impl Stop {
    /// Stops at `at`, or when `signal` turns true or its sender goes away.
    pub fn new(at: Instant, signal: watch::Receiver<bool>) -> Self {
        Self {
            at: tokio::time::Instant::from_std(at),
            signal,
        }
    }

    /// Completes when the run is over. Cancel-safe.
    pub async fn wait(&mut self) {
        tokio::select! {
            () = tokio::time::sleep_until(self.at) => {}
            // An error means the sender is gone: the run is over either way.
            _ = self.signal.wait_for(|stopped| *stopped) => {}
        }
    }
}

/// Everything one bot needs.
#[derive(Debug)]
pub struct BotContext {
    /// Index in the run (0-based).
    pub index: u32,
    /// Player name (unique in the run).
    pub player: String,
    /// The server this bot starts on (its place in the round-robin spread).
    pub server: SocketAddr,
    /// Every server of the run: a connect that fails on `server` tries the others.
    pub all_servers: Arc<[SocketAddr]>,
    /// The shared client endpoint.
    pub endpoint: quinn::Endpoint,
    /// Certificate and token secret.
    pub credentials: Arc<Credentials>,
    /// Where measurements go.
    pub recorder: Recorder,
    /// What the bot does.
    pub behavior: Behavior,
    /// Time between inputs.
    pub input_period: Duration,
    /// Mean session length when churning.
    pub churn_period: Duration,
    /// Connect deadline per session, retries included.
    pub connect_deadline: Duration,
    /// Which entities the bot's replica keeps.
    pub replica_scope: ReplicaScope,
    /// When the bot is meant to connect (its place in the ramp).
    pub start_at: Instant,
    /// The end of the run.
    pub stop: Stop,
    /// Steering seed.
    pub seed: u64,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionEnd {
    /// The run is over.
    Stopped,
    /// Churn: leave now and rejoin.
    Churn,
    /// The server or the network ended it, for this reason (`code/kind`); `rejoin`
    /// when connecting again may help (the node stopped or died, the zone moved), and
    /// the bot then joins again at once, through any server of the run.
    Lost { reason: String, rejoin: bool },
}

/// Runs one bot to the end of the run (or until its session is lost).
pub async fn run(mut ctx: BotContext) {
    let mut steering = Steering::new(ctx.behavior, ctx.seed);
    let mut intended = ctx.start_at;
    let mut connected_once = false;
    // Where the bot's previous session was, to count a rejoin landing elsewhere.
    let mut last_node = None;
    for _ in 0..SESSIONS_PER_BOT_MAX {
        if !ctx.wait_until(intended).await {
            break;
        }
        let Some(client) = ctx.connect(intended, !connected_once).await else {
            break;
        };
        ctx.record_route(&client, &mut last_node);
        if !connected_once {
            connected_once = true;
            ctx.recorder.count(|c| c.bots_connected += 1);
        }
        let length =
            (ctx.behavior == Behavior::Churn).then(|| steering.session_length(ctx.churn_period));
        let phase = steering.input_phase(ctx.input_period);
        let session = Session::new(&mut ctx, client, intended, phase);
        match session.drive(&mut steering, length).await {
            SessionEnd::Churn => intended = Instant::now() + CHURN_PAUSE,
            SessionEnd::Lost { rejoin: true, .. } => intended = Instant::now(),
            SessionEnd::Stopped | SessionEnd::Lost { .. } => break,
        }
    }
    if !connected_once {
        ctx.recorder.count(|c| c.bots_failed += 1);
    }
}

impl BotContext {
    /// Sleeps until `at`; false if the run ended first.
    async fn wait_until(&mut self, at: Instant) -> bool {
        tokio::select! {
            biased;
            () = self.stop.wait() => false,
            () = tokio::time::sleep_until(at.into()) => true,
        }
    }

    /// One connect (the SDK retries within the deadline), timed from `intended`.
    /// `first` tells whether this is the bot's first session: a first connect cut short
    /// by the end of the run means the bot never got in (an error), a churn rejoin cut
    /// short is just a session that did not happen.
    async fn connect(&mut self, intended: Instant, first: bool) -> Option<Client> {
        let config =
            match self
                .credentials
                .client_config(self.server, &self.player, self.connect_deadline)
            {
                Ok(mut c) => {
                    c.replica_scope = self.replica_scope;
                    c.other_servers = self
                        .all_servers
                        .iter()
                        .copied()
                        .filter(|a| *a != self.server)
                        .collect();
                    c
                }
                Err(e) => return self.failed("config", &e),
            };
        let result = tokio::select! {
            biased;
            () = self.stop.wait() => None,
            r = Client::connect_with(&self.endpoint, config) => Some(r),
        };
        match result {
            Some(Ok(client)) => {
                self.recorder.with(|set| {
                    set.record_duration(Metric::Connect, intended.elapsed());
                    set.counters.sessions += 1;
                });
                self.recorder.session_opened();
                Some(client)
            }
            Some(Err(e)) => self.failed("connect", &e),
            None if first => {
                self.recorder
                    .count(|c| c.error("connect/unfinished_at_stop"));
                None
            }
            None => None,
        }
    }

    /// Records how the session got to its node: the SDK's redirects and node changes
    /// while connecting, plus one node change when it landed elsewhere than the bot's
    /// previous session (`last_node`, updated here).
    fn record_route(&self, client: &Client, last_node: &mut Option<SocketAddr>) {
        let node = client.remote_address();
        let moved = last_node.replace(node).is_some_and(|last| last != node);
        self.recorder.count(|c| {
            c.redirects += u64::from(client.redirects_followed());
            c.node_changes += u64::from(client.node_changes()) + u64::from(moved);
            c.session_on(&node.to_string());
        });
    }

    fn failed(&self, phase: &str, e: &ClientError) -> Option<Client> {
        tracing::debug!(bot = self.index, player = %self.player, error = %e, "{phase} failed");
        let kind = format!("{phase}/{}", error_kind(e));
        self.recorder.count(|c| c.error(&kind));
        None
    }
}

/// One connected session and its trackers.
struct Session<'a> {
    ctx: &'a mut BotContext,
    client: Client,
    /// When the session was meant to start connecting (the origin of connect and
    /// first-snapshot times).
    intended: Instant,
    connected_at: Instant,
    schedule: InputSchedule,
    tracker: InputTracker,
    jitter: JitterTracker,
    seen_snapshot: bool,
    /// Reused for draining events; never longer than the SDK's event queue (64 + 1).
    events: Vec<Event>,
}

impl<'a> Session<'a> {
    /// A session connected just now, meant to start at `intended`, sending its first
    /// input `phase` from now.
    fn new(ctx: &'a mut BotContext, client: Client, intended: Instant, phase: Duration) -> Self {
        let connected_at = Instant::now();
        let period = ctx.input_period;
        let tick_hz = client.tick_hz();
        Self {
            ctx,
            client,
            intended,
            connected_at,
            schedule: InputSchedule::new(connected_at + phase, period),
            tracker: InputTracker::new(period, PENDING_INPUTS_MAX),
            jitter: JitterTracker::new(tick_hz),
            seen_snapshot: false,
            events: Vec::new(),
        }
    }

    /// Plays until the run stops, the churn length passes, or the session is lost.
    async fn drive(mut self, steering: &mut Steering, length: Option<Duration>) -> SessionEnd {
        let churn_at = length.map(|l| tokio::time::Instant::from_std(self.connected_at + l));
        let end = loop {
            let next_input = tokio::time::Instant::from_std(self.schedule.next_due());
            // Biased: stopping beats everything, and inputs beat snapshots so a flood of
            // snapshots cannot push the bot off its input schedule.
            tokio::select! {
                biased;
                () = self.ctx.stop.wait() => break SessionEnd::Stopped,
                () = sleep_until(churn_at) => break SessionEnd::Churn,
                () = tokio::time::sleep_until(next_input) => self.send_due(steering),
                r = self.client.wait_snapshot() => match r {
                    Ok(()) => self.on_snapshot(),
                    Err(e) => break SessionEnd::Lost {
                        reason: self.lost_reason(&e),
                        rejoin: self
                            .client
                            .disconnect_reason()
                            .is_some_and(DisconnectReason::can_reconnect),
                    },
                },
            }
        };
        self.finish(end).await
    }

    /// Sends one input standing for every slot due now.
    fn send_due(&mut self, steering: &mut Steering) {
        let now = Instant::now();
        let Some(due) = self.schedule.poll_due(now) else {
            return;
        };
        let own = self
            .client
            .replica()
            .get(self.client.player())
            .map(|e| e.position);
        let result = self.client.send_input(steering.velocity(now, own), 0);
        let tracker = &mut self.tracker;
        self.ctx.recorder.with(|set| {
            set.counters
                .errors_n("input/schedule_slots_skipped", due.n_skipped);
            match result {
                Ok(seq) => {
                    set.counters.inputs_sent += 1;
                    let n_evicted = tracker.handle_sent(seq, &due);
                    set.counters
                        .errors_n("input/slots_never_acknowledged", n_evicted.into());
                }
                // The session has ended; the next `wait_snapshot` reports why.
                Err(ClientError::Closed { .. }) => {}
                Err(e) => set
                    .counters
                    .error(&format!("send_input/{}", error_kind(&e))),
            }
        });
    }

    /// Records what the snapshot(s) just applied tell: first snapshot, jitter, inputs
    /// now visible, zone changes.
    fn on_snapshot(&mut self) {
        let now = Instant::now();
        let first = !std::mem::replace(&mut self.seen_snapshot, true);
        let jitter = (self.client.replica().latest_tick())
            .and_then(|tick| self.jitter.handle_snapshot(tick, now));
        // The cheap accessor: `stats()` would also lock quinn's connection state.
        let input_ack = (!self.tracker.is_empty()).then(|| self.client.last_input_ack());
        self.events.clear();
        self.client.drain_events(&mut self.events);
        let zone_changes = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::ZoneChanged { .. }))
            .count() as u64;
        // From the intended start, like connect time: the first snapshot usually rides
        // right behind `Welcome` (both go out on the zone's tick), so timing it from
        // `Welcome` would say nothing.
        let since_start = now.saturating_duration_since(self.intended);
        let tracker = &mut self.tracker;
        self.ctx.recorder.with(|set| {
            if first {
                set.record_duration(Metric::FirstSnapshot, since_start);
            }
            if let Some(j) = jitter {
                set.record_duration(Metric::Jitter, j);
            }
            if let Some(ack) = input_ack {
                record_acknowledged(set, tracker, ack, now);
            }
            set.counters.zone_changes += zone_changes;
        });
    }

    fn lost_reason(&self, e: &ClientError) -> String {
        match self.client.disconnect_reason() {
            Some(reason) => reason_key(reason),
            None => format!("error/{}", error_kind(e)),
        }
    }

    /// Records the session's rates and disconnect, and closes it politely unless the
    /// other side already ended it.
    async fn finish(self, end: SessionEnd) -> SessionEnd {
        let stats = self.client.stats();
        let length = self.connected_at.elapsed();
        // Each move is one redirect followed and one node change (as the SDK counts).
        let moves = u64::from(self.client.moves());
        self.ctx.recorder.with(|set| {
            set.counters.moves += moves;
            set.counters.redirects += moves;
            set.counters.node_changes += moves;
            if length >= RATE_WINDOW_MIN {
                let secs = length.as_secs_f64();
                let per_s = |n: u64| (n as f64 / secs).round() as u64;
                set.record(
                    Metric::SnapshotsPerSecondMilli,
                    per_s(stats.snapshots * 1000),
                );
                set.record(Metric::BytesDownPerSecond, per_s(stats.bytes_down));
                set.record(Metric::BytesUpPerSecond, per_s(stats.bytes_up));
            }
            if let SessionEnd::Lost { reason, .. } = &end {
                set.counters.disconnect(reason);
            }
        });
        self.ctx.recorder.session_closed();
        if !matches!(end, SessionEnd::Lost { .. }) {
            let _ = tokio::time::timeout(CLOSE_MAX, self.client.close()).await;
        }
        end
    }
}

/// Resolves the inputs `ack` covers into latency samples.
fn record_acknowledged(set: &mut MetricSet, tracker: &mut InputTracker, ack: u32, now: Instant) {
    let n = tracker.handle_ack(ack, now, |latency| {
        set.record_duration(Metric::InputToVisible, latency);
    });
    set.counters.inputs_acknowledged += n as u64;
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The disconnect-map key: the server's code and who ended it, e.g. `SlowClient/Server`.
pub fn reason_key(reason: &DisconnectReason) -> String {
    format!("{:?}/{:?}", reason.code, reason.kind)
}

/// A short, stable name for an SDK error, for the error counters (detail goes to the
/// debug log).
pub fn error_kind(e: &ClientError) -> String {
    match e {
        ClientError::DeadlineExceeded { attempts, last } => {
            format!(
                "deadline_exceeded({} after {attempts} attempts)",
                simple_kind(last)
            )
        }
        ClientError::Rejected { code, .. } => format!("rejected({code:?})"),
        ClientError::Closed { reason } => format!("closed({})", reason_key(reason)),
        other => simple_kind(other).to_owned(),
    }
}

fn simple_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Io { .. } => "io",
        ClientError::Config(_) => "config",
        ClientError::Tls(_) => "tls",
        ClientError::Connect(_) => "cannot_start_connection",
        ClientError::Connection(_) => "connection_failed",
        ClientError::Timeout(_) => "attempt_timeout",
        ClientError::DeadlineExceeded { .. } => "deadline_exceeded",
        ClientError::TooManyRedirects { .. } => "too_many_redirects",
        ClientError::Rejected { .. } => "rejected",
        ClientError::Unavailable(_) => "unavailable",
        ClientError::Protocol(_) => "protocol",
        ClientError::UnexpectedMessage(_) => "unexpected_message",
        ClientError::Closed { .. } => "closed",
        ClientError::Datagram(_) => "datagram",
        ClientError::Write(_) => "write",
        ClientError::Read(_) => "read",
        ClientError::InvalidInput(_) => "invalid_input",
        ClientError::BadDevData { .. } => "bad_dev_data",
        ClientError::Token(_) => "token",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonemesh_client::{DisconnectKind, ErrorCode};

    #[test]
    fn error_kinds_are_short_and_stable() {
        let last = Box::new(ClientError::Timeout(Duration::from_secs(3)));
        let e = ClientError::DeadlineExceeded { attempts: 4, last };
        assert_eq!(
            error_kind(&e),
            "deadline_exceeded(attempt_timeout after 4 attempts)"
        );
        let e = ClientError::Rejected {
            code: ErrorCode::AuthFailed,
            message: "expired".into(),
        };
        assert_eq!(error_kind(&e), "rejected(AuthFailed)");
        let reason = DisconnectReason::new(ErrorCode::SlowClient, "slow", DisconnectKind::Server);
        assert_eq!(reason_key(&reason), "SlowClient/Server");
        assert_eq!(
            error_kind(&ClientError::Closed { reason }),
            "closed(SlowClient/Server)"
        );
    }
}
