//! Continuing a client's view on another node: [`ViewHandover`], the summary of what a
//! client may hold, its wire format, and the view resumed from it.
//!
//! Within a node a [`ClientView`] simply moves with its player. Between nodes only
//! what the next node cannot know travels: where the client's snapshot numbering
//! stands and which entities (with their kinds) the client may show. A resumed view
//! knows nothing else and assumes nothing else:
//! - It has sent nothing, so it has no baselines: each held entity starts out as an
//!   entity that left the view with its despawn owed. If the new node's frame selects
//!   it, it comes back with a new life and a full (spawn) record, which the client
//!   applies in place to the entity it holds; otherwise its despawn goes out. From
//!   there on it is an entity like any other (budgets, priorities, tracking limit).
//! - Its snapshots continue the client's numbering, so they are newer than anything
//!   the old node sent (a client applies a record only if it is newer than the last one
//!   it applied to that entity). Acknowledgements of the old node's snapshots name
//!   sequence numbers this view never logged, so they do nothing.
//!
//! # The old view stops
//! The handover describes the old view as it stands: the old view must send the client
//! nothing more once the new one may (an entity it showed afterwards would be missing
//! from the handover, so nothing would ever despawn it). In the server the view travels
//! inside the player's transfer and is used again only if the transfer is taken back,
//! in which case the resumed view never gets the client.
//!
//! # Sequence gap
//! [`ClientView::handover`] reports a `next_seq` [`ViewHandover::SEQ_GAP`] past the
//! old view's own next number (two ticks of datagrams at most). This is defence in
//! depth against a race breaking the rule above (the old view building one more tick
//! after the handover was taken): the two views' numbers then still never collide, so
//! the new view cannot take the client's acknowledgement of a stray old snapshot for
//! its own and delta against a state the client never applied; the race costs only
//! the entities the stray tick newly showed. A client sees the gap as a few lost
//! datagrams.
//!
//! # Wire format
//! All integers are LEB128 varints unless stated:
//! ```text
//! u8      format, 1
//! varint  next_seq           at most ViewHandover::SEQ_MAX
//! varint  n_held             at most ViewHandover::HELD_MAX
//! n_held times:
//!   varint  net id
//!   u16     kind, little-endian
//! ```
//! Nothing may follow. The encoding is at most [`ViewHandover::ENCODED_LEN_MAX`] bytes.

use super::entity::Tracked;
use super::pack::DATAGRAMS_PER_TICK_MAX;
use super::{ClientView, ViewConfig};
use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::ids::NetId;

/// The only format so far; a leading version lets nodes of different releases reject
/// what they cannot read rather than misread it.
const FORMAT: u8 = 1;

/// Smallest encoded held entity (a one-byte id and the kind): bounds how much a
/// decoder allocates for an announced count before reading the entries.
const HELD_BYTES_MIN: usize = 3;

/// Largest encoded held entity (a ten-byte id and the kind).
const HELD_BYTES_MAX: usize = 12;

/// What a client may hold, enough for a view on another node to continue it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewHandover {
    /// Sequence number (unwrapped; the wire carries the low 32 bits) the resumed
    /// view's first snapshot carries: past every number the old view used, plus
    /// [`Self::SEQ_GAP`].
    pub next_seq: u64,
    /// Entities the client may hold, with the kind the old view knew each by (sorted
    /// by id as [`ClientView::handover`] lists them; the order carries no meaning).
    /// Listing one the client does not hold costs a despawn record; leaving out one
    /// it holds would leave it on the client's screen, so the list errs on the side
    /// of inclusion.
    pub held: Vec<(NetId, u16)>,
}

impl ViewHandover {
    /// Most entities a handover lists (more than any sensible
    /// [`ViewConfig::max_tracked_entities`]; a view tracking more hands over those
    /// with the lowest ids).
    pub const HELD_MAX: usize = 16_384;

    /// Sequence numbers skipped between the old view and the resumed one (see the
    /// module documentation).
    pub const SEQ_GAP: u64 = 2 * DATAGRAMS_PER_TICK_MAX as u64;

    /// Largest `next_seq` the format carries. Real numbering never gets near it
    /// (a view sends at most a few hundred datagrams a second); the bound keeps a
    /// resumed view's unwrapped counter far from overflowing whatever it is given.
    pub const SEQ_MAX: u64 = (1 << 62) - 1;

    /// Longest encoding: the format byte, a nine-byte `next_seq`, a three-byte count
    /// and [`Self::HELD_MAX`] entries of at most twelve bytes.
    pub const ENCODED_LEN_MAX: usize = 1 + 9 + 3 + Self::HELD_MAX * HELD_BYTES_MAX;

    /// Encodes the handover (see the module documentation for the format). Always
    /// decodable: `next_seq` is reduced to its low 62 bits (which keeps the wire
    /// numbering) and at most [`Self::HELD_MAX`] entities are written, as a
    /// [`ClientView::resume`] from this value would use.
    pub fn encode(&self) -> Vec<u8> {
        let held = &self.held[..self.held.len().min(Self::HELD_MAX)];
        let mut w = Writer::with_capacity(16 + held.len() * 6);
        w.u8(FORMAT);
        w.varint(self.next_seq & Self::SEQ_MAX);
        w.varint(held.len() as u64);
        for &(id, kind) in held {
            w.varint(id.0);
            w.u16(kind);
        }
        w.into_vec()
    }

