//! One connection's life: control stream and `Hello`, token check, admission, joining a
//! zone, then relaying inputs and events in and snapshots and reliable messages out
//! until either side ends it. Anything malformed ends only this connection, with a
//! code telling the client why.

use super::actions::SessionActions;
use super::limits::{RateLimiter, RateVerdict, SlowClientDetector};
use super::transport::DATAGRAM_SEND_BUFFER;
use super::{Shared, close_code};
use crate::cluster::runtime::{ClusterRuntime, RecordVersion};
use crate::game::SessionId;
use crate::link::ClientLink;
use crate::persist::RecordVersions;
use crate::persist::players::PlayerLookup;
use crate::zone::CommittedAction;
use crate::zone::{SendError, ZoneMessage};
use bytes::Bytes;
use quinn::{Connection, RecvStream, SendDatagramError, SendStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zonemesh_cluster::admission::{Admission, LOADING_RETRY_MS};
use zonemesh_shared::PROTOCOL_VERSION;
use zonemesh_shared::codec::DecodeError;
use zonemesh_shared::control::{ClientControl, ErrorCode, FrameDecoder, ServerControl};
use zonemesh_shared::datagram::ClientDatagram;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::ids::validate_player_name;
use zonemesh_shared::quant::Vec2;
use zonemesh_shared::redirect::{self, RedirectClaims};
use zonemesh_shared::token::{self, Claims};
use zonemesh_store::PlayerRecord;

/// Bytes read from the control stream at a time.
const READ_CHUNK: usize = 4096;
/// How long an answered-and-refused client gets to read the answer before the close.
const ANSWER_LINGER: Duration = Duration::from_secs(2);

/// How a session ended.
#[derive(Debug)]
enum End {
    /// Close the connection with this code and reason.
    Close(ErrorCode, String),
    /// The client read a refusal (`Error`, `Busy`) and closed, as asked.
    Answered(ErrorCode),
    /// The connection is already gone.
    Lost,
}

impl End {
    fn close(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Close(code, message.into())
    }
}

/// Where a connection's TLS handshake stands when its session starts.
pub(super) enum Handshake {
    /// Still going: the client may have sent `Hello` with 0-RTT. The future completes
    /// when the handshake does or the connection fails (its value means nothing on a
    /// server).
    Pending(quinn::ZeroRttAccepted),
    /// Done.
    Complete,
}

impl Handshake {
    /// Waits until the handshake completed, by `deadline`.
    async fn complete(self, conn: &Connection, deadline: tokio::time::Instant) -> Result<(), End> {
        let Handshake::Pending(completed) = self else {
            return Ok(());
        };
        match tokio::time::timeout_at(deadline, completed).await {
            Ok(_) if conn.close_reason().is_none() => Ok(()),
            Ok(_) => Err(End::Lost),
            Err(_) => Err(End::close(
                ErrorCode::HandshakeTimeout,
                "handshake did not complete in time",
            )),
        }
    }
}

/// Serves one connection to its end, from the moment it was accepted.
pub(super) async fn run(conn: Connection, handshake: Handshake, shared: &Shared) {
    let remote = conn.remote_address();
    match serve(&conn, handshake, shared).await {
        End::Close(code, message) => {
            tracing::debug!(%remote, ?code, %message, "closing connection");
            shared.sessions.count_close(code);
            conn.close(close_code(code), truncate_reason(&message));
        }
        End::Answered(code) => {
            tracing::debug!(%remote, ?code, "refused; the client closed");
            shared.sessions.count_close(code);
        }
        End::Lost => tracing::debug!(%remote, "connection lost"),
    }
}

async fn serve(conn: &Connection, handshake: Handshake, shared: &Shared) -> End {
    let deadline = tokio::time::Instant::now() + shared.limits.handshake_timeout;
    let hello = tokio::time::timeout_at(deadline, async {
        let (send, recv) = conn.accept_bi().await.map_err(|_| End::Lost)?;
        let mut control = ControlReader::new(recv);
        match control.next().await? {
            Some(msg) => Ok((send, control, msg)),
            None => Err(End::close(
                ErrorCode::ProtocolViolation,
                "stream ended before hello",
            )),
        }
    })
    .await;
    let (mut send, mut control, hello) = match hello {
        Ok(Ok(parts)) => parts,
        Ok(Err(end)) => return end,
        Err(_) => return End::close(ErrorCode::HandshakeTimeout, "no hello in time"),
    };
    let entry = match authenticate(hello, shared) {
        Ok(entry) => entry,
        // A full replay guard is a capacity refusal: the client retries.
        Err((ErrorCode::Busy, _)) => return answer_busy(conn, &mut send, shared).await,
        Err((code, message)) => {
            let answer = ServerControl::Error { code, message };
            return answer_and_close(conn, &mut send, answer, code).await;
        }
    };
    if entry.redirect.is_none()
        && let Err(end) = handshake.complete(conn, deadline).await
    {
        // 0-RTT data can be replayed by anyone who saw it, and only completing the
        // handshake proves the sender is the client: a session token admits a player
        // after that. A redirect token is single-use and checked against the replay
        // guard of the one node it names, so its `Hello` is answered at once.
        return end;
    }
    let Some(admission) = shared.sessions.try_admit(shared.limits.max_connections) else {
        return answer_busy(conn, &mut send, shared).await;
    };
    let link = match join(conn, entry, shared).await {
        Ok(link) => link,
        Err(end) => {
            drop(admission);
            return match end {
                JoinRefused::Busy => answer_busy(conn, &mut send, shared).await,
                JoinRefused::Loading(retry_after_ms) => {
                    let answer = ServerControl::Loading { retry_after_ms };
                    answer_and_close(conn, &mut send, answer, ErrorCode::Busy).await
                }
                JoinRefused::Redirect { addr, token } => {
                    let answer = ServerControl::Redirect { addr, token };
                    answer_and_close(conn, &mut send, answer, ErrorCode::Normal).await
                }
                JoinRefused::Refused(code, message) => {
                    let answer = ServerControl::Error { code, message };
                    answer_and_close(conn, &mut send, answer, code).await
                }
                JoinRefused::Internal(message) => {
                    let code = ErrorCode::Internal;
                    let answer = ServerControl::Error { code, message };
                    answer_and_close(conn, &mut send, answer, code).await
                }
            };
        }
    };
    let end = play(conn, &mut send, &mut control, &link, shared).await;
    link.close();
    shared.sessions.release_name(&link);
    drop(admission);
    if let Some(cluster) = &shared.cluster {
        if *shared.shutdown.borrow() {
            // The stop saves the zones, then releases these claims itself.
            shared.sessions.ended_at_stop(link);
        } else {
            tokio::spawn(release_claim(Arc::clone(cluster), link));
        }
    }
    end
}

/// Most claims released at once when a node stops.
const STOP_RELEASES_AT_ONCE: usize = 32;
/// Longest a stopping node spends releasing its players' claims; what is left then
/// lapses with its lease.
const STOP_RELEASES_WAIT: Duration = Duration::from_secs(3);

/// Gives back the claims of the players whose sessions ended while the node stops,
/// after its zones' final saves (the next node reads what they saved): without this
/// the players could play on elsewhere only once this node's lease lapsed.
pub(crate) async fn release_claims_at_stop(
    cluster: &Arc<ClusterRuntime>,
    links: Vec<Arc<ClientLink>>,
) {
    let releases = async {
        let staying: Vec<_> = links.into_iter().filter(|l| !l.moved_away()).collect();
        for chunk in staying.chunks(STOP_RELEASES_AT_ONCE) {
            let mut calls = tokio::task::JoinSet::new();
            for link in chunk {
                let (cluster, link) = (Arc::clone(cluster), Arc::clone(link));
                calls.spawn(async move {
                    cluster.release_player(link.name(), link.session().0).await;
                });
            }
            while calls.join_next().await.is_some() {}
        }
    };
    if tokio::time::timeout(STOP_RELEASES_WAIT, releases)
        .await
        .is_err()
    {
        tracing::warn!(
            "some players' claims were not released in time; they lapse with this node's lease"
        );
    }
}

/// Longest a session's end waits for the player's final save before giving the claim
/// back anyway (the zone was lost, or the store is down: the next node then reads the
/// last record that was saved).
const FINAL_SAVE_WAIT: Duration = Duration::from_secs(10);

/// Gives the player's claim back once its zone has saved it on leaving.
pub(crate) async fn release_claim(cluster: Arc<ClusterRuntime>, link: Arc<ClientLink>) {
    if link.moved_away() {
        return; // The claim is the next node's now.
    }
    if !link.final_save(FINAL_SAVE_WAIT).await {
        tracing::debug!(
            player = link.name(),
            "no confirmed final save; releasing the claim anyway"
        );
    }
    cluster.release_player(link.name(), link.session().0).await;
}

/// Who is connecting, and how it got here.
struct Entry {
    /// The player's name.
    player: String,
    /// The redirect that sent the player here from another node, if any.
    redirect: Option<RedirectClaims>,
}

/// Checks `Hello`: version, then either a redirect token (in a cluster) or a session
/// token (signature, expiry, player name).
fn authenticate(hello: ClientControl, shared: &Shared) -> Result<Entry, (ErrorCode, String)> {
    let token = hello_token(hello)?;
    if let Some(bytes) = redirect::from_text(&token) {
        let bytes = bytes.map_err(|e| (ErrorCode::AuthFailed, format!("redirect refused: {e}")))?;
        let Some(cluster) = &shared.cluster else {
            let reason = "redirect token sent to a server that is not in a cluster";
            return Err((ErrorCode::AuthFailed, reason.to_owned()));
        };
        let claims = cluster.check_redirect(&bytes)?;
        return Ok(Entry {
            player: claims.player.clone(),
            redirect: Some(claims),
        });
    }
    let claims = session_claims(&token, &shared.secret)?;
    Ok(Entry {
        player: claims.player,
        redirect: None,
    })
}

/// The token of a `Hello` in the version this server speaks.
fn hello_token(hello: ClientControl) -> Result<String, (ErrorCode, String)> {
    let ClientControl::Hello { version, token } = hello else {
        return Err((
            ErrorCode::ProtocolViolation,
            "first frame must be hello".into(),
        ));
    };
    if version != PROTOCOL_VERSION {
        return Err((
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {version} not supported; this server speaks {PROTOCOL_VERSION}"
            ),
        ));
    }
    Ok(token)
}

