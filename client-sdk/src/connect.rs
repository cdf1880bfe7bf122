//! Getting a session: QUIC transport settings, one attempt (handshake, `Hello`, the
//! server's answer), the retry loop with backoff, redirects and the deadline, and the
//! same attempts driven by a [`MovePlan`] when a session moves to another node.
//!
//! Retry policy: `Busy`/`Loading` answers and transient transport failures (timeouts,
//! resets, a server closing with `Busy`/`Internal`/`ServerShutdown`/`HandshakeTimeout`)
//! are retried after a [`Backoff`] delay (at least the server's `retry_after`);
//! `Redirect` is followed at once; an `Error` answer, a refusing close code and TLS
//! failures end the attempt loop immediately. A mid-session move has its own, stricter
//! policy ([`MovePlan`]).

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::events::close_code;
use crate::moving::{MovePlan, MoveStep};
use crate::route::{Route, RouteStats};
use crate::session::Welcome;
use crate::tls;
use quinn::{Connecting, Connection, IdleTimeout, RecvStream, SendStream, TransportConfig, VarInt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zonemesh_shared::PROTOCOL_VERSION;
use zonemesh_shared::control::{
    CONTROL_FRAME_MAX, ClientControl, ErrorCode, FrameDecoder, ServerControl,
};
use zonemesh_shared::ids::NetId;

/// Bytes read from the control stream at a time.
pub(crate) const READ_CHUNK: usize = 4096;
/// Receive window for the control stream (and the whole connection's streams): room
/// for a burst of reliable messages while the game is between polls.
const STREAM_RECEIVE_WINDOW: u32 = 16 * CONTROL_FRAME_MAX as u32;
/// Datagrams queued for sending before quinn drops the oldest (inputs are redundant).
const DATAGRAM_SEND_BUFFER: usize = 64 * 1024;

/// A welcomed connection, ready for [`crate::Client`].
#[derive(Debug)]
pub(crate) struct Established {
    pub(crate) conn: Connection,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    /// May already hold frames the server sent right after `Welcome`.
    pub(crate) decoder: FrameDecoder,
    pub(crate) welcome: Welcome,
    /// Redirects followed and node changes on the way here.
    pub(crate) route: RouteStats,
    /// The TLS name this node was reached with (a redirect to `host:port` changes it);
    /// a later redirect to `ip:port` keeps it.
    pub(crate) server_name: String,
}

/// The quinn client configuration: TLS for the configured trust, ALPN, and transport
/// limits chosen for a game client.
pub(crate) fn quic_client_config(
    config: &ClientConfig,
) -> Result<quinn::ClientConfig, ClientError> {
    let crypto = tls::rustls_config(&config.trust)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| ClientError::Tls(format!("TLS configuration unusable for QUIC: {e}")))?;
    let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
    quic.transport_config(Arc::new(transport(config)?));
    Ok(quic)
}

fn transport(config: &ClientConfig) -> Result<TransportConfig, ClientError> {
    let idle = IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| ClientError::Config("idle timeout too large".into()))?;
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(config.keep_alive_interval))
        .max_idle_timeout(Some(idle))
        .datagram_receive_buffer_size(Some(config.datagram_receive_buffer_bytes))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
        // The server never opens streams; the client opens its one control stream.
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW));
    Ok(t)
}

/// Where the next attempt goes.
#[derive(Debug, Clone)]
struct Target {
    addr: SocketAddr,
    server_name: String,
    token: String,
}

/// Why an attempt did not end in `Welcome`.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth retrying after a delay of at least `hint`, on the next known node: the
    /// transport failed or the server closed in a way that may pass.
    Retry(ClientError, Option<Duration>),
    /// The node answered `Busy`: it may take the client after the hint.
    Busy(ClientError, Duration),
    /// This node is loading the zone: ask it again after the hint.
    Wait(ClientError, Duration),
    /// Retrying cannot help.
    Fatal(ClientError),
    /// The zone lives elsewhere: go there now.
    Redirect { addr: String, token: String },
}

