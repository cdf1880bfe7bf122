//! A node's identity on disk: `node-id` (16 hex digits, generated at the first start
//! and kept) and `incarnation` (a counter bumped and made durable at every start, before
//! the node talks to anyone). Together they are the node's [`NodeRef`]: membership,
//! directory entries, redirect tokens and logs name it, so a restarted node is never
//! mistaken for its previous run.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;
use zonemesh_shared::node::{Incarnation, NodeId, NodeRef};

/// File holding the node id, under the data directory.
pub const NODE_ID_FILE: &str = "node-id";
/// File holding the last incarnation, under the data directory.
pub const INCARNATION_FILE: &str = "incarnation";

/// Why the identity could not be read or written.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// A file could not be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should. It is not replaced: a node that
    /// silently took a new id would be a stranger to the cluster that knew it.
    #[error("{path} holds {content:?}, expected {expected}; fix or remove the file")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it holds (first line, truncated).
        content: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// Reads the node id (creating it on first start) and bumps the incarnation, durably,
/// in `data_dir` (created if missing).
pub fn start_incarnation(data_dir: &Path) -> Result<NodeRef, IdentityError> {
    fs::create_dir_all(data_dir).map_err(|source| IdentityError::Io {
        path: data_dir.to_owned(),
        source,
    })?;
    let id = load_or_create_id(data_dir)?;
    let incarnation = bump_incarnation(data_dir)?;
    Ok(NodeRef {
        id,
        incarnation: Incarnation(incarnation),
    })
}

fn load_or_create_id(data_dir: &Path) -> Result<NodeId, IdentityError> {
    let path = data_dir.join(NODE_ID_FILE);
    match read_first_line(&path)? {
        Some(line) => NodeId::parse(&line).ok_or_else(|| malformed(&path, &line, "16 hex digits")),
        None => {
            // Zero is kept out so that a zeroed id always means "unknown".
            let id = NodeId(rand::random::<u64>().max(1));
            write_durably(&path, &format!("{id}\n"))?;
            Ok(id)
        }
    }
}

fn bump_incarnation(data_dir: &Path) -> Result<u64, IdentityError> {
    let path = data_dir.join(INCARNATION_FILE);
    let last = match read_first_line(&path)? {
        Some(line) => line
            .parse::<u64>()
            .ok()
            .filter(|n| *n < u64::MAX)
            .ok_or_else(|| malformed(&path, &line, "a decimal counter"))?,
        None => 0,
    };
    let next = last + 1;
    write_durably(&path, &format!("{next}\n"))?;
    Ok(next)
}

/// The file's first line, trimmed; `None` if the file does not exist.
fn read_first_line(path: &Path) -> Result<Option<String>, IdentityError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.lines().next().unwrap_or("").trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error(path, source)),
    }
}

/// Writes `text` to a temporary file, syncs it, renames it over `path` and syncs the
/// directory, so a crash leaves either the old or the new content, never a torn one.
fn write_durably(path: &Path, text: &str) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| io_error(&tmp, e))?;
    file.sync_all().map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

fn io_error(path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

fn malformed(path: &Path, content: &str, expected: &'static str) -> IdentityError {
    IdentityError::Malformed {
        path: path.to_owned(),
        content: content.chars().take(40).collect(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_stays_and_the_incarnation_grows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = start_incarnation(dir.path()).expect("first start");
        let second = start_incarnation(dir.path()).expect("second start");
        assert_eq!(first.id, second.id);
        assert_eq!(first.incarnation, Incarnation(1));
        assert_eq!(second.incarnation, Incarnation(2));
        assert_ne!(first, second);
    }

    #[test]
    fn two_data_directories_are_two_nodes() {
        let (a, b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let a = start_incarnation(a.path()).expect("a");
        let b = start_incarnation(b.path()).expect("b");
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn malformed_files_are_errors_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(NODE_ID_FILE), "not-an-id\n").expect("write");
        let err = start_incarnation(dir.path()).expect_err("bad id");
        assert!(err.to_string().contains("16 hex digits"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.path().join(NODE_ID_FILE)).expect("read"),
            "not-an-id\n"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        start_incarnation(dir.path()).expect("first start");
        fs::write(dir.path().join(INCARNATION_FILE), "-3\n").expect("write");
        let err = start_incarnation(dir.path()).expect_err("bad counter");
        assert!(err.to_string().contains("decimal counter"), "{err}");
    }

    #[test]
    fn a_missing_directory_is_created_and_an_impossible_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = start_incarnation(&dir.path().join("new/node-0")).expect("created");
        assert_eq!(node.incarnation, Incarnation(1));
        let file = dir.path().join("a-file");
        fs::write(&file, "x").expect("write");
        let err = start_incarnation(&file.join("below")).expect_err("under a file");
        assert!(matches!(err, IdentityError::Io { .. }), "{err}");
    }
}
