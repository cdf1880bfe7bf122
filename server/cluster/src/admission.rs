//! What a node answers a player who asks for a zone: a pure decision over what the node
//! knows, and the one step the node must take next (look the zone up, or activate it).
//! The connection task only carries the answer out.

use zonemesh_shared::node::NodeRef;

/// The asked-for zone's state on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneHere {
    /// Not held here.
    NotHosted,
    /// The store activation is under way.
    Activating,
    /// Held here at `epoch`.
    Active {
        /// The activation's epoch.
        epoch: u64,
    },
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionFacts {
    /// This node run.
    pub me: NodeRef,
    /// The zone's state here.
    pub here: ZoneHere,
    /// Whether this node's lease is live (it may accept inputs).
    pub lease_valid: bool,
    /// Where the directory (or the cache) says the zone lives, if known.
    pub known_host: Option<NodeRef>,
    /// The node is shutting down or was superseded by a newer run.
    pub stopping: bool,
    /// The table of lookups in flight is full.
    pub lookups_full: bool,
}

/// The answer to the player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Play here.
    Welcome {
        /// The zone's epoch.
        epoch: u64,
    },
    /// The zone lives on `to`; connect there.
    Redirect {
        /// The node to go to.
        to: NodeRef,
    },
    /// The zone is being found or loaded; ask again after the hint.
    Loading {
        /// Suggested wait before retrying.
        retry_after_ms: u32,
    },
    /// The node is overloaded; ask again (anywhere) after the hint.
    Busy {
        /// Suggested wait before retrying.
        retry_after_ms: u32,
    },
    /// The node will not take the player.
    Refuse(RefuseReason),
}

/// Why a node refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The node is stopping (or a newer run of it exists); try another node.
    NodeStopping,
}

/// What the node must do after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Nothing.
    Nothing,
    /// Ask the zone's directory owner where it lives.
    Lookup,
    /// Activate the zone here.
    Activate,
}

/// Retry hint while a lookup or activation runs.
pub const LOADING_RETRY_MS: u32 = 200;
/// Retry hint (with `Busy`) while the node has no live lease.
pub const LEASE_RETRY_MS: u32 = 500;
/// Retry hint when the node is overloaded.
pub const BUSY_RETRY_MS: u32 = 1_000;

/// A node without a live lease (starting, or cut off from the store) can neither
/// serve nor activate a zone: it sends the player where the zone is known to live, or
/// answers `Busy` so the player tries another node, and looks the zone up meanwhile.
fn without_lease(facts: AdmissionFacts) -> (Admission, NextStep) {
    let busy = Admission::Busy {
        retry_after_ms: LEASE_RETRY_MS,
    };
    match facts.known_host {
        Some(host) if host != facts.me => (Admission::Redirect { to: host }, NextStep::Nothing),
        None if !facts.lookups_full && facts.here == ZoneHere::NotHosted => {
            (busy, NextStep::Lookup)
        }
        _ => (busy, NextStep::Nothing),
    }
}

