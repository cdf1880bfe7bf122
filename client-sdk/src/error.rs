//! [`ClientError`]: everything that can go wrong connecting, sending or loading
//! configuration, as one typed enum.

use crate::events::DisconnectReason;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use zonemesh_shared::codec::DecodeError;
use zonemesh_shared::control::ErrorCode;
use zonemesh_shared::token::TokenError;

/// Why a client operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A local IO operation failed (binding the UDP socket, starting a runtime).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// TLS could not be set up, or the server's certificate was not accepted.
    #[error("TLS: {0}")]
    Tls(String),
    /// quinn refused to start a connection (bad server name or address, endpoint
    /// stopping).
    #[error("cannot start connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed or was closed during the handshake.
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// One attempt (QUIC handshake plus `Hello`/answer) took longer than allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The overall connect deadline passed; `last` is the last attempt's failure.
    #[error("gave up connecting after {attempts} attempts; last error: {last}")]
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// Why the last attempt failed.
        last: Box<ClientError>,
    },
    /// The servers redirected more often than `ClientConfig::max_redirects` allows.
    #[error("more than {limit} redirects")]
    TooManyRedirects {
        /// The configured limit.
        limit: u32,
    },
    /// The server refused the session (`Error` answer or a refusing close code).
    #[error("rejected by server ({code:?}): {message}")]
    Rejected {
        /// The server's reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// The server is busy or still loading the zone; retried until the deadline.
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// The server sent bytes that do not decode.
    #[error("protocol error: {0}")]
    Protocol(#[from] DecodeError),
    /// The server sent a well-formed message that makes no sense at this point.
    #[error("unexpected message from server: {0}")]
    UnexpectedMessage(String),
    /// The session has ended.
    #[error("session closed: {reason}")]
    Closed {
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// A datagram could not be sent (datagrams unsupported or disabled by the peer).
    #[error("cannot send datagram: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
    /// Writing to the control stream failed.
    #[error("cannot write control stream: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading the control stream failed.
    #[error("cannot read control stream: {0}")]
    Read(#[from] quinn::ReadError),
    /// The game passed something the protocol cannot carry.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A `zonemesh dev` data directory file is missing or malformed.
    #[error("bad dev data {}: {reason}", path.display())]
    BadDevData {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A session token could not be minted.
    #[error("cannot mint token: {0}")]
    Token(#[from] TokenError),
}

impl ClientError {
    /// A [`ClientError::Io`] with context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// A [`ClientError::BadDevData`].
    pub(crate) fn bad_dev_data(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::BadDevData {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
