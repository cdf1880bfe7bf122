//! The conformance suite on the embedded redb backend, plus what only a file has:
//! reopening, a second open, corruption, and `open_store`'s embedded path.

#[macro_use]
mod conformance;

use std::path::PathBuf;
use std::sync::Arc;

use conformance::{BoxFuture, Fixture};
use zonemesh_store::{NodeRun, RedbStore, Store, StoreError, open_store};

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

/// A player record in the embedded codec's format 1 (written before versions).
fn format_one_player(name: &str, zone: u32, x: f32, y: f32, data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![1u8];
    let name_len = u16::try_from(name.len()).expect("short name");
    bytes.extend_from_slice(&name_len.to_le_bytes());
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(&zone.to_le_bytes());
    bytes.extend_from_slice(&x.to_le_bytes());
    bytes.extend_from_slice(&y.to_le_bytes());
    bytes.extend_from_slice(&1_700_000_000_000u64.to_le_bytes());
    let data_len = u32::try_from(data.len()).expect("small data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// Writes a file as the schema-1 store did: its schema version and one player.
fn write_schema_one_file(path: &std::path::Path) {
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let players: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("players");
    let db = redb::Database::create(path).expect("create");
    let txn = db.begin_write().expect("begin");
    {
        let mut table = txn.open_table(meta).expect("meta");
        table.insert("schema_version", 1).expect("insert");
        let mut table = txn.open_table(players).expect("players");
        let record = format_one_player("veteran", 4, 2.5, -1.0, b"old bag");
        table.insert("veteran", record.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

#[tokio::test]
async fn a_file_from_before_player_versions_opens_and_reads_as_version_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.redb");
    write_schema_one_file(&path);

    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("an old file opens"));
    let old = store
        .load_player("veteran")
        .await
        .expect("load")
        .expect("kept");
    assert_eq!((old.zone, old.x, old.y), (4, 2.5, -1.0));
    assert_eq!(old.data.as_ref(), b"old bag");
    let newer = conformance::check_pre_version_record(&store, old).await;
    drop(store);
    let store = RedbStore::open(&path).expect("reopens");
    assert_eq!(
        store.load_player("veteran").await.expect("load"),
        Some(newer)
    );
}

/// A zone epoch entry in the embedded codec's format 1 (written before clusters).
fn format_one_epoch(epoch: u64, owner: &str) -> Vec<u8> {
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(&epoch.to_le_bytes());
    let owner_len = u16::try_from(owner.len()).expect("short owner");
    bytes.extend_from_slice(&owner_len.to_le_bytes());
    bytes.extend_from_slice(owner.as_bytes());
    bytes
}

/// Writes a file as the schema-2 store did: its schema version and zone 3 at epoch 4.
fn write_schema_two_file(path: &std::path::Path) {
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let epochs: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("zone_epochs");
    let db = redb::Database::create(path).expect("create");
    let txn = db.begin_write().expect("begin");
    {
        let mut table = txn.open_table(meta).expect("meta");
        table.insert("schema_version", 2).expect("insert");
        let mut table = txn.open_table(epochs).expect("zone epochs");
        let entry = format_one_epoch(4, "old-node");
        table.insert(3, entry.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

#[tokio::test]
async fn a_file_from_before_clusters_opens_with_its_zones_held_by_no_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.redb");
    write_schema_two_file(&path);
    let store = RedbStore::open(&path).expect("an old file opens");
    let run = conformance::check_pre_cluster_zone(&store, 3).await;
    drop(store);
    let store = RedbStore::open(&path).expect("reopens");
    assert_eq!(store.zone_holder(3).await.expect("holder"), Some((run, 5)));
}

/// Writes a file whose meta table records `version` and nothing else.
fn write_meta_only_file(path: &std::path::Path, version: u64) {
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let db = redb::Database::create(path).expect("create");
    let txn = db.begin_write().expect("begin");
    {
        let mut table = txn.open_table(meta).expect("meta");
        table.insert("schema_version", version).expect("insert");
    }
    txn.commit().expect("commit");
}

/// The schema version a closed file records.
fn recorded_version(path: &std::path::Path) -> Option<u64> {
    use redb::ReadableDatabase;
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let db = redb::Database::open(path).expect("open");
    let txn = db.begin_read().expect("begin");
    let table = txn.open_table(meta).expect("meta");
    table.get("schema_version").expect("get").map(|v| v.value())
}

#[tokio::test]
async fn a_file_from_before_player_claims_opens_and_gets_the_claim_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.redb");
    // Schema 3 had every table but `player_claims`.
    write_meta_only_file(&path, 3);
    let store = RedbStore::open(&path).expect("an old file opens");
    conformance::check_pre_claim_store(&store, "veteran").await;
    drop(store);
    // Recorded as the current version, so a build without claims refuses the file.
    assert_eq!(recorded_version(&path), Some(5));
    let store = RedbStore::open(&path).expect("reopens");
    let claim = store.player_claim("veteran").await.expect("read");
    assert_eq!(claim, Some((NodeRun::new(1, 1), 1)));
}

#[tokio::test]
async fn a_file_from_before_the_membership_table_opens_and_gets_its_tables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.redb");
    // Schema 4 had every table but the membership ones.
    write_meta_only_file(&path, 4);
    let store = RedbStore::open(&path).expect("an old file opens");
    conformance::check_pre_membership_store(&store).await;
    drop(store);
    // Recorded as version 5, so a build without the membership table refuses the file.
    assert_eq!(recorded_version(&path), Some(5));
    let store = RedbStore::open(&path).expect("reopens");
    let table = store.member_table().await.expect("read");
    assert_eq!(table.generation, 1);
    assert_eq!(
        table.members,
        vec![conformance::member(NodeRun::new(1, 1), 1)]
    );
}

#[test]
fn a_file_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("newer.redb");
    write_meta_only_file(&path, 6);
    let result = RedbStore::open(&path);
    assert!(
        matches!(
            result,
            Err(StoreError::SchemaTooNew {
                found: 6,
                supported: 5
            })
        ),
        "{result:?}"
    );
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
