//! The network and the runtimes' delays: handoff messages are lost, duplicated,
//! reordered or very late, client datagrams lost and reordered; runtime and store
//! calls take about their usual time and now and then longer than the core waits.
//! The last [`CALM_MS`] of a run lose nothing, so every client gets through and the
//! liveness checks can hold.

use super::world::{Event, World};
use crate::handoff::{FREEZE_TIMEOUT_MS, HandoffMsg, STATE_TIMEOUT_MS};

/// How long before the end the network stops losing messages.
const CALM_MS: u64 = 10_000;

impl World {
    /// A runtime's or the store's delay: about `usual` ms, rarely `slow` to twice
    /// that (a store call stuck behind a lock, or retried while the store is
    /// unavailable).
    pub(super) fn delay(&mut self, usual: u64, slow: u64) -> u64 {
        if self.rng.chance(0.02) {
            self.rng.range(slow, 2 * slow)
        } else {
            self.rng.range(0, 2 * usual)
        }
    }

    /// The usual delays of the runtime's store calls.
    pub(super) fn store_delay(&mut self) -> u64 {
        self.delay(50, 2_000)
    }

    /// The slow freeze: longer than the source waits for it.
    pub(super) fn freeze_delay(&mut self) -> u64 {
        self.delay(30, FREEZE_TIMEOUT_MS + 1_000)
    }

    /// The slow activation: longer than the source waits for its answer.
    pub(super) fn activation_delay(&mut self) -> u64 {
        if self.slow_activations {
            return self.rng.range(STATE_TIMEOUT_MS + 100, 2 * STATE_TIMEOUT_MS);
        }
        self.delay(50, STATE_TIMEOUT_MS + 1_000)
    }

    /// The share of messages lost now: none once the faults are over, so the run
    /// settles.
    fn loss_now(&self) -> f64 {
        if self.now + CALM_MS >= self.limit {
            0.0
        } else {
            self.loss
        }
    }

    /// Sends a handoff message through the network: lost, duplicated, reordered or
    /// very late, through its wire form.
    pub(super) fn send_handoff(&mut self, msg: HandoffMsg) {
        let msg = HandoffMsg::decode(&msg.encode()).expect("the wire form decodes");
        let copies = if self.rng.chance(0.1) { 2 } else { 1 };
        for _ in 0..copies {
            if self.rng.chance(self.loss_now()) {
                continue;
            }
            let ms = if self.rng.chance(0.01) {
                STATE_TIMEOUT_MS + 1_000
            } else {
                self.rng.range(0, 400)
            };
            self.later(ms, Event::Handoff(msg.clone()));
        }
    }

    /// Sends a datagram between a client and a node: lost or reordered.
    pub(super) fn send_datagram(&mut self, event: Event) {
        if !self.rng.chance(self.loss_now() / 2.0) {
            let ms = self.rng.range(1, 120);
            self.later(ms, event);
        }
    }
}
