//! [`MovePlan`]: the sans-IO decisions of a mid-session move, that is what the client
//! does with each answer while it follows a `Redirect` its node sent after `Welcome`
//! (the servers handed the player to another node). Time and randomness are passed in.
//!
//! Policy, stricter than connecting because a failed move has a safe way out (a new
//! session from the last save, [`crate::Client::reconnect`]):
//! - `Welcome` for the session's player: switch to the new connection. `Welcome` for
//!   another player: the move failed.
//! - `Loading` / `Busy`: ask the same node again, on a fresh connection, after at
//!   least the server's hint ([`Backoff`] with the hint as floor), while the deadline
//!   allows.
//! - `Redirect`: follow it. Every redirect, the one that started the move included,
//!   counts against [`ClientConfig::max_redirects`].
//! - No answer within the attempt timeout, or a transport failure: ask the same node
//!   again with the same token after a backoff, while the deadline allows. A busy
//!   machine can take longer than one attempt to answer, and a retry cannot make
//!   things worse: a node that took the token's first use refuses a second one, and
//!   the move fails as it would have.
//! - `Error`, the deadline, or [`MOVE_ATTEMPTS_MAX`] attempts: the move failed.

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::connect::Failure;
use crate::error::ClientError;
use crate::route::{Route, RouteStats};
use crate::session::Welcome;
use rand::Rng;
use rand::rngs::StdRng;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zonemesh_shared::ids::NetId;

/// Most connection attempts one move makes, whatever the deadline: bounds the loop even
/// if a node keeps answering `Loading` with no delay.
pub(crate) const MOVE_ATTEMPTS_MAX: u32 = 32;

/// What the move does next.
pub(crate) enum MoveStep {
    /// Connect to the address a `Redirect` named, presenting its token, now.
    Follow {
        /// `host:port` or `ip:port`.
        addr: String,
        /// The token to present there.
        token: String,
    },
    /// Ask the same node again, on a fresh connection, after this delay.
    Retry(Duration),
    /// The move failed for this reason.
    Fail(ClientError),
}

impl fmt::Debug for MoveStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential: never print it.
        match self {
            Self::Follow { addr, .. } => f.debug_struct("Follow").field("addr", addr).finish(),
            Self::Retry(delay) => f.debug_tuple("Retry").field(delay).finish(),
            Self::Fail(error) => f.debug_tuple("Fail").field(error).finish(),
        }
    }
}

/// The decisions of one move, from the `Redirect` that starts it to a switch or a
/// failure.
///
/// Driving contract (what `connect::follow_move` does): start with
/// [`MovePlan::handle_redirect`] for the node's `Redirect`; carry out each
/// [`MoveStep`]; before each attempt ask [`MovePlan::next_attempt`] for its timeout
/// (an error ends the move); note completed handshakes in [`MovePlan::route_mut`];
/// hand a `Welcome` to [`MovePlan::handle_welcome`] and anything else to
/// [`MovePlan::handle_failure`].
#[derive(Debug)]
pub(crate) struct MovePlan<R = StdRng> {
    /// The session's player: the new node must welcome this entity.
    player: NetId,
    /// The configured time a move may take, for error messages.
    move_deadline: Duration,
    /// When the move gives up.
    deadline: Instant,
    /// Time allowed for one attempt.
    attempt_timeout: Duration,
    /// Redirects followed (with the hop limit) and nodes reached.
    route: Route,
    /// Waits between `Loading` / `Busy` answers.
    backoff: Backoff<R>,
    /// Attempts started.
    attempts: u32,
    /// Why the last retried attempt did not succeed, for the error when giving up.
    last: Option<ClientError>,
}