/// Decides the answer and the next step.
pub fn decide(facts: AdmissionFacts) -> (Admission, NextStep) {
    let loading = |retry_after_ms| Admission::Loading { retry_after_ms };
    if facts.stopping {
        return (
            Admission::Refuse(RefuseReason::NodeStopping),
            NextStep::Nothing,
        );
    }
    if !facts.lease_valid {
        return without_lease(facts);
    }
    match facts.here {
        ZoneHere::Active { epoch } => (Admission::Welcome { epoch }, NextStep::Nothing),
        // Activating while the store says another live node holds the zone: that node
        // serves meanwhile (this one only takes over if the holder's lease runs out).
        ZoneHere::Activating => match facts.known_host {
            Some(host) if host != facts.me => (Admission::Redirect { to: host }, NextStep::Nothing),
            _ => (loading(LOADING_RETRY_MS), NextStep::Nothing),
        },
        ZoneHere::NotHosted => match facts.known_host {
            Some(host) if host == facts.me => (loading(LOADING_RETRY_MS), NextStep::Activate),
            Some(host) => (Admission::Redirect { to: host }, NextStep::Nothing),
            None if facts.lookups_full => (
                Admission::Busy {
                    retry_after_ms: BUSY_RETRY_MS,
                },
                NextStep::Nothing,
            ),
            None => (loading(LOADING_RETRY_MS), NextStep::Lookup),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> AdmissionFacts {
        AdmissionFacts {
            me: NodeRef::new(1, 1),
            here: ZoneHere::NotHosted,
            lease_valid: true,
            known_host: None,
            stopping: false,
            lookups_full: false,
        }
    }

    #[test]
    fn active_with_a_lease_welcomes() {
        let f = AdmissionFacts {
            here: ZoneHere::Active { epoch: 4 },
            ..facts()
        };
        assert_eq!(decide(f).0, Admission::Welcome { epoch: 4 });
        let lapsed = AdmissionFacts {
            lease_valid: false,
            ..f
        };
        assert!(
            matches!(decide(lapsed).0, Admission::Busy { .. }),
            "never welcome without a lease"
        );
    }

    #[test]
    fn unknown_zone_is_looked_up_or_busy() {
        assert_eq!(decide(facts()).1, NextStep::Lookup);
        let full = AdmissionFacts {
            lookups_full: true,
            ..facts()
        };
        assert!(matches!(
            decide(full),
            (Admission::Busy { .. }, NextStep::Nothing)
        ));
    }

    #[test]
    fn known_host_redirects_or_activates() {
        let elsewhere = AdmissionFacts {
            known_host: Some(NodeRef::new(2, 1)),
            ..facts()
        };
        assert_eq!(
            decide(elsewhere).0,
            Admission::Redirect {
                to: NodeRef::new(2, 1)
            }
        );
        let here = AdmissionFacts {
            known_host: Some(NodeRef::new(1, 1)),
            ..facts()
        };
        assert_eq!(decide(here).1, NextStep::Activate);
    }

    #[test]
    fn activating_behind_a_live_holder_redirects_to_it() {
        let f = AdmissionFacts {
            here: ZoneHere::Activating,
            known_host: Some(NodeRef::new(2, 1)),
            ..facts()
        };
        assert_eq!(
            decide(f).0,
            Admission::Redirect {
                to: NodeRef::new(2, 1)
            }
        );
        let alone = AdmissionFacts {
            here: ZoneHere::Activating,
            ..facts()
        };
        assert!(matches!(decide(alone).0, Admission::Loading { .. }));
    }

    #[test]
    fn without_a_lease_players_go_elsewhere() {
        let cut = AdmissionFacts {
            lease_valid: false,
            ..facts()
        };
        assert_eq!(
            decide(cut).1,
            NextStep::Lookup,
            "it still finds out where the zone lives"
        );
        assert!(matches!(decide(cut).0, Admission::Busy { .. }));
        let known = AdmissionFacts {
            known_host: Some(NodeRef::new(2, 1)),
            ..cut
        };
        assert_eq!(
            decide(known).0,
            Admission::Redirect {
                to: NodeRef::new(2, 1)
            }
        );
        let itself = AdmissionFacts {
            known_host: Some(NodeRef::new(1, 1)),
            ..cut
        };
        let busy = Admission::Busy {
            retry_after_ms: LEASE_RETRY_MS,
        };
        assert_eq!(decide(itself), (busy, NextStep::Nothing), "never activates");
    }

    #[test]
    fn a_stopping_node_refuses() {
        let f = AdmissionFacts {
            stopping: true,
            here: ZoneHere::Active { epoch: 1 },
            ..facts()
        };
        assert_eq!(decide(f).0, Admission::Refuse(RefuseReason::NodeStopping));
    }
}
