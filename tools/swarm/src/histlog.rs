//! HdrHistogram interval logs: [`HistLogWriter`] writes one tagged histogram per metric
//! per interval, and [`merge_logs`] adds any number of logs (from several swarm
//! processes) back into one [`MetricSet`].
//!
//! Format: the standard interval log (readable by HdrHistogram's Java
//! `HistogramLogProcessor` and friends), V2 deflate-compressed, with a `StartTime` and a
//! `BaseTime` header; interval timestamps are seconds since the run started. Each
//! histogram's tag is its [`Metric::tag`], which names the unit (`_us` = microseconds).
//! Values are written unscaled (max-value divisor 1), so the per-line max column is in
//! the tag's unit too.
//!
//! Counters are not histograms: the run writes them once, at its end, as a comment line
//! `#zonemesh-swarm-counters {json}` holding the [`RunSummary`]. A log without it (a run
//! that was killed) still merges; the merged report then says its counters are
//! incomplete.

use crate::metrics::{Counters, Metric, MetricSet};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// Prefix of the comment line carrying the counters.
const COUNTERS_PREFIX: &str = "zonemesh-swarm-counters ";
/// Largest log file `merge` reads (it parses from memory).
pub const LOG_BYTES_MAX: u64 = 1 << 30;

/// The non-histogram part of a run, stored in its log's counter line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's wall time in seconds.
    pub duration_s: f64,
    /// Its counters.
    pub counters: Counters,
}

/// Why writing or reading an interval log failed.
#[derive(Debug, Error)]
pub enum HistLogError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A histogram could not be serialised.
    #[error("cannot serialise histogram: {0}")]
    Serialize(String),
    /// A log file is larger than [`LOG_BYTES_MAX`].
    #[error("{}: larger than {LOG_BYTES_MAX} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A log line is not a valid interval log entry.
    #[error("{}: not an interval log (byte {offset}): {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where parsing failed.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
}

/// Writes an interval log for one run. Each write is flushed through to `out`, which
/// should be buffered.
pub struct HistLogWriter<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
}

impl<W: Write> std::fmt::Debug for HistLogWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistLogWriter").finish_non_exhaustive()
    }
}

impl<W: Write> HistLogWriter<W> {
    /// Starts a log for a run that started at `start` (header comments and times).
    pub fn begin(mut out: W, start: SystemTime) -> io::Result<Self> {
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("zonemesh-swarm interval log; tags name the metric and unit")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut out, &mut serializer)?;
        Ok(Self { out, serializer })
    }

    /// Writes every non-empty histogram of `set` as the interval that began
    /// `since_start` after the run started and lasted `length`.
    pub fn write_interval(
        &mut self,
        set: &MetricSet,
        since_start: Duration,
        length: Duration,
    ) -> Result<(), HistLogError> {
        // A writer per call: the builder writes no header unless asked, and this way
        // the writer need not borrow `self` for its whole life.
        let mut log = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| HistLogError::Serialize(e.to_string()))?;
        for metric in Metric::ALL {
            let h = set.histogram(metric);
            if h.is_empty() {
                continue;
            }
            log.write_histogram(h, since_start, length, Tag::new(metric.tag()))
                .map_err(|e| HistLogError::Serialize(e.to_string()))?;
        }
        Ok(())
    }

    /// Writes the run's counter line.
    pub fn write_summary(&mut self, summary: &RunSummary) -> Result<(), HistLogError> {
        let json =
            serde_json::to_string(summary).map_err(|e| HistLogError::Serialize(e.to_string()))?;
        let mut log = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| HistLogError::Serialize(e.to_string()))?;
        log.write_comment(&format!("{COUNTERS_PREFIX}{json}"))
            .map_err(|e| HistLogError::Serialize(e.to_string()))
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// What reading one or more logs produced.
#[derive(Debug, Clone, Default)]
pub struct MergedLogs {
    /// Every interval's histograms added up, and every counter line's counters.
    pub set: MetricSet,
    /// The longest run's duration (from counter lines, else the last interval's end).
    pub duration: Duration,
    /// False when some log had no counter line.
    pub counters_complete: bool,
    /// Intervals whose tag is not a swarm metric (skipped).
    pub n_unknown_intervals: u64,
}

