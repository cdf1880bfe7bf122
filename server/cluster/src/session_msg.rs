//! Messages about players' sessions between the nodes' runtimes (not the cores): a
//! node that is about to let a player in asks the node holding the player's previous
//! session to end it, so no player is ever in two nodes' worlds at once.
//!
//! They travel as unreliable datagrams: the asking node asks again on each retry of
//! the player's connect (every few hundred milliseconds) until the claim is free.
//!
//! Nodes also share the TLS sessions they issue to clients ([`SessionMsg::TlsSessions`]),
//! so a client redirected or moved to another node resumes there with 0-RTT. A lost
//! message only costs such a client a full handshake.

use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::ids::{PLAYER_NAME_MAX, validate_player_name};
use zonemesh_shared::node::NodeRef;

const TAG_END_SESSION: u8 = 1;
const TAG_TLS_SESSIONS: u8 = 2;
const TAG_PLAYER_RECORD: u8 = 3;

/// Largest player data forwarded with a redirect; a larger record is read from the
/// store by the node the player is sent to.
pub const FORWARDED_DATA_MAX: usize = 64 * 1024;

/// A player's saved record as the node that redirected it read it (the store's
/// `PlayerRecord` without the name).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardedRecord {
    /// The zone the player is in.
    pub zone: u32,
    /// Position.
    pub x: f32,
    /// Position.
    pub y: f32,
    /// The game's data for the player, at most [`FORWARDED_DATA_MAX`] bytes.
    pub data: Vec<u8>,
    /// When it was saved (informational).
    pub updated_at_unix_ms: u64,
    /// The record's version.
    pub version: u64,
}

/// Longest TLS session id shared (rustls issues 32-byte ids).
pub const SHARED_SESSION_ID_MAX: usize = 64;
/// Longest encoded TLS session shared (rustls' run to a few hundred bytes).
pub const SHARED_SESSION_VALUE_MAX: usize = 2_048;
/// Most TLS sessions in one message.
pub const SHARED_SESSIONS_PER_MESSAGE_MAX: usize = 64;

/// A TLS session a node issued to a client: the ticket id the client holds and the
/// encoded session (its resumption secret: it travels only on the authenticated,
/// encrypted node links).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSession {
    /// The ticket id.
    pub id: Vec<u8>,
    /// The encoded session.
    pub value: Vec<u8>,
}

impl SharedSession {
    /// Bytes it takes in a message (length prefixes included).
    pub fn encoded_len(&self) -> usize {
        self.id.len() + self.value.len() + 4
    }
}

impl std::fmt::Debug for SharedSession {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSession")
            .field("id_len", &self.id.len())
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// A message about a player's session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionMsg {
    /// `player` logged in on another node: end its session `session` here (with
    /// `Replaced`), save it, and give its claim back.
    EndSession {
        /// The node run the session is on; any other run ignores the message.
        to: NodeRef,
        /// The player.
        player: String,
        /// The session to end; a newer session of the player is left alone.
        session: u64,
    },
    /// TLS sessions the sender issued, for resuming clients that come here.
    TlsSessions {
        /// At most [`SHARED_SESSIONS_PER_MESSAGE_MAX`].
        sessions: Vec<SharedSession>,
    },
    /// The sender redirected `player` here at connect time and read its record: the
    /// receiver need not read it again (the claim it makes tells it whether the
    /// record is still the newest).
    PlayerRecord {
        /// The node run the player was sent to; any other run ignores the message.
        to: NodeRef,
        /// The player.
        player: String,
        /// Its record (`None`: a new player).
        record: Option<ForwardedRecord>,
    },
}

