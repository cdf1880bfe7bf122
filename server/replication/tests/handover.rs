//! Continuing a client's view on another node: a view resumed from another view's
//! handover keeps the client's numbering, spawns again (full records) the held entities
//! its frame selects and despawns the others, never deltas against the old node's
//! snapshots, and shrugs off acknowledgements of them; the strict model client of
//! `sim`, carried over from the old view, checks every record. The handover's encoding
//! roundtrips and its decoder never panics.

mod sim;

use proptest::prelude::*;
use sim::{Harness, LinkConditions, Rng, TickReport, comps, entity, nudge, set_components};
use zonemesh_replication::{ClientView, ReplicatedState, ViewConfig, ViewHandover};
use zonemesh_shared::codec::DecodeError;
use zonemesh_shared::datagram::{Ack, EntityRecord, PosField};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::{QPos, Vec2};

fn line_of(n: usize, spacing: f32) -> Vec<ReplicatedState> {
    (0..n)
        .map(|i| entity(i as u64 + 1, spacing * (i as f32 + 1.0), 0.0, &[i as u8]))
        .collect()
}

/// Far outside any test's area of interest.
fn far() -> QPos {
    QPos::from_world(Vec2::new(900.0, 0.0))
}

fn ids(h: &ViewHandover) -> Vec<u64> {
    h.held.iter().map(|(id, _)| id.0).collect()
}

fn records(report: &TickReport) -> impl Iterator<Item = &EntityRecord> {
    report.sent.iter().flat_map(|s| s.records.iter())
}

/// Node A: a view shown `states`, stepped `ticks` times with everything moving.
fn run_old_node(config: ViewConfig, states: Vec<ReplicatedState>, ticks: usize) -> Harness {
    let mut a = Harness::new(config, states, 1);
    for t in 0..ticks {
        for i in 0..a.states.len() {
            nudge(&mut a.states, i, 1 + (t % 2) as i32, -1);
        }
        a.step();
    }
    a
}

/// Node B: a view resumed from `handover` after a trip through its encoding, showing
/// `states` to the client node A was feeding (and on its own clock).
fn resume_on_new_node(
    a: &mut Harness,
    handover: &ViewHandover,
    states: Vec<ReplicatedState>,
) -> Harness {
    let decoded = ViewHandover::decode(&handover.encode()).expect("handovers decode");
    assert_eq!(&decoded, handover);
    let view = ClientView::resume(a.view.config().clone(), &decoded);
    let mut b = Harness::with_view(view, states, 2);
    b.client = std::mem::take(&mut a.client);
    b.viewer = a.viewer;
    b.tick = 50_000;
    b
}

/// Checks a resumed view's datagrams: numbered consecutively from the handover's
/// `next_seq`, and no delta against a snapshot before it (one the view never sent).
#[derive(Debug)]
struct ResumedNumbering {
    first: u32,
    next: u32,
}

impl ResumedNumbering {
    fn new(handover: &ViewHandover) -> Self {
        let first = handover.next_seq as u32;
        Self { first, next: first }
    }

    fn check(&mut self, report: &TickReport) {
        for snap in &report.sent {
            let seq = snap.header.seq;
            assert_eq!(seq, self.next, "numbering continues without gaps");
            self.next = seq.wrapping_add(1);
            for r in &snap.records {
                let EntityRecord::Update {
                    id,
                    pos: PosField::Delta { baseline_back, .. },
                    ..
                } = r
                else {
                    continue;
                };
                let base = seq.wrapping_sub(*baseline_back);
                assert!(
                    base.wrapping_sub(self.first) < 1 << 31,
                    "delta of {id} in {seq} against {base}, before the resumed view's first snapshot {}",
                    self.first
                );
            }
        }
    }
}

/// An acknowledgement of the old node's last 33 snapshots up to `latest`.
fn stale_ack(latest: u32) -> Ack {
    Ack {
        latest,
        bits: u32::MAX,
        any: true,
    }
}

/// Asserts that `report` carries a full record of `s`: spawn kind, absolute position
/// and all components.
fn assert_full_record(report: &TickReport, s: &ReplicatedState) {
    let mut of_s = records(report).filter(|r| r.id() == s.id);
    let Some(EntityRecord::Update {
        spawn_kind,
        pos,
        components,
        ..
    }) = of_s.next()
    else {
        panic!("no update of {}", s.id);
    };
    assert_eq!(*spawn_kind, Some(s.kind), "{} gets a spawn record", s.id);
    assert_eq!(*pos, PosField::Absolute(s.pos));
    assert_eq!(components[..], s.components[..]);
    assert!(of_s.next().is_none(), "one record of {}", s.id);
}