impl<R: Rng> MovePlan<R> {
    /// A plan for a move starting at `now` from the node at `here`.
    pub(crate) fn new(
        config: &ClientConfig,
        player: NetId,
        here: SocketAddr,
        now: Instant,
        rng: R,
    ) -> Self {
        let mut route = Route::new(config.max_redirects);
        // The session's node is where the route starts: reaching another is a change.
        route.handle_reached(here);
        Self {
            player,
            move_deadline: config.move_deadline,
            // A deadline too far to represent leaves no time rather than panicking.
            deadline: now.checked_add(config.move_deadline).unwrap_or(now),
            attempt_timeout: config.attempt_timeout,
            route,
            backoff: Backoff::new(config.backoff_initial, config.backoff_max, rng),
            attempts: 0,
            last: None,
        }
    }

    /// When the move gives up.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A `Redirect`, the one that starts the move or one a node answered: follow it
    /// unless that passes the hop limit.
    pub(crate) fn handle_redirect(&mut self, addr: String, token: String) -> MoveStep {
        match self.route.handle_redirect() {
            Ok(()) => MoveStep::Follow { addr, token },
            Err(error) => MoveStep::Fail(error),
        }
    }

    /// Time allowed for the next attempt: the attempt timeout, cut to what is left of
    /// the deadline. An error when nothing is left or the attempts are used up.
    pub(crate) fn next_attempt(&mut self, now: Instant) -> Result<Duration, ClientError> {
        let remaining = self.deadline.saturating_duration_since(now);
        if remaining.is_zero() || self.attempts >= MOVE_ATTEMPTS_MAX {
            let last = self.last.take();
            return Err(self.gave_up(last));
        }
        self.attempts += 1;
        Ok(self.attempt_timeout.min(remaining))
    }

    /// `Ok` when the new node welcomed the session's player. The new node holds the
    /// player's entity under the same id; any other id is not this session.
    pub(crate) fn handle_welcome(&self, welcome: Welcome) -> Result<(), ClientError> {
        if welcome.player == self.player {
            return Ok(());
        }
        Err(ClientError::UnexpectedMessage(format!(
            "the new node welcomed player {} instead of {}",
            welcome.player, self.player
        )))
    }

    /// An attempt that did not end in `Welcome`.
    pub(crate) fn handle_failure(&mut self, now: Instant, failure: Failure) -> MoveStep {
        match failure {
            Failure::Redirect { addr, token } => self.handle_redirect(addr, token),
            Failure::Busy(error, hint) | Failure::Wait(error, hint) => {
                self.retry_after(now, error, Some(hint))
            }
            Failure::Retry(error, hint) => self.retry_after(now, error, hint),
            Failure::Fatal(error) => MoveStep::Fail(error),
        }
    }

    /// Asks the same node again after at least `hint` (or the backoff alone), if that
    /// still ends in time.
    fn retry_after(
        &mut self,
        now: Instant,
        error: ClientError,
        hint: Option<Duration>,
    ) -> MoveStep {
        match self.backoff.next_delay_before(now, self.deadline, hint) {
            Some(delay) => {
                self.last = Some(error);
                MoveStep::Retry(delay)
            }
            None => MoveStep::Fail(self.gave_up(Some(error))),
        }
    }

    fn gave_up(&self, last: Option<ClientError>) -> ClientError {
        let last = last.unwrap_or(ClientError::Timeout(self.move_deadline));
        ClientError::DeadlineExceeded {
            attempts: self.attempts,
            last: Box::new(last),
        }
    }

    /// The route, for the attempts to note the nodes they reach.
    pub(crate) fn route_mut(&mut self) -> &mut Route {
        &mut self.route
    }

