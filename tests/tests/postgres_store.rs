//! The PostgreSQL store passes the same contract as sled, against a real server.

use std::{sync::Arc, time::Duration};

use overmind_core::{
    store::{PostgresStore, StateStore},
    testkit::{self, Opener},
};
use overmind_tests::postgres::Postgres;

fn opener(url: String) -> Opener {
    Opener::new(move || {
        let url = url.clone();
        async move { Ok(Arc::new(PostgresStore::connect(&url, 8).await?) as Arc<dyn StateStore>) }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_meets_the_contract() {
    let pg = Postgres::start();
    testkit::run_contract(&mut opener(pg.url())).await;
}

/// A plain client, beside the store.
async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    client
}

/// Creates database `db` with `options` on the server of `admin` (a URL) and returns its URL.
async fn create_database(admin: &str, db: &str, options: &str) -> String {
    client(admin)
        .await
        .batch_execute(&format!("CREATE DATABASE {db} {options}"))
        .await
        .expect("create a database");
    format!(
        "{}/{db}",
        admin.rsplit_once('/').expect("a database in the URL").0
    )
}

#[test]
fn postgres_store_matches_the_model() {
    let pg = Postgres::start();
    // Each case gets a fresh database.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = pg.url();
    let mut n = 0;
    testkit::check_against_model(24, || {
        n += 1;
        opener(rt.block_on(create_database(&admin, &format!("model_{n}"), "")))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_is_in_byte_order_whatever_the_database_collation() {
    let pg = Postgres::start();
    let url = create_database(
        &pg.url(),
        "collated",
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'",
    )
    .await;
    let z_first: bool = client(&url)
        .await
        .query_one("SELECT 'Z' < 'a' OR 'é' > 'z'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!z_first, "the database's own order is not byte order");
    testkit::run_contract(&mut opener(url)).await;
}

/// `overmind_state` as stores before listing created it: without `overmind_state_list`.
const OLD_SCHEMA: &str = "
    CREATE TABLE overmind_state (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        version BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE SEQUENCE overmind_state_version;
    INSERT INTO overmind_state VALUES
        ('k', 'b', nextval('overmind_state_version'), ''),
        ('k', 'a', nextval('overmind_state_version'), '');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_adds_the_listing_index_to_an_older_table_then_locks_nothing() {
    let pg = Postgres::start();
    let admin = client(&pg.url()).await;
    admin.batch_execute(OLD_SCHEMA).await.unwrap();
    let store = PostgresStore::connect(&pg.url(), 2).await.unwrap();
    let indexes: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'overmind_state_list'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 1, "the upgrade adds the index");
    assert_eq!(store.list("k", None, 10).await.unwrap(), ["a", "b"]);

    // A write in flight holds a lock on the table that a CREATE INDEX would wait for: a store
    // connecting now must not touch the index it already has.
    let mut writer = client(&pg.url()).await;
    let tx = writer.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO overmind_state VALUES ('k', 'c', nextval('overmind_state_version'), '')",
        &[],
    )
    .await
    .unwrap();
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        PostgresStore::connect(&pg.url(), 2),
    )
    .await
    .expect("connecting waited for a table lock")
    .unwrap();
    assert_eq!(second.list("k", None, 10).await.unwrap(), ["a", "b"]);
    tx.commit().await.unwrap();
    assert_eq!(second.list("k", None, 10).await.unwrap(), ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_a_large_kind_is_read_from_the_listing_index() {
    let pg = Postgres::start();
    let store = PostgresStore::connect(&pg.url(), 2).await.unwrap();
    let admin = client(&pg.url()).await;
    admin
        .batch_execute(
            "INSERT INTO overmind_state
                 SELECT kind, to_char(n, 'FM00000'), nextval('overmind_state_version'), ''
                 FROM unnest(ARRAY['big', 'other']) kind, generate_series(1, 20000) n;
             ANALYZE overmind_state;",
        )
        .await
        .unwrap();
    let scans = || async {
        admin
            .query_opt(
                "SELECT idx_scan FROM pg_stat_user_indexes
                 WHERE indexrelname = 'overmind_state_list'",
                &[],
            )
            .await
            .unwrap()
            .expect("the store created the index overmind_state_list")
            .get::<_, i64>(0)
    };
    let before = scans().await;
    let page = store.list("big", Some("10000"), 10).await.unwrap();
    let expected: Vec<String> = (10001..=10010).map(|n| n.to_string()).collect();
    assert_eq!(page, expected);
    // Statistics reach the view a moment after the statement (when its session is idle).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while scans().await == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listing a page did not use overmind_state_list (a scan of the whole kind instead)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_clear_error() {
    // A bound socket that does not listen: connections to it are refused, and no test running
    // beside this one can take the port meanwhile (a merely free port could be).
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = reserved.local_addr().unwrap().port();
    let err = PostgresStore::connect(&format!("postgres://overmind:secret@127.0.0.1:{port}/x"), 2)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(
        text.contains("Connection refused"),
        "the cause is named: {text}"
    );
    assert!(
        !text.contains("secret"),
        "the password is not printed: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surprising_row_is_an_error_not_a_panic() {
    let pg = Postgres::start();
    let store = PostgresStore::connect(&pg.url(), 2).await.unwrap();
    let admin = client(&pg.url()).await;
    // A version the sequence never hands out, as damage or a hand-edited row would leave.
    admin
        .batch_execute("INSERT INTO overmind_state VALUES ('k', 'negative', -5, '\\x01')")
        .await
        .unwrap();
    let key = overmind_core::ActorKey::new("k", "negative").unwrap();
    let err = store.load(&key).await.expect_err("a negative version");
    assert!(err.to_string().contains("negative version (-5)"), "{err}");
    let absent = overmind_core::ActorKey::new("k", "absent").unwrap();
    let err = store
        .save(&absent, overmind_core::Version(u64::MAX), b"x")
        .await
        .expect_err("a version no row can hold");
    assert!(err.is_conflict(), "{err}");
    // The store still serves every other row.
    let ok = overmind_core::ActorKey::new("k", "fine").unwrap();
    let v = store
        .save(&ok, overmind_core::Version::ABSENT, b"y")
        .await
        .unwrap();
    assert_eq!(store.load(&ok).await.unwrap().map(|s| s.version), Some(v));
}
