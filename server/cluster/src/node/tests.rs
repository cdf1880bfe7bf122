//! [`NodeCore::locate`]: finding where a zone lives without ever placing it; a live
//! handoff's activations and a zone handed away.

use super::{NodeConfig, NodeCore, NodeEvent};
use crate::Millis;
use crate::membership::{Member, MembershipEvent};
use crate::msg::{Envelope, NodeMsg, StoreCall, StoreReply};
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

fn member(id: u64) -> Member {
    Member {
        node: NodeRef::new(id, 1),
        addr: format!("127.0.0.1:{}", 7000 + id).parse().expect("addr"),
        client_addr: format!("127.0.0.1:{}", 8000 + id).parse().expect("addr"),
    }
}

/// Two cores that see each other.
fn pair() -> [NodeCore; 2] {
    let (a, b) = (member(1), member(2));
    let mut cores = [
        NodeCore::new(a, NodeConfig::default()),
        NodeCore::new(b, NodeConfig::default()),
    ];
    cores[0].handle_membership(Millis(0), MembershipEvent::Up(b));
    cores[1].handle_membership(Millis(0), MembershipEvent::Up(a));
    cores
}

/// Delivers every message between the cores until none is left.
fn pump(cores: &mut [NodeCore; 2], now: Millis) {
    loop {
        let mut moved = false;
        for i in 0..2 {
            while let Some(envelope) = cores[i].poll_message() {
                moved = true;
                let to = cores
                    .iter()
                    .position(|c| c.me() == envelope.to)
                    .expect("a known core");
                cores[to].handle_message(now, envelope);
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn locating_an_unheld_zone_places_it_nowhere() {
    let mut cores = pair();
    for zone in (0..32).map(ZoneId) {
        assert_eq!(cores[0].locate(Millis(10), zone), None);
        pump(&mut cores, Millis(10));
        assert_eq!(cores[0].locate(Millis(20), zone), None);
    }
    for core in &mut cores {
        assert_eq!(core.counters().n_activations_asked, 0);
        assert!(
            core.poll_store_call().is_none(),
            "no activation was asked for"
        );
        assert!(core.active_zones().next().is_none());
    }
}

#[test]
fn a_registered_host_is_learned_within_a_round_trip() {
    let mut cores = pair();
    let zone = ZoneId(5);
    let host = cores[1].me();
    let owner = cores
        .iter()
        .position(|c| c.ring().owner(zone) == Some(c.me()))
        .expect("an owner");
    let register = Envelope {
        from: host,
        to: cores[owner].me(),
        msg: NodeMsg::Register {
            zone,
            host,
            epoch: 3,
        },
    };
    cores[owner].handle_message(Millis(5), register);
    let first = cores[0].locate(Millis(10), zone);
    pump(&mut cores, Millis(10));
    let located = first.or_else(|| cores[0].locate(Millis(11), zone));
    assert_eq!(located, Some(host));
    // Asked again every tick, it answers from its cache without asking anyone.
    assert_eq!(cores[0].locate(Millis(12), zone), Some(host));
    assert!(cores[0].poll_message().is_none());
}

/// The activation a handoff asked for, as the core sends it to the store.
fn handoff_activation(core: &mut NodeCore, now: Millis, zone: ZoneId) -> u64 {
    assert!(core.activate_handed_over(now, zone));
    match core.poll_store_call() {
        Some(StoreCall::Activate { zone: z, attempt }) if z == zone => attempt,
        other => panic!("expected an activation of {zone:?}, got {other:?}"),
    }
}

#[test]
fn a_handoff_activation_the_store_refuses_is_reported_and_not_retried() {
    let mut cores = pair();
    let zone = ZoneId(7);
    let holder = cores[1].me();
    handoff_activation(&mut cores[0], Millis(10), zone);
    cores[0].handle_store_reply(
        Millis(11),
        StoreReply::Held {
            zone,
            holder,
            epoch: 4,
            lease_left_ms: 3_000,
        },
    );
    assert_eq!(
        cores[0].poll_event(),
        Some(NodeEvent::HandoffActivationRefused { zone })
    );
    cores[0].handle_timeout(Millis(60_000));
    while let Some(call) = cores[0].poll_store_call() {
        assert!(
            !matches!(call, StoreCall::Activate { .. }),
            "a refused handoff activation is not asked again: {call:?}"
        );
    }
    // Without a lease the store refuses too, and that is reported the same way.
    handoff_activation(&mut cores[0], Millis(60_001), zone);
    cores[0].handle_store_reply(Millis(60_002), StoreReply::NoLease { zone });
    assert_eq!(
        cores[0].poll_event(),
        Some(NodeEvent::HandoffActivationRefused { zone })
    );
}

#[test]
fn a_zone_handed_away_is_no_longer_held_and_its_new_host_is_known() {
    let mut cores = pair();
    let zone = ZoneId(9);
    let attempt = handoff_activation(&mut cores[0], Millis(10), zone);
    cores[0].handle_store_reply(
        Millis(11),
        StoreReply::Activated {
            zone,
            epoch: 3,
            lease_generation: 1,
            attempt,
        },
    );
    assert_eq!(
        cores[0].poll_event(),
        Some(NodeEvent::ZoneActive { zone, epoch: 3 })
    );
    assert_eq!(cores[0].handoff_started(zone), Some(3));
    assert!(cores[0].active_zones().next().is_none(), "no longer held");
    assert_eq!(cores[0].moving_zones().collect::<Vec<_>>(), vec![(zone, 3)]);
    assert!(!cores[0].accepts_inputs(Millis(12), zone));
    let target = cores[1].me();
    cores[0].handoff_ended(Millis(13), zone, Some(target));
    assert!(cores[0].moving_zones().next().is_none());
    assert_eq!(cores[0].locate(Millis(14), zone), Some(target));
}