/// Checks a session token: signature, expiry, player name.
fn session_claims(token: &str, secret: &[u8]) -> Result<Claims, (ErrorCode, String)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = token::verify(secret, token, now)
        .map_err(|e| (ErrorCode::AuthFailed, format!("token rejected: {e}")))?;
    validate_player_name(&claims.player).map_err(|e| {
        (
            ErrorCode::AuthFailed,
            format!("bad player name in token: {e}"),
        )
    })?;
    Ok(claims)
}

enum JoinRefused {
    Busy,
    /// Ask again after this many milliseconds.
    Loading(u32),
    /// The zone lives on another node: reconnect to `addr` with `token`.
    Redirect {
        addr: String,
        token: String,
    },
    /// Refused for good, with this code and reason.
    Refused(ErrorCode, String),
    Internal(String),
}

/// How long one connection attempt waits for the player's record and zone before the
/// client is told `Loading` (the load goes on; the client's retry finds it done).
const JOIN_WAIT: Duration = Duration::from_millis(200);
/// How long a player redirected here waits for the record the redirecting node
/// forwards before this node reads it from the store. The record is sent as the
/// `Redirect` is answered, one hop where the client's way here is three, so it is
/// normally already here.
const FORWARD_WAIT: Duration = Duration::from_millis(50);

