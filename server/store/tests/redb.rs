//! The conformance suite on the embedded redb backend, plus what only a file has:
//! reopening, a second open, corruption, and `open_store`'s embedded path.

#[macro_use]
mod conformance;

use std::path::PathBuf;
use std::sync::Arc;

use conformance::{BoxFuture, Fixture};
use zonemesh_store::{RedbStore, Store, StoreError, open_store};

/// A database file in its own temporary directory.
struct RedbFixture {
    dir: tempfile::TempDir,
}

impl RedbFixture {
    fn path(&self) -> PathBuf {
        self.dir.path().join("store.redb")
    }
}

impl Fixture for RedbFixture {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
        Box::pin(async move {
            let path = self.path();
            let store = tokio::task::spawn_blocking(move || RedbStore::open(path))
                .await
                .expect("join")
                .expect("open redb");
            Arc::new(store) as Arc<dyn Store>
        })
    }
}

async fn make(_test: &'static str) -> Option<RedbFixture> {
    Some(RedbFixture {
        dir: tempfile::tempdir().expect("temp dir"),
    })
}

conformance_tests!(make);

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("z.redb");
    let _first = RedbStore::open(&path).expect("first open");
    match RedbStore::open(&path) {
        Err(StoreError::AlreadyOpen { path: reported }) => assert_eq!(reported, path),
        other => panic!("expected AlreadyOpen, got {other:?}"),
    }
}

#[test]
fn a_garbage_file_is_reported_not_trusted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("garbage.redb");
    let garbage: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&path, garbage).expect("write garbage");
    let result = RedbStore::open(&path);
    assert!(
        matches!(
            result,
            Err(StoreError::Corrupt(_) | StoreError::Database { .. })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_damaged_page_fails_the_integrity_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("damaged.redb");
    {
        let store = RedbStore::open(&path).expect("open");
        store.activate_zone(1, "a").await.expect("activate");
        let state = bytes::Bytes::from(vec![0x5a; 256 * 1024]);
        let checkpoint = zonemesh_store::Checkpoint {
            zone_state: Some(zonemesh_store::ZoneSnapshot {
                tick: 1,
                saved_at_unix_ms: 1,
                state,
            }),
            players: Vec::new(),
        };
        store
            .checkpoint(1, 1, checkpoint)
            .await
            .expect("checkpoint");
    }
    let mut bytes = std::fs::read(&path).expect("read file");
    // Flip every byte of the zone state's pages (a run of 0x5a), keeping the header.
    let mut n_flipped = 0;
    for byte in bytes.iter_mut().filter(|byte| **byte == 0x5a) {
        *byte = 0xa5;
        n_flipped += 1;
    }
    assert!(n_flipped >= 256 * 1024);
    std::fs::write(&path, bytes).expect("write damaged");
    let result = RedbStore::open(&path);
    assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
}

#[test]
fn opening_in_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing").join("z.redb");
    let result = RedbStore::open(&path);
    assert!(matches!(result, Err(StoreError::Io { .. })), "{result:?}");
}

#[tokio::test]
async fn open_store_uses_the_embedded_file_in_the_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let store = open_store("", &data_dir).await.expect("open embedded");
    assert_eq!(store.backend(), "redb");
    assert!(data_dir.join("zonemesh.redb").is_file());
    store.activate_zone(9, "n").await.expect("activate");
    drop(store);
    let store = open_store("embedded", &data_dir).await.expect("reopen");
    assert_eq!(store.zone_epoch(9).await.expect("epoch"), Some(1));
}

#[tokio::test]
async fn open_store_rejects_unknown_specs() {
    let dir = tempfile::tempdir().expect("temp dir");
    for spec in [
        "mysql://h/db",
        "postgress://u:secret@h/db",
        "./some/file.redb",
    ] {
        match open_store(spec, dir.path()).await {
            Err(StoreError::InvalidSpec { spec: shown, .. }) => {
                assert!(!shown.contains("secret"), "{shown}");
            }
            other => panic!("{spec}: expected InvalidSpec, got {other:?}"),
        }
    }
    assert!(!dir.path().join("zonemesh.redb").exists());
}
