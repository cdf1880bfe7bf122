//! The scenario runner sees what it claims: pointed at a server that cannot keep its
//! tick rate it reports missed ticks, and at a light load it reports none. Both
//! figures come from the server's own counters (its admin endpoint, through the
//! swarm's report), never from its log text.
//!
//! The runner starts the `zonemesh` and `zonemesh-swarm` binaries that `cargo test
//! --workspace` builds next to it (their packages have integration tests, so cargo
//! builds them before any test runs).

use std::path::PathBuf;
use std::process::Command;

const RUNNER: &str = env!("CARGO_BIN_EXE_scenarios");

/// One `scenarios point` run; its JSON figures.
fn point(flags: &[&str]) -> serde_json::Value {
    let bin_dir = PathBuf::from(RUNNER)
        .parent()
        .expect("the runner has a directory")
        .to_path_buf();
    for name in ["zonemesh", "zonemesh-swarm"] {
        assert!(
            bin_dir.join(name).is_file(),
            "{} is missing: run the workspace's tests (`cargo test --workspace`), \
             which build it",
            bin_dir.join(name).display()
        );
    }
    let out = Command::new(RUNNER)
        .args(["point", "--no-pin", "--runs", "1", "--secs", "5"])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .args(flags)
        .output()
        .expect("the runner starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runner failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json = stdout
        .lines()
        .last()
        .expect("the runner printed its figures");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
}

fn missed_ticks(run: &serde_json::Value) -> u64 {
    run["missed_ticks"]
        .as_u64()
        .expect("missed_ticks is a count")
}

#[test]
fn runner_reports_missed_ticks_of_an_overloaded_server_and_none_of_a_light_one() {
    // Light: one small zone, a few NPCs, two bots, 10 Hz (a 100 ms budget per tick).
    let light = point(&[
        "--point-bots",
        "2",
        "--tick-hz",
        "10",
        "--zones",
        "1",
        "--zone-size",
        "256",
        "--npcs",
        "20",
    ]);
    assert_eq!(missed_ticks(&light), 0, "light load: {light}");
    assert_eq!(light["overruns"], 0, "{light}");
    assert!(
        light["zone_tick_ms"]["count"].as_u64() > Some(20),
        "{light}"
    );

    // Overloaded: 100 000 NPCs in one zone at 240 Hz (a 4 ms budget per tick) on one
    // worker: no machine ticks that in time.
    let heavy = point(&[
        "--point-bots",
        "2",
        "--tick-hz",
        "240",
        "--zones",
        "1",
        "--zone-size",
        "2000",
        "--npcs",
        "100000",
    ]);
    assert!(missed_ticks(&heavy) > 0, "overloaded: {heavy}");
    assert!(heavy["overruns"].as_u64() > Some(0), "{heavy}");
    assert!(
        heavy["zone_tick_ms"]["p50"].as_f64() > Some(1000.0 / 240.0),
        "the median tick overran its budget: {heavy}"
    );
}
