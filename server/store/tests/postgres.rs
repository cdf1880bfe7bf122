//! The conformance suite on the PostgreSQL backend, plus what only a server has:
//! migrations, concurrent migrators, lost connections, unreachable databases.
//!
//! Runs against the database in `ZONEMESH_TEST_POSTGRES_URL`
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`); without it each test prints that
//! it was skipped and passes. Every test works in its own schema `zm_test_<random>`,
//! dropped at the end.

#[macro_use]
mod conformance;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use conformance::{BoxFuture, Fixture};
use tokio_postgres::NoTls;
use zonemesh_store::limits::MAX_MEMBERS_PER_READ;
use zonemesh_store::{PostgresOptions, PostgresStore, Store, StoreError, open_store};

const URL_VAR: &str = "ZONEMESH_TEST_POSTGRES_URL";

/// A fresh schema in the test database.
struct PgFixture {
    url: String,
    schema: String,
}

impl PgFixture {
    fn options(&self) -> PostgresOptions {
        PostgresOptions {
            schema: self.schema.clone(),
            pool_size: 4,
            ..PostgresOptions::default()
        }
    }

    /// A plain client for inspecting the database behind the store's back.
    async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("admin connect");
        tokio::spawn(connection);
        client
    }
}

impl Fixture for PgFixture {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
        Box::pin(async move {
            let store = PostgresStore::connect_with(&self.url, self.options())
                .await
                .expect("connect");
            Arc::new(store) as Arc<dyn Store>
        })
    }

    fn cleanup(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let drop_schema = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
            self.admin()
                .await
                .batch_execute(&drop_schema)
                .await
                .expect("drop test schema");
        })
    }
}

/// A fixture with a random schema, or `None` (and a note) without a test database.
async fn make(test: &'static str) -> Option<PgFixture> {
    let Ok(url) = std::env::var(URL_VAR) else {
        // Straight to stderr: the test harness captures `println!` of passing tests,
        // and a skip should be visible in the normal output.
        let _ = writeln!(std::io::stderr(), "skipped {test}: {URL_VAR} is not set");
        return None;
    };
    let schema = format!("zm_test_{:016x}", rand::random::<u64>());
    Some(PgFixture { url, schema })
}

conformance_tests!(make);

#[tokio::test]
async fn schema_migration_is_idempotent() {
    let Some(fixture) = make("schema_migration_is_idempotent").await else {
        return;
    };
    let first = fixture.open().await;
    first.activate_zone(1, "a").await.expect("activate");
    let second = fixture.open().await;
    assert_eq!(second.zone_epoch(1).await.expect("epoch"), Some(1));
    let versions = fixture
        .admin()
        .await
        .query(
            &format!(
                "SELECT version FROM \"{}\".zonemesh_schema_version",
                fixture.schema
            ),
            &[],
        )
        .await
        .expect("versions");
    let mut versions: Vec<i64> = versions.iter().map(|row| row.get(0)).collect();
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    fixture.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_all_succeed() {
    let Some(fixture) = make("concurrent_first_connects_all_succeed").await else {
        return;
    };
    let fixture = Arc::new(fixture);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let fixture = Arc::clone(&fixture);
            tokio::spawn(async move {
                PostgresStore::connect_with(&fixture.url, fixture.options()).await
            })
        })
        .collect();
    for task in tasks {
        let store = task.await.expect("join").expect("connect");
        store.zone_epoch(1).await.expect("tables exist");
    }
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_lost_connection_fails_one_call_then_reconnects() {
    let Some(fixture) = make("a_lost_connection_fails_one_call_then_reconnects").await else {
        return;
    };
    let url = format!("{}?application_name={}", fixture.url, fixture.schema);
    let options = PostgresOptions {
        pool_size: 1,
        ..fixture.options()
    };
    let store = PostgresStore::connect_with(&url, options)
        .await
        .expect("connect");
    store.activate_zone(1, "a").await.expect("activate");
    let terminated = fixture
        .admin()
        .await
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&fixture.schema],
        )
        .await
        .expect("terminate");
    assert_eq!(terminated.len(), 1, "the pool holds exactly one connection");
    // The first call may notice the broken connection (and fail) or find it already
    // closed (and reconnect); either way the store recovers by the second call.
    let first = store.zone_epoch(1).await;
    if let Err(error) = &first {
        assert!(
            matches!(error, StoreError::ConnectionLost { .. }),
            "{error:?}"
        );
    }
    assert_eq!(store.zone_epoch(1).await.expect("reconnected"), Some(1));
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_schema_newer_than_supported_is_refused() {
    let Some(fixture) = make("a_schema_newer_than_supported_is_refused").await else {
        return;
    };
    drop(fixture.open().await);
    fixture
        .admin()
        .await
        .batch_execute(&format!(
            "INSERT INTO \"{}\".zonemesh_schema_version (version) VALUES (99)",
            fixture.schema
        ))
        .await
        .expect("fake a newer schema");
    let result = PostgresStore::connect_with(&fixture.url, fixture.options()).await;
    assert!(
        matches!(
            result,
            Err(StoreError::SchemaTooNew {
                found: 99,
                supported: 5
            })
        ),
        "{result:?}"
    );
    fixture.cleanup().await;
}

/// A database as schema version 1 left it (before player versions), with one player.
const V1_PLAYERS: &str = "
CREATE TABLE zonemesh_schema_version (version BIGINT PRIMARY KEY);
INSERT INTO zonemesh_schema_version (version) VALUES (1);
CREATE TABLE zone_epochs (zone BIGINT PRIMARY KEY, epoch BIGINT NOT NULL, owner TEXT NOT NULL);
CREATE TABLE zone_state (
    zone BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    tick BIGINT NOT NULL,
    saved_at_unix_ms BIGINT NOT NULL,
    state BYTEA NOT NULL
);
CREATE TABLE actions (
    id BYTEA PRIMARY KEY,
    player TEXT NOT NULL,
    zone BIGINT NOT NULL,
    kind INTEGER NOT NULL,
    payload BYTEA NOT NULL,
    epoch BIGINT NOT NULL
);
CREATE TABLE players (
    player TEXT PRIMARY KEY,
    zone BIGINT NOT NULL,
    x REAL NOT NULL,
    y REAL NOT NULL,
    data BYTEA NOT NULL,
    updated_at_unix_ms BIGINT NOT NULL
);
INSERT INTO players VALUES ('old-timer', 3, 1.5, -2.0, '\\x6f6c64', 1700000000000);
INSERT INTO zone_epochs VALUES (7, 4, 'old-node');
";

#[tokio::test]
async fn a_version_one_database_migrates_and_its_players_read_as_version_zero() {
    let Some(fixture) =
        make("a_version_one_database_migrates_and_its_players_read_as_version_zero").await
    else {
        return;
    };
    fixture
        .admin()
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"; {V1_PLAYERS}",
            schema = fixture.schema
        ))
        .await
        .expect("create a version-1 database");
    let store = fixture.open().await;
    let old = store
        .load_player("old-timer")
        .await
        .expect("load")
        .expect("kept through the migration");
    assert_eq!((old.zone, old.x, old.y), (3, 1.5, -2.0));
    assert_eq!(old.data.as_ref(), b"old");
    conformance::check_pre_version_record(&store, old).await;
    // Zone 7 of `V1_PLAYERS`: held by no run after the migration.
    conformance::check_pre_cluster_zone(&*store, 7).await;
    conformance::check_pre_claim_store(&*store, "old-timer").await;
    conformance::check_pre_membership_store(&*store).await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    // Port 1 on loopback refuses at once; no database needed for this test.
    let url = "postgres://zm:secret@127.0.0.1:1/nowhere";
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(3),
        ..PostgresOptions::default()
    };
    match PostgresStore::connect_with(url, options).await {
        Err(error @ StoreError::Unreachable { .. }) => {
            let message = error.to_string();
            assert!(message.contains("127.0.0.1:1/nowhere"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let result = open_store(url, dir.path()).await;
    assert!(
        matches!(result, Err(StoreError::Unreachable { .. })),
        "open_store picks Postgres for a postgres:// URL: {result:?}"
    );
}

#[tokio::test]
async fn bad_urls_and_options_are_rejected() {
    for url in [
        "host=127.0.0.1 dbname=x",
        "postgres://h:port/db",
        "http://h/db",
    ] {
        let result = PostgresStore::connect(url).await;
        assert!(
            matches!(result, Err(StoreError::InvalidSpec { .. })),
            "{url}: {result:?}"
        );
    }
    let bad_schema = PostgresOptions {
        schema: "Robert'); DROP TABLE students;--".into(),
        ..PostgresOptions::default()
    };
    let result = PostgresStore::connect_with("postgres://127.0.0.1:1/x", bad_schema).await;
    assert!(
        matches!(result, Err(StoreError::InvalidInput(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_member_table_over_the_read_limit_is_refused() {
    let Some(fixture) = make("a_member_table_over_the_read_limit_is_refused").await else {
        return;
    };
    let store = fixture.open().await;
    let max = i64::try_from(MAX_MEMBERS_PER_READ).expect("fits");
    // Rows written behind the store's back: `max` live ones (negative ids are the bit
    // patterns of ids above `i64::MAX`) and some run out, which do not count.
    let insert = |from: i64, to: i64, expires: i64| {
        format!(
            "INSERT INTO \"{}\".cluster_members
             SELECT i, 1, {expires}, '10.0.0.1:9000', '10.0.0.1:7000'
             FROM generate_series({from}, {to}) AS i",
            fixture.schema
        )
    };
    let admin = fixture.admin().await;
    let far = 9_000_000_000_000_000;
    admin
        .batch_execute(&insert(-max / 2, max - max / 2 - 1, far))
        .await
        .expect("live rows");
    admin
        .batch_execute(&insert(max, max + 4, 1))
        .await
        .expect("run-out rows");
    let table = store.member_table().await.expect("exactly at the limit");
    assert_eq!(table.members.len(), MAX_MEMBERS_PER_READ);
    let ids: Vec<u64> = table.members.iter().map(|row| row.run.id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "by unsigned id"
    );
    assert_eq!(ids.first(), Some(&0));
    assert_eq!(ids.last(), Some(&u64::MAX));
    admin
        .batch_execute(&insert(max + 5, max + 5, far))
        .await
        .expect("one more live row");
    match store.member_table().await {
        Err(StoreError::TooLarge { what, .. }) => assert_eq!(what, "live members per read"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    fixture.cleanup().await;
}
