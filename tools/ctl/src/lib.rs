//! `zonemesh-ctl` as a library: [`AdminClient`] asks a node's admin endpoint for its
//! [`NodeStatusReport`]. The swarm, the scenario runner and the tests read the
//! server's own figures through it, so nobody infers them from logs or client-side
//! guesses.
//!
//! The client speaks just enough HTTP/1.1 for the endpoint: one `GET` per connection
//! (`Connection: close`), a `Content-Length` body of at most [`BODY_BYTES_MAX`], and a
//! deadline on the whole exchange. It is blocking; async callers run it on a blocking
//! thread.

mod http;

pub use http::HttpError;

use std::net::SocketAddr;
use std::time::Duration;
use zonemesh_shared::status::{MoveStarted, MovesReport, NodeStatusReport};

/// Largest response body read.
pub const BODY_BYTES_MAX: usize = 8 << 20;

/// Where a node's admin endpoint is and how to ask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminClient {
    /// The endpoint's TCP address.
    pub addr: SocketAddr,
    /// Bearer token, when the endpoint requires one.
    pub token: Option<String>,
    /// Deadline for one request (connect, send, receive).
    pub timeout: Duration,
}

/// Why asking the endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request could not be made or answered.
    #[error("admin endpoint {addr}: {source}")]
    Http {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: HttpError,
    },
    /// The endpoint answered something that is not the JSON document asked for.
    #[error("admin endpoint {addr}: the answer is not the expected JSON: {source}")]
    BadStatus {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The bearer token in `path`: its first line, trimmed (how `zonemesh dev
/// --admin-token-file` reads it).
pub fn read_token_file(path: &std::path::Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().next().unwrap_or("").trim().to_owned())
}

impl AdminClient {
    /// A client for `addr` without a token, with a 5 s deadline.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// The node's status document (`GET /status`).
    pub fn status(&self) -> Result<NodeStatusReport, AdminError> {
        let body = self.get("/status")?;
        self.json(&body)
    }

    /// Live zone moves the node started, in progress and recent (`GET /moves`).
    pub fn moves(&self) -> Result<MovesReport, AdminError> {
        let body = self.get("/moves")?;
        self.json(&body)
    }

    /// Asks the node to move zone (`x`, `y`), which it holds, to node `to` (its id
    /// as `status` shows it); the move's id. The move runs on; `moves` follows it.
    pub fn move_zone(&self, x: u16, y: u16, to: &str) -> Result<u64, AdminError> {
        let body = self.send("POST", &format!("/zones/{x}/{y}/move-to/{to}"))?;
        let started: MoveStarted = self.json(&body)?;
        Ok(started.id)
    }

    /// Asks the node to move every zone it holds to other nodes (`POST /drain`).
    pub fn drain(&self) -> Result<(), AdminError> {
        self.send("POST", "/drain").map(drop)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, AdminError> {
        serde_json::from_slice(body).map_err(|source| AdminError::BadStatus {
            addr: self.addr,
            source,
        })
    }

    /// Whether the node answers its liveness probe (`GET /healthz`).
    pub fn healthy(&self) -> Result<(), AdminError> {
        self.get("/healthz").map(drop)
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, AdminError> {
        self.send("GET", path)
    }

    fn send(&self, method: &str, path: &str) -> Result<Vec<u8>, AdminError> {
        http::request(method, self.addr, path, self.token.as_deref(), self.timeout).map_err(
            |source| AdminError::Http {
                addr: self.addr,
                source,
            },
        )
    }
}
