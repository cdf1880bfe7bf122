//! Tests of the session core: acknowledgements, ack pacing, input redundancy trimmed by
//! the server's input acknowledgement, control messages and the end of a session.

use super::*;
use zonemesh_shared::datagram::{EntityRecord, PosField, SnapshotHeader};
use zonemesh_shared::quant::QPos;

const WELCOME: Welcome = Welcome {
    player: NetId(1),
    zone: ZoneId(0),
    tick_hz: 20,
};

fn core(now: Instant) -> ClientCore {
    core_keeping(ReplicaScope::Everything, now)
}

fn core_keeping(replica_scope: ReplicaScope, now: Instant) -> ClientCore {
    ClientCore::new(
        WELCOME,
        CoreConfig {
            input_redundancy: 4,
            event_queue_capacity: 64,
            interpolation_delay_ticks: 2.0,
            replica_scope,
        },
        now,
    )
}

fn snapshot(seq: u32, input_ack: u32, records: Vec<EntityRecord>) -> Vec<u8> {
    Snapshot {
        header: SnapshotHeader {
            seq,
            tick: u64::from(seq),
            input_ack,
        },
        records,
    }
    .encode()
}

fn spawn(id: u64) -> EntityRecord {
    EntityRecord::Update {
        id: NetId(id),
        spawn_kind: Some(0),
        pos: PosField::Absolute(QPos::default()),
        components: vec![],
    }
}

fn decode(bytes: &[u8]) -> (Ack, Vec<u32>) {
    let ClientDatagram::Input { ack, inputs } = ClientDatagram::decode(bytes).expect("decodes");
    (ack, inputs.iter().map(|i| i.seq).collect())
}

fn events(core: &mut ClientCore) -> Vec<Event> {
    std::iter::from_fn(|| core.pop_event()).collect()
}

/// An update of `id` moving it by `dx` from its record `back` snapshots earlier.
fn moved(id: u64, back: u32, dx: i32) -> EntityRecord {
    EntityRecord::Update {
        id: NetId(id),
        spawn_kind: None,
        pos: PosField::Delta {
            baseline_back: back,
            dx,
            dy: 0,
        },
        components: vec![],
    }
}

#[test]
fn a_client_keeping_only_its_own_entity_skips_the_others_and_acknowledges_everything() {
    let t0 = Instant::now();
    let mut c = core_keeping(ReplicaScope::OwnEntity, t0);
    let own = WELCOME.player.0;
    c.handle_datagram(t0, &snapshot(1, 0, vec![spawn(own), spawn(9)]));
    // A delta for the other entity against a state this client never kept: skipped,
    // not an error, and the snapshot is still acknowledged.
    c.handle_datagram(t0, &snapshot(2, 3, vec![moved(9, 1, 5), moved(own, 1, 7)]));
    assert!(
        c.replica().get(NetId(9)).is_none(),
        "other entities are not kept"
    );
    let held = c.replica().get(WELCOME.player).expect("own entity kept");
    assert_eq!(held.position, QPos { x: 7, y: 0 }.to_world());
    assert_eq!(c.replica().len(), 1);
    assert_eq!(
        events(&mut c),
        vec![
            Event::Spawned {
                id: WELCOME.player,
                kind: 0
            },
            Event::Updated { id: WELCOME.player }
        ]
    );
    let (_, bytes) = c.input_datagram(t0, Vec2::new(1.0, 0.0), 0).expect("open");
    let (ack, _) = decode(&bytes);
    assert!(
        ack.covers(1) && ack.covers(2),
        "both snapshots acknowledged"
    );
    let n = c.counters();
    assert_eq!((n.snapshots, n.decode_errors, n.last_input_ack), (2, 0, 3));
}

#[test]
fn snapshots_are_acknowledged_in_input_datagrams() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.handle_datagram(t0, &snapshot(5, 0, vec![spawn(9)]));
    c.handle_datagram(t0, &snapshot(7, 0, vec![]));
    let (_, bytes) = c.input_datagram(t0, Vec2::new(1.0, 0.0), 0).expect("open");
    let (ack, seqs) = decode(&bytes);
    assert!(ack.any && ack.covers(5) && ack.covers(7) && !ack.covers(6));
    assert_eq!(seqs, vec![1]);
    assert_eq!(
        events(&mut c),
        vec![Event::Spawned {
            id: NetId(9),
            kind: 0
        }]
    );
    let n = c.counters();
    assert_eq!(
        (n.datagrams_received, n.snapshots, n.inputs_sent),
        (2, 2, 1)
    );
}