/// Reads and adds up the logs at `paths`.
pub fn merge_logs(paths: &[PathBuf]) -> Result<MergedLogs, HistLogError> {
    let mut merged = MergedLogs {
        counters_complete: true,
        ..MergedLogs::default()
    };
    for path in paths {
        let bytes = read_bounded(path)?;
        read_log(&bytes, path, &mut merged)?;
    }
    Ok(merged)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, HistLogError> {
    let io_err = |source| HistLogError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io_err)?.len();
    if len > LOG_BYTES_MAX {
        return Err(HistLogError::TooLarge {
            path: path.to_owned(),
        });
    }
    std::fs::read(path).map_err(io_err)
}

/// Adds one log's intervals and counter line into `merged`.
pub fn read_log(bytes: &[u8], path: &Path, merged: &mut MergedLogs) -> Result<(), HistLogError> {
    let malformed = |offset, reason: String| HistLogError::Malformed {
        path: path.to_owned(),
        offset,
        reason,
    };
    let mut deserializer = Deserializer::new();
    let mut last_end = Duration::ZERO;
    for entry in IntervalLogIterator::new(bytes) {
        let interval = match entry {
            Ok(LogEntry::Interval(i)) => i,
            Ok(LogEntry::StartTime(_) | LogEntry::BaseTime(_)) => continue,
            Err(e) => return Err(malformed(parse_offset(&e), "unparsable line".into())),
        };
        last_end = last_end.max(interval.start_timestamp() + interval.duration());
        let Some(metric) = interval.tag().and_then(|t| Metric::from_tag(&t)) else {
            merged.n_unknown_intervals += 1;
            continue;
        };
        let h = decode(&mut deserializer, interval.encoded_histogram())
            .map_err(|reason| malformed(0, format!("{}: {reason}", metric.tag())))?;
        merged
            .set
            .add_histogram(metric, &h)
            .map_err(|e| malformed(0, format!("{}: {e:?}", metric.tag())))?;
    }
    match read_summary(bytes).map_err(|reason| malformed(0, reason))? {
        Some(summary) => {
            merged.set.counters.add(&summary.counters);
            let d = Duration::try_from_secs_f64(summary.duration_s).unwrap_or_default();
            merged.duration = merged.duration.max(d);
        }
        None => {
            merged.counters_complete = false;
            merged.duration = merged.duration.max(last_end);
        }
    }
    Ok(())
}

fn parse_offset(e: &hdrhistogram::serialization::interval_log::LogIteratorError) -> usize {
    match e {
        hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
            *offset
        }
    }
}

/// Decodes a base64 V2 histogram, plain or deflate-compressed.
///
/// hdrhistogram's deserializer trusts the lengths an encoding claims and allocates for
/// them, so a corrupt log could make it allocate gigabytes. Here the compressed body is
/// inflated with a size bound and the plain payload length is checked against the
/// bytes actually present before the deserializer sees them.
fn decode(de: &mut Deserializer, base64_text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_text)
        .map_err(|e| format!("bad base64: {e}"))?;
    let plain = match be_u32(&bytes, 0) {
        Some(V2_COMPRESSED_COOKIE) => inflate(&bytes)?,
        Some(V2_COOKIE) => bytes,
        _ => return Err("not a V2 histogram".into()),
    };
    let claimed = be_u32(&plain, 4).ok_or("truncated histogram")?;
    let present = plain.len().saturating_sub(V2_HEADER_BYTES);
    if usize::try_from(claimed).map_or(true, |c| c > present) {
        return Err(format!(
            "histogram claims {claimed} payload bytes, has {present}"
        ));
    }
    de.deserialize(&mut plain.as_slice())
        .map_err(|e| format!("bad histogram: {e:?}"))
}

/// Cookie of a plain V2 histogram encoding.
const V2_COOKIE: u32 = 0x1c84_9313;
/// Cookie of a deflate-compressed V2 histogram encoding.
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// Cookie, payload length, normalising offset, digits, lowest, highest, ratio.
const V2_HEADER_BYTES: usize = 40;
/// Largest inflated histogram accepted; ours are well under 1 MiB.
const INFLATED_BYTES_MAX: u64 = 64 << 20;

/// The plain V2 encoding inside a compressed one (cookie, length, zlib body).
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let claimed = be_u32(bytes, 4).ok_or("truncated histogram")?;
    let body = bytes
        .get(8..)
        .filter(|b| usize::try_from(claimed).is_ok_and(|c| c <= b.len()))
        .ok_or_else(|| format!("compressed histogram claims {claimed} bytes; has fewer"))?;
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(body)
        .take(INFLATED_BYTES_MAX + 1)
        .read_to_end(&mut plain)
        .map_err(|e| format!("bad compressed histogram: {e}"))?;
    if plain.len() as u64 > INFLATED_BYTES_MAX {
        return Err("compressed histogram inflates beyond 64 MiB".into());
    }
    Ok(plain)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(<[u8; 4]>::try_from(b).ok()?))
}

