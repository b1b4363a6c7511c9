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
        payload: Some(codec::Payload {
            schema: codec::SchemaId::LEGACY,
            bytes: codec::encode_state(&state).expect("encode"),
        }),
        applied: Vec::new(),
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

/// Issue 8: a flipped byte in a stored lease's epoch was not reported as damage (the checksum
/// covered only the payload), and the actor was locked out for good under an epoch nobody
/// held. The record's checksum now covers its header: the activation fails with a
/// `CorruptRecord` error naming the actor, and the record is kept byte for byte. Records in
/// the earlier formats still read, and are rewritten in the current one on the next save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_lease_is_reported_as_damage_and_older_formats_still_read() {
    use overmind_core::codec::RecordError;
    use overmind_ractor::ActivationError;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let record = |balance: i64| Record {
        kind: "account".into(),
        lease: Some(Lease {
            epoch: 9,
            node: "node-a".into(),
            activation: 1,
        }),
        payload: Some(codec::Payload {
            schema: codec::SchemaId::LEGACY,
            bytes: codec::encode_state(&Account {
                balance,
                history: vec![],
            })
            .expect("encode"),
        }),
        applied: Vec::new(),
    };
    let mut damaged = record(5).encode();
    // The lease epoch's lowest byte: magic 4, format 2, kind length 1, "account" 7, tag 1.
    damaged[4 + 2 + 1 + 7 + 1] ^= 0x40;
    let key = |id: &str| ActorKey::new("account", id).expect("a valid key");
    store
        .save(&key("damaged"), overmind_core::Version::ABSENT, &damaged)
        .await
        .unwrap();
    for (id, format) in [("format-1", 1), ("format-2", 2)] {
        let old = overmind_tests::fuzz::encode_old_record(&record(7), format);
        store
            .save(&key(id), overmind_core::Version::ABSENT, &old)
            .await
            .unwrap();
    }

    let om = Overmind::builder()
        .store(store.clone())
        .register::<AccountActor>()
        .spawn()
        .await
        .expect("start");
    let err = om
        .actor::<AccountActor>("damaged")
        .call(AccountMsg::Balance, None)
        .await
        .expect_err("a damaged record is not served");
    assert!(
        matches!(
            &err,
            Error::ActivationFailed { key: k, cause: ActivationError::CorruptRecord(RecordError::Checksum { .. }) }
                if *k == key("damaged")
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("account/damaged")
            && err.to_string().contains("checksum mismatch"),
        "the error names the actor and says the record is damaged: {err}"
    );
    for id in ["format-1", "format-2"] {
        let a = om.actor::<AccountActor>(id);
        assert_eq!(a.call(AccountMsg::Balance, None).await.expect(id), 7);
        let after = a.call(|r| AccountMsg::DepositAndGet(1, r), None).await;
        assert_eq!(after.expect(id), 8);
    }
    om.shutdown().await.expect("shutdown");

    let kept = store.load(&key("damaged")).await.unwrap().expect("kept");
    assert_eq!(
        kept.bytes, damaged,
        "the damaged record is kept byte for byte"
    );
    for id in ["format-1", "format-2"] {
        let stored = store.load(&key(id)).await.unwrap().expect("stored");
        // Format 4: the newest a record without applied calls is written in.
        assert_eq!(
            u16::from_le_bytes([stored.bytes[4], stored.bytes[5]]),
            4,
            "{id} was rewritten in the current format"
        );
    }
}
