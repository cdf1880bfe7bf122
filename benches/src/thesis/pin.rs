//! Core pinning: the servers under test on one core, the load generator on another, as
//! the scenario runner does with its child processes. Without it, servers, clients and
//! the pacer share both cores and every request's latency includes waiting for the
//! other side's threads to get off the core.
//!
//! Threads inherit the affinity of the thread that creates them, so pinning the main
//! thread while a server starts also pins the zone workers it spawns.

use anyhow::Context;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// Which cores run what. `None` for either means "any core the process may use".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cores {
    pub(crate) server: Option<usize>,
    pub(crate) clients: Option<usize>,
    /// The cores the process was allowed when it started (restored by `None`).
    allowed: Vec<usize>,
}

impl Cores {
    /// Servers on the first core this process may use and clients on the second,
    /// when `pin` is asked for and there are two; else unpinned.
    pub(crate) fn choose(pin: bool) -> anyhow::Result<Self> {
        let current = sched_getaffinity(None).context("cannot read this process's cores")?;
        let allowed: Vec<usize> = (0..CpuSet::MAX_CPU)
            .filter(|&c| current.is_set(c))
            .collect();
        let (server, clients) = match allowed.as_slice() {
            [first, second, ..] if pin => (Some(*first), Some(*second)),
            _ => (None, None),
        };
        Ok(Self {
            server,
            clients,
            allowed,
        })
    }

    /// How the report describes it.
    pub(crate) fn describe(&self) -> String {
        match (self.server, self.clients) {
            (Some(s), Some(c)) => format!("servers pinned to core {s}, clients to core {c}"),
            _ => format!("unpinned ({} cores)", self.allowed.len()),
        }
    }

    /// Pins the calling thread to `core`, or back to every allowed core for `None`.
    pub(crate) fn pin_current_thread(&self, core: Option<usize>) -> anyhow::Result<()> {
        let mut set = CpuSet::new();
        match core {
            Some(core) => set.set(core),
            None => self.allowed.iter().for_each(|&c| set.set(c)),
        }
        sched_setaffinity(None, &set)
            .with_context(|| format!("cannot pin a thread to core {core:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_be_pinned_and_released() {
        let cores = Cores::choose(true).expect("cores");
        let first = cores.allowed[0];
        let seen = std::thread::spawn(move || {
            cores.pin_current_thread(Some(first))?;
            let pinned = sched_getaffinity(None)?;
            cores.pin_current_thread(None)?;
            let released = sched_getaffinity(None)?;
            anyhow::Ok((pinned.count(), pinned.is_set(first), released.count()))
        })
        .join()
        .expect("thread")
        .expect("pinning works");
        let allowed = Cores::choose(false).expect("cores").allowed.len();
        assert_eq!(seen, (1, true, u32::try_from(allowed).expect("few cores")));
    }

    #[test]
    fn unpinned_when_asked_not_to_pin() {
        let cores = Cores::choose(false).expect("cores");
        assert_eq!((cores.server, cores.clients), (None, None));
        assert!(cores.describe().starts_with("unpinned"));
    }
}
