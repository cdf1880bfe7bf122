//! The `zonemesh-swarm` command line: flags (clap, with every limit checked while
//! parsing), and the two commands, a run and `merge`.

use crate::config::{
    Auth, BOTS_MAX, CHURN_PERIOD_MAX, CHURN_PERIOD_MIN, CONNECT_DEADLINE_MAX, DURATION_MAX,
    ENDPOINTS_MAX, INPUT_HZ_MAX, RAMP_MAX, SwarmConfig,
};
use crate::histlog::merge_logs;
use crate::report::Report;
use crate::steering::Behavior;
use anyhow::Context as _;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use zonemesh_client::ReplicaScope;

/// Most logs one `merge` reads.
const MERGE_LOGS_MAX: usize = 1024;

/// Runs N bots, each a real ZoneMesh client session over QUIC, against a server and
/// reports connect time, time to first snapshot, input-to-visible latency (corrected for
/// coordinated omission), snapshot jitter, bandwidth, disconnects and errors.
#[derive(Debug, Parser)]
#[command(
    name = "zonemesh-swarm",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Exit status: 0 when at least one bot connected (or the merge succeeded), \
                  1 when none did or the run could not start, 2 for bad flags."
)]
pub struct Cli {
    /// `merge`; without a command, a swarm run.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of a swarm run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Commands besides a run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Merge interval logs (`--hist-log`) of several swarm processes into one report.
    Merge(MergeArgs),
}

/// Flags of `merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Interval logs to merge.
    #[arg(required = true, num_args = 1..=MERGE_LOGS_MAX, value_name = "LOG")]
    pub logs: Vec<PathBuf>,
    /// Also write the merged report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Flags of a swarm run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Server address (any node; redirects are followed). Repeat the flag or give a
    /// comma-separated list to spread the bots round-robin over several (at most 64).
    #[arg(long, value_name = "ADDR", required = true, value_delimiter = ',')]
    pub server: Vec<SocketAddr>,
    /// `zonemesh dev` data directory: pins dev-cert.pem, mints tokens from
    /// dev-secret.hex.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "cert",
        conflicts_with = "cert"
    )]
    pub dev_data: Option<PathBuf>,
    /// PEM certificate to pin (with --token-secret, instead of --dev-data).
    #[arg(long, value_name = "FILE", requires = "token_secret")]
    pub cert: Option<PathBuf>,
    /// Hex token-signing secret file (with --cert).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub token_secret: Option<PathBuf>,
    /// Bots to run (at most 20000).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(BOTS_MAX)))]
    pub bots: u32,
    /// Seconds over which bots start, evenly spread (at most 600; less than --duration).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = ramp_secs)]
    pub ramp: Duration,
    /// Seconds the whole run lasts, ramp included (0.1 to 3600).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = duration_secs)]
    pub duration: Duration,
    /// What bots do: wander, idle, cross (long walks over zone borders), churn (leave
    /// and rejoin every --churn-secs).
    #[arg(long, value_enum, default_value_t = Behavior::Wander)]
    pub behavior: Behavior,
    /// Inputs per second per bot, on a fixed schedule (1 to 60).
    #[arg(long, value_name = "HZ", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(INPUT_HZ_MAX)))]
    pub input_hz: u32,
    /// Client endpoints (UDP sockets) the bots share (1 to 64).
    #[arg(long, value_name = "K", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=ENDPOINTS_MAX as i64))]
    pub endpoints: u16,
    /// Mean session length of churning bots, seconds (1 to 600; ±25 % per session).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = churn_secs)]
    pub churn_secs: Duration,
    /// Seconds one bot may spend connecting, retries included (1 to 120).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = connect_secs)]
    pub connect_timeout: Duration,
    /// Metrics interval in milliseconds: progress line and interval-log entries.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub interval_ms: u64,
    /// Player names are PREFIX-RUNTAG-INDEX (at most 16 of [A-Za-z0-9._-]).
    #[arg(long, value_name = "PREFIX", default_value = "bot")]
    pub name_prefix: String,
    /// Seed for the bots' paths (random when absent; printed in the debug log).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write HdrHistogram interval logs to FILE (mergeable with `merge`).
    #[arg(long, value_name = "FILE")]
    pub hist_log: Option<PathBuf>,
    /// The server's admin endpoint (`zonemesh dev --admin ADDR`): the report then
    /// includes the server's own missed ticks and tick times over the run.
    #[arg(long, value_name = "ADDR")]
    pub server_admin: Option<SocketAddr>,
    /// File whose first line is the admin endpoint's bearer token.
    #[arg(long, value_name = "FILE", requires = "server_admin")]
    pub server_admin_token_file: Option<PathBuf>,
    /// Keep every entity in each bot's replica, as a game client does (by default a
    /// bot keeps only its own entity: the server's work is the same, the swarm's far
    /// less).
    #[arg(long)]
    pub full_replica: bool,
}

