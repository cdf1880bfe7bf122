//! Node identity: a [`NodeId`] kept in the node's data directory and an [`Incarnation`]
//! that grows at every start, so a restarted node is never mistaken for its past self.
//! Membership, directory entries, redirect tokens and logs name a [`NodeRef`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Reader, Writer};

/// A node's stable identity, generated once and kept in its data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl NodeId {
    /// Parses the 16-hex-digit form written by [`Display`](fmt::Display).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != 16 {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Self)
    }
}

/// How many times a node has started; bumped (and made durable) before it joins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Incarnation(pub u64);

/// One run of one node: `(NodeId, Incarnation)`. Two refs with the same id and
/// different incarnations are two processes, the older one dead or about to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeRef {
    /// The node's stable id.
    pub id: NodeId,
    /// Which start of that node.
    pub incarnation: Incarnation,
}

impl NodeRef {
    /// The `incarnation`-th run of node `id`.
    pub const fn new(id: u64, incarnation: u64) -> Self {
        Self {
            id: NodeId(id),
            incarnation: Incarnation(incarnation),
        }
    }

    /// Appends the wire form (two varints).
    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.id.0);
        w.varint(self.incarnation.0);
    }

    /// Reads the wire form written by [`encode`](Self::encode).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self::new(r.varint()?, r.varint()?))
    }
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.id, self.incarnation.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_text_roundtrips() {
        let id = NodeId(0x00ab_cdef_0123_4567);
        assert_eq!(NodeId::parse(&id.to_string()), Some(id));
        assert_eq!(NodeId::parse("xyz"), None);
        assert_eq!(NodeId::parse("00abcdef0123456g"), None);
    }

    #[test]
    fn node_ref_wire_roundtrips() {
        let node = NodeRef::new(u64::MAX, 7);
        let mut w = Writer::with_capacity(32);
        node.encode(&mut w);
        let mut r = Reader::new(w.as_slice());
        assert_eq!(NodeRef::decode(&mut r), Ok(node));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn a_later_incarnation_orders_after() {
        assert!(NodeRef::new(1, 2) > NodeRef::new(1, 1));
        assert_ne!(NodeRef::new(1, 2), NodeRef::new(1, 1));
    }
}