/// Loads the player's record, makes sure its zone is active, creates the session's
/// link, takes over the player's name and asks the zone for an entity. The zone
/// answers `Welcome` through the link.
async fn join(
    conn: &Connection,
    entry: Entry,
    shared: &Shared,
) -> Result<Arc<ClientLink>, JoinRefused> {
    if let Some(link) = resume_moved(conn, &entry, shared)? {
        return Ok(link);
    }
    let players = shared.host.players();
    let loading = || JoinRefused::Loading(retry_hint_ms(shared.host.directory().retry_after()));
    if let Some(cluster) = &shared.cluster
        && cluster.crossings().in_transit(&entry.player)
    {
        // The player's previous session is on its way to another node: its claim may
        // move there, so no new session starts here until that is settled.
        return Err(loading());
    }
    let forward_wait = match &entry.redirect {
        Some(_) => FORWARD_WAIT,
        None => Duration::ZERO,
    };
    let record = match players
        .lookup_forwarded(&entry.player, forward_wait, JOIN_WAIT)
        .await
    {
        PlayerLookup::Found(record) => record,
        PlayerLookup::Loading => return Err(loading()),
        PlayerLookup::Busy => return Err(JoinRefused::Busy),
        PlayerLookup::Failed(e) => {
            return Err(JoinRefused::Internal(format!(
                "player record unavailable: {e}"
            )));
        }
    };
    // The session's records are newer than any the loaded record's session made.
    let record_version = record.as_ref().map(|r| r.version);
    let versions = RecordVersions::after(record_version);
    // Kept to forward with a redirect: the next node need not read it again.
    let forwardable = shared.cluster.as_ref().and(record.clone());
    let (zone, spawn, saved) = placement(&entry.player, record, shared);
    // A redirected session keeps its id: ids are unique cluster-wide.
    let session = match &entry.redirect {
        Some(claims) => SessionId(claims.session),
        None => shared.sessions.next_session_id(),
    };
    if let Some(cluster) = &shared.cluster {
        admit_in_cluster(cluster, &entry, session, zone, forwardable.as_ref()).await?;
        claim_in_cluster(cluster, &entry.player, session, record_version, shared).await?;
    }
    let directory = shared.host.directory();
    if !directory.reserve_arrival_within(zone, JOIN_WAIT).await {
        return Err(loading());
    }
    if let (Some(cluster), Some(claims)) = (&shared.cluster, &entry.redirect) {
        // Used up only now that the player goes in: a `Loading` answer before this
        // point leaves the token good for the client's retry.
        if let Err((code, message)) = cluster.consume_redirect(claims) {
            directory.arrived(zone);
            return Err(match code {
                ErrorCode::Busy => JoinRefused::Busy,
                code => JoinRefused::Refused(code, message),
            });
        }
    }
    let mtu = conn.max_datagram_size().unwrap_or(0);
    let link = Arc::new(ClientLink::new(
        session,
        entry.player,
        zone,
        u32::try_from(mtu).unwrap_or(u32::MAX),
    ));
    let message = ZoneMessage::Join {
        link: Arc::clone(&link),
        spawn,
        saved,
        versions,
    };
    let sent = shared.zones.router.send(zone, message);
    if sent.is_err() {
        directory.arrived(zone); // Never arriving: release the reservation.
    }
    match sent {
        Ok(()) => {}
        Err(SendError::Full(_)) => return Err(JoinRefused::Busy),
        Err(SendError::Stopped(_) | SendError::UnknownZone(_)) => {
            return Err(JoinRefused::Internal("spawn zone unavailable".into()));
        }
    }
    players.forget(link.name());
    if let Some(old) = shared.sessions.claim_name(&link) {
        old.kick(ErrorCode::Replaced, "the player connected again");
    }
    Ok(link)
}

