//! Messages about players' sessions between the nodes' runtimes (not the cores): a
//! node that is about to let a player in asks the node holding the player's previous
//! session to end it, so no player is ever in two nodes' worlds at once.
//!
//! They travel as unreliable datagrams: the asking node asks again on each retry of
//! the player's connect (every few hundred milliseconds) until the claim is free.

use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::ids::{PLAYER_NAME_MAX, validate_player_name};
use zonemesh_shared::node::NodeRef;

const TAG_END_SESSION: u8 = 1;

/// A message about a player's session.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        }
        w.into_vec()
    }

    /// Reads the wire form; anything else (an unknown tag, a bad player name,
    /// trailing bytes) is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            TAG_END_SESSION => SessionMsg::EndSession {
                to: NodeRef::decode(&mut r)?,
                player: r.str("player", PLAYER_NAME_MAX)?.to_owned(),
                session: r.varint()?,
            },
            _ => return Err(DecodeError::InvalidValue("session message tag")),
        };
        r.finish()?;
        let SessionMsg::EndSession { player, .. } = &msg;
        validate_player_name(player).map_err(|_| DecodeError::InvalidValue("player"))?;
        Ok(msg)
    }
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
