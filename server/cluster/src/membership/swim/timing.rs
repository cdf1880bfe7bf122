//! SWIM's timing for ZoneMesh clusters: [`SwimTiming::LAN`], the profile `zonemesh serve`
//! and `zonemesh dev --nodes N` run with, and the foca [`SwimConfig`] built from it.
//!
//! How long a dead node takes to be declared down: some survivor probes it; the probe
//! fails (no direct answer within `probe_rtt`, no indirect one before the next probe);
//! at that next probe, one `probe_period` P later, the survivor declares it suspect; if
//! nobody hears from it for `suspect_to_down` S, it is down, and gossip (every 200 ms)
//! tells the others. A node probes its `m` live members in shuffled rounds, so its next
//! probe of any one of them comes within `2m − 1` periods. Detection therefore takes
//! `P + S` plus the wait for the first probe: with the LAN profile about 3 s, and on
//! three nodes at most `4P + S` plus a gossip round, 4.2 s.
//!
//! What it tolerates: a live node that does not run at all for a while (a stalled
//! process, a loaded host) hears of its suspicion when it runs again and refutes it, if
//! the stall was shorter than about `P + S`. With the LAN profile, stalls of 2 s caused
//! no false `Down` in simulated runs and stalls of 2.5 s did. The tests below check
//! 1.5 s stalls, one-way delays of 150 ms (round trips beyond the probe deadline) and
//! 5 % packet loss without a false `Down`.

use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

use super::SwimConfig;

/// Fewest times an update (a suspicion, a refutation) is sent. foca repeats updates
/// `4·log10(n + 1)` times, twice in a cluster of three; a suspect that misses both
/// copies never learns it must refute, and is declared down although it answers every
/// probe. Six copies cost a few bytes in a small cluster and make that miss rare:
/// with the fast profile and foca's count, 1 s stalls caused false `Down`s in the
/// tests below, with six none did up to 2 s.
const MAX_TRANSMISSIONS_MIN: NonZeroU8 = NonZeroU8::new(6).unwrap();

/// The failure detector's timing: the part of foca's configuration an operator tunes.
/// The rest (how often updates are repeated, announcements) follows from the cluster
/// size and ZoneMesh's needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwimTiming {
    /// How often a node probes one member (foca's `probe_period`).
    pub probe_period_ms: u64,
    /// How long a probe waits for the direct answer before asking other members to
    /// probe for it (foca's `probe_rtt`). The indirect probes get the rest of the
    /// period, so it is at most half of it.
    pub probe_rtt_ms: u64,
    /// How long a suspected member has to show it is alive before it is declared
    /// down (foca's `suspect_to_down_after`).
    pub suspect_to_down_ms: u64,
}

impl SwimTiming {
    /// ZoneMesh's LAN profile: detection well within 5 s, which bounds how long a dead
    /// node's zones and players wait. It is memberlist's LAN profile (which foca's
    /// `Config::new_lan` copies) at twice the pace: probe every 500 ms, not 1 s. The
    /// 250 ms answer deadline is still hundreds of times a LAN's round trip; what it
    /// must absorb is a loaded host not scheduling the gossip task, and the indirect
    /// probes give a slow node a second chance in the same period. Suspicion lasts
    /// four periods (memberlist's multiplier for up to 10 nodes), long enough for a
    /// live node to hear it is suspected and refute. It does not grow with the cluster
    /// size as memberlist's does: clusters of hundreds of nodes should raise it.
    pub const LAN: Self = Self {
        probe_period_ms: 500,
        probe_rtt_ms: 250,
        suspect_to_down_ms: 2_000,
    };

