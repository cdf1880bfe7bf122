//! The swarm against a real in-process server: every bot connects, latencies are
//! measured and plausible, nothing fails; churning bots rejoin; bad credentials are
//! reported per kind; a run's interval log merges back into the same report; and
//! bots spread over several servers.

mod common;

use common::{TestServer, run_swarm};
use std::time::Duration;
use zonemesh_swarm::histlog::merge_logs;
use zonemesh_swarm::{Auth, Behavior, Report};

fn assert_plausible(name: &str, p: &zonemesh_swarm::report::Percentiles, max_ms: f64) {
    assert!(p.count > 0, "{name}: no samples");
    assert!(p.p50 > 0.0 && p.p50 < max_ms, "{name}: p50 {} ms", p.p50);
    assert!(
        p.p50 <= p.p99 && p.p99 <= p.max,
        "{name}: percentiles out of order {p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_wandering_bots_connect_and_see_their_inputs() {
    let server = TestServer::start().await;
    let logs = tempfile::tempdir().expect("tempdir");
    let log_path = logs.path().join("run.hlog");
    let mut config = server.swarm_config(50, Duration::from_secs(3));
    config.ramp = Duration::from_millis(500);
    config.behavior = Behavior::Wander;
    config.hist_log = Some(log_path.clone());
    let report = run_swarm(&config).await;
    println!("{}", report.table());

    assert_eq!(report.bots_requested, 50);
    assert_eq!(report.bots_connected, 50, "{:?}", report.errors);
    assert_eq!(report.bots_failed, 0);
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(
        report.disconnects.is_empty(),
        "disconnects: {:?}",
        report.disconnects
    );
    assert_plausible("connect", &report.connect_ms, 5000.0);
    assert_plausible("first snapshot", &report.first_snapshot_ms, 5000.0);
    // Both run from the intended start; the first snapshot comes after `Welcome`.
    assert!(report.first_snapshot_ms.p50 >= report.connect_ms.p50);
    assert_plausible("input to visible", &report.input_to_visible_ms, 1000.0);
    assert!(report.jitter_ms.count > 0, "no jitter samples");
    // 20 Hz for ~2.5 s per bot: most inputs are sent and acknowledged.
    assert!(
        report.inputs_sent > 50 * 30,
        "{} inputs",
        report.inputs_sent
    );
    assert!(report.inputs_acknowledged * 10 >= report.inputs_sent * 8);
    assert!(report.snapshots_per_bot_per_s > 5.0, "{report:?}");
    assert!(report.bytes_down_per_bot_per_s > report.bytes_up_per_bot_per_s);
    assert!(report.bytes_up_per_bot_per_s > 0.0);
    // The server's own figures over the run, from its admin endpoint: it ticked the
    // four zones at 20 Hz for about three seconds, two workers each holding two.
    let server = report.server.as_ref().expect("the server's figures");
    assert_eq!(server.tick_hz, 20);
    assert!(server.rounds >= 30, "{server:?}");
    assert!(server.zone_ticks >= 4 * 30, "{server:?}");
    assert_eq!(server.zone_tick_ms.count, server.zone_ticks);
    assert!(server.missed_ticks >= server.overruns, "{server:?}");
    assert_eq!(server.workers, 2);
    // The swarm's own CPU over the run: it worked, on at least one core.
    let own = report.swarm.expect("the swarm's own CPU");
    assert!(own.cores_used > 0.0 && own.cores_available >= 1, "{own:?}");

    // The interval log holds the same measurements as the report.
    let merged = merge_logs(&[log_path]).expect("the run's log merges");
    assert!(merged.counters_complete);
    let again = Report::build(&merged.set, merged.duration, true);
    assert_same_measurements(&again, &report);
}

fn assert_same_measurements(a: &Report, b: &Report) {
    assert_eq!(a.connect_ms, b.connect_ms);
    assert_eq!(a.first_snapshot_ms, b.first_snapshot_ms);
    assert_eq!(a.input_to_visible_ms, b.input_to_visible_ms);
    assert_eq!(a.jitter_ms, b.jitter_ms);
    assert_eq!(a.bots_connected, b.bots_connected);
    assert_eq!(a.inputs_sent, b.inputs_sent);
    assert_eq!(a.errors, b.errors);
    assert_eq!(a.snapshots_per_bot_per_s, b.snapshots_per_bot_per_s);
    assert!((a.duration_s - b.duration_s).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_bots_leave_and_rejoin() {
    let server = TestServer::start().await;
    let mut config = server.swarm_config(10, Duration::from_secs(3));
    config.behavior = Behavior::Churn;
    config.churn_period = Duration::from_secs(1);
    let report = run_swarm(&config).await;
    println!("{}", report.table());

    assert_eq!(report.bots_connected, 10);
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert!(
        report.disconnects.is_empty(),
        "disconnects: {:?}",
        report.disconnects
    );
    // Sessions last 0.75-1.25 s plus a 0.5 s pause: every bot rejoins at least once.
    assert!(report.sessions >= 20, "{} sessions", report.sessions);
    assert_eq!(report.connect_ms.count, report.sessions);
    // A session that connected just as the run ended may not have seen a snapshot.
    let n_first = report.first_snapshot_ms.count;
    assert!(n_first <= report.sessions && n_first + 10 >= report.sessions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_with_a_wrong_secret_fail_and_say_why() {
    let server = TestServer::start().await;
    let files = tempfile::tempdir().expect("tempdir");
    let secret = files.path().join("other-secret.hex");
    std::fs::write(&secret, "ab".repeat(32)).expect("write secret");
    let mut config = server.swarm_config(5, Duration::from_secs(10));
    config.auth = Auth::Files {
        cert: server.data.path().join("dev-cert.pem"),
        secret,
    };
    let started = std::time::Instant::now();
    let report = run_swarm(&config).await;

    assert_eq!((report.bots_connected, report.bots_failed), (0, 5));
    assert_eq!(
        report.errors.get("connect/rejected(AuthFailed)"),
        Some(&5),
        "{:?}",
        report.errors
    );
    assert_eq!(report.connect_ms.count, 0);
    // Every bot is done at once, so the run ends early instead of waiting 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_spread_round_robin_over_two_servers() {
    let a = TestServer::start().await;
    let b = TestServer::start_sharing_identity(&a).await;
    let mut config = a.swarm_config(6, Duration::from_secs(2));
    config.servers = vec![a.addr, b.addr];
    config.behavior = Behavior::Idle;
    let report = run_swarm(&config).await;
    println!("{}", report.table());

    assert_eq!(report.bots_connected, 6, "{:?}", report.errors);
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    let (a_key, b_key) = (a.addr.to_string(), b.addr.to_string());
    for per_server in [&report.bots_per_server, &report.sessions_per_server] {
        assert_eq!(per_server.get(&a_key), Some(&3), "{per_server:?}");
        assert_eq!(per_server.get(&b_key), Some(&3), "{per_server:?}");
        assert_eq!(per_server.len(), 2, "{per_server:?}");
    }
    // Plain servers never redirect, and a bot's one session stays where it started.
    assert_eq!((report.redirects, report.node_changes), (0, 0));
}