fn secs_in(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    let d = Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a duration"))?;
    if d < min || d > max {
        return Err(format!(
            "must be {} to {} seconds",
            min.as_secs_f64(),
            max.as_secs_f64()
        ));
    }
    Ok(d)
}

fn ramp_secs(s: &str) -> Result<Duration, String> {
    secs_in(s, Duration::ZERO, RAMP_MAX)
}

fn duration_secs(s: &str) -> Result<Duration, String> {
    secs_in(s, Duration::from_millis(100), DURATION_MAX)
}

fn churn_secs(s: &str) -> Result<Duration, String> {
    secs_in(s, CHURN_PERIOD_MIN, CHURN_PERIOD_MAX)
}

fn connect_secs(s: &str) -> Result<Duration, String> {
    secs_in(s, Duration::from_secs(1), CONNECT_DEADLINE_MAX)
}

impl RunArgs {
    /// The admin client for `--server-admin`, with its token read.
    fn server_admin(&self) -> Result<Option<zonemesh_ctl::AdminClient>, String> {
        let Some(addr) = self.server_admin else {
            return Ok(None);
        };
        let mut client = zonemesh_ctl::AdminClient::new(addr);
        if let Some(path) = &self.server_admin_token_file {
            let token = zonemesh_ctl::read_token_file(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            client.token = Some(token);
        }
        Ok(Some(client))
    }

    /// The run these flags describe, checked against every limit.
    pub fn to_config(&self) -> Result<SwarmConfig, String> {
        let Some(&server) = self.server.first() else {
            return Err("--server is required".into());
        };
        let auth = match (&self.dev_data, &self.cert, &self.token_secret) {
            (Some(dir), None, None) => Auth::DevData(dir.clone()),
            (None, Some(cert), Some(secret)) => Auth::Files {
                cert: cert.clone(),
                secret: secret.clone(),
            },
            _ => return Err("give either --dev-data or both --cert and --token-secret".into()),
        };
        let mut config = SwarmConfig::new(server, auth);
        config.servers = self.server.clone();
        config.n_bots = self.bots;
        config.ramp = self.ramp;
        config.duration = self.duration;
        config.behavior = self.behavior;
        config.input_hz = self.input_hz;
        config.n_endpoints = usize::from(self.endpoints);
        config.churn_period = self.churn_secs;
        config.connect_deadline = self.connect_timeout;
        config.interval = Duration::from_millis(self.interval_ms);
        config.name_prefix = self.name_prefix.clone();
        config.seed = self.seed.unwrap_or_else(rand::random);
        config.hist_log = self.hist_log.clone();
        config.progress = std::io::stderr().is_terminal();
        config.server_admin = self.server_admin()?;
        if self.full_replica {
            config.replica_scope = ReplicaScope::Everything;
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// What to do, fully validated.
#[derive(Debug)]
pub enum Invocation {
    /// A swarm run.
    Run {
        /// The run.
        config: Box<SwarmConfig>,
        /// Where to write the JSON report.
        json: Option<PathBuf>,
    },
    /// Merge interval logs.
    Merge(MergeArgs),
}

/// Parses the process arguments; on bad flags prints clap's error and exits with 2.
pub fn parse() -> Invocation {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Merge(args)) => Invocation::Merge(args),
        None => match cli.run.to_config() {
            Ok(config) => Invocation::Run {
                config: Box::new(config),
                json: cli.run.json,
            },
            Err(e) => Cli::command().error(ErrorKind::ValueValidation, e).exit(),
        },
    }
}

/// Carries out `invocation`: prints the table, writes the JSON report.
pub async fn execute(invocation: Invocation) -> anyhow::Result<ExitCode> {
    match invocation {
        Invocation::Run { config, json } => {
            tracing::debug!(seed = config.seed, "steering seed");
            let shutdown = async {
                // Without a signal handler the run still ends at its duration.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let report = crate::swarm::run(&config, shutdown).await?;
            emit(&report, json.as_deref())?;
            let ok = report.bots_connected > 0;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Invocation::Merge(args) => {
            let merged = merge_logs(&args.logs)?;
            if merged.n_unknown_intervals > 0 {
                tracing::warn!(
                    n = merged.n_unknown_intervals,
                    "skipped intervals with unknown tags"
                );
            }
            let report = Report::build(&merged.set, merged.duration, merged.counters_complete);
            emit(&report, args.json.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn emit(report: &Report, json: Option<&Path>) -> anyhow::Result<()> {
    println!("{}", report.table());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("zonemesh-swarm").chain(args.iter().copied()))
    }

    #[test]
    fn a_dev_data_run_parses_with_defaults() {
        let cli = parse(&["--server", "127.0.0.1:4433", "--dev-data", "d"]).expect("parses");
        let config = cli.run.to_config().expect("valid");
        assert_eq!(config.n_bots, 100);
        assert_eq!(config.auth, Auth::DevData("d".into()));
        assert_eq!(config.duration, Duration::from_secs(60));
    }

    #[test]
    fn explicit_files_need_both_cert_and_secret() {
        let base = ["--server", "127.0.0.1:4433"];
        let both = [&base[..], &["--cert", "c.pem", "--token-secret", "s.hex"]].concat();
        let cli = parse(&both).expect("parses");
        assert!(matches!(
            cli.run.to_config().expect("valid").auth,
            Auth::Files { .. }
        ));
        assert!(parse(&[&base[..], &["--cert", "c.pem"]].concat()).is_err());
        assert!(parse(&base).is_err(), "some credentials are required");
        let mixed = [&both[..], &["--dev-data", "d"]].concat();
        assert!(parse(&mixed).is_err());
    }

    #[test]
    fn limits_are_enforced_while_parsing() {
        let base = ["--server", "127.0.0.1:4433", "--dev-data", "d"];
        for bad in [
            &["--bots", "20001"][..],
            &["--bots", "0"],
            &["--duration", "3601"],
            &["--duration", "-1"],
            &["--ramp", "601"],
            &["--input-hz", "61"],
            &["--endpoints", "65"],
            &["--behavior", "dance"],
        ] {
            assert!(
                parse(&[&base[..], bad].concat()).is_err(),
                "{bad:?} accepted"
            );
        }
        let cli = parse(&[&base[..], &["--ramp", "5", "--duration", "5"]].concat())
            .expect("each flag alone is in range");
        assert!(
            cli.run.to_config().is_err(),
            "ramp must be shorter than the run"
        );
        let cli = parse(&[&base[..], &["--name-prefix", "a b"]].concat()).expect("parses");
        assert!(cli.run.to_config().is_err());
    }

    #[test]
    fn several_servers_by_repeating_the_flag_or_a_list() {
        let base = ["--dev-data", "d", "--server", "127.0.0.1:1,127.0.0.1:2"];
        let cli = parse(&[&base[..], &["--server", "127.0.0.1:3"]].concat()).expect("parses");
        let config = cli.run.to_config().expect("valid");
        let ports: Vec<u16> = config.servers.iter().map(|a| a.port()).collect();
        assert_eq!(ports, [1, 2, 3]);
        assert_eq!(config.server_for(4).port(), 2, "round-robin by bot index");
    }

    #[test]
    fn bad_server_lists_are_refused_with_the_reason() {
        for bad in [
            &["--server", "localhost"][..],
            &["--server", "127.0.0.1:1,"],
            &["--server", "127.0.0.1:1,,127.0.0.1:2"],
            &["--server", ""],
        ] {
            let err = parse(&[&["--dev-data", "d"][..], bad].concat()).expect_err("refused");
            assert!(err.to_string().contains("--server"), "{err}");
        }
        // Well-formed addresses that make no usable list: refused with the reason.
        for (servers, reason) in [
            ("127.0.0.1:1,127.0.0.1:1", "127.0.0.1:1 is listed twice"),
            ("127.0.0.1:1,[::1]:2", "mix IPv4 and IPv6"),
        ] {
            let cli = parse(&["--dev-data", "d", "--server", servers]).expect("parses");
            let err = cli.run.to_config().expect_err("refused");
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn merge_takes_logs_and_no_run_flags() {
        let cli = parse(&["merge", "a.hlog", "b.hlog", "--json", "m.json"]).expect("parses");
        let Some(Command::Merge(args)) = cli.command else {
            panic!("expected merge");
        };
        assert_eq!(args.logs.len(), 2);
        assert!(parse(&["merge"]).is_err(), "at least one log");
        assert!(parse(&["--bots", "5", "merge", "a.hlog"]).is_err());
    }

    #[test]
    fn clap_configuration_is_consistent() {
        Cli::command().debug_assert();
    }
}