/// The counter line, if the log has one (the last wins if there are several).
fn read_summary(bytes: &[u8]) -> Result<Option<RunSummary>, String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .filter_map(|l| l.strip_prefix('#')?.strip_prefix(COUNTERS_PREFIX))
        .next_back();
    line.map(|json| serde_json::from_str(json).map_err(|e| format!("bad counter line: {e}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_with(values_ms: &[u64]) -> MetricSet {
        let mut set = MetricSet::new();
        for &ms in values_ms {
            set.record_duration(Metric::InputToVisible, Duration::from_millis(ms));
        }
        set
    }

    fn write(intervals: &[MetricSet], summary: Option<&RunSummary>) -> Vec<u8> {
        let mut log = HistLogWriter::begin(Vec::new(), SystemTime::now()).expect("begin");
        for (i, set) in intervals.iter().enumerate() {
            let start = Duration::from_secs(i as u64);
            log.write_interval(set, start, Duration::from_secs(1))
                .expect("interval");
        }
        if let Some(s) = summary {
            log.write_summary(s).expect("summary");
        }
        log.finish().expect("finish")
    }

    fn read(bytes: &[u8]) -> Result<MergedLogs, HistLogError> {
        let mut merged = MergedLogs {
            counters_complete: true,
            ..MergedLogs::default()
        };
        read_log(bytes, Path::new("test.hlog"), &mut merged)?;
        Ok(merged)
    }

    #[test]
    fn a_log_reads_back_as_the_sum_of_its_intervals() {
        let a = set_with(&[1, 2, 3]);
        let b = set_with(&[40, 50]);
        let mut summary = RunSummary {
            duration_s: 2.5,
            ..RunSummary::default()
        };
        summary.counters.bots_connected = 7;
        let bytes = write(&[a.clone(), b.clone()], Some(&summary));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("Tag=input_to_visible_us,"), "{text}");
        let merged = read(&bytes).expect("reads");
        let mut expected = a;
        expected.add(&b);
        assert_eq!(
            merged.set.histogram(Metric::InputToVisible),
            expected.histogram(Metric::InputToVisible)
        );
        assert_eq!(merged.set.counters.bots_connected, 7);
        assert_eq!(merged.duration, Duration::from_millis(2500));
        assert!(merged.counters_complete);
    }

    #[test]
    fn a_log_without_counters_is_incomplete_but_usable() {
        let bytes = write(&[set_with(&[5])], None);
        let merged = read(&bytes).expect("reads");
        assert!(!merged.counters_complete);
        assert_eq!(merged.set.histogram(Metric::InputToVisible).len(), 1);
        assert_eq!(merged.duration, Duration::from_secs(1));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(read(b"this is not a log\n").is_err());
        assert!(read(b"Tag=input_to_visible_us,0.0,1.0,1.0,AAAA\n").is_err());
        assert!(read(b"Tag=input_to_visible_us,0.0,1.0,1.0,HISTFAA\n").is_err());
        // A header claiming a 4 GB payload is refused before anything is allocated.
        let huge = base64::engine::general_purpose::STANDARD
            .encode([0x1c, 0x84, 0x93, 0x14, 0xff, 0xff, 0xff, 0xff, 0, 0]);
        let line = format!("Tag=jitter_us,0.0,1.0,1.0,{huge}\n");
        assert!(read(line.as_bytes()).is_err());
        assert!(read(b"#zonemesh-swarm-counters {not json\n").is_err());
    }

    #[test]
    fn unknown_tags_are_skipped_and_counted() {
        let mut bytes = write(&[set_with(&[5])], None);
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        let line = text
            .lines()
            .find(|l| l.starts_with("Tag="))
            .expect("one interval");
        bytes.extend_from_slice(line.replace("input_to_visible_us", "other").as_bytes());
        bytes.push(b'\n');
        let merged = read(&bytes).expect("reads");
        assert_eq!(merged.n_unknown_intervals, 1);
        assert_eq!(merged.set.histogram(Metric::InputToVisible).len(), 1);
    }
}
