//! Who is in the cluster. Providers (SWIM gossip through foca in [`swim`]; a static
//! list and a PostgreSQL table come with their drivers) all reduce to one stream of
//! [`MembershipEvent`]s, which each node folds into its [`View`]. The ring and every
//! other core read only the view.

pub mod static_list;
pub mod swim;
pub mod table;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use zonemesh_shared::node::{NodeId, NodeRef};

/// A live member as the view knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Member {
    /// Which run of which node.
    pub node: NodeRef,
    /// Where its node-to-node endpoint listens.
    pub addr: SocketAddr,
    /// Where players connect to it (the address a redirect names).
    pub client_addr: SocketAddr,
}

/// A change in who is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipEvent {
    /// The member is alive (new, or a new incarnation of a known node id).
    Up(Member),
    /// The member was declared dead or left.
    Down(NodeRef),
}

/// One node's view of the live members, numbered: the number grows at every change, so
/// "the ring of view 12" names one ring. Always holds the local node.
#[derive(Debug, Clone)]
pub struct View {
    me: Member,
    version: u64,
    members: BTreeMap<NodeId, Member>,
}

impl View {
    /// The view of a node that knows only itself.
    pub fn new(me: Member) -> Self {
        let members = BTreeMap::from([(me.node.id, me)]);
        Self {
            me,
            version: 1,
            members,
        }
    }

    /// Folds `event` in; returns whether the set of live members changed. An older
    /// incarnation's `Up` never replaces a newer one, and a `Down` removes only the
    /// exact incarnation it names (a late `Down` of a node's past must not remove its
    /// restarted self). The local node is never removed.
    pub fn apply(&mut self, event: MembershipEvent) -> bool {
        let changed = match event {
            MembershipEvent::Up(member) => self.up(member),
            MembershipEvent::Down(node) => self.down(node),
        };
        if changed {
            self.version += 1;
        }
        changed
    }

    fn up(&mut self, member: Member) -> bool {
        if member.node.id == self.me.node.id {
            return false;
        }
        match self.members.get(&member.node.id) {
            Some(known) if known.node.incarnation > member.node.incarnation => false,
            Some(known) if *known == member => false,
            _ => {
                self.members.insert(member.node.id, member);
                true
            }
        }
    }

    fn down(&mut self, node: NodeRef) -> bool {
        if node.id == self.me.node.id {
            return false;
        }
        match self.members.get(&node.id) {
            Some(known) if known.node == node => {
                self.members.remove(&node.id);
                true
            }
            _ => false,
        }
    }

    /// The local node.
    pub fn me(&self) -> Member {
        self.me
    }

    /// The view's number; grows at every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The live members, ordered by node id, the local node included.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Number of live members, the local node included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: the local node is a member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether exactly this run of the node is alive in the view.
    pub fn is_live(&self, node: NodeRef) -> bool {
        self.members.get(&node.id).is_some_and(|m| m.node == node)
    }

    /// The live member with this id, if any.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }
}

/// A member on loopback for the providers' tests: node `id`'s run `incarnation`, its
/// node endpoint on port 7000 + id and its players' on 8000 + id.
#[cfg(test)]
pub(crate) fn test_member(id: u64, incarnation: u64) -> Member {
    Member {
        node: NodeRef::new(id, incarnation),
        addr: SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16)),
        client_addr: SocketAddr::from(([127, 0, 0, 1], 8000 + id as u16)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, incarnation: u64) -> Member {
        test_member(id, incarnation)
    }

    #[test]
    fn up_and_down_change_the_version() {
        let mut view = View::new(member(1, 1));
        assert!(view.apply(MembershipEvent::Up(member(2, 1))));
        assert!(
            !view.apply(MembershipEvent::Up(member(2, 1))),
            "repeat is no change"
        );
        assert_eq!(view.len(), 2);
        assert!(view.apply(MembershipEvent::Down(NodeRef::new(2, 1))));
        assert_eq!(view.len(), 1);
        assert_eq!(view.version(), 3);
    }

    #[test]
    fn a_late_down_of_an_old_incarnation_keeps_the_new_one() {
        let mut view = View::new(member(1, 1));
        view.apply(MembershipEvent::Up(member(2, 1)));
        assert!(view.apply(MembershipEvent::Up(member(2, 2))));
        assert!(!view.apply(MembershipEvent::Down(NodeRef::new(2, 1))));
        assert!(view.is_live(NodeRef::new(2, 2)));
        assert!(
            !view.apply(MembershipEvent::Up(member(2, 1))),
            "older never replaces"
        );
        assert!(view.is_live(NodeRef::new(2, 2)));
    }

    #[test]
    fn the_local_node_is_never_removed() {
        let mut view = View::new(member(1, 1));
        assert!(!view.apply(MembershipEvent::Down(NodeRef::new(1, 1))));
        assert!(view.is_live(NodeRef::new(1, 1)));
    }
}