/// Attempts until welcomed, refused, or out of time. `previous` is the node the
/// client's last session was on (reaching another one is a node change).
pub(crate) async fn establish(
    endpoint: &quinn::Endpoint,
    config: &ClientConfig,
    quic: &quinn::ClientConfig,
    previous: Option<SocketAddr>,
) -> Result<Established, ClientError> {
    config.validate()?;
    let deadline = Instant::now() + config.connect_deadline;
    let rng = StdRng::from_os_rng();
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max, rng);
    let known: Vec<SocketAddr> = std::iter::once(config.server)
        .chain(config.other_servers.iter().copied())
        .collect();
    let entry = |i: usize| Target {
        addr: known[i % known.len()],
        server_name: config.server_name.clone(),
        token: config.token.clone(),
    };
    let mut next_known = 0;
    let mut target = entry(next_known);
    let mut route = Route::new(config.max_redirects);
    if let Some(previous) = previous {
        route.handle_reached(previous);
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = config.attempt_timeout.min(remaining);
        let (error, hint, stay) = match attempt(endpoint, quic, &target, timeout, &mut route).await
        {
            Ok(mut established) => {
                established.route = route.stats();
                return Ok(established);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(e, hint)) => (e, hint, false),
            Err(Failure::Busy(e, hint)) => (e, Some(hint), false),
            Err(Failure::Wait(e, hint)) => (e, Some(hint), true),
            Err(Failure::Redirect { addr, token }) => {
                route.handle_redirect()?;
                tracing::debug!(%addr, "redirected");
                target = redirect_target(endpoint, &addr, token, &target).await?;
                continue;
            }
        };
        tracing::debug!(attempt = attempts, %error, "connect attempt failed");
        if known.len() > 1 && !stay {
            // Another node may serve (or redirect) while this one cannot.
            next_known += 1;
            target = entry(next_known);
        }
        match backoff.next_delay_before(Instant::now(), deadline, hint) {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                let last = Box::new(error);
                return Err(ClientError::DeadlineExceeded { attempts, last });
            }
        }
    }
}

/// Where a mid-session move starts: the session's node and what its `Redirect` said.
pub(crate) struct MoveStart {
    /// The node the session is on now.
    pub(crate) here: SocketAddr,
    /// The TLS name that node was reached with.
    pub(crate) server_name: String,
    /// The player's entity, which the new node must welcome.
    pub(crate) player: NetId,
    /// The `Redirect`'s address, `host:port` or `ip:port`.
    pub(crate) addr: String,
    /// The `Redirect`'s token (a bearer credential: never logged).
    pub(crate) token: String,
}

/// Follows a `Redirect` received mid-session to the session's new node, with the same
/// attempts as [`establish`] but the decisions of a [`MovePlan`], all within
/// `config.move_deadline`. The connection to the current node is not touched: the
/// caller switches to the returned one (make-before-break).
pub(crate) async fn follow_move(
    endpoint: quinn::Endpoint,
    config: ClientConfig,
    quic: quinn::ClientConfig,
    start: MoveStart,
) -> Result<Established, ClientError> {
    let rng = StdRng::from_os_rng();
    let mut plan = MovePlan::new(&config, start.player, start.here, Instant::now(), rng);
    let deadline = tokio::time::Instant::from_std(plan.deadline());
    // The plan bounds each attempt and each wait; the outer deadline also bounds
    // resolving a `host:port` address, which has no timeout of its own.
    let attempts = move_attempts(&endpoint, &quic, &mut plan, start);
    match tokio::time::timeout_at(deadline, attempts).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout(config.move_deadline)),
    }
}

