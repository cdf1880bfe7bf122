//! Mid-session moves, the [`Client`] side: starting the connection attempts to the new
//! node when the core asks for a move, polling them from the calls that pump, and
//! switching the session to the new connection or ending it when the move failed.
//!
//! The attempts (`connect::follow_move`) are one boxed future stored in the client.
//! Calls that never wait poll it once with a no-op waker; calls that wait poll it with
//! their own waker alongside the old connection. Either way the future survives the
//! call, so cancelling a call cancels nothing, and the future ends by its deadline.

use super::{Client, MoveTiming, control_reader, normal_code};
use crate::connect::{self, Established, MoveStart};
use crate::error::ClientError;
use crate::events::{DisconnectKind, DisconnectReason};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use zonemesh_shared::control::ErrorCode;

/// The connection attempts of a move, ending with the new node's connection.
type Attempts = Pin<Box<dyn Future<Output = Result<Established, ClientError>> + Send>>;

/// A move to another node under way.
pub(super) struct Moving {
    /// `connect::follow_move`. The mutex is never locked: the client reaches the future
    /// through `&mut self` and `get_mut`; the mutex only keeps [`Client`] `Sync` (a
    /// boxed future is `Send` but not `Sync`).
    attempts: tokio::sync::Mutex<Attempts>,
    /// Where the old node sent the player, for the failure's message.
    addr: String,
    /// When the `Redirect` was read.
    since: Instant,
}

impl Moving {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Established, ClientError>> {
        self.attempts.get_mut().as_mut().poll(cx)
    }
}

/// The outcome of the move under way; never ready without one. Cancel-safe: the move
/// stays in `moving`.
pub(super) async fn outcome(moving: &mut Option<Moving>) -> Result<Established, ClientError> {
    match moving {
        Some(moving) => std::future::poll_fn(|cx| moving.poll(cx)).await,
        None => std::future::pending().await,
    }
}

impl Client {
    /// Starts the move the core asked for, if any, then polls the move under way once
    /// without waiting and applies its outcome if it has one.
    pub(super) fn drive_move(&mut self) {
        self.start_requested_move();
        let Some(moving) = &mut self.moving else {
            return;
        };
        if let Poll::Ready(result) = moving.poll(&mut Context::from_waker(Waker::noop())) {
            self.finish_move(result);
        }
    }

    /// Waits until the move under way, if any, has switched the session or failed:
    /// at most the move deadline. Cancel-safe.
    pub(super) async fn settle_move(&mut self) {
        self.start_requested_move();
        if self.moving.is_some() {
            let result = outcome(&mut self.moving).await;
            self.finish_move(result);
        }
    }

    /// Starts connecting to the node a `Redirect` named, keeping the old connection.
    pub(super) fn start_requested_move(&mut self) {
        let Some(request) = self.core.poll_move() else {
            return;
        };
        assert!(
            self.moving.is_none(),
            "the core asks for one move at a time"
        );
        let start = MoveStart {
            here: self.conn.remote_address(),
            server_name: self.server_name.clone(),
            player: self.player(),
            addr: request.addr.clone(),
            token: request.token,
        };
        let attempts = connect::follow_move(
            self.endpoint.clone(),
            self.config.clone(),
            self.quic.clone(),
            start,
        );
        self.moving = Some(Moving {
            attempts: tokio::sync::Mutex::new(Box::pin(attempts)),
            addr: request.addr,
            since: Instant::now(),
        });
    }

    /// Applies a move's outcome.
    pub(super) fn finish_move(&mut self, result: Result<Established, ClientError>) {
        let Some(moving) = self.moving.take() else {
            return;
        };
        if self.core.disconnect_reason().is_some() {
            // The session ended meanwhile; dropping a new connection closes it.
            return;
        }
        match result {
            Ok(established) => {
                self.last_move = Some(MoveTiming {
                    redirected: moving.since,
                    welcomed: Instant::now(),
                });
                self.switch_to(established);
            }
            Err(error) => self.move_failed(&moving.addr, &error),
        }
    }

    /// Goes on on the new node's connection with the same core, and closes the old one.
    fn switch_to(&mut self, e: Established) {
        tracing::debug!(
            from = %self.conn.remote_address(),
            to = %e.conn.remote_address(),
            zone = %e.welcome.zone,
            "moved to another node"
        );
        let old = std::mem::replace(&mut self.conn, e.conn);
        old.close(normal_code(), b"moved");
        self.send = e.send;
        self.control = control_reader(e.recv, e.decoder);
        self.conn_open = true;
        self.server_name = e.server_name;
        self.route.add(e.route);
        self.moves += 1;
        if let Some(datagram) = self.core.handle_moved(Instant::now(), e.welcome)
            && let Err(error) = self.send_datagram(datagram)
        {
            tracing::debug!(%error, "first datagram to the new node not sent");
        }
        // Frames the new node sent in the same read as `Welcome`.
        self.dispatch_frames();
    }

    /// Ends the session: the move failed, and the old node no longer holds the player.
    fn move_failed(&mut self, addr: &str, error: &ClientError) {
        tracing::debug!(addr, %error, "moving to another node failed");
        let code = match error {
            ClientError::Rejected { code, .. } => *code,
            _ => ErrorCode::ZoneMoved,
        };
        self.conn.close(normal_code(), b"move failed");
        let message = format!("moving to {addr} failed: {error}");
        let reason = DisconnectReason::new(code, message, DisconnectKind::MoveFailed);
        self.core.handle_move_failed(reason);
    }
}
