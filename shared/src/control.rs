//! Reliable control-stream messages and their framing.
//!
//! Each frame on the control stream is a varint length followed by that many bytes of
//! one message. Frames longer than [`CONTROL_FRAME_MAX`] are a protocol violation, so a
//! peer can never make the other buffer more than one maximum frame.

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{NetId, ZoneId};

/// Largest control frame body accepted, in bytes.
pub const CONTROL_FRAME_MAX: usize = 16 * 1024;
/// Longest session token accepted in `Hello`.
pub const TOKEN_MAX: usize = 512;
/// Longest human-readable message in `Error`.
pub const MESSAGE_MAX: usize = 1024;
/// Largest payload of one reliable game event.
pub const GAME_EVENT_MAX: usize = 8 * 1024;
/// Longest address text in `Redirect`.
const ADDR_MAX: usize = 256;

/// Why the server refused or ended a session. Also used as the QUIC application close
/// code, so a client learns the reason even if the control stream is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// Normal end of a session.
    Normal = 0,
    /// A frame or datagram could not be decoded, or came out of order.
    ProtocolViolation = 1,
    /// A frame exceeded its size limit.
    FrameTooLarge = 2,
    /// The client speaks a protocol version this server does not.
    UnsupportedVersion = 3,
    /// The session token was missing, forged or expired.
    AuthFailed = 4,
    /// The client sent inputs faster than the per-client rate limit, for too long.
    InputFlood = 5,
    /// The client did not keep up with snapshots for too long.
    SlowClient = 6,
    /// The server is shutting down.
    ServerShutdown = 7,
    /// The client did not complete `Hello` in time.
    HandshakeTimeout = 8,
    /// An internal error on the server; the client may retry.
    Internal = 9,
    /// The server was at its connection limit (sent after `Busy`).
    Busy = 10,
    /// The same player connected again; the older session is closed.
    Replaced = 11,
    /// A redirect token's signature did not match: forged, or altered on the way.
    RedirectForged = 12,
    /// A redirect token had expired; the client must ask an entry node again.
    RedirectExpired = 13,
    /// A redirect token was presented a second time while still valid.
    RedirectReplayed = 14,
    /// A redirect token names another node, or another run of this one; the client must
    /// ask an entry node where its zone lives now.
    RedirectMisaddressed = 15,
    /// A redirect token was signed with a key this node does not hold (rotated out, or
    /// the nodes' key rings disagree).
    RedirectUnknownKey = 16,
    /// The zone this session was in is no longer served by this node (another node
    /// took it over); connect again and the cluster sends the player where it lives.
    ZoneMoved = 17,
}

impl ErrorCode {
    /// Every code, in wire-value order (wire values are `0..ALL.len()`).
    pub const ALL: [ErrorCode; 18] = {
        use ErrorCode::*;
        [
            Normal,
            ProtocolViolation,
            FrameTooLarge,
            UnsupportedVersion,
            AuthFailed,
            InputFlood,
            SlowClient,
            ServerShutdown,
            HandshakeTimeout,
            Internal,
            Busy,
            Replaced,
            RedirectForged,
            RedirectExpired,
            RedirectReplayed,
            RedirectMisaddressed,
            RedirectUnknownKey,
            ZoneMoved,
        ]
    };

    /// The code for a wire value; unknown values map to `Internal`.
    pub fn from_u16(v: u16) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| *c as u16 == v)
            .unwrap_or(Self::Internal)
    }
}

/// Messages from client to server on the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientControl {
    /// First frame of every connection.
    Hello {
        /// The client's [`crate::PROTOCOL_VERSION`].
        version: u16,
        /// A session token signed with the server secret ([`crate::token`]).
        token: String,
    },
    /// A reliable game event (chat, use-item, ...), handed to the game's handlers.
    GameEvent {
        /// Game-defined event kind.
        kind: u16,
        /// Game-defined payload.
        payload: Vec<u8>,
    },
    /// The client is leaving on purpose.
    Goodbye,
    /// A game action that must not be lost (a trade, a loot pickup). The server answers
    /// [`ServerControl::ActionCommitted`] only once it is durably stored, or
    /// [`ServerControl::ActionRejected`]. Sending the same `id` again (after a
    /// reconnect, say) is safe: it is committed and applied once.
    DurableAction {
        /// Client-chosen unique id (random 128 bits).
        id: u128,
        /// Game-defined action kind.
        kind: u16,
        /// Game-defined payload.
        payload: Vec<u8>,
    },
}