#[test]
fn incomplete_snapshot_is_not_acknowledged() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let orphan = EntityRecord::Update {
        id: NetId(3),
        spawn_kind: None,
        pos: PosField::Unchanged,
        components: vec![],
    };
    c.handle_datagram(t0, &snapshot(1, 0, vec![orphan]));
    assert_eq!(c.counters().decode_errors, 1);
    assert_eq!(c.ack_deadline(), None, "nothing to acknowledge");
    c.handle_datagram(t0, b"\x09garbage");
    assert_eq!(c.counters().decode_errors, 2);
    assert_eq!(c.counters().snapshots, 1);
}

#[test]
fn ack_only_datagram_is_paced_and_sent_only_when_the_ack_changed() {
    let t0 = Instant::now();
    let mut c = core(t0);
    assert_eq!(c.ack_deadline(), None);
    c.handle_datagram(t0, &snapshot(1, 0, vec![]));
    assert_eq!(c.ack_deadline(), Some(t0 + ACK_INTERVAL));
    assert!(c.poll_ack(t0 + Duration::from_millis(99)).is_none());
    let t1 = t0 + ACK_INTERVAL;
    let (ack, seqs) = decode(&c.poll_ack(t1).expect("ack due"));
    assert!(ack.covers(1) && seqs.is_empty());
    // Same acknowledgement: nothing more owed, however long we wait.
    assert_eq!(c.ack_deadline(), None);
    assert!(c.poll_ack(t1 + Duration::from_secs(5)).is_none());
    // A new snapshot makes an ack due one interval after the last datagram.
    c.handle_datagram(t1, &snapshot(2, 0, vec![]));
    assert_eq!(c.ack_deadline(), Some(t1 + ACK_INTERVAL));
    // An input carries the ack, which resets the timer.
    let t2 = t1 + Duration::from_millis(30);
    c.input_datagram(t2, Vec2::ZERO, 0).expect("open");
    assert_eq!(c.ack_deadline(), None);
    assert_eq!(c.counters().datagrams_sent, 2);
}

#[test]
fn redundant_inputs_are_trimmed_by_the_servers_input_ack() {
    let t0 = Instant::now();
    let mut c = core(t0);
    for _ in 0..3 {
        c.input_datagram(t0, Vec2::ZERO, 0).expect("open");
    }
    let (_, bytes) = c.input_datagram(t0, Vec2::ZERO, 0).expect("open");
    assert_eq!(decode(&bytes).1, vec![4, 3, 2, 1]);
    let (_, bytes) = c.input_datagram(t0, Vec2::ZERO, 0).expect("open");
    assert_eq!(
        decode(&bytes).1,
        vec![5, 4, 3, 2],
        "bounded by redundancy 4"
    );
    c.handle_datagram(t0, &snapshot(1, 4, vec![]));
    assert_eq!(c.counters().last_input_ack, 4);
    let (seq, bytes) = c.input_datagram(t0, Vec2::ZERO, 0).expect("open");
    assert_eq!(seq, 6);
    assert_eq!(decode(&bytes).1, vec![6, 5]);
    // An older snapshot's input_ack does not count.
    c.handle_datagram(t0, &snapshot(0, 1, vec![]));
    assert_eq!(c.counters().last_input_ack, 4);
}

#[test]
fn non_finite_velocity_is_refused() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let err = c.input_datagram(t0, Vec2::new(f32::NAN, 0.0), 0);
    assert!(matches!(err, Err(ClientError::InvalidInput(_))));
    assert_eq!(c.counters().inputs_sent, 0);
}