    /// Decodes what [`Self::encode`] wrote. Any malformed input (unknown format,
    /// truncation, an oversized count or `next_seq`, trailing bytes) is an error,
    /// never a panic, and no more is allocated than the input could fill. Repeated ids
    /// are accepted ([`ClientView::resume`] keeps the first).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let format = r.u8()?;
        if format != FORMAT {
            let tag = u64::from(format);
            return Err(DecodeError::UnknownTag {
                what: "view handover format",
                tag,
            });
        }
        let next_seq = r.varint()?;
        if next_seq > Self::SEQ_MAX {
            return Err(DecodeError::InvalidValue("view handover next_seq"));
        }
        let n_held = r.count("view handover held entities", Self::HELD_MAX)?;
        let mut held = Vec::with_capacity(n_held.min(r.remaining() / HELD_BYTES_MIN));
        for _ in 0..n_held {
            held.push((NetId(r.varint()?), r.u16()?));
        }
        r.finish()?;
        Ok(Self { next_seq, held })
    }
}

impl ClientView {
    /// What the client may hold, for [`ClientView::resume`] on another node: every
    /// tracked entity the client may have been told about (shown, or leaving with its
    /// despawn not yet acknowledged), at most the view's tracking limit and
    /// [`ViewHandover::HELD_MAX`], and where the numbering continues.
    ///
    /// This view must send the client nothing more once the resumed view may: the
    /// handover would not cover what it sends (see [`ViewHandover::SEQ_GAP`] for what
    /// a stray tick costs).
    pub fn handover(&self) -> ViewHandover {
        let mut held: Vec<(NetId, u16)> = self
            .entities
            .iter()
            .filter(|(_, t)| t.client_may_hold)
            .map(|(id, t)| (id, t.kind))
            .collect();
        held.sort_unstable_by_key(|&(id, _)| id);
        held.truncate(ViewHandover::HELD_MAX);
        ViewHandover {
            next_seq: self.next_seq.saturating_add(ViewHandover::SEQ_GAP),
            held,
        }
    }

    /// A view continuing the one `handover` describes: its first snapshot carries
    /// `handover.next_seq` (low 62 bits), and each held entity is despawned unless a
    /// frame selects it, in which case its first record is a full one. Acknowledgements
    /// of the old view's snapshots are ignored.
    ///
    /// Held entities count against [`ViewConfig::max_tracked_entities`] until their
    /// despawn is acknowledged, as departing entities do; beyond the limit the rest are
    /// not tracked (nodes should share the limit, as `handover` never lists more).
    pub fn resume(config: ViewConfig, handover: &ViewHandover) -> Self {
        let mut view = Self::new(config);
        view.next_seq = handover.next_seq & ViewHandover::SEQ_MAX;
        let limit = view.config.max_tracked_entities;
        for &(id, kind) in handover.held.iter().take(ViewHandover::HELD_MAX) {
            if view.entities.len() >= limit {
                break;
            }
            if !view.entities.contains(id) {
                view.entities
                    .insert(id, Tracked::carried(kind, view.next_seq));
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_handover_fits_the_stated_bound() {
        let h = ViewHandover {
            next_seq: ViewHandover::SEQ_MAX,
            held: vec![(NetId(u64::MAX), u16::MAX); ViewHandover::HELD_MAX],
        };
        let bytes = h.encode();
        assert_eq!(bytes.len(), ViewHandover::ENCODED_LEN_MAX);
        assert_eq!(ViewHandover::decode(&bytes), Ok(h));
    }

    #[test]
    fn encoding_keeps_within_what_decoding_accepts() {
        let h = ViewHandover {
            next_seq: u64::MAX,
            held: vec![(NetId(1), 2); ViewHandover::HELD_MAX + 1],
        };
        let back = ViewHandover::decode(&h.encode()).expect("always decodable");
        assert_eq!(back.next_seq as u32, u32::MAX, "wire numbering kept");
        assert_eq!(back.held.len(), ViewHandover::HELD_MAX);
    }

    #[test]
    fn absurd_counts_and_values_are_refused() {
        let mut w = Writer::default();
        w.u8(FORMAT);
        w.varint(5);
        w.varint(ViewHandover::HELD_MAX as u64 + 1);
        assert!(matches!(
            ViewHandover::decode(w.as_slice()),
            Err(DecodeError::TooLong { .. })
        ));
        let mut w = Writer::default();
        w.u8(FORMAT);
        w.varint(ViewHandover::SEQ_MAX + 1);
        w.varint(0);
        assert!(matches!(
            ViewHandover::decode(w.as_slice()),
            Err(DecodeError::InvalidValue(_))
        ));
        assert!(matches!(
            ViewHandover::decode(&[2, 0, 0]),
            Err(DecodeError::UnknownTag { tag: 2, .. })
        ));
    }

    #[test]
    fn resume_tracks_each_held_entity_once_within_the_limit() {
        let config = ViewConfig {
            max_tracked_entities: 3,
            ..ViewConfig::default()
        };
        let held = [1, 1, 2, 2, 3, 4, 5].map(|id| (NetId(id), 7)).to_vec();
        let view = ClientView::resume(config, &ViewHandover { next_seq: 9, held });
        assert_eq!(view.tracked(), 3);
        assert_eq!(view.next_seq, 9);
        let ids: Vec<u64> = view.handover().held.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }
}