/// Messages from server to client on the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerControl {
    /// The session is admitted.
    Welcome {
        /// The player's own entity.
        player: NetId,
        /// The zone the player is in.
        zone: ZoneId,
        /// Simulation rate of the server.
        tick_hz: u16,
    },
    /// The zone lives on another server: reconnect there with this token.
    Redirect {
        /// Address of the owning server, `host:port`.
        addr: String,
        /// Token to present there.
        token: String,
    },
    /// The zone is being loaded; retry after about this long.
    Loading {
        /// Suggested wait before retrying, in milliseconds.
        retry_after_ms: u32,
    },
    /// The server is at capacity; retry after about this long.
    Busy {
        /// Suggested wait before retrying, in milliseconds.
        retry_after_ms: u32,
    },
    /// The session is refused or ended; the connection closes after this.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// The player crossed into another zone on the same connection.
    ZoneChanged {
        /// The zone the player is now in.
        zone: ZoneId,
    },
    /// A reliable game event for this client.
    GameEvent {
        /// Game-defined event kind.
        kind: u16,
        /// Game-defined payload.
        payload: Vec<u8>,
    },
    /// The durable action `id` is stored (now or by an earlier send of the same id).
    ActionCommitted {
        /// The action's id.
        id: u128,
    },
    /// The durable action `id` was not stored; it had no effect.
    ActionRejected {
        /// The action's id.
        id: u128,
        /// Why (`Busy`: retry later with the same id).
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// Writes a 128-bit id as 16 big-endian bytes.
fn put_u128(w: &mut Writer, v: u128) {
    let (hi, lo) = ((v >> 64) as u64, v as u64);
    for half in [hi, lo] {
        w.u32((half >> 32) as u32);
        w.u32(half as u32);
    }
}

/// Reads an id written by [`put_u128`].
fn get_u128(r: &mut Reader<'_>) -> Result<u128, DecodeError> {
    let mut v = 0u128;
    for _ in 0..4 {
        v = (v << 32) | u128::from(r.u32()?);
    }
    Ok(v)
}

impl ClientControl {
    /// Encodes the message body (without the frame length).
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Self::Hello { version, token } => {
                w.u8(1);
                w.u16(*version);
                w.str(token);
            }
            Self::GameEvent { kind, payload } => {
                w.u8(2);
                w.u16(*kind);
                w.bytes(payload);
            }
            Self::Goodbye => w.u8(3),
            Self::DurableAction { id, kind, payload } => {
                w.u8(4);
                put_u128(w, *id);
                w.u16(*kind);
                w.bytes(payload);
            }
        }
    }

    /// Decodes one message body; the whole input must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            1 => Self::Hello {
                version: r.u16()?,
                token: r.str("token", TOKEN_MAX)?.to_owned(),
            },
            2 => Self::GameEvent {
                kind: r.u16()?,
                payload: r.bytes("game event", GAME_EVENT_MAX)?.to_vec(),
            },
            3 => Self::Goodbye,
            4 => Self::DurableAction {
                id: get_u128(&mut r)?,
                kind: r.u16()?,
                payload: r.bytes("durable action", GAME_EVENT_MAX)?.to_vec(),
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "client control",
                    tag: tag.into(),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encodes the message as a complete length-prefixed frame.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut body = Writer::with_capacity(64);
        self.encode(&mut body);
        frame(body.as_slice())
    }
}

impl ServerControl {
    /// Encodes the message body (without the frame length).
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Self::Welcome {
                player,
                zone,
                tick_hz,
            } => {
                w.u8(1);
                w.varint(player.0);
                w.u32(zone.0);
                w.u16(*tick_hz);
            }
            Self::Redirect { addr, token } => {
                w.u8(2);
                w.str(addr);
                w.str(token);
            }
            Self::Loading { retry_after_ms } => {
                w.u8(3);
                w.varint((*retry_after_ms).into());
            }
            Self::Busy { retry_after_ms } => {
                w.u8(4);
                w.varint((*retry_after_ms).into());
            }
            Self::Error { code, message } => {
                w.u8(5);
                w.u16(*code as u16);
                w.str(message);
            }
            Self::ZoneChanged { zone } => {
                w.u8(6);
                w.u32(zone.0);
            }
            Self::GameEvent { kind, payload } => {
                w.u8(7);
                w.u16(*kind);
                w.bytes(payload);
            }
            Self::ActionCommitted { id } => {
                w.u8(8);
                put_u128(w, *id);
            }
            Self::ActionRejected { id, code, message } => {
                w.u8(9);
                put_u128(w, *id);
                w.u16(*code as u16);
                w.str(message);
            }
        }
    }

    /// Decodes one message body; the whole input must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            1 => Self::Welcome {
                player: NetId(r.varint()?),
                zone: ZoneId(r.u32()?),
                tick_hz: r.u16()?,
            },
            2 => Self::Redirect {
                addr: r.str("addr", ADDR_MAX)?.to_owned(),
                token: r.str("token", TOKEN_MAX)?.to_owned(),
            },
            3 => Self::Loading {
                retry_after_ms: r.varint_u32("retry_after_ms")?,
            },
            4 => Self::Busy {
                retry_after_ms: r.varint_u32("retry_after_ms")?,
            },
            5 => Self::Error {
                code: ErrorCode::from_u16(r.u16()?),
                message: r.str("message", MESSAGE_MAX)?.to_owned(),
            },
            6 => Self::ZoneChanged {
                zone: ZoneId(r.u32()?),
            },
            7 => Self::GameEvent {
                kind: r.u16()?,
                payload: r.bytes("game event", GAME_EVENT_MAX)?.to_vec(),
            },
            8 => Self::ActionCommitted {
                id: get_u128(&mut r)?,
            },
            9 => Self::ActionRejected {
                id: get_u128(&mut r)?,
                code: ErrorCode::from_u16(r.u16()?),
                message: r.str("message", MESSAGE_MAX)?.to_owned(),
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "server control",
                    tag: tag.into(),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encodes the message as a complete length-prefixed frame.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut body = Writer::with_capacity(64);
        self.encode(&mut body);
        frame(body.as_slice())
    }
}

