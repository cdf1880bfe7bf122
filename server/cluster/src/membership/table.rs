//! The membership-table provider: every node writes a heartbeat row into the store and
//! reads the table back; the rows whose heartbeat has not run out (by the store's
//! clock) are the view. Every node sees the same view, the store's, one read apart, at
//! the price of two store calls per node per period. For clusters that already run
//! PostgreSQL and want no gossip.
//!
//! Sans-IO: the provider asks for store calls ([`TableMembership::poll_call`]), the
//! driver makes them and hands the answers back; membership events come out of
//! [`TableMembership::poll_event`] like the other providers'.

use std::collections::{BTreeMap, VecDeque};

use zonemesh_shared::node::{NodeId, NodeRef};

use super::{Member, MembershipEvent};
use crate::Millis;

/// Timing of the table provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    /// How often this node writes its heartbeat.
    pub heartbeat_every_ms: u64,
    /// How long a heartbeat keeps the row live: a node that stops writing is gone
    /// this long after its last heartbeat (by the store's clock).
    pub row_ttl_ms: u64,
    /// How often the table is read.
    pub read_every_ms: u64,
    /// A call unanswered for this long is given up and made again at its next turn.
    pub call_timeout_ms: u64,
}

impl Default for TableConfig {
    /// Heartbeats and reads every second, rows live 5 s: a dead node leaves the views
    /// at most about 6 s after its last heartbeat.
    fn default() -> Self {
        Self {
            heartbeat_every_ms: 1_000,
            row_ttl_ms: 5_000,
            read_every_ms: 1_000,
            call_timeout_ms: 3_000,
        }
    }
}

/// A store call the provider needs made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableCall {
    /// Write this node's heartbeat row, live for `ttl_ms`.
    Heartbeat {
        /// The row's lifetime.
        ttl_ms: u64,
    },
    /// Read the live rows.
    Read,
    /// Remove this node's row (it is leaving).
    Leave,
}

/// One call in flight: which, and when it gives up.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    gives_up_at: Millis,
}

/// The provider of one node.
#[derive(Debug)]
pub struct TableMembership {
    me: Member,
    config: TableConfig,
    next_heartbeat: Millis,
    next_read: Millis,
    heartbeat: Option<InFlight>,
    read: Option<InFlight>,
    /// The other members, as of the last read.
    known: BTreeMap<NodeId, Member>,
    generation: Option<u64>,
    calls: VecDeque<TableCall>,
    events: VecDeque<MembershipEvent>,
}

