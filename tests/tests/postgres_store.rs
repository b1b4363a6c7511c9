//! The PostgreSQL store passes the same contract as sled, against a real server.

use std::sync::Arc;

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

#[test]
fn postgres_store_matches_the_model() {
    let pg = Postgres::start();
    // Each case gets a fresh database.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = pg.url();
    let mut n = 0;
    testkit::check_against_model(24, || {
        n += 1;
        let db = format!("model_{n}");
        let url = format!(
            "{}/{db}",
            admin.rsplit_once('/').expect("a database in the URL").0
        );
        let admin = admin.clone();
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .unwrap();
        });
        opener(url)
    });
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
