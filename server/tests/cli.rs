//! The `zonemesh` binary as a user runs it: `dev` creates and then reuses its
//! certificate and secret, serves SDK clients, `token` mints working tokens, bad
//! arguments get clear errors, and SIGTERM stops the server cleanly. `dev --nodes 3`
//! prints each node and redirects players to their zone's node; `config` checks files
//! naming the key at fault.

mod common;

use common::{
    coins, drive, own_position, pick_up_coin, wait_disconnect, wait_own_position, within,
};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use zonemesh_client::{Client, ClientConfig, ErrorCode, Trust, Vec2};

const BIN: &str = env!("CARGO_BIN_EXE_zonemesh");

/// A `zonemesh dev` child process, the addresses it printed on stdout and the
/// welcome it printed on stderr.
struct DevProcess {
    child: Child,
    addr: SocketAddr,
    /// The admin endpoint, when started with `--admin`.
    admin: Option<SocketAddr>,
    /// Every line it printed on stdout so far.
    stdout_lines: Vec<String>,
    /// The welcome (and any log lines before its end) from stderr.
    banner: Vec<String>,
    /// Kept open (and readable to its end) while the process runs.
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    _stderr: Lines<BufReader<ChildStderr>>,
}

impl DevProcess {
    async fn start(data: &Path) -> Self {
        Self::start_with(data, &[], "warn").await
    }

    async fn start_with(data: &Path, extra: &[&str], rust_log: &str) -> Self {
        let mut child = Command::new(BIN)
            .args(["dev", "--listen", "127.0.0.1:0", "--zones", "2"])
            .args(["--zone-size", "64", "--npcs", "40"])
            .args(extra)
            .arg("--data")
            .arg(data)
            .env("RUST_LOG", rust_log)
            .env_remove("NO_COLOR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("zonemesh starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
        let mut stdout_lines = Vec::new();
        let addr = within("the listening address is printed", async {
            let line = next_line(&mut stdout).await;
            stdout_lines.push(line.clone());
            listening_addr(&line).expect("the first line names the QUIC address")
        })
        .await;
        let admin = if extra.contains(&"--admin") {
            let line = within("the admin address is printed", next_line(&mut stdout)).await;
            stdout_lines.push(line.clone());
            Some(listening_addr(&line).expect("the second line names the admin address"))
        } else {
            None
        };
        // The welcome for people goes to stderr; it ends with the stop hint.
        let mut banner = Vec::new();
        within("banner", async {
            while !banner
                .last()
                .is_some_and(|l: &String| l.contains("stop with"))
            {
                banner.push(next_line(&mut stderr).await);
            }
        })
        .await;
        Self {
            child,
            addr,
            admin,
            stdout_lines,
            banner,
            stdout: Some(stdout),
            _stderr: stderr,
        }
    }

    /// Sends SIGTERM and returns the exit status.
    async fn terminate(self) -> std::process::ExitStatus {
        self.signal("-TERM").await
    }

    /// Sends `signal` (as `kill` spells it) and returns the exit status.
    async fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let kill = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(kill.success());
        within("the server exits after SIGTERM", self.child.wait())
            .await
            .expect("exit status")
    }
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> String {
    lines
        .next_line()
        .await
        .expect("readable")
        .expect("the server printed this before exiting")
}

/// The address of a `... listening on ADDR` or `... listening on http://ADDR` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on ").nth(1)?;
    let addr = rest.split_whitespace().next()?;
    addr.strip_prefix("http://").unwrap_or(addr).parse().ok()
}

