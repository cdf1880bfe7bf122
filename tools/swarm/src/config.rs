//! What a swarm run is asked to do ([`SwarmConfig`]), the limits every run stays
//! within, and the credentials bots connect with ([`Credentials`]).
//!
//! The limits are part of the contract: a swarm is a tool that can hurt a shared server,
//! so bot count, ramp and duration are capped and a run always ends by itself.

use crate::steering::Behavior;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use zonemesh_client::{
    ClientConfig, ClientError, DEV_TOKEN_TTL, ReplicaScope, Trust, mint_token, read_dev_secret,
};
use zonemesh_shared::dev_files;
use zonemesh_shared::ids::validate_player_name;

/// Most bots one swarm process drives.
pub const BOTS_MAX: u32 = 20_000;
/// Longest run, ramp included.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Longest ramp (it must also end before the run does).
pub const RAMP_MAX: Duration = Duration::from_secs(600);
/// Highest input rate per bot. The server accepts 120 input datagrams per second per
/// client; half of that leaves room for acknowledgements and catch-up after a stall.
pub const INPUT_HZ_MAX: u32 = 60;
/// Most servers one run spreads its bots over.
pub const SERVERS_MAX: usize = 64;
/// Most client endpoints (UDP sockets) one process opens.
pub const ENDPOINTS_MAX: usize = 64;
/// Shortest and longest churn period (time a churning bot stays connected).
pub const CHURN_PERIOD_MIN: Duration = Duration::from_secs(1);
/// See [`CHURN_PERIOD_MIN`].
pub const CHURN_PERIOD_MAX: Duration = Duration::from_secs(600);
/// Longest connect deadline (retries included) a bot is given.
pub const CONNECT_DEADLINE_MAX: Duration = Duration::from_secs(120);
/// Shortest and longest metrics interval (progress line and interval log).
pub const INTERVAL_MIN: Duration = Duration::from_millis(100);
/// See [`INTERVAL_MIN`].
pub const INTERVAL_MAX: Duration = Duration::from_secs(60);
/// Longest player-name prefix: the prefix, a run tag and a bot index must fit in the
/// protocol's 32-byte player name.
pub const NAME_PREFIX_MAX: usize = 16;

/// How bots prove they may join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A `zonemesh dev --data DIR` directory: `dev-cert.pem` is pinned and tokens are
    /// minted from `dev-secret.hex`.
    DevData(PathBuf),
    /// Explicit files: a PEM certificate to pin and a hex token secret.
    Files {
        /// PEM file with the server certificate(s) to pin.
        cert: PathBuf,
        /// Hex-encoded token-signing secret.
        secret: PathBuf,
    },
}

/// One swarm run, validated by [`SwarmConfig::validate`] before anything starts.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmConfig {
    /// The servers (nodes of a cluster, or one server; redirects are followed). Bot
    /// `i` starts on `servers[i % len]` ([`SwarmConfig::server_for`]), so the spread
    /// is deterministic.
    pub servers: Vec<SocketAddr>,
    /// Certificate and token secret.
    pub auth: Auth,
    /// Bots to run.
    pub n_bots: u32,
    /// Bots start evenly spread over this time from the start of the run.
    pub ramp: Duration,
    /// Length of the whole run, ramp included; every bot stops when it ends.
    pub duration: Duration,
    /// What the bots do once connected.
    pub behavior: Behavior,
    /// Inputs each bot sends per second, on a fixed schedule.
    pub input_hz: u32,
    /// Client endpoints (UDP sockets) the bots share, round-robin.
    pub n_endpoints: usize,
    /// For [`Behavior::Churn`]: how long a session lasts (±25 %) before the bot leaves
    /// and rejoins.
    pub churn_period: Duration,
    /// Time one bot may spend connecting, retries included.
    pub connect_deadline: Duration,
    /// Metrics interval: the progress line and each interval-log entry.
    pub interval: Duration,
    /// Player names are `{prefix}-{run tag}-{index}`.
    pub name_prefix: String,
    /// Seed of the bots' steering; the same seed walks the same paths.
    pub seed: u64,
    /// Where to write the HdrHistogram interval log, if anywhere.
    pub hist_log: Option<PathBuf>,
    /// Whether to redraw a progress line on stderr.
    pub progress: bool,
    /// The server's admin endpoint: when given, the report carries the server's own
    /// tick figures (missed ticks, tick times) for the run, read from it at the start
    /// and the end. The swarm never infers them from what clients see.
    pub server_admin: Option<zonemesh_ctl::AdminClient>,
    /// Which entities each bot's replica keeps. A bot steers by its own position and
    /// measures latency from the input acknowledgement, so by default it keeps only
    /// its own entity ([`ReplicaScope::OwnEntity`]): the server sends and does the
    /// same either way, and the swarm spends its CPU on load, not on worlds no one
    /// looks at. [`ReplicaScope::Everything`] measures what a game client costs.
    pub replica_scope: ReplicaScope,
}

