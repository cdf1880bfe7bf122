//! The worker pool that ticks zones: one OS thread per core, each owning a share of
//! the zones and ticking them at the fixed rate with a [`TickClock`].
//!
//! Zones are added while the pool runs (when they finish loading), each to the worker
//! holding the fewest, and handed back when the pool stops so their final state can be
//! saved. A zone is only ever touched by its own worker, so zones need no locks; they
//! talk to each other and to connections only through bounded, non-blocking queues.

use super::Zone;
use super::clock::TickClock;
use super::messages::WorkerWaker;
use super::ticks::{TickLedger, WorkerTickRecorder};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use zonemesh_shared::status::TickTotals;

/// Zones waiting to be picked up by one worker. A worker takes them at its next tick;
/// there are never more than the node's zones in flight, so the bound is never hit in
/// practice and a full queue is reported as an error rather than blocking.
const ADD_QUEUE: usize = 1024;

/// One worker thread and the way to give it zones.
#[derive(Debug)]
struct Worker {
    handle: JoinHandle<Vec<Zone>>,
    thread: std::thread::Thread,
    add: SyncSender<Box<Zone>>,
    zones: Arc<AtomicUsize>,
    /// Set when one of its zones has messages to handle before the next tick.
    pending: Arc<AtomicBool>,
}

/// Running zone workers.
#[derive(Debug)]
pub struct ZonePool {
    workers: Mutex<Vec<Worker>>,
    stop: Arc<AtomicBool>,
    size: usize,
    ticks: TickLedger,
}

impl ZonePool {
    /// Starts `workers` threads (at least 1), initially without zones. Zones that
    /// leave memory (idle) are sent to `retired`, which must have room for every zone.
    pub fn start(
        workers: usize,
        tick_hz: u16,
        retired: tokio::sync::mpsc::Sender<Box<Zone>>,
    ) -> std::io::Result<Self> {
        let n = workers.max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let period = TickClock::period_for_hz(tick_hz);
        let mut all = Vec::with_capacity(n);
        let mut ticks = TickLedger::default();
        for i in 0..n {
            let (add, incoming) = sync_channel(ADD_QUEUE);
            let zones = Arc::new(AtomicUsize::new(0));
            let pending = Arc::new(AtomicBool::new(false));
            let (stop, count) = (Arc::clone(&stop), Arc::clone(&zones));
            let (retired, flag) = (retired.clone(), Arc::clone(&pending));
            let recorder = ticks.add_worker();
            let handle = std::thread::Builder::new()
                .name(format!("zone-worker-{i}"))
                .spawn(move || {
                    let lanes = Lanes {
                        incoming: &incoming,
                        retired: &retired,
                        count: &count,
                        pending: &flag,
                        ticks: &recorder,
                    };
                    run_worker(&lanes, period, &stop)
                })?;
            let thread = handle.thread().clone();
            all.push(Worker {
                handle,
                thread,
                add,
                zones,
                pending,
            });
        }
        Ok(Self {
            workers: Mutex::new(all),
            stop,
            size: n,
            ticks,
        })
    }

    /// Tick figures of every worker since the pool started.
    pub fn tick_totals(&self) -> TickTotals {
        self.ticks.totals()
    }

    /// The number of worker threads.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Gives `zone` to the worker with the fewest zones; it ticks from its next round.
    /// Returns the zone if the pool has stopped.
    pub fn add(&self, zone: Box<Zone>) -> Result<(), Box<Zone>> {
        let workers = crate::link::lock(&self.workers);
        let Some(worker) = workers
            .iter()
            .min_by_key(|w| w.zones.load(Ordering::Acquire))
        else {
            return Err(zone);
        };
        zone.register_waker(WorkerWaker {
            thread: worker.thread.clone(),
            pending: Arc::clone(&worker.pending),
        });
        // A zone that ticks on arrival is taken now, not at the next round.
        let urgent = zone.ticks_on_arrival();
        match worker.add.try_send(zone) {
            Ok(()) => {
                worker.zones.fetch_add(1, Ordering::AcqRel);
                if urgent {
                    worker.pending.store(true, Ordering::Release);
                }
                worker.thread.unpark();
                Ok(())
            }
            Err(TrySendError::Full(zone) | TrySendError::Disconnected(zone)) => Err(zone),
        }
    }

    /// Stops every worker after its current tick, waits for them, and returns their
    /// zones (for a final save).
    pub fn stop(&self) -> Vec<Zone> {
        // Take the workers before raising the flag: an `add` that got in first has its
        // zone queued before any worker sees the flag and drains its queue one last time.
        let workers = std::mem::take(&mut *crate::link::lock(&self.workers));
        self.stop.store(true, Ordering::Release);
        for w in &workers {
            w.thread.unpark();
        }
        let mut zones = Vec::new();
        for w in workers {
            match w.handle.join() {
                Ok(share) => zones.extend(share),
                Err(_) => tracing::error!("a zone worker panicked; its zones are lost"),
            }
        }
        zones
    }
}