async fn run_cli(args: &[&str]) -> std::process::Output {
    within(
        "zonemesh command",
        Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("zonemesh runs")
}

#[tokio::test]
async fn dev_serves_clients_mints_tokens_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = DevProcess::start(data.path()).await;
    let banner = server.banner.join("\n");
    assert!(banner.contains("created dev certificate"), "{banner}");
    assert!(
        banner.contains("dev-cert.pem") && banner.contains("--dev-data"),
        "{banner}"
    );

    // A client using the dev data directory plays.
    let config = ClientConfig::from_dev_data(server.addr, data.path(), "cli-walker")
        .expect("dev data readable");
    let mut walker = Client::connect(config).await.expect("connects");
    wait_own_position(&mut walker).await;

    // A token minted by `zonemesh token` is accepted.
    let data_arg = data.path().to_str().expect("utf-8 path");
    let out = run_cli(&["token", "--player", "minted", "--data", data_arg]).await;
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let trust = Trust::pinned_pem_file(data.path().join("dev-cert.pem")).expect("cert");
    let mut minted = Client::connect(ClientConfig::new(server.addr, trust, token.trim()))
        .await
        .expect("a minted token is accepted");
    wait_own_position(&mut minted).await;

    let status = server.terminate().await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let reason = wait_disconnect(&mut walker, "told about the shutdown").await;
    assert_eq!(reason.code, ErrorCode::ServerShutdown, "{reason:?}");

    // A second run reuses the certificate and secret: the old token still works.
    let again = DevProcess::start(data.path()).await;
    assert!(again.banner.join("\n").contains("reusing dev certificate"));
    let trust = Trust::pinned_pem_file(data.path().join("dev-cert.pem")).expect("cert");
    let client = Client::connect(ClientConfig::new(again.addr, trust, token.trim()))
        .await
        .expect("same secret and certificate after a restart");
    client.close().await;
    assert!(again.terminate().await.success());
}

#[tokio::test]
async fn bad_arguments_get_clear_errors() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_arg = data.path().to_str().expect("utf-8 path");

    let out = run_cli(&["token", "--player", "no spaces!", "--data", data_arg]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid player name"), "{err}");

    let out = run_cli(&["token", "--player", "fine", "--data", data_arg]).await;
    assert!(!out.status.success(), "no secret yet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zonemesh dev --data"), "{err}");

    let out = run_cli(&[
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--zones",
        "0",
        "--data",
        data_arg,
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least one zone"), "{err}");
}

/// The SDK's `walk` example, built next to this binary by `cargo test --workspace`.
fn walk_example() -> std::path::PathBuf {
    let dir = Path::new(BIN).parent().expect("target dir");
    let walk = dir
        .join("examples")
        .join(format!("walk{}", std::env::consts::EXE_SUFFIX));
    assert!(
        walk.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so examples are built",
        walk.display()
    );
    walk
}

#[tokio::test]
async fn the_walk_example_plays_against_dev_and_fails_without_a_server() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = DevProcess::start(data.path()).await;
    let walk = walk_example();
    let addr = server.addr.to_string();
    let data_arg = data.path().to_str().expect("utf-8 path");

    let out = within(
        "walk runs",
        Command::new(&walk)
            .args([
                "--server",
                &addr,
                "--dev-data",
                data_arg,
                "--seconds",
                "1.5",
            ])
            .output(),
    )
    .await
    .expect("walk starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("snapshots:"), "{stdout}");
    assert!(server.terminate().await.success());

    // Nothing listens any more: no snapshot, so a non-zero exit.
    let out = within(
        "walk gives up",
        Command::new(&walk)
            .args(["--server", &addr, "--dev-data", data_arg, "--seconds", "1"])
            .args(["--connect-timeout", "1"])
            .output(),
    )
    .await
    .expect("walk starts");
    assert!(!out.status.success(), "{out:?}");
}

#[tokio::test]
async fn acknowledged_actions_and_recent_positions_survive_sigkill() {
    const CHECKPOINT_SECS: f32 = 1.0;
    const SPEED: f32 = 6.0;
    let data = tempfile::tempdir().expect("tempdir");
    let server = DevProcess::start_with(data.path(), &["--checkpoint-secs", "1"], "warn").await;
    let config =
        ClientConfig::from_dev_data(server.addr, data.path(), "survivor").expect("dev data");
    let mut client = Client::connect(config).await.expect("connects");
    let start = wait_own_position(&mut client).await;

    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        acknowledged.push(pick_up_coin(&mut client).await);
    }
    // Walk for more than a checkpoint interval, so one checkpoint holds the coins.
    let heading = if start.x < 64.0 { SPEED } else { -SPEED };
    drive(
        &mut client,
        Some(Vec2::new(heading, 0.0)),
        "walked",
        |c, _| {
            own_position(c).is_some_and(|p| (p.x - start.x).abs() > SPEED * CHECKPOINT_SECS * 2.0)
                && coins(c) == Some(3)
        },
    )
    .await;
    let last_seen = own_position(&client).expect("seen");
    let status = server.signal("-KILL").await;
    assert!(!status.success(), "killed, not exited: {status:?}");

    // Every acknowledged action is in the store.
    {
        let store = zonemesh_store::open_store("embedded", data.path())
            .await
            .expect("store opens");
        let stored: Vec<u128> = store
            .actions_for_player("survivor")
            .await
            .expect("readable")
            .iter()
            .map(|a| a.id.0)
            .collect();
        for id in &acknowledged {
            assert!(stored.contains(id), "acknowledged action {id:x} lost");
        }
    }

    // The position is at most one checkpoint interval (of walking) behind.
    let again = DevProcess::start_with(data.path(), &["--checkpoint-secs", "1"], "warn").await;
    let config =
        ClientConfig::from_dev_data(again.addr, data.path(), "survivor").expect("dev data");
    let mut client = Client::connect(config).await.expect("reconnects");
    let restored = wait_own_position(&mut client).await;
    let behind = ((restored.x - last_seen.x).powi(2) + (restored.y - last_seen.y).powi(2)).sqrt();
    // One interval of walking, plus the tick the kill landed in and input latency.
    assert!(
        behind <= SPEED * (CHECKPOINT_SECS + 0.5),
        "restored {restored:?}, last seen {last_seen:?}: {behind} units behind"
    );
    drive(&mut client, None, "coins restored", |c, _| {
        coins(c) == Some(3)
    })
    .await;
    assert!(again.terminate().await.success());
}