fn assert_despawned(report: &TickReport, id: u64) {
    let despawned = records(report).any(|r| *r == EntityRecord::Despawn { id: NetId(id) });
    assert!(despawned, "no despawn of {id}");
}

#[test]
fn a_resumed_view_spawns_what_stays_despawns_what_left_and_continues_numbering() {
    let mut a = run_old_node(ViewConfig::default(), line_of(6, 5.0), 6);
    // By the handover, entity 6 has left A's view, its despawn not yet acknowledged.
    a.link.ack_loss = 1.0;
    a.states[5].pos = far();
    let last = a.step();
    assert_despawned(&last, 6);
    let last_a_seq = last.sent.last().expect("a datagram").header.seq;
    let handover = a.view.handover();
    assert_eq!(ids(&handover), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        handover.next_seq,
        u64::from(last_a_seq) + 1 + ViewHandover::SEQ_GAP
    );

    // On node B, 1 to 3 are still near (2 moved and changed), 4 and 5 are far, 6 is
    // not in B's world at all, and 7 is new.
    let mut states = a.states[..5].to_vec();
    nudge(&mut states, 1, 7, 3);
    set_components(&mut states, 1, comps(b"changed on B"));
    states[3].pos = far();
    states[4].pos = far();
    states.push(entity(7, 12.0, 3.0, &[7]));
    let mut b = resume_on_new_node(&mut a, &handover, states);
    // The client's first acknowledgement to B covers only A's snapshots.
    b.acknowledge(stale_ack(last_a_seq));
    let mut numbering = ResumedNumbering::new(&handover);

    let first = b.step();
    numbering.check(&first);
    assert_eq!(first.stats.delta_records, 0);
    assert_eq!(first.stats.records, 7);
    for i in [0, 1, 2, 5] {
        assert_full_record(&first, &b.states[i]);
    }
    for id in [4, 5, 6] {
        assert_despawned(&first, id);
    }
    assert!(b.converged(), "the client shows exactly B's world");

    // With B's own records acknowledged, deltas resume (against B's snapshots only),
    // whatever stale acknowledgements keep arriving.
    let mut n_deltas = 0;
    for _ in 0..10 {
        b.acknowledge(stale_ack(last_a_seq));
        for i in [0, 1, 2, 5] {
            nudge(&mut b.states, i, 2, 1);
        }
        let r = b.step();
        numbering.check(&r);
        n_deltas += r.stats.delta_records;
        assert!(b.converged());
    }
    assert!(n_deltas >= 30, "only {n_deltas} deltas");
    assert_eq!(b.view.tracked(), 4, "acknowledged despawns are forgotten");
}

#[test]
fn snapshots_the_old_view_sends_after_the_handover_do_not_collide() {
    // Many entities with large components under a generous budget: the player's last
    // tick on A, after the handover was taken, fills every datagram a tick may have.
    let config = ViewConfig {
        budget_bytes_per_tick: 100_000,
        ..ViewConfig::default()
    };
    let states = (0..300)
        .map(|i| entity(i + 1, 0.2 * i as f32, 0.0, &[1; 80]))
        .collect();
    let mut a = run_old_node(config, states, 3);
    a.settle(20);
    let handover = a.view.handover();
    for i in 0..a.states.len() {
        set_components(&mut a.states, i, comps(&[2; 80]));
    }
    let stray = a.step();
    assert_eq!(stray.stats.datagrams, 16, "a full tick of datagrams");
    let stray_last = stray.sent.last().expect("datagrams").header.seq;
    assert!(u64::from(stray_last) < handover.next_seq);

    // The client received and acknowledges the stray snapshots. B changes every entity
    // again: had it reused their numbers, it would take the acknowledgements for its own
    // records and the client would drop those as no newer than A's.
    let mut states = a.states.clone();
    for i in 0..states.len() {
        set_components(&mut states, i, comps(&[3; 80]));
    }
    let mut b = resume_on_new_node(&mut a, &handover, states);
    b.acknowledge(stale_ack(stray_last));
    let mut numbering = ResumedNumbering::new(&handover);
    for _ in 0..40 {
        b.acknowledge(stale_ack(stray_last));
        let r = b.step();
        numbering.check(&r);
        assert_eq!(r.stats.delta_records, 0, "nothing moved since the handover");
        if b.converged() {
            return;
        }
    }
    panic!("no convergence");
}