/// A configuration value outside its stated limits.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A numeric setting is outside its range.
    #[error("{name} must be {range}, got {value}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// The allowed range, in words.
        range: String,
        /// What was given.
        value: String,
    },
    /// The ramp would not end before the run does.
    #[error("ramp ({ramp:?}) must be shorter than the duration ({duration:?})")]
    RampTooLong {
        /// The ramp given.
        ramp: Duration,
        /// The duration given.
        duration: Duration,
    },
    /// The server list is empty, too long, repeats an address or mixes address
    /// families.
    #[error("servers: {0}")]
    BadServers(String),
    /// The player-name prefix cannot form valid player names.
    #[error("name prefix {prefix:?}: {reason}")]
    BadNamePrefix {
        /// The prefix given.
        prefix: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl SwarmConfig {
    /// A configuration with the defaults of the command line: 100 wandering bots for
    /// 60 s, 20 inputs per second, 4 endpoints, all on `server` (set
    /// [`SwarmConfig::servers`] to spread them over several).
    pub fn new(server: SocketAddr, auth: Auth) -> Self {
        Self {
            servers: vec![server],
            auth,
            n_bots: 100,
            ramp: Duration::ZERO,
            duration: Duration::from_secs(60),
            behavior: Behavior::Wander,
            input_hz: 20,
            n_endpoints: 4,
            churn_period: Duration::from_secs(10),
            connect_deadline: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            name_prefix: "bot".to_owned(),
            seed: 0,
            hist_log: None,
            progress: false,
            server_admin: None,
            replica_scope: ReplicaScope::OwnEntity,
        }
    }

    /// Checks every limit; a run starts only with a configuration that passes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_servers(&self.servers)?;
        check_range("bots", self.n_bots, 1, BOTS_MAX)?;
        check_range("input rate (Hz)", self.input_hz, 1, INPUT_HZ_MAX)?;
        check_range("endpoints", self.n_endpoints, 1, ENDPOINTS_MAX)?;
        check_duration(
            "duration",
            self.duration,
            Duration::from_millis(100),
            DURATION_MAX,
        )?;
        check_duration("ramp", self.ramp, Duration::ZERO, RAMP_MAX)?;
        check_duration(
            "churn period",
            self.churn_period,
            CHURN_PERIOD_MIN,
            CHURN_PERIOD_MAX,
        )?;
        check_duration(
            "connect deadline",
            self.connect_deadline,
            Duration::from_secs(1),
            CONNECT_DEADLINE_MAX,
        )?;
        check_duration("interval", self.interval, INTERVAL_MIN, INTERVAL_MAX)?;
        if self.ramp >= self.duration {
            return Err(ConfigError::RampTooLong {
                ramp: self.ramp,
                duration: self.duration,
            });
        }
        validate_name_prefix(&self.name_prefix)
    }

    /// Time between two inputs of one bot.
    pub fn input_period(&self) -> Duration {
        Duration::from_secs(1) / self.input_hz.max(1)
    }

    /// The server bot `index` starts on: round-robin by index.
    pub fn server_for(&self, index: u32) -> SocketAddr {
        assert!(!self.servers.is_empty(), "a validated config has servers");
        let i = usize::try_from(index).unwrap_or(usize::MAX) % self.servers.len();
        self.servers[i]
    }

    /// The player name of bot `index` in the run tagged `run_tag`.
    pub fn player_name(&self, run_tag: &str, index: u32) -> String {
        format!("{}-{run_tag}-{index}", self.name_prefix)
    }
}

/// One to [`SERVERS_MAX`] distinct addresses of one family: the bots' shared
/// endpoints are bound for the family of the first.
fn check_servers(servers: &[SocketAddr]) -> Result<(), ConfigError> {
    let bad = |reason: String| Err(ConfigError::BadServers(reason));
    let Some(first) = servers.first() else {
        return bad("at least one server is required".into());
    };
    if servers.len() > SERVERS_MAX {
        return bad(format!("at most {SERVERS_MAX}, got {}", servers.len()));
    }
    for (i, addr) in servers.iter().enumerate() {
        if servers[..i].contains(addr) {
            return bad(format!("{addr} is listed twice"));
        }
        if addr.is_ipv6() != first.is_ipv6() {
            return bad(format!("{addr} and {first} mix IPv4 and IPv6"));
        }
    }
    Ok(())
}