/// The attempts of a move, one [`MoveStep`] at a time. Bounded by the plan, which
/// fails the move after a fixed number of attempts or at its deadline.
async fn move_attempts(
    endpoint: &quinn::Endpoint,
    quic: &quinn::ClientConfig,
    plan: &mut MovePlan,
    start: MoveStart,
) -> Result<Established, ClientError> {
    let mut target = Target {
        addr: start.here,
        server_name: start.server_name,
        token: String::new(),
    };
    let mut step = plan.handle_redirect(start.addr, start.token);
    loop {
        match step {
            MoveStep::Follow { addr, token } => {
                tracing::debug!(%addr, "moving to another node");
                target = redirect_target(endpoint, &addr, token, &target).await?;
            }
            MoveStep::Retry(delay) => tokio::time::sleep(delay).await,
            MoveStep::Fail(error) => return Err(error),
        }
        let timeout = plan.next_attempt(Instant::now())?;
        step = match attempt(endpoint, quic, &target, timeout, plan.route_mut()).await {
            Ok(established) => return welcomed(plan, established),
            Err(failure) => plan.handle_failure(Instant::now(), failure),
        };
    }
}

/// Keeps the new node's connection if it welcomed the same player; closes it if not.
fn welcomed(plan: &MovePlan, mut established: Established) -> Result<Established, ClientError> {
    if let Err(error) = plan.handle_welcome(established.welcome) {
        let code = VarInt::from_u32(ErrorCode::Normal as u32);
        established.conn.close(code, b"welcomed as another player");
        return Err(error);
    }
    established.route = plan.route_stats();
    Ok(established)
}

/// One attempt, bounded by `timeout`.
async fn attempt(
    endpoint: &quinn::Endpoint,
    quic: &quinn::ClientConfig,
    target: &Target,
    timeout: Duration,
    route: &mut Route,
) -> Result<Established, Failure> {
    if timeout.is_zero() {
        return Err(Failure::Retry(ClientError::Timeout(timeout), None));
    }
    let connecting = endpoint
        .connect_with(quic.clone(), target.addr, &target.server_name)
        .map_err(|e| Failure::Fatal(e.into()))?;
    match tokio::time::timeout(timeout, handshake(connecting, &target.token, route)).await {
        Ok(Ok(mut established)) => {
            established.server_name.clone_from(&target.server_name);
            Ok(established)
        }
        Ok(Err(failure)) => Err(failure),
        // Dropping the unfinished handshake drops the connection, which quinn closes.
        Err(_) => Err(Failure::Retry(ClientError::Timeout(timeout), None)),
    }
}

/// QUIC handshake, `Hello`, and the server's answer. With a TLS session from an
/// earlier connection (to any node of the cluster) the `Hello` goes with 0-RTT, in the
/// first packet; if the server does not take it, it goes again once the handshake is
/// done. A completed handshake is noted in `route` whatever the answer: the client
/// was on that node.
async fn handshake(
    connecting: Connecting,
    token: &str,
    route: &mut Route,
) -> Result<Established, Failure> {
    let (conn, answered) = match connecting.into_0rtt() {
        Ok((conn, accepted)) => {
            let answered = match send_hello(&conn, token).await {
                Err(HelloError::ZeroRttRejected) => {
                    // The server dropped the early data: the handshake is done.
                    accepted.await;
                    send_hello(&conn, token).await
                }
                answered => {
                    if answered.is_ok() && accepted.await {
                        route.handle_zero_rtt_answer();
                    }
                    answered
                }
            };
            if answered.is_ok() {
                // An answer is protected with the handshake's keys: it completed.
                route.handle_reached(conn.remote_address());
            }
            (conn, answered)
        }
        Err(connecting) => {
            let conn = connecting.await.map_err(classify_connection_error)?;
            route.handle_reached(conn.remote_address());
            let answered = send_hello(&conn, token).await;
            (conn, answered)
        }
    };
    let Answered {
        send,
        recv,
        decoder,
        answer,
    } = answered.map_err(HelloError::into_failure)?;
    let welcome = match answer {
        ServerControl::Welcome {
            player,
            zone,
            tick_hz,
        } => Welcome {
            player,
            zone,
            tick_hz,
        },
        other => return Err(refusal(&conn, other)),
    };
    Ok(Established {
        conn,
        send,
        recv,
        decoder,
        welcome,
        // Filled in by the callers, which own the route and the target.
        route: RouteStats::default(),
        server_name: String::new(),
    })
}