#[test]
fn a_resumed_view_prioritises_as_a_fresh_one_would() {
    // A showed 1 to 3; on B they are joined by nearer newcomers 7 to 9 and the budget
    // holds one spawn record per tick. Held entities enter B's view with the newcomers,
    // so nearness alone orders them, as in a fresh view: the client's stale copies do
    // not jump the queue, and neither do they wait behind it.
    let held = [(1, 28.0), (2, 36.0), (3, 44.0)];
    let mut a = Harness::new(ViewConfig::default(), Vec::new(), 5);
    a.states = held
        .iter()
        .map(|&(id, x)| entity(id, x, 0.0, &[1]))
        .collect();
    a.settle(5);
    let handover = a.view.handover();
    let mut states = a.states.clone();
    states.extend([(7, 4.0), (8, 12.0), (9, 20.0)].map(|(id, x)| entity(id, x, 0.0, &[2])));
    let config = ViewConfig {
        budget_bytes_per_tick: 24,
        ..ViewConfig::default()
    };
    let mut fresh = Harness::new(config.clone(), states.clone(), 6);
    let mut b = Harness::with_view(ClientView::resume(config, &handover), states, 6);
    b.client = std::mem::take(&mut a.client);
    b.tick = 50_000;
    let (mut order_b, mut order_fresh) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        order_b.extend(records(&b.step()).map(|r| r.id().0));
        order_fresh.extend(records(&fresh.step()).map(|r| r.id().0));
    }
    assert_eq!(order_b, vec![7, 8, 9, 1, 2, 3]);
    assert_eq!(order_b, order_fresh);
    assert!(b.converged());
}

#[test]
fn the_handover_lists_only_what_the_client_may_hold() {
    // Room for one spawn record per tick and four tracked entities: after two ticks,
    // two entities were sent and two more admitted but not sent.
    let config = ViewConfig {
        budget_bytes_per_tick: 24,
        max_tracked_entities: 4,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, line_of(6, 4.0), 3);
    h.step();
    h.step();
    assert_eq!(h.view.tracked(), 4);
    assert_eq!(ids(&h.view.handover()), vec![1, 2]);
    h.settle(20);
    assert_eq!(ids(&h.view.handover()), vec![1, 2, 3, 4]);

    // 1 leaves and its despawn is acknowledged; 2 leaves and its despawn is not.
    h.states[0].pos = far();
    h.step();
    assert_eq!(ids(&h.view.handover()), vec![2, 3, 4]);
    h.link.ack_loss = 1.0;
    h.states[1].pos = far();
    h.step();
    let held = ids(&h.view.handover());
    assert!(held.contains(&2) && !held.contains(&1), "{held:?}");
    assert!(held.len() <= 4);
}

#[test]
fn a_resumed_view_bounds_tracking_and_never_panics_on_odd_handovers() {
    let config = ViewConfig {
        max_tracked_entities: 2,
        ..ViewConfig::default()
    };
    let held = (1..=5).map(|id| (NetId(id), 1)).collect();
    let handover = ViewHandover {
        next_seq: u64::MAX,
        held,
    };
    let view = ClientView::resume(config, &handover);
    let mut h = Harness::with_view(view, line_of(3, 4.0), 4);
    let first = h.step();
    assert_eq!(
        first.sent[0].header.seq,
        u32::MAX,
        "the wire numbering is kept"
    );
    assert!(h.view.tracked() <= 2);
    h.settle(20);
}

/// Random walk and component changes.
fn churn(states: &mut [ReplicatedState], rng: &mut Rng) {
    for i in 0..states.len() {
        if rng.chance(0.5) {
            let p = &mut states[i].pos;
            p.x = (p.x + rng.below(41) as i32 - 20).clamp(-800, 800);
            p.y = (p.y + rng.below(41) as i32 - 20).clamp(-800, 800);
        }
        if rng.chance(0.1) {
            set_components(states, i, comps(&rng.next_u64().to_le_bytes()));
        }
    }
}

/// Node B's world: some of A's entities gone or moved anywhere, some new ones.
fn new_node_world(old: &[ReplicatedState], rng: &mut Rng) -> Vec<ReplicatedState> {
    let mut states: Vec<ReplicatedState> =
        old.iter().filter(|_| !rng.chance(0.25)).cloned().collect();
    for s in &mut states {
        if rng.chance(0.3) {
            s.pos = QPos::from_world(Vec2::new(
                rng.below(61) as f32 - 30.0,
                rng.below(61) as f32 - 30.0,
            ));
        }
    }
    for i in 0..rng.below(10) {
        let (x, y) = (rng.below(41) as f32 - 20.0, rng.below(41) as f32 - 20.0);
        states.push(entity(1000 + i, x, y, &[9]));
    }
    states
}