/// How zones come to a worker and leave it.
struct Lanes<'a> {
    incoming: &'a Receiver<Box<Zone>>,
    retired: &'a tokio::sync::mpsc::Sender<Box<Zone>>,
    count: &'a AtomicUsize,
    pending: &'a AtomicBool,
    ticks: &'a WorkerTickRecorder,
}

fn run_worker(lanes: &Lanes<'_>, period: Duration, stop: &AtomicBool) -> Vec<Zone> {
    let Lanes {
        incoming, count, ..
    } = *lanes;
    let mut zones: Vec<Zone> = Vec::new();
    let mut clock = TickClock::new(Instant::now(), period);
    let mut took = Vec::new();
    let mut cpu = Vec::new();
    while !stop.load(Ordering::Acquire) {
        if sleep_until(clock.next_at(), stop, lanes.pending) == Wake::Pending {
            // A request is waiting: handle messages now, tick at the usual time. A zone
            // that froze for a handoff meanwhile leaves at once; one handed over from
            // another node ticks at once (its players wait for a snapshot).
            zones.extend(incoming.try_iter().map(|mut z| {
                z.tick_if_just_arrived();
                *z
            }));
            answer_requests(&mut zones, lanes.pending);
            retire_idle(&mut zones, lanes);
            continue;
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        // Arrived just in time for a round: it ticks in it, not twice.
        zones.extend(incoming.try_iter().map(|mut z| {
            z.clear_tick_on_arrival();
            *z
        }));
        took.clear();
        cpu.clear();
        let round_started = Instant::now();
        for i in 0..zones.len() {
            let started = Instant::now();
            let cpu_started = thread_cpu_time();
            zones[i].tick();
            took.push(started.elapsed());
            cpu.push(thread_cpu_time().saturating_sub(cpu_started));
            // A request that came in meanwhile waits for one zone's tick, not the
            // whole round: latency must not grow with the zones a worker holds.
            answer_requests(&mut zones, lanes.pending);
        }
        let finished = Instant::now();
        let plan = clock.finish_tick(finished);
        lanes
            .ticks
            .record_round(&took, finished - round_started, plan.missed);
        if plan.missed > 0 {
            tracing::warn!(missed = plan.missed, "zone ticks overran their deadline");
        }
        for ((zone, took), cpu) in zones.iter().zip(&took).zip(&cpu) {
            zone.publish_status(*took, *cpu, plan.missed);
        }
        retire_idle(&mut zones, lanes);
    }
    zones.extend(incoming.try_iter().map(|z| *z));
    count.store(0, Ordering::Release);
    zones
}

/// Handles every zone's waiting messages if a request has asked for it since the last
/// time (the flag is cleared first, so a request arriving meanwhile raises it again).
fn answer_requests(zones: &mut [Zone], pending: &AtomicBool) {
    if pending.swap(false, Ordering::AcqRel) {
        zones.iter_mut().for_each(Zone::handle_pending_messages);
    }
}

/// Hands zones that have been idle long enough (and may leave) to the host, which
/// saves them and frees their memory, and zones frozen for a live handoff to the
/// host, which gives them to the handoff.
fn retire_idle(zones: &mut Vec<Zone>, lanes: &Lanes<'_>) {
    let mut i = 0;
    while i < zones.len() {
        // A zone frozen for a handoff leaves too: the handoff holds it from now on.
        let leaving =
            zones[i].is_frozen() || (zones[i].wants_to_retire() && zones[i].begin_retirement());
        if !leaving {
            i += 1;
            continue;
        }
        let zone = Box::new(zones.swap_remove(i));
        match lanes.retired.try_send(zone) {
            Ok(()) => {
                lanes.count.fetch_sub(1, Ordering::AcqRel);
            }
            // The host is gone (the node is stopping): keep ticking; stop saves it.
            Err(e) => zones.push(*e.into_inner()),
        }
    }
}

/// CPU time this thread has used so far.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Parks until `deadline`, waking early when asked to stop or to handle messages.
fn sleep_until(deadline: Instant, stop: &AtomicBool, pending: &AtomicBool) -> Wake {
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Acquire) {
            return Wake::Deadline;
        }
        if pending.load(Ordering::Acquire) {
            return Wake::Pending;
        }
        std::thread::park_timeout(deadline - now);
    }
}

/// Why a worker woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Time to tick (or to stop).
    Deadline,
    /// Messages are waiting that should not wait for the tick.
    Pending,
}