    /// foca's configuration for a cluster of about `expected_nodes` nodes (which sets
    /// how many times an update is repeated, at least [`MAX_TRANSMISSIONS_MIN`]). A
    /// node asks a random member for its member list every 5 s instead of foca's 30 s:
    /// updates are gossiped a bounded number of times, and a node that missed them (it
    /// was cut off, or restarted) would otherwise learn of a live member only when
    /// that member probes it, and zones held there would stay unreachable from it.
    ///
    /// Panics if the timing breaks foca's rules (a zero value, or a probe period
    /// not longer than the answer deadline); configuration files are validated first.
    pub fn config(self, expected_nodes: u32) -> SwimConfig {
        assert!(self.probe_rtt_ms > 0, "SWIM probe_rtt must not be zero");
        assert!(
            self.probe_period_ms > self.probe_rtt_ms,
            "SWIM probe_period ({} ms) must be longer than probe_rtt ({} ms)",
            self.probe_period_ms,
            self.probe_rtt_ms
        );
        assert!(
            self.suspect_to_down_ms > 0,
            "SWIM suspicion must not be zero"
        );
        let cluster_size = NonZeroU32::new(expected_nodes).unwrap_or(NonZeroU32::MIN);
        let mut config = SwimConfig::new_lan(cluster_size);
        config.probe_period = Duration::from_millis(self.probe_period_ms);
        config.probe_rtt = Duration::from_millis(self.probe_rtt_ms);
        config.suspect_to_down_after = Duration::from_millis(self.suspect_to_down_ms);
        config.max_transmissions = config.max_transmissions.max(MAX_TRANSMISSIONS_MIN);
        let every_5s = foca::PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::MIN,
        };
        config.periodic_announce = Some(every_5s.clone());
        // Two sides of a healed partition each hold the other down; asking down members
        // every 5 s (not 65 s) lets them find each other again within the settle time.
        config.periodic_announce_to_down_members = Some(every_5s);
        config
    }
}

impl Default for SwimTiming {
    fn default() -> Self {
        Self::LAN
    }
}