    /// Redirects followed and node changes so far.
    pub(crate) fn route_stats(&self) -> RouteStats {
        self.route.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Trust;
    use rand::SeedableRng;
    use zonemesh_shared::control::ErrorCode;
    use zonemesh_shared::ids::ZoneId;

    const MS: Duration = Duration::from_millis(1);
    const PLAYER: NetId = NetId(7);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn config() -> ClientConfig {
        let mut config = ClientConfig::new(addr(1), Trust::InsecureDev, "session-token");
        config.max_redirects = 3;
        config.attempt_timeout = 3000 * MS;
        config.backoff_initial = 100 * MS;
        config.backoff_max = 2000 * MS;
        config
    }

    fn plan(config: &ClientConfig, now: Instant) -> MovePlan<StdRng> {
        MovePlan::new(config, PLAYER, addr(1), now, StdRng::seed_from_u64(7))
    }

    fn welcome(player: NetId) -> Welcome {
        Welcome {
            player,
            zone: ZoneId(2),
            tick_hz: 20,
        }
    }

    fn loading(hint: Duration) -> Failure {
        Failure::Wait(ClientError::Unavailable("loading".into()), hint)
    }

    fn redirect(port: u16) -> Failure {
        Failure::Redirect {
            addr: addr(port).to_string(),
            token: format!("for-{port}"),
        }
    }

    #[test]
    fn the_starting_redirect_is_followed_and_the_new_node_is_a_node_change() {
        let t0 = Instant::now();
        let mut p = plan(&config(), t0);
        let step = p.handle_redirect("127.0.0.1:2".into(), "for-2".into());
        assert!(
            matches!(&step, MoveStep::Follow { addr, token } if addr == "127.0.0.1:2" && token == "for-2"),
            "{step:?}"
        );
        assert_eq!(p.next_attempt(t0).expect("time left"), 3000 * MS);
        p.route_mut().handle_reached(addr(2));
        p.handle_welcome(welcome(PLAYER)).expect("same player");
        let stats = p.route_stats();
        assert_eq!((stats.redirects_followed, stats.node_changes), (1, 1));
    }

    #[test]
    fn a_welcome_for_another_player_fails_the_move() {
        let p = plan(&config(), Instant::now());
        let err = p
            .handle_welcome(welcome(NetId(8)))
            .expect_err("other player");
        assert!(matches!(err, ClientError::UnexpectedMessage(_)), "{err:?}");
    }

    #[test]
    fn loading_and_busy_retry_the_same_node_after_at_least_the_hint() {
        let t0 = Instant::now();
        let mut p = plan(&config(), t0);
        let _ = p.handle_redirect("127.0.0.1:2".into(), "t".into());
        p.next_attempt(t0).expect("first attempt");
        let MoveStep::Retry(first) = p.handle_failure(t0, loading(500 * MS)) else {
            panic!("loading is retried");
        };
        assert!(first >= 500 * MS, "{first:?}");
        p.next_attempt(t0 + first).expect("second attempt");
        let busy = Failure::Busy(ClientError::Unavailable("busy".into()), 200 * MS);
        let MoveStep::Retry(second) = p.handle_failure(t0 + first, busy) else {
            panic!("busy is retried");
        };
        assert!(second >= 200 * MS, "{second:?}");
        assert_eq!(
            p.route_stats().redirects_followed,
            1,
            "retries follow nothing"
        );
    }

    #[test]
    fn a_retry_that_would_end_after_the_deadline_fails_the_move() {
        let t0 = Instant::now();
        let mut p = plan(&config(), t0);
        p.next_attempt(t0).expect("first attempt");
        let late = t0 + 9500 * MS;
        let step = p.handle_failure(late, loading(1000 * MS));
        let MoveStep::Fail(ClientError::DeadlineExceeded { attempts, last }) = step else {
            panic!("expected DeadlineExceeded, got {step:?}");
        };
        assert_eq!(attempts, 1);
        assert!(matches!(*last, ClientError::Unavailable(_)), "{last:?}");
    }

    #[test]
    fn attempts_are_cut_to_the_deadline_and_none_start_after_it() {
        let t0 = Instant::now();
        let mut p = plan(&config(), t0);
        assert_eq!(
            p.next_attempt(t0 + 8000 * MS).expect("time left"),
            2000 * MS
        );
        let err = p
            .next_attempt(t0 + 10_000 * MS)
            .expect_err("deadline passed");
        assert!(
            matches!(&err, ClientError::DeadlineExceeded { attempts: 1, last } if matches!(**last, ClientError::Timeout(_))),
            "{err:?}"
        );
    }

    #[test]
    fn attempts_are_bounded_even_when_every_answer_says_retry_at_once() {
        let t0 = Instant::now();
        let mut c = config();
        c.backoff_initial = Duration::ZERO;
        c.backoff_max = Duration::ZERO;
        let mut p = plan(&c, t0);
        let mut started = 0;
        while p.next_attempt(t0).is_ok() {
            started += 1;
            assert!(started <= MOVE_ATTEMPTS_MAX, "unbounded");
            assert!(matches!(
                p.handle_failure(t0, loading(Duration::ZERO)),
                MoveStep::Retry(_)
            ));
        }
        assert_eq!(started, MOVE_ATTEMPTS_MAX);
    }

    #[test]
    fn redirects_count_against_the_hop_limit_starting_redirect_included() {
        let t0 = Instant::now();
        let mut p = plan(&config(), t0);
        assert!(matches!(
            p.handle_redirect("127.0.0.1:2".into(), "t".into()),
            MoveStep::Follow { .. }
        ));
        assert!(matches!(
            p.handle_failure(t0, redirect(3)),
            MoveStep::Follow { .. }
        ));
        assert!(matches!(
            p.handle_failure(t0, redirect(4)),
            MoveStep::Follow { .. }
        ));
        let step = p.handle_failure(t0, redirect(5));
        assert!(
            matches!(
                step,
                MoveStep::Fail(ClientError::TooManyRedirects { limit: 3 })
            ),
            "{step:?}"
        );
        assert_eq!(p.route_stats().redirects_followed, 3);
    }

    #[test]
    fn with_no_redirects_allowed_a_move_cannot_start() {
        let mut c = config();
        c.max_redirects = 0;
        let mut p = plan(&c, Instant::now());
        let step = p.handle_redirect("127.0.0.1:2".into(), "t".into());
        assert!(matches!(
            step,
            MoveStep::Fail(ClientError::TooManyRedirects { limit: 0 })
        ));
    }

    #[test]
    fn an_attempt_without_an_answer_is_retried_on_the_same_node_within_the_deadline() {
        let config = config();
        let t0 = Instant::now();
        let mut p = plan(&config, t0);
        let timed_out = || Failure::Retry(ClientError::Timeout(3000 * MS), None);
        assert!(p.next_attempt(t0).is_ok());
        let MoveStep::Retry(delay) = p.handle_failure(t0 + 3000 * MS, timed_out()) else {
            panic!("a timed-out attempt must be retried");
        };
        assert!(delay <= config.backoff_max, "{delay:?}");
        // Past the deadline the same failure ends the move, naming what went wrong.
        let late = t0 + config.move_deadline;
        let step = p.handle_failure(late, timed_out());
        let MoveStep::Fail(ClientError::DeadlineExceeded { last, .. }) = step else {
            panic!("{step:?}");
        };
        assert!(matches!(*last, ClientError::Timeout(_)), "{last:?}");
    }

    #[test]
    fn error_answers_fail_the_move_at_once() {
        let t0 = Instant::now();
        let mut p = plan(&config(), t0);
        let rejected = ClientError::Rejected {
            code: ErrorCode::RedirectExpired,
            message: "expired".into(),
        };
        let step = p.handle_failure(t0, Failure::Fatal(rejected));
        assert!(
            matches!(
                step,
                MoveStep::Fail(ClientError::Rejected {
                    code: ErrorCode::RedirectExpired,
                    ..
                })
            ),
            "{step:?}"
        );
    }

    #[test]
    fn a_follow_step_never_prints_its_token() {
        let mut p = plan(&config(), Instant::now());
        let step = p.handle_redirect("127.0.0.1:2".into(), "secret-token".into());
        assert!(!format!("{step:?}").contains("secret-token"));
    }
}