/// A player moved here from another node, whose entity waits in its zone: the
/// arriving connection takes over the waiting link (the zone has already queued the
/// `Welcome` with the player's entity on it). `None` for every other arrival.
fn resume_moved(
    conn: &Connection,
    entry: &Entry,
    shared: &Shared,
) -> Result<Option<Arc<ClientLink>>, JoinRefused> {
    let (Some(cluster), Some(claims)) = (&shared.cluster, &entry.redirect) else {
        return Ok(None);
    };
    let Some(link) = cluster.take_arrival(claims) else {
        return Ok(None);
    };
    if let Err((code, message)) = cluster.consume_redirect(claims) {
        // A replayed token: the player's own client holds the first use. Let the
        // waiting player go (its zone saves it) rather than hand it to this one.
        link.close();
        tokio::spawn(release_claim(Arc::clone(cluster), link));
        return Err(match code {
            ErrorCode::Busy => JoinRefused::Busy,
            code => JoinRefused::Refused(code, message),
        });
    }
    if let Some(mtu) = conn.max_datagram_size() {
        link.set_max_datagram_bytes(mtu);
    }
    link.client_arrived();
    shared.host.players().forget(link.name());
    if let Some(old) = shared.sessions.claim_name(&link)
        && !Arc::ptr_eq(&old, &link)
    {
        old.kick(ErrorCode::Replaced, "the player connected again");
    }
    Ok(Some(link))
}

