//! The per-tick replicated state of one entity, as the zone hands it to the views.

use std::sync::Arc;
use zonemesh_shared::datagram::ComponentValue;
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::QPos;

/// What a client may know about one entity this tick. Cheap to clone: the encoded
/// components are shared, so an unchanged entity costs a pointer copy per tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatedState {
    /// Stable network identity.
    pub id: NetId,
    /// Game-defined entity kind, sent when the client spawns the entity. Fixed for an
    /// entity's life; a view that sees it change re-spawns the entity on the client.
    pub kind: u16,
    /// Quantised position.
    pub pos: QPos,
    /// Encoded replicated components, sorted by id.
    pub components: Arc<[ComponentValue]>,
    /// Hash of `components`: equal hashes mean equal components, so views compare
    /// this instead of the bytes. Any stable hash works as long as it changes whenever
    /// a component does; [`components_hash`] is one.
    pub components_hash: u64,
}

impl ReplicatedState {
    /// A state with its components hashed by [`components_hash`].
    pub fn new(id: NetId, kind: u16, pos: QPos, components: Vec<ComponentValue>) -> Self {
        let components_hash = components_hash(&components);
        Self {
            id,
            kind,
            pos,
            components: Arc::from(components),
            components_hash,
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over each component's id, length and bytes. Stable across processes and
/// versions (unlike `DefaultHasher`), so it may be computed on another node.
pub fn components_hash(components: &[ComponentValue]) -> u64 {
    let mut h = FNV_OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
    };
    for c in components {
        feed(&c.id.to_le_bytes());
        // The length keeps `[a][bc]` and `[ab][c]` apart.
        feed(&(c.bytes.len() as u64).to_le_bytes());
        feed(&c.bytes);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(id: u16, bytes: &[u8]) -> ComponentValue {
        ComponentValue {
            id,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn hash_changes_with_any_component_change() {
        let base = components_hash(&[comp(1, b"ab"), comp(2, b"c")]);
        assert_ne!(base, components_hash(&[comp(1, b"a"), comp(2, b"bc")]));
        assert_ne!(base, components_hash(&[comp(1, b"ab"), comp(3, b"c")]));
        assert_ne!(base, components_hash(&[comp(1, b"ab")]));
        assert_eq!(base, components_hash(&[comp(1, b"ab"), comp(2, b"c")]));
    }

    #[test]
    fn new_hashes_the_components() {
        let s = ReplicatedState::new(NetId(7), 3, QPos { x: 1, y: 2 }, vec![comp(1, b"x")]);
        assert_eq!(s.components_hash, components_hash(&s.components));
        assert_ne!(s.components_hash, components_hash(&[]));
    }
}
