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
    ClientCore::new(
        WELCOME,
        CoreConfig {
            input_redundancy: 4,
            event_queue_capacity: 64,
            interpolation_delay_ticks: 2.0,
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