/// A `Hello` sent and its answer read.
struct Answered {
    send: SendStream,
    recv: RecvStream,
    /// May already hold frames the server sent after the answer.
    decoder: FrameDecoder,
    answer: ServerControl,
}

/// Why a `Hello` got no answer.
enum HelloError {
    /// It went with 0-RTT and the server did not take the early data: send it again.
    ZeroRttRejected,
    Failed(Failure),
}

impl HelloError {
    fn into_failure(self) -> Failure {
        match self {
            HelloError::Failed(failure) => failure,
            HelloError::ZeroRttRejected => Failure::Retry(
                ClientError::UnexpectedMessage("0-RTT refused after the handshake".into()),
                None,
            ),
        }
    }
}

impl From<Failure> for HelloError {
    fn from(failure: Failure) -> Self {
        HelloError::Failed(failure)
    }
}

/// Opens the control stream, sends `Hello` and reads the answer.
async fn send_hello(conn: &Connection, token: &str) -> Result<Answered, HelloError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(classify_connection_error)?;
    let hello = ClientControl::Hello {
        version: PROTOCOL_VERSION,
        token: token.to_owned(),
    };
    send.write_all(&hello.to_frame())
        .await
        .map_err(|e| match e {
            quinn::WriteError::ZeroRttRejected => HelloError::ZeroRttRejected,
            e => classify_write_error(e).into(),
        })?;
    let mut decoder = FrameDecoder::default();
    let answer = read_answer(&mut recv, &mut decoder).await?;
    Ok(Answered {
        send,
        recv,
        decoder,
        answer,
    })
}

/// Turns a non-`Welcome` answer into a failure, closing the connection: the server
/// waits for the client to close after reading the answer.
fn refusal(conn: &Connection, answer: ServerControl) -> Failure {
    let close = |reason: &[u8]| conn.close(VarInt::from_u32(ErrorCode::Normal as u32), reason);
    match answer {
        ServerControl::Redirect { addr, token } => {
            close(b"redirected");
            Failure::Redirect { addr, token }
        }
        ServerControl::Busy { retry_after_ms } => {
            close(b"busy");
            let hint = Duration::from_millis(retry_after_ms.into());
            let error = ClientError::Unavailable(format!("busy, retry after {hint:?}"));
            Failure::Busy(error, hint)
        }
        ServerControl::Loading { retry_after_ms } => {
            close(b"loading");
            let hint = Duration::from_millis(retry_after_ms.into());
            let error = ClientError::Unavailable(format!("zone loading, retry after {hint:?}"));
            Failure::Wait(error, hint)
        }
        ServerControl::Error { code, message } => {
            close(b"rejected");
            Failure::Fatal(ClientError::Rejected { code, message })
        }
        other => {
            let code = VarInt::from_u32(ErrorCode::ProtocolViolation as u32);
            conn.close(code, b"expected a handshake answer");
            Failure::Fatal(ClientError::UnexpectedMessage(format!(
                "{other:?} instead of a handshake answer"
            )))
        }
    }
}

