//! The worker pool that ticks zones: one OS thread per core (or fewer if there are
//! fewer zones), each owning a fixed share of the zones and ticking them at the fixed
//! rate with a [`TickClock`].
//!
//! Zones are assigned round-robin at start. A zone is only ever touched by its own
//! worker, so zones need no locks; they talk to each other and to connections only
//! through bounded, non-blocking queues.

use super::Zone;
use super::clock::TickClock;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Running zone workers.
#[derive(Debug)]
pub struct ZonePool {
    workers: Vec<(JoinHandle<()>, std::thread::Thread)>,
    stop: Arc<AtomicBool>,
}

impl ZonePool {
    /// Starts `workers` threads (at least 1, at most one per zone) ticking `zones`.
    pub fn start(zones: Vec<Zone>, workers: usize, tick_hz: u16) -> std::io::Result<Self> {
        let n = workers.clamp(1, zones.len().max(1));
        let mut shares: Vec<Vec<Zone>> = (0..n).map(|_| Vec::new()).collect();
        for (i, zone) in zones.into_iter().enumerate() {
            shares[i % n].push(zone);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let period = TickClock::period_for_hz(tick_hz);
        let mut handles = Vec::with_capacity(n);
        for (i, share) in shares.into_iter().enumerate() {
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("zone-worker-{i}"))
                .spawn(move || run_worker(share, period, &stop))?;
            let thread = handle.thread().clone();
            handles.push((handle, thread));
        }
        Ok(Self {
            workers: handles,
            stop,
        })
    }

    /// The number of worker threads.
    pub fn size(&self) -> usize {
        self.workers.len()
    }

    /// Stops every worker after its current tick and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for (_, thread) in &self.workers {
            thread.unpark();
        }
        for (handle, _) in self.workers {
            if handle.join().is_err() {
                tracing::error!("a zone worker panicked");
            }
        }
    }
}

fn run_worker(mut zones: Vec<Zone>, period: Duration, stop: &AtomicBool) {
    let mut clock = TickClock::new(Instant::now(), period);
    let mut took = Vec::with_capacity(zones.len());
    while !stop.load(Ordering::Acquire) {
        sleep_until(clock.next_at(), stop);
        if stop.load(Ordering::Acquire) {
            break;
        }
        took.clear();
        for zone in &mut zones {
            let started = Instant::now();
            zone.tick();
            took.push(started.elapsed());
        }
        let plan = clock.finish_tick(Instant::now());
        if plan.missed > 0 {
            tracing::warn!(missed = plan.missed, "zone ticks overran their deadline");
        }
        for (zone, took) in zones.iter().zip(&took) {
            zone.publish_status(*took, plan.missed);
        }
    }
}

/// Parks until `deadline`, waking early when asked to stop.
fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Acquire) {
            return;
        }
        std::thread::park_timeout(deadline - now);
    }
}
