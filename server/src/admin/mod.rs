//! The admin HTTP endpoint: what programs and operators ask a running node.
//!
//! - `GET /healthz`: `200 ok` while the process serves (liveness; never authenticated,
//!   it reveals nothing).
//! - `GET /status`: the node's [`NodeStatusReport`](zonemesh_shared::status::NodeStatusReport) as JSON: tick counters and
//!   tick-time histograms since start, sessions, zones in memory.
//! - `GET /moves`: live zone moves this node started, in progress and recent
//!   ([`MovesReport`](zonemesh_shared::status::MovesReport)).
//! - `POST /zones/{x}/{y}/move-to/{node}`: starts moving zone (x, y), held here, to
//!   node `node` (its id); answers the move's id, or `409` and why not (`404` outside
//!   a cluster).
//! - `POST /drain`: moves every zone off this node so it can be stopped; `/status`
//!   says `drained` when it is done.
//!
//! Off unless asked for. On a loopback address it may run without a token; on any
//! other address it refuses to start without one, and with a token every path but
//! `/healthz` requires `Authorization: Bearer TOKEN`.

mod report;

pub use report::node_report;

use crate::net::StatusSource;
use anyhow::{Context, bail};
use axum::Router;
use axum::extract::Path as UrlPath;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest token file read (a token is a line of text).
const TOKEN_FILE_BYTES_MAX: u64 = 4096;
/// Shortest token accepted: a guessable token is no protection.
const TOKEN_MIN_CHARS: usize = 16;

/// Where the endpoint listens and who may ask.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// TCP address (port 0 picks one).
    pub listen: SocketAddr,
    /// Bearer token required on every path but `/healthz`; `None` only on loopback.
    pub token: Option<String>,
}

impl AdminConfig {
    /// Checks that a non-loopback address has a token.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.token.is_none() && !self.listen.ip().is_loopback() {
            bail!(
                "the admin endpoint on {} is reachable from other machines: give it a \
                 bearer token (--admin-token-file) or listen on a loopback address",
                self.listen
            );
        }
        Ok(())
    }
}

/// Reads a bearer token: the file's first line, trimmed, at least 16 characters.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TOKEN_FILE_BYTES_MAX).read_to_string(&mut text))
        .with_context(|| format!("cannot read admin token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.chars().count() < TOKEN_MIN_CHARS {
        bail!(
            "admin token file {}: the token (its first line) must be at least \
             {TOKEN_MIN_CHARS} characters",
            path.display()
        );
    }
    Ok(token)
}

/// A running admin endpoint.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Binds `config.listen` and serves `source`'s figures. Must run inside a tokio
    /// runtime.
    pub async fn start(config: AdminConfig, source: StatusSource) -> anyhow::Result<Self> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen for admin requests on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AdminState {
            source,
            token: config.token,
        });
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/status", get(status))
            .route("/moves", get(moves))
            .route("/drain", post(drain))
            .route("/zones/{x}/{y}/move-to/{node}", post(move_zone))
            .with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the admin endpoint stopped");
            }
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits (briefly) for requests in flight.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let wait = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task).await;
        if wait.is_err() {
            self.task.abort();
        }
    }
}

#[derive(Debug)]
struct AdminState {
    source: StatusSource,
    token: Option<String>,
}

impl AdminState {
    /// Whether `headers` carry the token (always true without one).
    fn authorised(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(offered.as_bytes(), token.as_bytes())
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn status(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !state.authorised(&headers) {
        return unauthorised();
    }
    json(&node_report(&state.source.status()))
}

async fn moves(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !state.authorised(&headers) {
        return unauthorised();
    }
    match state.source.cluster() {
        Some(cluster) => json(&cluster.moves()),
        None => not_clustered(),
    }
}

async fn move_zone(
    State(state): State<Arc<AdminState>>,
    UrlPath((x, y, node)): UrlPath<(u16, u16, String)>,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return unauthorised();
    }
    let Some(cluster) = state.source.cluster() else {
        return not_clustered();
    };
    let zone = zonemesh_shared::ids::ZoneId::grid(x, y);
    match cluster.move_zone(zone, &node, "asked on the admin endpoint") {
        Ok(id) => json(&zonemesh_shared::status::MoveStarted { id }),
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    }
}

async fn drain(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !state.authorised(&headers) {
        return unauthorised();
    }
    match state.source.cluster().map(|c| c.drain()) {
        Some(Ok(())) => "draining\n".into_response(),
        Some(Err(e)) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
        None => not_clustered(),
    }
}

fn not_clustered() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this node is not in a cluster: zones move only between nodes\n",
    )
        .into_response()
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        "a bearer token is required\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_without_token_is_refused() {
        let open = AdminConfig {
            listen: "0.0.0.0:9000".parse().unwrap(),
            token: None,
        };
        let e = open.validate().unwrap_err().to_string();
        assert!(e.contains("--admin-token-file"), "{e}");
        let local = AdminConfig {
            listen: "127.0.0.1:9000".parse().unwrap(),
            token: None,
        };
        local.validate().expect("loopback needs no token");
        let guarded = AdminConfig {
            listen: "[::]:9000".parse().unwrap(),
            token: Some("x".repeat(16)),
        };
        guarded.validate().expect("a token makes any address fine");
    }

    #[test]
    fn token_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  0123456789abcdef0123  \nsecond line\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "0123456789abcdef0123");
        std::fs::write(&path, "short\n").unwrap();
        let e = read_token_file(&path).unwrap_err().to_string();
        assert!(e.contains("at least 16"), "{e}");
        let e = read_token_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read admin token file"), "{e}");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