/// Asks the cluster whether `zone` is served here: `Ok` to go on, or the answer that
/// sends the player elsewhere (a redirect with a token signed for the zone's host) or
/// back later.
async fn admit_in_cluster(
    cluster: &ClusterRuntime,
    entry: &Entry,
    session: SessionId,
    zone: ZoneId,
    record: Option<&PlayerRecord>,
) -> Result<(), JoinRefused> {
    match admission_within(cluster, zone, entry.redirect.is_some(), JOIN_WAIT).await {
        Admission::Welcome { .. } => Ok(()),
        Admission::Redirect { to } => {
            let Some(addr) = cluster.client_addr_of(to) else {
                // The host left the view since the answer: ask again shortly.
                return Err(JoinRefused::Loading(LOADING_RETRY_MS));
            };
            let token = cluster
                .redirects()
                .issue(&entry.player, session.0, zone, to)
                .map_err(|e| JoinRefused::Internal(format!("cannot sign redirect: {e}")))?;
            cluster.forward_record(to, &entry.player, record);
            cluster.flush_tls_sessions();
            let addr = addr.to_string();
            Err(JoinRefused::Redirect { addr, token })
        }
        Admission::Loading { retry_after_ms } => Err(JoinRefused::Loading(retry_after_ms)),
        Admission::Busy { .. } | Admission::Refuse(_) => Err(JoinRefused::Busy),
    }
}

/// How often a connection waiting on a lookup or an activation asks again.
const ADMIT_POLL: Duration = Duration::from_millis(5);

/// The cluster's answer for `zone`, waiting up to `wait` while it is `Loading`: a
/// lookup or an activation usually takes a few milliseconds, far less than the retry a
/// `Loading` answer would cost the client.
async fn admission_within(
    cluster: &ClusterRuntime,
    zone: ZoneId,
    redirected: bool,
    wait: Duration,
) -> Admission {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let answer = cluster.admit(zone, redirected);
        let loading = matches!(answer, Admission::Loading { .. });
        if !loading || tokio::time::Instant::now() + ADMIT_POLL > deadline {
            return answer;
        }
        tokio::time::sleep(ADMIT_POLL).await;
    }
}

/// Claims the player for this session on this node (see
/// [`ClusterRuntime::claim_player`]). The claim reports the version of the stored
/// record: a session that ended elsewhere just before may have saved a newer one than
/// the record this join read (or was forwarded), and then the player is asked to retry
/// so that everything is decided from the newest record, read afresh.
async fn claim_in_cluster(
    cluster: &ClusterRuntime,
    player: &str,
    session: SessionId,
    record_version: Option<u64>,
    shared: &Shared,
) -> Result<(), JoinRefused> {
    let players = shared.host.players();
    let retry = JoinRefused::Loading(LOADING_RETRY_MS);
    match cluster.claim_player(player, session.0).await {
        Ok(Some(RecordVersion(stored))) if stored == record_version => Ok(()),
        Ok(_) => {
            players.forget(player);
            Err(retry)
        }
        Err(e) => {
            tracing::warn!(player, "cannot claim the player: {e}");
            Err(JoinRefused::Busy)
        }
    }
}

/// A retry hint in whole milliseconds.
fn retry_hint_ms(wait: Duration) -> u32 {
    u32::try_from(wait.as_millis()).unwrap_or(u32::MAX)
}

/// Where a player enters: its saved zone and position, or the game's spawn point for
/// a new player (or one whose saved zone no longer exists).
fn placement(
    name: &str,
    record: Option<PlayerRecord>,
    shared: &Shared,
) -> (ZoneId, Vec2, Option<Bytes>) {
    let layout = &shared.zones.layout;
    if let Some(r) = record {
        let zone = ZoneId(r.zone);
        let pos = Vec2::new(r.x, r.y);
        if layout.zones().any(|z| z == zone) && pos.x.is_finite() && pos.y.is_finite() {
            return (zone, layout.bounds(zone).clamp(pos), Some(r.data));
        }
        tracing::warn!(
            player = name,
            zone = r.zone,
            "saved zone not in this world; respawning"
        );
    }
    let spawn = (shared.zones.rules.spawn_point)(name);
    (layout.zone_at(spawn), spawn, None)
}

async fn answer_busy(conn: &Connection, send: &mut SendStream, shared: &Shared) -> End {
    let retry_after_ms =
        u32::try_from(shared.limits.busy_retry_after.as_millis()).unwrap_or(u32::MAX);
    let answer = ServerControl::Busy { retry_after_ms };
    answer_and_close(conn, send, answer, ErrorCode::Busy).await
}