impl SessionMsg {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        match self {
            SessionMsg::EndSession {
                to,
                player,
                session,
            } => {
                w.u8(TAG_END_SESSION);
                to.encode(&mut w);
                w.str(player);
                w.varint(*session);
            }
            SessionMsg::TlsSessions { sessions } => {
                w.u8(TAG_TLS_SESSIONS);
                w.varint(sessions.len() as u64);
                for session in sessions {
                    w.bytes(&session.id);
                    w.bytes(&session.value);
                }
            }
            SessionMsg::PlayerRecord { to, player, record } => {
                w.u8(TAG_PLAYER_RECORD);
                to.encode(&mut w);
                w.str(player);
                match record {
                    None => w.u8(0),
                    Some(r) => {
                        w.u8(1);
                        w.u32(r.zone);
                        w.u32(r.x.to_bits());
                        w.u32(r.y.to_bits());
                        w.bytes(&r.data);
                        w.varint(r.updated_at_unix_ms);
                        w.varint(r.version);
                    }
                }
            }
        }
        w.into_vec()
    }

    /// Reads the wire form; anything else (an unknown tag, a bad player name, too
    /// many or too large sessions, trailing bytes) is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            TAG_END_SESSION => {
                let to = NodeRef::decode(&mut r)?;
                let player = r.str("player", PLAYER_NAME_MAX)?.to_owned();
                validate_player_name(&player).map_err(|_| DecodeError::InvalidValue("player"))?;
                SessionMsg::EndSession {
                    to,
                    player,
                    session: r.varint()?,
                }
            }
            TAG_TLS_SESSIONS => {
                let n = r.count("tls sessions", SHARED_SESSIONS_PER_MESSAGE_MAX)?;
                let mut sessions = Vec::with_capacity(n);
                for _ in 0..n {
                    sessions.push(SharedSession {
                        id: r.bytes("tls session id", SHARED_SESSION_ID_MAX)?.to_vec(),
                        value: r.bytes("tls session", SHARED_SESSION_VALUE_MAX)?.to_vec(),
                    });
                }
                SessionMsg::TlsSessions { sessions }
            }
            TAG_PLAYER_RECORD => {
                let to = NodeRef::decode(&mut r)?;
                let player = r.str("player", PLAYER_NAME_MAX)?.to_owned();
                validate_player_name(&player).map_err(|_| DecodeError::InvalidValue("player"))?;
                let record = match r.u8()? {
                    0 => None,
                    1 => Some(decode_record(&mut r)?),
                    _ => return Err(DecodeError::InvalidValue("record presence")),
                };
                SessionMsg::PlayerRecord { to, player, record }
            }
            _ => return Err(DecodeError::InvalidValue("session message tag")),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn decode_record(r: &mut Reader<'_>) -> Result<ForwardedRecord, DecodeError> {
    let record = ForwardedRecord {
        zone: r.u32()?,
        x: f32::from_bits(r.u32()?),
        y: f32::from_bits(r.u32()?),
        data: r.bytes("player data", FORWARDED_DATA_MAX)?.to_vec(),
        updated_at_unix_ms: r.varint()?,
        version: r.varint()?,
    };
    if !(record.x.is_finite() && record.y.is_finite()) {
        return Err(DecodeError::InvalidValue("player position"));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(player: &str) -> SessionMsg {
        SessionMsg::EndSession {
            to: NodeRef::new(7, 3),
            player: player.into(),
            session: u64::MAX - 1,
        }
    }

    #[test]
    fn round_trips() {
        let msg = end("alice");
        assert_eq!(SessionMsg::decode(&msg.encode()), Ok(msg));
    }

    fn tls(n: usize) -> SessionMsg {
        let sessions = (0..n)
            .map(|i| SharedSession {
                id: vec![i as u8; 32],
                value: vec![7; 300],
            })
            .collect();
        SessionMsg::TlsSessions { sessions }
    }

    #[test]
    fn tls_sessions_round_trip_and_cut_ones_are_refused() {
        let msg = tls(3);
        let bytes = msg.encode();
        assert_eq!(SessionMsg::decode(&bytes), Ok(msg));
        for cut in 0..bytes.len() {
            assert!(SessionMsg::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn too_many_or_too_large_tls_sessions_are_refused() {
        let many = tls(SHARED_SESSIONS_PER_MESSAGE_MAX + 1).encode();
        assert!(SessionMsg::decode(&many).is_err());
        let large = SessionMsg::TlsSessions {
            sessions: vec![SharedSession {
                id: vec![1; 32],
                value: vec![0; SHARED_SESSION_VALUE_MAX + 1],
            }],
        };
        assert!(SessionMsg::decode(&large.encode()).is_err());
        let debug = format!("{:?}", tls(1));
        assert!(
            !debug.contains("7, 7"),
            "the secret is never printed: {debug}"
        );
    }

    fn forwarded(x: f32) -> SessionMsg {
        SessionMsg::PlayerRecord {
            to: NodeRef::new(2, 9),
            player: "alice".into(),
            record: Some(ForwardedRecord {
                zone: 7,
                x,
                y: -3.5,
                data: vec![1, 2, 3],
                updated_at_unix_ms: 1_700_000_000_000,
                version: (5 << 32) | 17,
            }),
        }
    }

    #[test]
    fn forwarded_records_round_trip_and_bad_ones_are_refused() {
        for msg in [
            forwarded(12.25),
            SessionMsg::PlayerRecord {
                to: NodeRef::new(1, 1),
                player: "newcomer".into(),
                record: None,
            },
        ] {
            let bytes = msg.encode();
            assert_eq!(SessionMsg::decode(&bytes), Ok(msg));
            for cut in 0..bytes.len() {
                assert!(SessionMsg::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        assert!(SessionMsg::decode(&forwarded(f32::NAN).encode()).is_err());
        assert!(SessionMsg::decode(&forwarded(f32::INFINITY).encode()).is_err());
        let SessionMsg::PlayerRecord { to, player, record } = forwarded(1.0) else {
            unreachable!("built above");
        };
        let mut record = record.expect("built with one");
        record.data = vec![0; FORWARDED_DATA_MAX + 1];
        let large = SessionMsg::PlayerRecord {
            to,
            player,
            record: Some(record),
        };
        assert!(SessionMsg::decode(&large.encode()).is_err());
    }

    #[test]
    fn anything_else_is_refused() {
        let bytes = end("alice").encode();
        for cut in 0..bytes.len() {
            assert!(SessionMsg::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(SessionMsg::decode(&trailing).is_err());
        let mut unknown = bytes;
        unknown[0] = 9;
        assert!(SessionMsg::decode(&unknown).is_err());
        assert!(SessionMsg::decode(&end("not a name!").encode()).is_err());
    }
}