#[test]
fn control_messages_become_events_and_error_ends_the_session() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.handle_control(ServerControl::ZoneChanged { zone: ZoneId(5) });
    c.handle_control(ServerControl::GameEvent {
        kind: 2,
        payload: vec![1],
    });
    c.handle_control(ServerControl::Busy { retry_after_ms: 1 });
    assert_eq!(c.welcome().zone, ZoneId(5));
    assert_eq!(c.counters().decode_errors, 1);
    c.handle_control(ServerControl::Error {
        code: ErrorCode::SlowClient,
        message: "too slow".into(),
    });
    c.handle_disconnect(DisconnectReason::new(
        ErrorCode::Normal,
        "later close",
        DisconnectKind::Server,
    ));
    c.handle_datagram(t0, &snapshot(1, 0, vec![spawn(1)]));
    let reason = DisconnectReason::new(ErrorCode::SlowClient, "too slow", DisconnectKind::Server);
    assert_eq!(
        events(&mut c),
        vec![
            Event::ZoneChanged { zone: ZoneId(5) },
            Event::GameEvent {
                kind: 2,
                payload: vec![1]
            },
            Event::Disconnected(reason.clone()),
        ]
    );
    assert_eq!(c.pop_event(), None);
    assert_eq!(c.disconnect_reason(), Some(&reason));
    assert!(matches!(
        c.input_datagram(t0, Vec2::ZERO, 0),
        Err(ClientError::Closed { .. })
    ));
    assert_eq!(c.ack_deadline(), None);
}

#[test]
fn event_overflow_drops_updates_and_keeps_disconnected() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.handle_datagram(t0, &snapshot(1, 0, (0..32).map(spawn).collect()));
    let moved = |x: i32| -> Vec<EntityRecord> {
        (0..32)
            .map(|id| EntityRecord::Update {
                id: NetId(id),
                spawn_kind: None,
                pos: PosField::Absolute(QPos { x, y: 0 }),
                components: vec![],
            })
            .collect()
    };
    c.handle_datagram(t0, &snapshot(2, 0, moved(1)));
    c.handle_datagram(t0, &snapshot(3, 0, moved(2)));
    c.protocol_violation(ErrorCode::ProtocolViolation, "bad frame".into());
    let all = events(&mut c);
    assert_eq!(
        c.events_dropped(),
        32,
        "capacity 64: the 32 oldest updates go"
    );
    assert_eq!(all.len(), 65, "64 queued plus Disconnected");
    let spawned = all
        .iter()
        .filter(|e| matches!(e, Event::Spawned { .. }))
        .count();
    assert_eq!(spawned, 32, "spawns are kept while updates can be dropped");
    assert!(matches!(all.last(), Some(Event::Disconnected(_))));
}

fn redirect(addr: &str) -> ServerControl {
    ServerControl::Redirect {
        addr: addr.into(),
        token: "move-token".into(),
    }
}

fn move_failed() -> DisconnectReason {
    DisconnectReason::new(ErrorCode::ZoneMoved, "gone", DisconnectKind::MoveFailed)
}

/// A core with the player's entity applied (snapshot 5), two inputs sent, and a move
/// under way.
fn moving_core(t0: Instant) -> ClientCore {
    let mut c = core(t0);
    c.handle_datagram(t0, &snapshot(5, 0, vec![spawn(1)]));
    c.input_datagram(t0, Vec2::ZERO, 0).expect("open");
    c.input_datagram(t0, Vec2::ZERO, 0).expect("open");
    c.handle_control(redirect("10.0.0.2:4433"));
    c.poll_move().expect("a move is asked for");
    c
}

#[test]
fn a_redirect_after_welcome_asks_for_one_move() {
    let t0 = Instant::now();
    let mut c = core(t0);
    assert!(!c.is_moving());
    c.handle_control(redirect("10.0.0.2:4433"));
    assert!(c.is_moving());
    let request = c.poll_move().expect("a move is asked for");
    assert_eq!(request.addr, "10.0.0.2:4433");
    assert_eq!(request.token, "move-token");
    assert!(!format!("{request:?}").contains("move-token"));
    assert_eq!(c.poll_move(), None, "asked for once");
    // Another redirect on the old connection does not start a second move.
    c.handle_control(redirect("10.0.0.3:4433"));
    assert_eq!(c.poll_move(), None);
    assert_eq!(c.counters().decode_errors, 0, "a redirect is no quirk now");
    assert_eq!(events(&mut c), vec![]);
}