fn check_range<T: PartialOrd + fmt::Display>(
    name: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            name,
            range: format!("{min} to {max}"),
            value: value.to_string(),
        });
    }
    Ok(())
}

fn check_duration(
    name: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            name,
            range: format!("{min:?} to {max:?}"),
            value: format!("{value:?}"),
        });
    }
    Ok(())
}

/// A prefix is valid when it is itself a valid player name and short enough to leave
/// room for the run tag and bot index.
fn validate_name_prefix(prefix: &str) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::BadNamePrefix {
        prefix: prefix.to_owned(),
        reason,
    };
    if prefix.len() > NAME_PREFIX_MAX {
        return Err(bad("at most 16 bytes"));
    }
    validate_player_name(prefix).map_err(bad)
}

/// The trust anchor and token secret, loaded once and shared by every bot so a swarm of
/// thousands reads its files once.
#[derive(Clone)]
pub struct Credentials {
    trust: Trust,
    secret: Vec<u8>,
}

impl Credentials {
    /// Reads the certificate and secret that `auth` names.
    pub fn load(auth: &Auth) -> Result<Self, ClientError> {
        let (cert, secret) = match auth {
            Auth::DevData(dir) => (dir.join(dev_files::CERT), dir.join(dev_files::SECRET)),
            Auth::Files { cert, secret } => (cert.clone(), secret.clone()),
        };
        Ok(Self {
            trust: Trust::pinned_pem_file(&cert)?,
            secret: read_dev_secret(Path::new(&secret))?,
        })
    }

    /// A client configuration for `player`, with a freshly minted token.
    pub fn client_config(
        &self,
        server: SocketAddr,
        player: &str,
        connect_deadline: Duration,
    ) -> Result<ClientConfig, ClientError> {
        let token = mint_token(&self.secret, player, DEV_TOKEN_TTL)?;
        let mut config = ClientConfig::new(server, self.trust.clone(), token);
        config.connect_deadline = connect_deadline;
        // Bots read no entity events, only zone changes and the end of the session:
        // a small queue keeps 20 000 sessions' memory down (overflow drops `Updated`).
        config.event_queue_capacity = 64;
        Ok(config)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret signs tokens for any player: never print it.
        f.debug_struct("Credentials")
            .field("trust", &self.trust)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SwarmConfig {
        SwarmConfig::new(
            "127.0.0.1:4433".parse().expect("addr"),
            Auth::DevData("data".into()),
        )
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
        assert_eq!(config().input_period(), Duration::from_millis(50));
    }

    #[test]
    fn limits_are_enforced() {
        let mut c = config();
        c.n_bots = BOTS_MAX + 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutOfRange { name: "bots", .. })
        ));
        let mut c = config();
        c.n_bots = 0;
        assert!(c.validate().is_err());
        let mut c = config();
        c.duration = DURATION_MAX + Duration::from_secs(1);
        assert!(c.validate().is_err());
        let mut c = config();
        c.input_hz = INPUT_HZ_MAX + 1;
        assert!(c.validate().is_err());
        let mut c = config();
        c.n_endpoints = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn bots_spread_round_robin_over_distinct_servers_of_one_family() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:2".parse().expect("addr");
        let mut c = config();
        c.servers = vec![a, b];
        assert_eq!(c.validate(), Ok(()));
        let spread: Vec<_> = (0..5).map(|i| c.server_for(i)).collect();
        assert_eq!(spread, vec![a, b, a, b, a]);
        for bad in [
            vec![],
            vec![a, a],
            vec![a, "[::1]:3".parse().expect("addr")],
            (1..=SERVERS_MAX as u16 + 1)
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
                .collect(),
        ] {
            c.servers = bad;
            assert!(
                matches!(c.validate(), Err(ConfigError::BadServers(_))),
                "{:?} accepted",
                c.servers
            );
        }
    }

    #[test]
    fn ramp_must_end_before_the_run() {
        let mut c = config();
        c.ramp = c.duration;
        assert!(matches!(c.validate(), Err(ConfigError::RampTooLong { .. })));
        c.ramp = c.duration - Duration::from_millis(1);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn names_fit_the_protocol() {
        let mut c = config();
        c.name_prefix = "x".repeat(NAME_PREFIX_MAX);
        assert_eq!(c.validate(), Ok(()));
        let longest = c.player_name("abcdef", BOTS_MAX - 1);
        assert_eq!(validate_player_name(&longest), Ok(()));
        c.name_prefix = "has space".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadNamePrefix { .. })
        ));
        c.name_prefix = "x".repeat(NAME_PREFIX_MAX + 1);
        assert!(c.validate().is_err());
    }
}
