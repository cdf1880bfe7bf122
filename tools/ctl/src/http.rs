//! A minimal blocking HTTP/1.1 client: one `GET` or body-less `POST` per connection,
//! a bounded `Content-Length` body, one deadline for the whole exchange.

use crate::BODY_BYTES_MAX;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest response head read (status line and headers).
const HEAD_BYTES_MAX: usize = 16 * 1024;

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, sending or receiving failed (timeouts included).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The answer was not HTTP/1.x as this client reads it.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The status was not 200.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, for the message.
        body: String,
    },
    /// The body is larger than [`BODY_BYTES_MAX`].
    #[error("response body larger than {BODY_BYTES_MAX} bytes")]
    TooLarge,
    /// The whole exchange took longer than its deadline.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
}

/// `method path` (`GET`, or `POST` without a body) to `addr`; the body of a `200`
/// answer.
pub(crate) fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Vec<u8>, HttpError> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method == "POST" {
        request.push_str("Content-Length: 0\r\n");
    }
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request.as_bytes())?;
    let raw = read_until_closed(&mut stream, deadline, timeout)?;
    parse_response(&raw)
}

/// Reads until the peer closes, at most head + body bytes, by `deadline`.
fn read_until_closed(
    stream: &mut TcpStream,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, HttpError> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout(timeout));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(HttpError::Timeout(timeout));
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > HEAD_BYTES_MAX + BODY_BYTES_MAX {
            return Err(HttpError::TooLarge);
        }
    }
}

/// The body of a complete `200` response held in `raw`.
fn parse_response(raw: &[u8]) -> Result<Vec<u8>, HttpError> {
    let head_end = raw
        .windows(4)
        .take(HEAD_BYTES_MAX)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(HttpError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|_| HttpError::Malformed("headers are not UTF-8"))?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status = parse_status_line(lines.next().unwrap_or(""))?;
    let length = content_length(lines)?;
    let body = match length {
        Some(n) if body.len() < n => return Err(HttpError::Malformed("body cut short")),
        Some(n) => &body[..n],
        None => body,
    };
    if body.len() > BODY_BYTES_MAX {
        return Err(HttpError::TooLarge);
    }
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        return Err(HttpError::Status {
            status,
            body: text.trim().to_owned(),
        });
    }
    Ok(body.to_vec())
}

fn parse_status_line(line: &str) -> Result<u16, HttpError> {
    let mut parts = line.split(' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not an HTTP/1.x status line"));
    }
    parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or(HttpError::Malformed("no status code"))
}

/// The `Content-Length`, if given; chunked bodies are refused (the endpoint never
/// sends them for the documents this client reads).
fn content_length<'a>(headers: impl Iterator<Item = &'a str>) -> Result<Option<usize>, HttpError> {
    let mut length = None;
    for line in headers {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Malformed("a header line without ':'"));
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed("chunked bodies are not supported"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .trim()
                .parse()
                .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
            length = Some(n);
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_answer_yields_its_body() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nhello";
        assert_eq!(parse_response(raw).unwrap(), b"hello");
        let no_length = b"HTTP/1.0 200 OK\r\n\r\nuntil closed";
        assert_eq!(parse_response(no_length).unwrap(), b"until closed");
    }

    #[test]
    fn errors_say_what_was_wrong() {
        let e = parse_response(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 6\r\n\r\nno way")
            .unwrap_err();
        assert!(matches!(e, HttpError::Status { status: 401, ref body } if body == "no way"));
        for (raw, what) in [
            (&b"garbage"[..], "no end of headers"),
            (b"SSH-2.0 x\r\n\r\n", "not an HTTP/1.x"),
            (b"HTTP/1.1 OK\r\n\r\n", "no status code"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
                "cut short",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "chunked",
            ),
            (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "without ':'"),
        ] {
            let e = parse_response(raw).unwrap_err().to_string();
            assert!(e.contains(what), "{e} (wanted {what})");
        }
    }
}