/// Reads the admin endpoint's status on a blocking thread.
async fn admin_status(
    client: &zonemesh_ctl::AdminClient,
) -> Result<zonemesh_shared::status::NodeStatusReport, zonemesh_ctl::AdminError> {
    let client = client.clone();
    tokio::task::spawn_blocking(move || client.status())
        .await
        .expect("the request finishes")
}

#[tokio::test]
async fn logs_go_to_stderr_uncoloured_and_the_admin_endpoint_reports_ticks() {
    let data = tempfile::tempdir().expect("tempdir");
    let token_file = data.path().join("admin-token");
    std::fs::write(&token_file, "0123456789abcdef-admin\n").expect("token file");
    let token_arg = token_file.to_str().expect("utf-8 path");
    let extra = ["--admin", "127.0.0.1:0", "--admin-token-file", token_arg];
    let mut server = DevProcess::start_with(data.path(), &extra, "info").await;

    // stdout: the two addresses, nothing else. stderr: the welcome and the logs, with
    // no colour codes (stderr is a pipe here).
    assert_eq!(server.stdout_lines.len(), 2, "{:?}", server.stdout_lines);
    assert!(server.stdout_lines[0].contains("(QUIC, ALPN zonemesh/1)"));
    assert!(server.stdout_lines[1].contains("admin endpoint listening on http://"));
    let stderr = server.banner.join("\n");
    assert!(stderr.contains(" INFO "), "logs are on stderr: {stderr}");
    assert!(stderr.contains("node started"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI codes in a pipe: {stderr:?}"
    );

    // The admin endpoint wants its token, then reports the node's own tick counters.
    let admin_addr = server.admin.expect("admin address");
    let mut admin = zonemesh_ctl::AdminClient::new(admin_addr);
    let refused = admin_status(&admin).await.expect_err("no token, no status");
    assert!(refused.to_string().contains("HTTP 401"), "{refused}");
    admin.token = Some("0123456789abcdef-admin".into());
    let status = within("the zones tick", async {
        loop {
            let status = admin_status(&admin).await.expect("status with the token");
            if status.ticks.zone_ticks >= 40 && status.zones.len() == 4 {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(status.tick_hz, 20);
    assert_eq!(status.ticks.zone_tick_us.len(), status.ticks.zone_ticks);
    assert!(status.ticks.rounds > 0 && status.ticks.missed_ticks >= status.ticks.overruns);
    assert_eq!(status.zones.iter().map(|z| z.entities).sum::<usize>(), 40);
    let healthy = admin.clone();
    tokio::task::spawn_blocking(move || healthy.healthy())
        .await
        .expect("finishes")
        .expect("healthz answers");

    let mut stdout = server.stdout.take().expect("stdout kept");
    assert!(server.terminate().await.success());
    let rest = within("stdout ends", stdout.next_line())
        .await
        .expect("readable");
    assert_eq!(rest, None, "nothing but the addresses on stdout");
}

#[tokio::test]
async fn an_admin_endpoint_open_to_the_network_needs_a_token() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_arg = data.path().to_str().expect("utf-8 path");
    let base = ["dev", "--listen", "127.0.0.1:0", "--data", data_arg];
    let out = run_cli(&[&base[..], &["--admin", "0.0.0.0:0"]].concat()).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token-file"), "{err}");

    let short = data.path().join("short-token");
    std::fs::write(&short, "tiny\n").expect("write");
    let short_arg = short.to_str().expect("utf-8 path");
    let flags = ["--admin", "127.0.0.1:0", "--admin-token-file", short_arg];
    let out = run_cli(&[&base[..], &flags[..]].concat()).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 characters"), "{err}");
}

#[tokio::test]
async fn dev_with_three_nodes_prints_each_and_redirects_to_the_zone() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--nodes",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--zones",
            "1",
        ])
        .args(["--zone-size", "64", "--npcs", "10", "--data"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("zonemesh starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let line = within("a node line", next_line(&mut stdout)).await;
        assert!(
            line.contains(&format!("cluster node {i} listening on")),
            "{line}"
        );
        nodes.push(listening_addr(&line).expect("the line names the node's address"));
    }
    // One zone: the first player places it, the next one entering elsewhere is sent there.
    let config = |i: usize, player: &str| {
        let mut c = ClientConfig::from_dev_data(nodes[i], data.path(), player).expect("dev data");
        c.connect_deadline = common::WAIT;
        c
    };
    let mut first = Client::connect(config(0, "first"))
        .await
        .expect("first connects");
    wait_own_position(&mut first).await;
    let host = first.remote_address();
    let other = nodes.iter().position(|a| *a != host).expect("another node");
    let mut second = Client::connect(config(other, "second"))
        .await
        .expect("second connects");
    assert_eq!(second.remote_address(), host);
    assert_eq!(second.redirects_followed(), 1);
    wait_own_position(&mut second).await;
    let pid = child.id().expect("running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(kill.expect("kill runs").success());
    let status = within("the cluster stops", child.wait())
        .await
        .expect("exit status");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn config_files_are_checked_with_the_key_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_cli(&["config", "default"]).await;
    assert!(out.status.success());
    let default = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(default.contains("[cluster]"), "{default}");

    let shared = dir.path().join("shared");
    let out = run_cli(&["config", "init", shared.to_str().expect("utf-8")]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shared.join("cluster-secret.hex").exists());

    let good = dir.path().join("node.toml");
    let secret = shared.join("cluster-secret.hex");
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:4433\"\n[cluster]\nnode_listen = \"127.0.0.1:7433\"\nsecret_file = \"{}\"\n",
            secret.display()
        ),
    )
    .expect("written");
    let out = run_cli(&["config", "check", good.to_str().expect("utf-8")]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:4433\"\n[cluster]\nnode_listen = \"127.0.0.1:7433\"\nmembership = \"gossip\"\n",
    )
    .expect("written");
    let out = run_cli(&["config", "check", bad.to_str().expect("utf-8")]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("cluster.membership"),
        "{err}"
    );
}

#[tokio::test]
async fn swim_timing_keys_are_documented_and_checked() {
    let out = run_cli(&["config", "default"]).await;
    assert!(out.status.success());
    let default = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "[cluster.swim]",
        "# probe_period_ms = 500",
        "# probe_rtt_ms = 250",
        "# suspect_to_down_ms = 2000",
    ] {
        assert!(default.contains(line), "{line:?} missing from:\n{default}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("slow.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:4433\"\n[cluster]\nnode_listen = \"127.0.0.1:7433\"\n\
         [cluster.swim]\nprobe_period_ms = 500\nprobe_rtt_ms = 400\n",
    )
    .expect("written");
    let out = run_cli(&["config", "check", bad.to_str().expect("utf-8")]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.swim.probe_rtt_ms: must be 1..=250 ms"),
        "{err}"
    );
}