/// Sends a final answer and gives the client a moment to read it: closing at once
/// would discard the unsent frame. The client closes on reading it; else we do.
async fn answer_and_close(
    conn: &Connection,
    send: &mut SendStream,
    answer: ServerControl,
    code: ErrorCode,
) -> End {
    let message = match &answer {
        ServerControl::Error { message, .. } => message.clone(),
        _ => format!("{code:?}"),
    };
    let written = tokio::time::timeout(ANSWER_LINGER, async {
        send.write_all(&answer.to_frame()).await.ok()?;
        send.finish().ok()?;
        conn.closed().await;
        Some(())
    })
    .await;
    match written {
        Ok(_) => End::Answered(code),
        Err(_) => End::Close(code, message),
    }
}

/// The playing phase: relay both ways until someone ends the session.
async fn play(
    conn: &Connection,
    send: &mut SendStream,
    control: &mut ControlReader,
    link: &Arc<ClientLink>,
    shared: &Shared,
) -> End {
    let mut shutdown = shared.shutdown.clone();
    if *shutdown.borrow_and_update() {
        return End::close(ErrorCode::ServerShutdown, "server shutting down");
    }
    let mut relay = Relay::new(link, shared);
    loop {
        let step = tokio::select! {
            _ = shutdown.changed() => Err(End::close(ErrorCode::ServerShutdown, "server shutting down")),
            () = link.woken() => relay.flush(conn, send).await,
            datagram = conn.read_datagram() => match datagram {
                Ok(bytes) => relay.on_datagram(&bytes),
                Err(_) => Err(End::Lost),
            },
            frame = control.next() => match frame {
                Ok(Some(msg)) => relay.on_control(msg),
                Ok(None) => Err(End::close(ErrorCode::Normal, "control stream finished")),
                Err(end) => Err(end),
            },
        };
        if let Err(end) = step {
            return end;
        }
    }
}

/// Per-session relay state: limiters and congestion tracking.
struct Relay<'a> {
    link: &'a Arc<ClientLink>,
    shared: &'a Shared,
    inputs: RateLimiter,
    events: RateLimiter,
    actions: SessionActions,
    slow: SlowClientDetector,
    replaced_seen: u64,
}

impl<'a> Relay<'a> {
    fn new(link: &'a Arc<ClientLink>, shared: &'a Shared) -> Self {
        let now = Instant::now();
        let limits = &shared.limits;
        Self {
            link,
            shared,
            inputs: RateLimiter::new(limits.input_rate, now),
            events: RateLimiter::new(limits.event_rate, now),
            actions: SessionActions::new(shared.actions.clone()),
            slow: SlowClientDetector::new(limits.slow_client_grace),
            replaced_seen: 0,
        }
    }

    /// Sends the pending snapshot and reliable messages; ends the session on a kick.
    async fn flush(&mut self, conn: &Connection, send: &mut SendStream) -> Result<(), End> {
        if let Some(kick) = self.link.kicked() {
            return Err(End::Close(kick.code, kick.message));
        }
        if let Some(size) = conn.max_datagram_size() {
            self.link.set_max_datagram_bytes(size);
        }
        self.send_snapshot(conn)?;
        for msg in self.link.drain_control() {
            let frame = msg.to_frame();
            match tokio::time::timeout(
                self.shared.limits.control_write_timeout,
                send.write_all(&frame),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(End::Lost),
                Err(_) => {
                    return Err(End::close(
                        ErrorCode::SlowClient,
                        "client stopped reading reliable messages",
                    ));
                }
            }
        }
        Ok(())
    }

    fn send_snapshot(&mut self, conn: &Connection) -> Result<(), End> {
        if let Some(batch) = self.link.take_snapshot() {
            for datagram in batch.datagrams {
                match conn.send_datagram(Bytes::from(datagram)) {
                    Ok(()) => {}
                    // The path MTU shrank after the snapshot was built; the next one is
                    // built for the new size, so skipping this one loses nothing lasting.
                    Err(SendDatagramError::TooLarge) => {}
                    Err(_) => return Err(End::Lost),
                }
            }
        }
        let replaced = self.link.snapshots_replaced();
        let congested = replaced > self.replaced_seen
            || conn.datagram_send_buffer_space() < DATAGRAM_SEND_BUFFER / 4;
        self.replaced_seen = replaced;
        if self.slow.observe(Instant::now(), congested) {
            return Err(End::close(
                ErrorCode::SlowClient,
                "connection could not keep up with snapshots",
            ));
        }
        Ok(())
    }