/// Prefixes a message body with its varint length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(body.len() + 3);
    w.bytes(body);
    w.into_vec()
}

/// Splits a byte stream into frames. Sans-IO: the caller pushes whatever it read from
/// the stream and pulls complete frame bodies. It never holds more than one maximum
/// frame plus one read chunk, and rejects a length prefix above [`CONTROL_FRAME_MAX`]
/// as soon as it is seen.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame body, `Ok(None)` if more bytes are needed, or an error if
    /// the stream announced a frame that is too large or a malformed length.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let mut r = Reader::new(&self.buf);
        let len = match r.varint() {
            Ok(len) => len,
            Err(DecodeError::Truncated) => return Ok(None),
            Err(e) => return Err(e),
        };
        if len > CONTROL_FRAME_MAX as u64 {
            return Err(DecodeError::TooLong {
                field: "control frame",
                len,
                max: CONTROL_FRAME_MAX as u64,
            });
        }
        let header = self.buf.len() - r.remaining();
        let end = header + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let body = self.buf[header..end].to_vec();
        self.buf.drain(..end);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server_messages() -> Vec<ServerControl> {
        vec![
            ServerControl::Welcome {
                player: NetId(7),
                zone: ZoneId::grid(1, 2),
                tick_hz: 20,
            },
            ServerControl::Redirect {
                addr: "127.0.0.1:4433".into(),
                token: "t".into(),
            },
            ServerControl::Loading {
                retry_after_ms: 250,
            },
            ServerControl::Busy {
                retry_after_ms: 1000,
            },
            ServerControl::Error {
                code: ErrorCode::AuthFailed,
                message: "bad token".into(),
            },
            ServerControl::ZoneChanged {
                zone: ZoneId::grid(0, 1),
            },
            ServerControl::GameEvent {
                kind: 3,
                payload: vec![1, 2, 3],
            },
            ServerControl::ActionCommitted { id: u128::MAX - 5 },
            ServerControl::ActionRejected {
                id: 1 << 100,
                code: ErrorCode::Busy,
                message: "store busy".into(),
            },
        ]
    }

    #[test]
    fn server_messages_roundtrip_through_frames() {
        let mut dec = FrameDecoder::default();
        for m in server_messages() {
            dec.push(&m.to_frame());
        }
        for m in server_messages() {
            let body = dec.next_frame().unwrap().unwrap();
            assert_eq!(ServerControl::decode(&body).unwrap(), m);
        }
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn frames_split_across_reads_reassemble() {
        let m = ClientControl::Hello {
            version: 1,
            token: "abc".repeat(50),
        };
        let frame = m.to_frame();
        let mut dec = FrameDecoder::default();
        for b in &frame {
            assert_eq!(dec.next_frame().unwrap(), None);
            dec.push(std::slice::from_ref(b));
        }
        let body = dec.next_frame().unwrap().unwrap();
        assert_eq!(ClientControl::decode(&body).unwrap(), m);
    }

    #[test]
    fn oversized_frame_is_rejected_from_its_header() {
        let mut w = Writer::default();
        w.varint(CONTROL_FRAME_MAX as u64 + 1);
        let mut dec = FrameDecoder::default();
        dec.push(w.as_slice());
        assert!(matches!(dec.next_frame(), Err(DecodeError::TooLong { .. })));
    }

    #[test]
    fn error_codes_roundtrip_and_unknown_maps_to_internal() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, i, "ALL is in wire-value order");
            assert_eq!(ErrorCode::from_u16(code as u16), code);
        }
        assert_eq!(ErrorCode::from_u16(999), ErrorCode::Internal);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ClientControl::decode(&bytes);
            let _ = ServerControl::decode(&bytes);
            let mut dec = FrameDecoder::default();
            dec.push(&bytes);
            for _ in 0..bytes.len() + 1 {
                match dec.next_frame() {
                    Ok(Some(body)) => { let _ = ClientControl::decode(&body); }
                    _ => break,
                }
            }
        }

        #[test]
        fn durable_actions_roundtrip(id in any::<u128>(), kind in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let m = ClientControl::DurableAction { id, kind, payload };
            let mut w = Writer::default();
            m.encode(&mut w);
            prop_assert_eq!(ClientControl::decode(w.as_slice()).unwrap(), m);
        }

        #[test]
        fn client_events_roundtrip(kind in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let m = ClientControl::GameEvent { kind, payload };
            let mut w = Writer::default();
            m.encode(&mut w);
            prop_assert_eq!(ClientControl::decode(w.as_slice()).unwrap(), m);
        }
    }
}