/// foca's settings for a LAN of about `expected_nodes` nodes with the ZoneMesh LAN
/// profile ([`SwimTiming::LAN`]).
pub fn lan_config(expected_nodes: u32) -> SwimConfig {
    SwimTiming::LAN.config(expected_nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Millis;
    use crate::membership::swim::Swim;
    use crate::membership::{Member, MembershipEvent};
    use std::collections::BTreeMap;
    use zonemesh_shared::node::NodeRef;

    /// Upper bound on steps of one run: far above what minutes of simulated time on
    /// three nodes take, so only a livelock reaches it.
    const STEPS_MAX: usize = 1_000_000;

    /// SplitMix64, for packet delays, losses and stalls.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n.max(1)
        }
    }

    /// The virtual network: one-way delays of `1..=delay_ms_max`, each packet lost
    /// with probability `loss_percent` %.
    #[derive(Clone, Copy)]
    struct Net {
        delay_ms_max: u64,
        loss_percent: u64,
    }

    const LOOPBACK: Net = Net {
        delay_ms_max: 5,
        loss_percent: 0,
    };

    /// Three SWIM cores on a virtual network and clock.
    struct Lan {
        cores: Vec<Swim>,
        members: Vec<Member>,
        /// Packets in flight by delivery time, then sequence: (core index, bytes).
        in_flight: BTreeMap<(Millis, u64), (usize, Vec<u8>)>,
        n_sent: u64,
        dead: Option<usize>,
        /// Until when each core is stalled (not scheduled, as on a loaded host): its
        /// timers wait and packets to it queue up.
        stalled_until: [Millis; 3],
        /// Every `Down` each core reported: when, which core, about whom.
        downs: Vec<(Millis, usize, NodeRef)>,
        rng: Rng,
        net: Net,
    }

    impl Lan {
        fn new(seed: u64, timing: SwimTiming, net: Net) -> Self {
            let members: Vec<Member> = (0..3u16)
                .map(|i| {
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i));
                    Member {
                        node: NodeRef::new(u64::from(i) + 1, 1),
                        addr,
                        client_addr: addr,
                    }
                })
                .collect();
            let cores = members
                .iter()
                .enumerate()
                .map(|(i, &me)| {
                    let mut core = Swim::new(me, timing.config(3), seed * 3 + i as u64);
                    core.bootstrap(Millis(0), &members).expect("bootstraps");
                    core
                })
                .collect();
            Self {
                cores,
                members,
                in_flight: BTreeMap::new(),
                n_sent: 0,
                dead: None,
                stalled_until: [Millis(0); 3],
                downs: Vec::new(),
                rng: Rng(seed),
                net,
            }
        }

        /// Runs until `end`, moving from one deadline or delivery to the next.
        fn run_until(&mut self, end: Millis) {
            for _ in 0..STEPS_MAX {
                let Some(now) = self.next_event().filter(|&at| at <= end) else {
                    return;
                };
                self.step(now);
            }
            panic!("no progress after {STEPS_MAX} steps");
        }

        /// Runs until `end`, stalling a random core for `stall_ms` every 2–3 s.
        fn run_with_stalls(&mut self, stall_ms: u64, end: Millis) {
            let mut at = Millis(1_000);
            while at < end {
                self.run_until(at);
                let core = self.rng.below(3) as usize;
                self.stalled_until[core] = at + stall_ms;
                at = at + stall_ms + 2_000 + self.rng.below(1_000);
            }
            self.run_until(end);
        }

        fn live(&self) -> impl Iterator<Item = usize> + use<> {
            let dead = self.dead;
            (0..3).filter(move |&i| Some(i) != dead)
        }

        fn next_event(&self) -> Option<Millis> {
            let timers = self.live().filter_map(|i| {
                let due = self.cores[i].poll_timeout()?;
                Some(due.max(self.stalled_until[i]))
            });
            let packet = self.in_flight.keys().next().map(|&(at, _)| at);
            timers.chain(packet).min()
        }

        fn step(&mut self, now: Millis) {
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (to, data) = entry.remove();
                if self.stalled_until[to] > now {
                    self.send(self.stalled_until[to], to, data);
                } else if Some(to) != self.dead {
                    // A malformed or stale packet is foca's to drop, as on a real node.
                    let _ = self.cores[to].handle_data(now, &data);
                }
            }
            let stalled = self.stalled_until;
            for i in self.live().filter(|&i| stalled[i] <= now) {
                self.cores[i].handle_timeout(now);
                self.drain(now, i);
            }
        }

        fn send(&mut self, at: Millis, to: usize, data: Vec<u8>) {
            self.in_flight.insert((at, self.n_sent), (to, data));
            self.n_sent += 1;
        }

        fn drain(&mut self, now: Millis, from: usize) {
            while let Some((addr, data)) = self.cores[from].poll_transmit() {
                let to = self.members.iter().position(|m| m.addr == addr);
                let lost = self.rng.below(100) < self.net.loss_percent;
                if let (Some(to), false) = (to, lost) {
                    let at = now + 1 + self.rng.below(self.net.delay_ms_max);
                    self.send(at, to, data.to_vec());
                }
            }
            while let Some(event) = self.cores[from].poll_event() {
                if let MembershipEvent::Down(node) = event {
                    self.downs.push((now, from, node));
                }
            }
        }

        /// When both survivors have reported `victim` down, if they have.
        fn detected(&self, victim: usize) -> Option<Millis> {
            let node = self.members[victim].node;
            let at = |core: usize| {
                let down = self.downs.iter().find(|d| d.1 == core && d.2 == node);
                down.map(|d| d.0)
            };
            self.live()
                .map(at)
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .max()
        }
    }

    /// The bound the module documentation derives for three nodes: the first probe of
    /// the dead node within `2m − 1` periods (`m` = 2 live members), a period to declare
    /// it suspect, the suspicion, then one gossip round (200 ms) and a packet delay.
    fn three_node_bound_ms(timing: SwimTiming, net: Net) -> u64 {
        4 * timing.probe_period_ms + timing.suspect_to_down_ms + 200 + net.delay_ms_max
    }

    #[test]
    fn the_lan_profile_declares_a_killed_node_down_within_its_bound() {
        let timing = SwimTiming::LAN;
        let bound_ms = three_node_bound_ms(timing, LOOPBACK);
        assert!(
            bound_ms < 5_000,
            "the profile cannot meet 5 s: {bound_ms} ms"
        );
        let mut detections = Vec::new();
        for seed in 0..30 {
            let mut lan = Lan::new(seed, timing, LOOPBACK);
            // Kills at different phases of the probe rounds.
            let kill = Millis(10_000 + seed * 97 % 1_000);
            lan.run_until(kill);
            let victim = (seed % 3) as usize;
            lan.dead = Some(victim);
            lan.run_until(kill + 10_000);
            let at = lan.detected(victim).unwrap_or_else(|| {
                panic!(
                    "seed {seed}: node {victim} never declared down: {:?}",
                    lan.downs
                )
            });
            let detection_ms = at.0 - kill.0;
            assert!(
                detection_ms <= bound_ms,
                "seed {seed}: detected after {detection_ms} ms, bound {bound_ms} ms"
            );
            let victim_node = lan.members[victim].node;
            let wrong: Vec<_> = lan.downs.iter().filter(|d| d.2 != victim_node).collect();
            assert!(
                wrong.is_empty(),
                "seed {seed}: live nodes declared down: {wrong:?}"
            );
            detections.push(detection_ms);
        }
        detections.sort_unstable();
        let median = detections[detections.len() / 2];
        let floor = timing.probe_period_ms + timing.suspect_to_down_ms;
        assert!(
            (floor..=3_500).contains(&median),
            "median detection {median} ms: {detections:?}"
        );
    }

    #[test]
    fn the_lan_profile_keeps_slow_lossy_and_stalled_live_nodes_up() {
        let slow = Net {
            delay_ms_max: 150,
            loss_percent: 0,
        };
        let lossy = Net {
            delay_ms_max: 5,
            loss_percent: 5,
        };
        for seed in 0..10 {
            for (what, net, stall_ms) in [("slow", slow, 0), ("lossy", lossy, 0)]
                .into_iter()
                .chain([("stalled", LOOPBACK, 1_500)])
            {
                let mut lan = Lan::new(seed, SwimTiming::LAN, net);
                if stall_ms == 0 {
                    lan.run_until(Millis(120_000));
                } else {
                    lan.run_with_stalls(stall_ms, Millis(120_000));
                }
                assert!(lan.downs.is_empty(), "seed {seed}, {what}: {:?}", lan.downs);
            }
        }
    }

    #[test]
    fn a_node_stalled_longer_than_period_and_suspicion_is_declared_down() {
        let timing = SwimTiming::LAN;
        let stall_ms = 2 * (timing.probe_period_ms + timing.suspect_to_down_ms);
        let mut lan = Lan::new(1, timing, LOOPBACK);
        lan.run_with_stalls(stall_ms, Millis(30_000));
        assert!(
            !lan.downs.is_empty(),
            "a {stall_ms} ms stall went unnoticed"
        );
    }

    #[test]
    fn the_profile_sets_foca_timing_and_keeps_the_announce_periods() {
        let timing = SwimTiming {
            probe_period_ms: 900,
            probe_rtt_ms: 300,
            suspect_to_down_ms: 4_000,
        };
        let config = timing.config(16);
        assert_eq!(config.probe_period, Duration::from_millis(900));
        assert_eq!(config.probe_rtt, Duration::from_millis(300));
        assert_eq!(config.suspect_to_down_after, Duration::from_secs(4));
        assert_eq!(config.max_transmissions, MAX_TRANSMISSIONS_MIN);
        assert!(timing.config(10_000).max_transmissions > MAX_TRANSMISSIONS_MIN);
        let announce = config.periodic_announce.expect("announces");
        assert_eq!(announce.frequency, Duration::from_secs(5));
        let to_down = config
            .periodic_announce_to_down_members
            .expect("asks down ones");
        assert_eq!(to_down.frequency, Duration::from_secs(5));
        assert!(config.notify_down_members && config.periodic_gossip.is_some());
        assert_eq!(lan_config(3).probe_period, Duration::from_millis(500));
        assert_eq!(SwimTiming::default(), SwimTiming::LAN);
    }
}
