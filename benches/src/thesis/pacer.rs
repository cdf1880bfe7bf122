//! The open-loop pacer: one OS thread that releases every request at its intended send
//! time and hands it to the client that owns it.
//!
//! Why not `tokio::time::sleep_until` in each client: tokio's timer wheel has a
//! resolution of one millisecond and rounds every deadline up to the next whole
//! millisecond, so each request would leave 0–1 ms late. Latency counts from the
//! intended time (no coordinated omission), so that lateness would be added to every
//! measured latency, hiding everything below a millisecond. The pacer sleeps with the
//! operating system's high-resolution sleep instead; what lag remains (the sleep's
//! slack plus waking the client task) is measured per request and reported.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The requests of one open-loop run: `rate` per second in total, shared by `clients`
/// in turn (request k belongs to client k mod clients), from `start` until `until`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenLoopPlan {
    pub(crate) rate: f64,
    pub(crate) clients: usize,
    pub(crate) start: Instant,
    pub(crate) until: Instant,
}

impl OpenLoopPlan {
    /// Time between two requests of the whole run.
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    /// Requests in the plan.
    fn total(&self) -> u64 {
        let span = self
            .until
            .saturating_duration_since(self.start)
            .as_secs_f64();
        // Bounded: the rate and span are finite and positive (checked by `start`).
        (span * self.rate).ceil() as u64
    }

    /// Intended send time of request `k`.
    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }
}

/// A running pacer; each client reads its intended send times from its receiver.
#[derive(Debug)]
pub(crate) struct Pacer {
    thread: JoinHandle<()>,
}

impl Pacer {
    /// Starts the pacer thread; returns it and one receiver per client. Each channel
    /// holds the client's whole share of the plan, so the pacer never waits on a slow
    /// client (its requests queue up and their latency still counts from their
    /// intended time).
    pub(crate) fn start(
        plan: OpenLoopPlan,
    ) -> anyhow::Result<(Self, Vec<mpsc::Receiver<Instant>>)> {
        anyhow::ensure!(
            plan.rate.is_finite() && plan.rate > 0.0 && plan.clients > 0,
            "an open loop needs a positive rate and at least one client"
        );
        anyhow::ensure!(
            plan.interval() > Duration::ZERO,
            "rate {} is too high to pace",
            plan.rate
        );
        let share = usize::try_from(plan.total().div_ceil(plan.clients as u64))
            .unwrap_or(usize::MAX)
            .max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..plan.clients).map(|_| mpsc::channel(share)).unzip();
        let thread = std::thread::Builder::new()
            .name("thesis-pacer".into())
            .spawn(move || release_all(&plan, &senders))?;
        Ok((Self { thread }, receivers))
    }

    /// Waits for the pacer to release its last request.
    pub(crate) fn join(self) -> anyhow::Result<()> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))
    }
}

/// Sleeps to each request's time and hands it to its client. A client that has ended
/// (its receiver dropped, after an error) simply gets nothing more.
fn release_all(plan: &OpenLoopPlan, senders: &[mpsc::Sender<Instant>]) {
    for k in 0..plan.total() {
        let due = plan.due(k);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let client = (k % senders.len() as u64) as usize;
        // Never full: the channel holds the client's whole share.
        let _ = senders[client].try_send(due);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rate: f64, clients: usize, secs: f64) -> OpenLoopPlan {
        let start = Instant::now();
        OpenLoopPlan {
            rate,
            clients,
            start,
            until: start + Duration::from_secs_f64(secs),
        }
    }

    #[test]
    fn requests_go_to_clients_in_turn_at_the_planned_rate() {
        let (pacer, mut receivers) = Pacer::start(plan(1000.0, 3, 0.03)).expect("pacer");
        pacer.join().expect("joined");
        let got: Vec<Vec<Instant>> = receivers
            .iter_mut()
            .map(|r| std::iter::from_fn(|| r.try_recv().ok()).collect())
            .collect();
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 10]);
        // Client 0 gets requests 0, 3, 6, ...: three intervals apart.
        let gap = got[0][1] - got[0][0];
        assert!(gap >= Duration::from_micros(2_990) && gap <= Duration::from_micros(3_010));
        // Client 1's first request is one interval after client 0's.
        let offset = got[1][0] - got[0][0];
        assert!(offset >= Duration::from_micros(990) && offset <= Duration::from_micros(1_010));
    }

    #[test]
    fn a_client_that_left_does_not_stop_the_others() {
        let (pacer, mut receivers) = Pacer::start(plan(2000.0, 2, 0.01)).expect("pacer");
        drop(receivers.remove(0));
        pacer.join().expect("joined");
        let left = std::iter::from_fn(|| receivers[0].try_recv().ok()).count();
        assert_eq!(left, 10);
    }

    #[test]
    fn a_zero_rate_is_refused() {
        assert!(Pacer::start(plan(0.0, 2, 1.0)).is_err());
        assert!(Pacer::start(plan(10.0, 0, 1.0)).is_err());
    }
}
