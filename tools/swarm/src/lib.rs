//! `zonemesh-swarm`: a bot swarm load tester for ZoneMesh servers.
//!
//! Each bot is a real `zonemesh-client` session over QUIC; bots share a few client
//! endpoints so one process drives thousands. A run measures, with HdrHistograms:
//! connect time (retries included), time to first snapshot, input-to-visible latency
//! from each input's *intended* send time (corrected for coordinated omission), snapshot
//! jitter, per-bot bandwidth and snapshot rate, disconnects and errors by kind.
//!
//! # Code map
//! - [`config`]: [`SwarmConfig`], its limits, and the shared [`config::Credentials`].
//! - [`schedule`], [`latency`], [`steering`]: sans-IO cores (input timetable, latency
//!   and jitter trackers, bot behaviours), unit-tested with time passed in.
//! - [`bot`]: the async driver of one bot's sessions.
//! - [`metrics`]: histograms and counters, sharded so bots need no per-bot histogram.
//! - [`swarm`]: one run: endpoints, ramp, collection, shutdown.
//! - [`report`]: the pure report builder, its table and the progress line.
//! - [`own_cpu`]: the swarm's own CPU over a run, and whether it was the bottleneck.
//! - [`histlog`]: HdrHistogram interval logs and merging them.
//! - [`cli`]: the command line.
//!
//! # Bounds
//! Bots ≤ 20 000, duration ≤ 1 h, ramp ≤ 10 min; a run ends by itself (stragglers are
//! aborted after a grace period). Per bot: at most 1024 inputs awaiting
//! acknowledgement (oldest given up and counted), one input standing for at most 256
//! missed schedule slots (older ones skipped and counted), and the SDK's event queue
//! set to 64 entries. Metrics live in a fixed number of shards.

pub mod bot;
pub mod cli;
pub mod config;
pub mod histlog;
pub mod latency;
pub mod metrics;
pub mod own_cpu;
pub mod report;
pub mod schedule;
pub mod server_figures;
pub mod steering;
pub mod swarm;

pub use config::{Auth, SwarmConfig};
pub use report::Report;
pub use steering::Behavior;
pub use swarm::{SwarmError, run};
