//! Choosing a backend from the `--store` setting: empty or `embedded` means the redb
//! file in the data directory, a `postgres://` or `postgresql://` URL means PostgreSQL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::postgres::{PostgresOptions, PostgresStore, redacted_target};
use crate::{RedbStore, Store, StoreError};

/// The embedded database's file name inside the data directory.
pub const EMBEDDED_FILE_NAME: &str = "zonemesh.redb";

/// A parsed store setting.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The redb file `zonemesh.redb` in the data directory.
    Embedded,
    /// A PostgreSQL (or Postgres-wire) database at this URL.
    Postgres(String),
}

impl std::fmt::Debug for StoreSpec {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Embedded"),
            Self::Postgres(url) => write!(f, "Postgres({})", redact(url)),
        }
    }
}

impl StoreSpec {
    /// Parses a store setting. Anything that is neither empty, `embedded`, nor a Postgres
    /// URL is an error rather than a silent fallback: a typo such as `postgress://` must
    /// not quietly run a cluster node on a local file.
    pub fn parse(spec: &str) -> Result<Self, StoreError> {
        let trimmed = spec.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("embedded") {
            return Ok(Self::Embedded);
        }
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            return Ok(Self::Postgres(trimmed.to_owned()));
        }
        Err(StoreError::InvalidSpec {
            spec: redact(trimmed),
            reason: "expected \"embedded\" (or empty) or a postgres:// / postgresql:// URL".into(),
        })
    }
}

/// The path of the embedded database inside `data_dir`.
pub fn embedded_path(data_dir: &Path) -> PathBuf {
    data_dir.join(EMBEDDED_FILE_NAME)
}

/// Opens the store named by `spec`: the redb file in `data_dir` (created with the
/// directory if missing) or a PostgreSQL database with default options.
pub async fn open_store(spec: &str, data_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with(spec, data_dir, PostgresOptions::default()).await
}

/// Like [`open_store`], with these PostgreSQL options (schema, pool, timeouts); they
/// do not apply to the embedded store.
pub async fn open_store_with(
    spec: &str,
    data_dir: &Path,
    postgres: PostgresOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    match StoreSpec::parse(spec)? {
        StoreSpec::Embedded => Ok(Arc::new(open_embedded(data_dir).await?)),
        StoreSpec::Postgres(url) => {
            Ok(Arc::new(PostgresStore::connect_with(&url, postgres).await?))
        }
    }
}

/// Creates `data_dir` and opens the redb file in it, off the async threads.
async fn open_embedded(data_dir: &Path) -> Result<RedbStore, StoreError> {
    let data_dir = data_dir.to_path_buf();
    let task = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&data_dir).map_err(|source| StoreError::Io {
            path: data_dir.clone(),
            source,
        })?;
        RedbStore::open(embedded_path(&data_dir))
    });
    task.await
        .map_err(|error| StoreError::TaskFailed(error.to_string()))?
}

/// A printable form of a spec: a URL shows only host, port and database.
fn redact(spec: &str) -> String {
    match spec.parse::<tokio_postgres::Config>() {
        Ok(config) if spec.contains("://") => redacted_target(&config),
        _ if spec.contains('@') => "<unparseable URL>".into(),
        _ => spec.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_select_a_backend() {
        assert_eq!(StoreSpec::parse("").ok(), Some(StoreSpec::Embedded));
        assert_eq!(
            StoreSpec::parse(" embedded ").ok(),
            Some(StoreSpec::Embedded)
        );
        let url = "postgres://u@h:5432/db";
        assert_eq!(
            StoreSpec::parse(url).ok(),
            Some(StoreSpec::Postgres(url.into()))
        );
        assert!(matches!(
            StoreSpec::parse("postgresql://h/db"),
            Ok(StoreSpec::Postgres(_))
        ));
    }

    #[test]
    fn unknown_specs_are_rejected_without_leaking_passwords() {
        assert!(matches!(
            StoreSpec::parse("mysql://h/db"),
            Err(StoreError::InvalidSpec { .. })
        ));
        let Err(error) = StoreSpec::parse("postgress://user:hunter2@h/db") else {
            panic!("typo accepted");
        };
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let debug = format!("{:?}", StoreSpec::parse("postgres://u:hunter2@h/db"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn embedded_file_lives_in_the_data_dir() {
        assert_eq!(
            embedded_path(Path::new("/data")),
            PathBuf::from("/data/zonemesh.redb")
        );
    }
}