impl TableMembership {
    /// A provider for `me`; its first heartbeat and read are due at once.
    pub fn new(me: Member, config: TableConfig) -> Self {
        Self {
            me,
            config,
            next_heartbeat: Millis(0),
            next_read: Millis(0),
            heartbeat: None,
            read: None,
            known: BTreeMap::new(),
            generation: None,
            calls: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let waits = [
            self.heartbeat
                .map_or(self.next_heartbeat, |c| c.gives_up_at),
            self.read.map_or(self.next_read, |c| c.gives_up_at),
        ];
        waits.into_iter().min()
    }

    /// Starts the calls that are due and gives up those unanswered too long.
    pub fn handle_timeout(&mut self, now: Millis) {
        for slot in [&mut self.heartbeat, &mut self.read] {
            if slot.is_some_and(|c| c.gives_up_at <= now) {
                *slot = None;
            }
        }
        let gives_up_at = now + self.config.call_timeout_ms;
        if self.heartbeat.is_none() && self.next_heartbeat <= now {
            self.heartbeat = Some(InFlight { gives_up_at });
            self.next_heartbeat = now + self.config.heartbeat_every_ms;
            self.calls.push_back(TableCall::Heartbeat {
                ttl_ms: self.config.row_ttl_ms,
            });
        }
        if self.read.is_none() && self.next_read <= now {
            self.read = Some(InFlight { gives_up_at });
            self.next_read = now + self.config.read_every_ms;
            self.calls.push_back(TableCall::Read);
        }
    }

    /// The next call to make.
    pub fn poll_call(&mut self) -> Option<TableCall> {
        self.calls.pop_front()
    }

    /// The heartbeat was written (`true`) or refused because a newer run of this node
    /// id has written one (`false`: this run is superseded; nothing more is written),
    /// or failed (`None`: tried again at its next turn).
    pub fn handle_heartbeat(&mut self, written: Option<bool>) {
        self.heartbeat = None;
        if written == Some(false) {
            // Superseded: never write again (the lease says the same to the core).
            self.next_heartbeat = Millis(u64::MAX);
        }
    }

    /// The live rows read from the store (`None`: the read failed; the view stays as
    /// it was, since an unreachable store says nothing about the other nodes).
    pub fn handle_table(&mut self, table: Option<(u64, Vec<Member>)>) {
        self.read = None;
        let Some((generation, rows)) = table else {
            return;
        };
        if self.generation == Some(generation) && rows.len() == self.known.len() + 1 {
            // Nobody joined or left, and nobody's row ran out.
            return;
        }
        self.generation = Some(generation);
        let rows: BTreeMap<NodeId, Member> = rows
            .into_iter()
            .filter(|m| m.node.id != self.me.node.id)
            .map(|m| (m.node.id, m))
            .collect();
        for (id, old) in &self.known {
            if rows.get(id).is_none_or(|new| new.node != old.node) {
                self.events.push_back(MembershipEvent::Down(old.node));
            }
        }
        for (id, new) in &rows {
            if self.known.get(id) != Some(new) {
                self.events.push_back(MembershipEvent::Up(*new));
            }
        }
        self.known = rows;
    }

    /// Asks for this node's row to be removed (it is leaving).
    pub fn leave(&mut self) {
        self.calls.push_back(TableCall::Leave);
        self.next_heartbeat = Millis(u64::MAX);
    }

    /// The next membership event.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    /// This node.
    pub fn me(&self) -> Member {
        self.me
    }

    /// The other members as of the last read.
    pub fn n_known(&self) -> usize {
        self.known.len()
    }

    /// A member named by the table, if it is `node` exactly.
    pub fn member(&self, node: NodeRef) -> Option<Member> {
        self.known.get(&node.id).filter(|m| m.node == node).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::test_member as member;

    fn calls(t: &mut TableMembership) -> Vec<TableCall> {
        std::iter::from_fn(|| t.poll_call()).collect()
    }

    fn events(t: &mut TableMembership) -> Vec<MembershipEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    #[test]
    fn heartbeats_and_reads_go_out_on_their_periods_one_at_a_time() {
        let mut t = TableMembership::new(member(1, 1), TableConfig::default());
        t.handle_timeout(Millis(0));
        assert_eq!(
            calls(&mut t),
            vec![TableCall::Heartbeat { ttl_ms: 5_000 }, TableCall::Read]
        );
        // Unanswered calls are not repeated before their timeout.
        t.handle_timeout(Millis(1_500));
        assert_eq!(calls(&mut t), vec![]);
        t.handle_heartbeat(Some(true));
        t.handle_table(Some((1, vec![member(1, 1)])));
        t.handle_timeout(Millis(1_500));
        assert_eq!(calls(&mut t).len(), 2, "both were due at 1 s");
        // A call never answered is given up after its timeout and made again.
        t.handle_timeout(Millis(4_499));
        assert_eq!(calls(&mut t), vec![]);
        assert_eq!(t.poll_timeout(), Some(Millis(4_500)));
        t.handle_timeout(Millis(4_500));
        assert_eq!(calls(&mut t).len(), 2);
    }

    #[test]
    fn the_rows_become_ups_and_downs() {
        let mut t = TableMembership::new(member(1, 1), TableConfig::default());
        t.handle_table(Some((3, vec![member(1, 1), member(2, 1), member(3, 1)])));
        assert_eq!(
            events(&mut t),
            vec![
                MembershipEvent::Up(member(2, 1)),
                MembershipEvent::Up(member(3, 1))
            ]
        );
        // The same generation and rows: nothing.
        t.handle_table(Some((3, vec![member(1, 1), member(2, 1), member(3, 1)])));
        assert_eq!(events(&mut t), vec![]);
        // Node 3's row ran out (same generation, one row fewer); node 2 restarted.
        t.handle_table(Some((4, vec![member(1, 1), member(2, 2)])));
        assert_eq!(
            events(&mut t),
            vec![
                MembershipEvent::Down(member(2, 1).node),
                MembershipEvent::Down(member(3, 1).node),
                MembershipEvent::Up(member(2, 2)),
            ]
        );
        assert_eq!(t.n_known(), 1);
        // A failed read changes nothing.
        t.handle_table(None);
        assert_eq!(events(&mut t), vec![]);
        assert_eq!(t.member(member(2, 2).node), Some(member(2, 2)));
    }

    #[test]
    fn a_superseded_run_stops_writing_and_a_leaving_one_removes_its_row() {
        let mut t = TableMembership::new(member(1, 1), TableConfig::default());
        t.handle_timeout(Millis(0));
        let _ = calls(&mut t);
        t.handle_heartbeat(Some(false));
        t.handle_table(None);
        t.handle_timeout(Millis(10_000));
        assert_eq!(calls(&mut t), vec![TableCall::Read], "no more heartbeats");
        t.leave();
        assert_eq!(calls(&mut t), vec![TableCall::Leave]);
    }
}