#[test]
fn during_a_move_the_old_connection_ending_does_not_end_the_session() {
    let t0 = Instant::now();
    let mut c = moving_core(t0);
    c.handle_control(ServerControl::Error {
        code: ErrorCode::ZoneMoved,
        message: "handed over".into(),
    });
    c.handle_connection_lost(DisconnectReason::new(
        ErrorCode::Normal,
        "closed",
        DisconnectKind::Server,
    ));
    assert_eq!(c.disconnect_reason(), None);
    assert!(c.is_moving());
    // The game goes on: late snapshots from the old node still apply, inputs numbered.
    c.handle_datagram(t0, &snapshot(6, 0, vec![]));
    assert_eq!(c.counters().snapshots, 2);
    let (seq, _) = c.input_datagram(t0, Vec2::ZERO, 0).expect("still open");
    assert_eq!(seq, 3);
}

#[test]
fn without_a_move_the_connection_ending_ends_the_session() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let reason = DisconnectReason::new(ErrorCode::Normal, "closed", DisconnectKind::Server);
    c.handle_connection_lost(reason.clone());
    assert_eq!(c.disconnect_reason(), Some(&reason));
    assert_eq!(events(&mut c), vec![Event::Disconnected(reason)]);
}

#[test]
fn a_completed_move_keeps_replica_inputs_and_acks_and_reports_the_new_zone() {
    let t0 = Instant::now();
    let mut c = moving_core(t0);
    let t1 = t0 + Duration::from_millis(40);
    let moved = Welcome {
        zone: ZoneId(3),
        tick_hz: 30,
        ..WELCOME
    };
    let first = c
        .handle_moved(t1, moved)
        .expect("inputs and ack to re-send");
    let (ack, seqs) = decode(&first);
    assert!(ack.covers(5), "the new node learns what the client holds");
    assert_eq!(seqs, vec![2, 1], "unacknowledged inputs go out again");
    assert!(!c.is_moving());
    assert_eq!(c.welcome(), moved);
    assert_eq!(c.ack_deadline(), None, "the first datagram carried the ack");
    assert_eq!(
        events(&mut c),
        vec![
            Event::Spawned {
                id: NetId(1),
                kind: 0
            },
            Event::ZoneChanged { zone: ZoneId(3) },
        ]
    );
    // The new node continues the snapshot sequence; the replica carries on.
    assert!(c.replica().contains(NetId(1)));
    c.handle_datagram(t1, &snapshot(6, 2, vec![]));
    assert_eq!(c.counters().stale_snapshots, 0);
    let (seq, bytes) = c.input_datagram(t1, Vec2::ZERO, 0).expect("open");
    assert_eq!(seq, 3, "sequence numbers continue");
    let (ack, seqs) = decode(&bytes);
    assert!(ack.covers(5) && ack.covers(6));
    assert_eq!(seqs, vec![3]);
    // A later redirect starts a new move.
    c.handle_control(redirect("10.0.0.3:4433"));
    assert!(c.poll_move().is_some());
}

#[test]
fn a_move_within_the_zone_reports_nothing_and_may_have_nothing_to_send() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.handle_control(redirect("10.0.0.2:4433"));
    c.poll_move().expect("a move is asked for");
    assert_eq!(c.handle_moved(t0, WELCOME), None, "no ack, no inputs");
    assert_eq!(events(&mut c), vec![]);
    assert_eq!(c.counters().datagrams_sent, 0);
}

#[test]
fn a_failed_move_ends_the_session_with_a_reconnectable_reason() {
    let t0 = Instant::now();
    let mut c = moving_core(t0);
    c.handle_move_failed(move_failed());
    assert!(!c.is_moving());
    assert_eq!(c.disconnect_reason(), Some(&move_failed()));
    assert!(move_failed().can_reconnect());
    assert_eq!(
        events(&mut c).last(),
        Some(&Event::Disconnected(move_failed()))
    );
    // Nothing from the old connection counts any more.
    c.handle_control(redirect("10.0.0.3:4433"));
    assert_eq!(c.poll_move(), None);
}

#[test]
fn ending_the_session_during_a_move_settles_it() {
    let t0 = Instant::now();
    let mut c = moving_core(t0);
    c.protocol_violation(ErrorCode::ProtocolViolation, "bad frame".into());
    assert!(!c.is_moving());
    assert!(c.disconnect_reason().is_some());
}