/// Reads the first control frame. Later bytes stay in `decoder`.
async fn read_answer(
    recv: &mut RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<ServerControl, HelloError> {
    let mut buf = [0u8; READ_CHUNK];
    loop {
        match decoder.next_frame() {
            Ok(Some(body)) => {
                return ServerControl::decode(&body).map_err(|e| Failure::Fatal(e.into()).into());
            }
            Ok(None) => {}
            Err(e) => return Err(Failure::Fatal(e.into()).into()),
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(&buf[..n]),
            Ok(None) => {
                let error = ClientError::UnexpectedMessage("stream ended before an answer".into());
                return Err(Failure::Retry(error, None).into());
            }
            Err(quinn::ReadError::ZeroRttRejected) => return Err(HelloError::ZeroRttRejected),
            Err(quinn::ReadError::ConnectionLost(e)) => {
                return Err(classify_connection_error(e).into());
            }
            Err(e) => return Err(Failure::Retry(e.into(), None).into()),
        }
    }
}

fn classify_write_error(error: quinn::WriteError) -> Failure {
    match error {
        quinn::WriteError::ConnectionLost(e) => classify_connection_error(e),
        other => Failure::Retry(other.into(), None),
    }
}

/// Whether a connection failure during an attempt is worth retrying.
fn classify_connection_error(error: quinn::ConnectionError) -> Failure {
    use quinn::ConnectionError as E;
    match &error {
        E::ApplicationClosed(close) => {
            let code = close_code(close.error_code);
            if matches!(
                code,
                ErrorCode::Busy
                    | ErrorCode::Internal
                    | ErrorCode::ServerShutdown
                    | ErrorCode::HandshakeTimeout
                    | ErrorCode::ZoneMoved
            ) {
                Failure::Retry(error.into(), None)
            } else {
                let message = String::from_utf8_lossy(&close.reason).into_owned();
                Failure::Fatal(ClientError::Rejected { code, message })
            }
        }
        E::TransportError(t) if is_crypto(t.code.into()) => {
            Failure::Fatal(ClientError::Tls(error.to_string()))
        }
        E::ConnectionClosed(c) if is_crypto(c.error_code.into()) => {
            Failure::Fatal(ClientError::Tls(error.to_string()))
        }
        E::VersionMismatch | E::LocallyClosed => Failure::Fatal(error.into()),
        E::TimedOut
        | E::Reset
        | E::ConnectionClosed(_)
        | E::TransportError(_)
        | E::CidsExhausted => Failure::Retry(error.into(), None),
    }
}

/// QUIC carries TLS alerts as transport error codes 0x100..=0x1ff.
fn is_crypto(code: u64) -> bool {
    code & !0xff == 0x100
}

/// The target a `Redirect` names: `ip:port` keeps the TLS name; `host:port` is
/// resolved and the host becomes the TLS name.
async fn redirect_target(
    endpoint: &quinn::Endpoint,
    addr: &str,
    token: String,
    current: &Target,
) -> Result<Target, ClientError> {
    if let Ok(addr) = addr.parse::<SocketAddr>() {
        let server_name = current.server_name.clone();
        return Ok(Target {
            addr,
            server_name,
            token,
        });
    }
    let bad = || ClientError::UnexpectedMessage(format!("redirect to unusable address {addr:?}"));
    let (host, _) = addr.rsplit_once(':').ok_or_else(bad)?;
    let want_v6 = endpoint.local_addr().is_ok_and(|a| a.is_ipv6());
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| ClientError::io(format!("cannot resolve redirect address {addr}"), e))?
        .collect();
    let chosen = resolved
        .iter()
        .find(|a| a.is_ipv6() == want_v6)
        .or(resolved.first())
        .copied()
        .ok_or_else(bad)?;
    Ok(Target {
        addr: chosen,
        server_name: host.trim_matches(['[', ']']).to_owned(),
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn app_close(code: ErrorCode) -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: VarInt::from_u32(code as u32),
            reason: Bytes::from_static(b"why"),
        })
    }

    #[test]
    fn busy_and_transient_closes_are_retried_refusals_are_not() {
        assert!(matches!(
            classify_connection_error(app_close(ErrorCode::Busy)),
            Failure::Retry(..)
        ));
        assert!(matches!(
            classify_connection_error(quinn::ConnectionError::TimedOut),
            Failure::Retry(..)
        ));
        assert!(matches!(
            classify_connection_error(app_close(ErrorCode::AuthFailed)),
            Failure::Fatal(ClientError::Rejected {
                code: ErrorCode::AuthFailed,
                ..
            })
        ));
    }

    #[test]
    fn tls_alert_codes_are_recognised() {
        assert!(is_crypto(0x100 | 42));
        assert!(is_crypto(0x178));
        assert!(!is_crypto(0x2));
        assert!(!is_crypto(0x200));
    }
}
