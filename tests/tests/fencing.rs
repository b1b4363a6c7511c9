//! Fencing: once another activation has taken an actor's record over (a newer lease, a new
//! version), the old activation can no longer save. Its caller gets an error — never a false
//! acknowledgement — it stops at once, and the next message is handled from the new state.
//! On sled and on PostgreSQL.

use std::sync::Arc;

use overmind_core::{
    ActorKey, StateStore,
    codec::{self, Lease, Record},
    store::{PostgresStore, SledStore},
};
use overmind_ractor::{Error, Overmind, PersistError};
use overmind_tests::{
    accounts::{Account, AccountActor, AccountMsg},
    postgres::Postgres,
};

/// Writes the record as a new owner's activation would: its own lease, and a state.
async fn take_over(store: &dyn StateStore, id: &str, balance: i64) {
    let key = ActorKey::new("account", id).expect("a valid key");
    let current = store
        .load(&key)
        .await
        .expect("load")
        .expect("a stored record");
    let state = Account {
        balance,
        history: vec![],
    };
    let taken = Record {
        kind: "account".into(),
        lease: Some(Lease {
            epoch: 99,
            node: "the-new-owner".into(),
            activation: 7,
        }),
        payload: Some(codec::encode_state(&state).expect("encode")),
    };
    let written = store.save(&key, current.version, &taken.encode()).await;
    written.expect("the new owner's write");
}

async fn stale_activation_is_fenced(store: Arc<dyn StateStore>) {
    let om = Overmind::builder()
        .store(store.clone())
        .register::<AccountActor>()
        .spawn()
        .await
        .expect("start");
    let a = om.actor::<AccountActor>("a");
    let first = a.call(|r| AccountMsg::DepositAndGet(1, r), None).await;
    assert_eq!(first.expect("the first deposit"), 1);

    take_over(&*store, "a", 100).await;

    // The old activation still holds balance 1 in memory; its save is refused.
    let refused = a.call(|r| AccountMsg::DepositAndGet(1, r), None).await;
    let err = refused.expect_err("a stale save must fail, not be acknowledged");
    assert!(
        matches!(&err, Error::PersistFailed { cause: PersistError::Store(e), .. } if e.is_conflict()),
        "{err:?}"
    );
    // Messages sent behind it are handled by a fresh activation, from the new owner's state.
    a.cast(AccountMsg::Deposit(10)).expect("cast");
    let balance = a.call(AccountMsg::Balance, None).await.expect("balance");
    assert_eq!(balance, 110);
    let stats = om.stats();
    assert_eq!(stats.handler_failures, 1, "the stale activation stopped");
    assert_eq!(stats.activations, 2);
    om.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_activation_cannot_save_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    stale_activation_is_fenced(Arc::new(SledStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_activation_cannot_save_on_postgres() {
    let pg = Postgres::start();
    let store = PostgresStore::connect(&pg.url(), 4).await.unwrap();
    stale_activation_is_fenced(Arc::new(store)).await;
}