fn link(p: (f64, u64, f64, u64)) -> LinkConditions {
    LinkConditions {
        loss: p.0,
        jitter_ticks: p.1,
        ack_loss: p.2,
        ack_delay_ticks: p.3,
    }
}

/// Settings of one resumption case.
#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    link: (f64, u64, f64, u64),
    budget: usize,
    max_tracked: usize,
    first_seq: u32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        (0.0f64..0.8, 0u64..4, 0.0f64..0.8, 0u64..4),
        60usize..3000,
        1usize..30,
        any::<u32>(),
    )
        .prop_map(|(seed, link, budget, max_tracked, first_seq)| Case {
            seed,
            link,
            budget,
            max_tracked,
            first_seq,
        })
}

/// Runs node A for `ticks` under the case's lossy link and takes the handover.
fn lossy_old_node(c: &Case, n: usize, ticks: usize, rng: &mut Rng) -> (Harness, ViewHandover) {
    let config = ViewConfig {
        aoi_radius: 20.0,
        budget_bytes_per_tick: c.budget,
        max_tracked_entities: c.max_tracked,
        ..ViewConfig::default()
    };
    let states = (0..n as u64)
        .map(|i| {
            entity(
                i + 1,
                (i % 7) as f32 * 6.0 - 20.0,
                (i / 7) as f32 * 6.0 - 20.0,
                &[1],
            )
        })
        .collect();
    let view = ClientView::with_first_seq(config, c.first_seq);
    let mut a = Harness::with_view(view, states, c.seed);
    a.link = link(c.link);
    for _ in 0..ticks {
        churn(&mut a.states, rng);
        a.step();
    }
    let handover = a.view.handover();
    (a, handover)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever A's history, losses and in-flight datagrams, a view resumed on B keeps
    /// the datagram contract for the carried-over client (the model client panics on
    /// any breach), numbers on from the handover, never deltas against A's snapshots,
    /// and converges once the link is clean.
    #[test]
    fn resumed_views_keep_the_contract_and_converge(
        c in case(),
        n in 1usize..40,
        ticks_a in 1usize..40,
        ticks_b in 1usize..40,
    ) {
        let mut rng = Rng::new(c.seed ^ 0x4a4d);
        let (mut a, handover) = lossy_old_node(&c, n, ticks_a, &mut rng);
        prop_assert!(handover.held.len() <= c.max_tracked);
        prop_assert!(handover.held.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
        let late = a.take_in_flight();
        let stale = a.client.ack;
        let states = new_node_world(&a.states, &mut rng);
        let mut b = resume_on_new_node(&mut a, &handover, states);
        b.link = link(c.link);
        b.viewer = Vec2::new(rng.below(41) as f32 - 20.0, rng.below(41) as f32 - 20.0);
        let mut numbering = ResumedNumbering::new(&handover);
        b.view.handle_ack(stale);
        numbering.check(&b.step());
        // A's datagrams still in flight arrive after B's first ones.
        for d in &late {
            b.client.receive(d);
        }
        for _ in 0..ticks_b {
            churn(&mut b.states, &mut rng);
            b.view.handle_ack(stale);
            numbering.check(&b.step());
        }
        b.settle(400);
    }

    /// Arbitrary bytes decode to an error or to a handover that roundtrips; never a
    /// panic. The format byte is often forced valid so the rest gets exercised.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
        valid_format in any::<bool>(),
    ) {
        if valid_format && !bytes.is_empty() {
            bytes[0] = 1;
        }
        if let Ok(h) = ViewHandover::decode(&bytes) {
            prop_assert!(h.held.len() <= ViewHandover::HELD_MAX);
            prop_assert_eq!(ViewHandover::decode(&h.encode()), Ok(h));
        }
    }

    /// Handovers roundtrip; every truncation and any trailing byte is an error.
    #[test]
    fn handovers_roundtrip_and_truncations_fail(
        next_seq in 0..=ViewHandover::SEQ_MAX,
        held in proptest::collection::vec((any::<u64>(), any::<u16>()), 0..40),
    ) {
        let h = ViewHandover {
            next_seq,
            held: held.into_iter().map(|(id, kind)| (NetId(id), kind)).collect(),
        };
        let bytes = h.encode();
        prop_assert!(bytes.len() <= ViewHandover::ENCODED_LEN_MAX);
        prop_assert_eq!(ViewHandover::decode(&bytes), Ok(h));
        for len in 0..bytes.len() {
            prop_assert!(ViewHandover::decode(&bytes[..len]).is_err(), "prefix of {} bytes", len);
        }
        let mut longer = bytes;
        longer.push(0);
        prop_assert_eq!(ViewHandover::decode(&longer), Err(DecodeError::TrailingBytes(1)));
    }
}
