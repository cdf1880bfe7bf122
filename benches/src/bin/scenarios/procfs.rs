//! Reading a process's CPU time and memory from Linux `/proc`: the parsers are pure
//! (unit-tested on captured text), the readers only add the file access.

use anyhow::{Context, bail};
use std::time::Instant;

/// Clock ticks per second assumed when `getconf CLK_TCK` is unavailable (the Linux
/// value on every common architecture).
pub(crate) const CLK_TCK_FALLBACK: u64 = 100;

/// CPU time and scheduler state from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatLine {
    /// Single-letter scheduler state (`R`, `S`, `Z`, ...).
    pub(crate) state: char,
    /// User-mode CPU time, clock ticks (all threads).
    pub(crate) utime_ticks: u64,
    /// Kernel-mode CPU time, clock ticks (all threads).
    pub(crate) stime_ticks: u64,
}

impl StatLine {
    /// User plus kernel time, in seconds.
    pub(crate) fn cpu_s(&self, clk_tck: u64) -> f64 {
        (self.utime_ticks + self.stime_ticks) as f64 / clk_tck as f64
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted from the *last* `)`.
pub(crate) fn parse_stat(text: &str) -> anyhow::Result<StatLine> {
    let close = text.rfind(')').context("no ')' after the command name")?;
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based).
    if fields.len() < 13 {
        bail!("only {} fields after the command name", fields.len());
    }
    let state = fields[0].chars().next().context("empty state field")?;
    let num = |i: usize, name: &str| -> anyhow::Result<u64> {
        fields[i]
            .parse()
            .with_context(|| format!("{name} field {:?} is not a number", fields[i]))
    };
    Ok(StatLine {
        state,
        utime_ticks: num(11, "utime")?,
        stime_ticks: num(12, "stime")?,
    })
}

/// Memory figures from `/proc/<pid>/status`, in KiB. Absent for a zombie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MemoryKib {
    /// Resident set size now (`VmRSS`).
    pub(crate) rss_kib: u64,
    /// Peak resident set size (`VmHWM`).
    pub(crate) hwm_kib: u64,
}

/// Parses `VmRSS` and `VmHWM` from `/proc/<pid>/status`; `None` when absent (the
/// process has no memory map any more, e.g. a zombie).
pub(crate) fn parse_status(text: &str) -> anyhow::Result<Option<MemoryKib>> {
    let mut rss = None;
    let mut hwm = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "VmRSS" => &mut rss,
            "VmHWM" => &mut hwm,
            _ => continue,
        };
        *slot = Some(parse_kib(value).with_context(|| format!("bad {key} line {line:?}"))?);
    }
    Ok(rss
        .zip(hwm)
        .map(|(rss_kib, hwm_kib)| MemoryKib { rss_kib, hwm_kib }))
}

/// Parses `"   1234 kB"`.
fn parse_kib(value: &str) -> anyhow::Result<u64> {
    let number = value
        .trim()
        .strip_suffix("kB")
        .context("no kB unit")?
        .trim();
    number.parse().context("not a number")
}

/// One look at a running process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When it was taken.
    pub(crate) at: Instant,
    /// CPU seconds so far (user + kernel).
    pub(crate) cpu_s: f64,
    /// Scheduler state (`Z` once it exited and was not reaped).
    pub(crate) state: char,
    /// Memory, absent for a zombie.
    pub(crate) memory: Option<MemoryKib>,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` now.
pub(crate) fn sample(pid: u32, clk_tck: u64) -> anyhow::Result<Sample> {
    let at = Instant::now();
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).with_context(|| format!("cannot read {stat_path}"))?;
    let stat = parse_stat(&stat).with_context(|| format!("cannot parse {stat_path}"))?;
    let status_path = format!("/proc/{pid}/status");
    let memory = match std::fs::read_to_string(&status_path) {
        Ok(text) => parse_status(&text).with_context(|| format!("cannot parse {status_path}"))?,
        Err(_) => None,
    };
    Ok(Sample {
        at,
        cpu_s: stat.cpu_s(clk_tck),
        state: stat.state,
        memory,
    })
}

/// Busy and total CPU ticks of the whole machine, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MachineTicks {
    /// Ticks not idle and not waiting for IO.
    pub(crate) busy: u64,
    /// All ticks.
    pub(crate) total: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat` (user nice system idle iowait irq
/// softirq steal ...; guest time is already inside user).
pub(crate) fn parse_machine_stat(text: &str) -> anyhow::Result<MachineTicks> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no aggregate cpu line")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("non-numeric cpu field")?;
    if values.len() < 5 {
        bail!("only {} cpu fields", values.len());
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values[4];
    Ok(MachineTicks {
        busy: total - idle,
        total,
    })
}

/// Busy CPU seconds of the whole machine so far (all cores).
pub(crate) fn machine_busy_s(clk_tck: u64) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    Ok(parse_machine_stat(&text)?.busy as f64 / clk_tck as f64)
}

/// Clock ticks per second from `getconf CLK_TCK`, or [`CLK_TCK_FALLBACK`] with a
/// warning when getconf is missing or answers nonsense.
pub(crate) fn clk_tck() -> u64 {
    let answer = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&t| (1..=100_000).contains(&t));
    answer.unwrap_or_else(|| {
        eprintln!("warning: `getconf CLK_TCK` failed; assuming {CLK_TCK_FALLBACK} ticks/s");
        CLK_TCK_FALLBACK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (zonemesh) worker) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                        1234 567 0 0 20 0 9 0 100 200000000 5000 18446744073709551615";

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!((s.utime_ticks, s.stime_ticks), (1234, 567));
        assert!((s.cpu_s(100) - 18.01).abs() < 1e-9);
    }

    #[test]
    fn zombie_stat_parses() {
        let s = parse_stat("12 (sh) Z 1 2 3 0 -1 4227084 65 0 0 0 51 0 0 0").unwrap();
        assert_eq!((s.state, s.utime_ticks, s.stime_ticks), ('Z', 51, 0));
    }

    #[test]
    fn truncated_or_garbled_stat_is_an_error() {
        assert!(parse_stat("12 (sh) S 1 2").is_err());
        assert!(parse_stat("no parenthesis").is_err());
        assert!(parse_stat("1 (x) S 1 2 3 0 -1 4 5 0 0 0 abc 0").is_err());
    }

    #[test]
    fn status_memory_lines() {
        let text = "Name:\tzonemesh\nVmPeak:\t  999 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   80000 kB\n";
        let m = parse_status(text).unwrap().unwrap();
        assert_eq!(
            m,
            MemoryKib {
                rss_kib: 80_000,
                hwm_kib: 81_234
            }
        );
    }

    #[test]
    fn zombie_status_has_no_memory() {
        assert_eq!(
            parse_status("Name:\tsh\nState:\tZ (zombie)\n").unwrap(),
            None
        );
    }

    #[test]
    fn machine_stat_busy_excludes_idle_and_iowait() {
        let text = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n";
        let t = parse_machine_stat(text).unwrap();
        assert_eq!(
            t,
            MachineTicks {
                busy: 161,
                total: 1181
            }
        );
        assert!(parse_machine_stat("cpu0 1 2 3 4 5\n").is_err());
        assert!(parse_machine_stat("cpu  1 2 x 4 5\n").is_err());
    }

    #[test]
    fn bad_memory_value_is_an_error() {
        assert!(parse_status("VmRSS:\t12 MB\nVmHWM:\t1 kB\n").is_err());
    }
}