    fn on_datagram(&mut self, bytes: &[u8]) -> Result<(), End> {
        match self.inputs.check(Instant::now()) {
            RateVerdict::Allow => {}
            RateVerdict::Drop => return Ok(()),
            RateVerdict::Flood => {
                return Err(End::close(
                    ErrorCode::InputFlood,
                    "input rate limit exceeded",
                ));
            }
        }
        let datagram = ClientDatagram::decode(bytes).map_err(|e| {
            End::close(
                ErrorCode::ProtocolViolation,
                format!("malformed datagram: {e}"),
            )
        })?;
        let ClientDatagram::Input { ack, inputs } = datagram;
        let msg = ZoneMessage::Input {
            session: self.link.session(),
            ack,
            inputs,
        };
        // A full inbox drops the input (counted by the router); inputs are redundant.
        let _ = self.shared.zones.router.send(self.link.zone(), msg);
        Ok(())
    }

    fn on_control(&mut self, msg: ClientControl) -> Result<(), End> {
        match msg {
            ClientControl::Hello { .. } => {
                Err(End::close(ErrorCode::ProtocolViolation, "hello sent twice"))
            }
            ClientControl::Goodbye => Err(End::close(ErrorCode::Normal, "goodbye")),
            ClientControl::GameEvent { kind, payload } => self.on_game_event(kind, payload),
            ClientControl::DurableAction { id, kind, payload } => {
                self.on_durable_action(CommittedAction { id, kind, payload })
            }
        }
    }

    fn on_durable_action(&mut self, action: CommittedAction) -> Result<(), End> {
        match self.events.check(Instant::now()) {
            RateVerdict::Allow => {}
            // Durable actions share the reliable-event budget: over it ends the session.
            RateVerdict::Drop | RateVerdict::Flood => {
                return Err(End::close(
                    ErrorCode::InputFlood,
                    "game event rate limit exceeded",
                ));
            }
        }
        self.actions.submit(self.link, action);
        Ok(())
    }

    fn on_game_event(&mut self, kind: u16, payload: Vec<u8>) -> Result<(), End> {
        match self.events.check(Instant::now()) {
            RateVerdict::Allow => {}
            // A reliable event cannot be dropped silently: over the limit ends the session.
            RateVerdict::Drop | RateVerdict::Flood => {
                return Err(End::close(
                    ErrorCode::InputFlood,
                    "game event rate limit exceeded",
                ));
            }
        }
        let msg = ZoneMessage::GameEvent {
            session: self.link.session(),
            kind,
            payload,
        };
        // Sent for handling now: a request the player is waiting on is answered before
        // the next tick (other events are queued for the tick's systems either way).
        match self.shared.zones.router.send_now(self.link.zone(), msg) {
            Ok(()) => Ok(()),
            Err(_) => Err(End::close(
                ErrorCode::Busy,
                "zone overloaded; the game event was not processed",
            )),
        }
    }
}

/// Reads control frames from the client's stream.
struct ControlReader {
    recv: RecvStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl ControlReader {
    fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::default(),
            buf: vec![0; READ_CHUNK],
        }
    }

    /// The next message; `Ok(None)` when the client finished the stream. Cancel-safe:
    /// bytes are only consumed once a read completed.
    async fn next(&mut self) -> Result<Option<ClientControl>, End> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(body)) => {
                    return ClientControl::decode(&body).map(Some).map_err(|e| {
                        End::close(
                            ErrorCode::ProtocolViolation,
                            format!("malformed frame: {e}"),
                        )
                    });
                }
                Ok(None) => {}
                Err(e @ DecodeError::TooLong { .. }) => {
                    return Err(End::close(ErrorCode::FrameTooLarge, e.to_string()));
                }
                Err(e) => return Err(End::close(ErrorCode::ProtocolViolation, e.to_string())),
            }
            match self.recv.read(&mut self.buf).await {
                Ok(Some(n)) => self.decoder.push(&self.buf[..n]),
                Ok(None) => return Ok(None),
                Err(_) => return Err(End::Lost),
            }
        }
    }
}

/// QUIC close reasons must fit in a packet; keep them short.
fn truncate_reason(message: &str) -> &[u8] {
    let mut end = message.len().min(200);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message.as_bytes()[..end]
}
