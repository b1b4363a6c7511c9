//! The single-node lifecycle on a real sled store: activation on demand, persistence after
//! every message, replies gated on storage, handler failures, unreadable records.

use std::{sync::Arc, time::Duration};

use overmind_core::{
    ActorKey, StateStore, Version,
    codec::{self, Record},
    store::{BoxFuture, SledStore, StoreError, Stored},
};
use overmind_ractor::{ActivationError, Error, Overmind, SendError};
use overmind_tests::accounts::{Account, AccountActor, AccountMsg};
use tokio::sync::{Notify, Semaphore};

async fn start(dir: &std::path::Path) -> Overmind {
    Overmind::builder()
        .data_dir(dir)
        .register::<AccountActor>()
        .spawn()
        .await
        .expect("overmind starts")
}

async fn balance(om: &Overmind, id: &str) -> i64 {
    om.actor::<AccountActor>(id)
        .call(AccountMsg::Balance, None)
        .await
        .expect("balance")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_passivation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let om = start(dir.path()).await;
    let alice = om.actor::<AccountActor>("alice");
    alice.cast(AccountMsg::Deposit(10)).unwrap();
    assert_eq!(
        alice
            .call(|r| AccountMsg::DepositAndGet(5, r), None)
            .await
            .unwrap(),
        15
    );
    assert_eq!(
        om.stats().activations,
        1,
        "one activation serves both messages"
    );
    om.shutdown().await.unwrap();

    let om = start(dir.path()).await;
    assert_eq!(
        balance(&om, "alice").await,
        15,
        "state continues after a restart"
    );
    assert_eq!(
        balance(&om, "bob").await,
        0,
        "a new id starts from the default"
    );
    let stats = om.stats();
    assert_eq!(stats.activations, 2);
    assert_eq!(
        stats.writes, 0,
        "reads write nothing, not even for a new id"
    );
    om.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_state_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let om = start(dir.path()).await;
    let a = om.actor::<AccountActor>("a");
    a.call(|r| AccountMsg::DepositAndGet(1, r), None)
        .await
        .unwrap();
    for _ in 0..10 {
        a.call(AccountMsg::Balance, None).await.unwrap();
    }
    let stats = om.stats();
    assert_eq!((stats.writes, stats.skipped_writes), (1, 10));
    om.shutdown().await.unwrap();
}

/// A sled store whose saves wait for a permit, so a test can hold a save in flight.
struct HeldStore {
    inner: SledStore,
    save_started: Notify,
    permits: Semaphore,
}

impl StateStore for HeldStore {
    fn name(&self) -> &'static str {
        "held-sled"
    }
    fn load<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
        self.inner.load(key)
    }
    fn save<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        Box::pin(async move {
            self.save_started.notify_one();
            self.permits.acquire().await.expect("open").forget();
            self.inner.save(key, expected, bytes).await
        })
    }
    fn delete<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.delete(key, expected)
    }
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.flush()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waits_until_its_state_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HeldStore {
        inner: SledStore::open(dir.path()).unwrap(),
        save_started: Notify::new(),
        permits: Semaphore::new(0),
    });
    let om = Overmind::builder()
        .store(store.clone())
        .register::<AccountActor>()
        .spawn()
        .await
        .unwrap();
    let alice = om.actor::<AccountActor>("alice");
    let call = tokio::spawn({
        let alice = alice.clone();
        async move { alice.call(|r| AccountMsg::DepositAndGet(7, r), None).await }
    });
    // The handler has replied (it replies before returning) and the save has begun...
    store.save_started.notified().await;
    // ...but the caller hears nothing while the save is held. Give the reply every chance to
    // leak through before checking.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!call.is_finished(), "the reply must wait for the save");
    let key = ActorKey::new("account", "alice").unwrap();
    assert!(
        store.inner.load(&key).await.unwrap().is_none(),
        "nothing stored yet"
    );

    store.permits.add_permits(1);
    assert_eq!(call.await.unwrap().unwrap(), 7);
    let stored = store.inner.load(&key).await.unwrap().expect("stored");
    let record = Record::decode_for(&stored.bytes, "account").unwrap();
    assert_eq!(
        codec::decode_state::<Account>(&record.payload.expect("a state").bytes)
            .unwrap()
            .balance,
        7
    );

    // A reply sent later from a spawned task (no handler running) is released at once.
    assert_eq!(alice.call(AccountMsg::BalanceLater, None).await.unwrap(), 7);
    // A handler that drops its port yields a typed error, not a hang.
    assert!(matches!(
        alice.call(AccountMsg::Ignore, None).await,
        Err(Error::NoReply { .. })
    ));
    store.permits.add_permits(100);
    om.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_first_messages_make_one_activation_and_keep_each_senders_order() {
    let dir = tempfile::tempdir().unwrap();
    let om = start(dir.path()).await;
    const SENDERS: i64 = 1000;
    const EACH: i64 = 3;
    let start = Arc::new(tokio::sync::Barrier::new(SENDERS as usize));
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let handle = om.actor::<AccountActor>("hot");
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for seq in 0..EACH {
                handle
                    .cast(AccountMsg::Deposit(sender * 100 + seq))
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let history = om
        .actor::<AccountActor>("hot")
        .call(AccountMsg::History, None)
        .await
        .unwrap();
    assert_eq!(om.stats().activations, 1, "exactly one activation");
    assert_eq!(history.len() as i64, SENDERS * EACH, "no message lost");
    for sender in 0..SENDERS {
        let mine: Vec<i64> = history
            .iter()
            .copied()
            .filter(|v| v / 100 == sender)
            .collect();
        let expected: Vec<i64> = (0..EACH).map(|seq| sender * 100 + seq).collect();
        assert_eq!(mine, expected, "sender {sender}'s messages out of order");
    }
    om.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handler_stores_nothing_and_the_next_message_sees_the_last_stored_state() {
    let dir = tempfile::tempdir().unwrap();
    let om = start(dir.path()).await;
    let a = om.actor::<AccountActor>("a");
    a.call(|r| AccountMsg::DepositAndGet(100, r), None)
        .await
        .unwrap();

    // The handler replied 150 and then failed: the caller gets the failure, not 150.
    let err = a
        .call(|r| AccountMsg::DepositThenFail(50, r), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::HandlerFailed { key, .. } if key.id() == "a"),
        "{err}"
    );
    assert!(err.to_string().contains("refusing after the fact"), "{err}");
    assert_eq!(balance(&om, "a").await, 100);

    // A panic: the messages queued behind it are handed to the next activation, in order.
    a.cast(AccountMsg::DepositThenPanic(1000)).unwrap();
    for _ in 0..50 {
        a.cast(AccountMsg::Deposit(1)).unwrap();
    }
    assert_eq!(balance(&om, "a").await, 150);
    let stats = om.stats();
    assert_eq!(stats.handler_failures, 2);
    assert_eq!(
        stats.activations, 3,
        "each failure restarts the activation from storage"
    );
    om.shutdown().await.unwrap();

    let om = start(dir.path()).await;
    assert_eq!(
        balance(&om, "a").await,
        150,
        "what was stored is what survives"
    );
    om.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_fails_activation_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let garbage = ActorKey::new("account", "garbage").unwrap();
    let wrong_type = ActorKey::new("account", "wrong-type").unwrap();
    store
        .save(&garbage, Version::ABSENT, b"not a record")
        .await
        .unwrap();
    let not_an_account = Record {
        kind: "account".into(),
        lease: None,
        payload: Some(codec::Payload {
            schema: codec::SchemaId::LEGACY,
            bytes: codec::encode_state(&"a string, not an Account").unwrap(),
        }),
        applied: Vec::new(),
    };
    store
        .save(&wrong_type, Version::ABSENT, &not_an_account.encode())
        .await
        .unwrap();
    let before = (
        store.load(&garbage).await.unwrap(),
        store.load(&wrong_type).await.unwrap(),
    );

    let om = Overmind::builder()
        .store(store.clone())
        .register::<AccountActor>()
        .spawn()
        .await
        .unwrap();
    let err = om
        .actor::<AccountActor>("garbage")
        .call(AccountMsg::Balance, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ActivationFailed { key, cause: ActivationError::CorruptRecord(_) } if *key == garbage),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("account/garbage"),
        "the error names the actor: {err}"
    );
    let err = om
        .actor::<AccountActor>("wrong-type")
        .call(|r| AccountMsg::DepositAndGet(1, r), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ActivationFailed {
                cause: ActivationError::UndecodableState(_),
                ..
            }
        ),
        "{err:?}"
    );
    // Casts are accepted, then fail at activation without touching the record.
    om.actor::<AccountActor>("garbage")
        .cast(AccountMsg::Deposit(1))
        .unwrap();
    assert_eq!(
        balance(&om, "healthy").await,
        0,
        "other actors are unaffected"
    );
    om.shutdown().await.unwrap();
    let after = (
        store.load(&garbage).await.unwrap(),
        store.load(&wrong_type).await.unwrap(),
    );
    assert_eq!(
        before, after,
        "unreadable records are never overwritten or deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let om = Overmind::builder()
        .data_dir(dir.path())
        .spawn()
        .await
        .unwrap();
    let err = om
        .actor::<AccountActor>("x")
        .cast(AccountMsg::Deposit(1))
        .unwrap_err();
    assert!(
        matches!(
            err.error,
            Error::NotRegistered {
                kind: "account",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(".register::<"),
        "says how to fix it: {err}"
    );
    assert!(
        matches!(err.message, AccountMsg::Deposit(1)),
        "the message is handed back"
    );

    // The directory is locked by the running instance.
    let second = Overmind::builder()
        .data_dir(dir.path())
        .spawn()
        .await
        .unwrap_err();
    assert!(
        second.to_string().contains("in use by another process"),
        "{second}"
    );
    om.shutdown().await.unwrap();

    let om = start(dir.path()).await;
    let err = om
        .actor::<AccountActor>("")
        .call(AccountMsg::Balance, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the id is empty"), "{err}");
    om.shutdown().await.unwrap();
    let SendError { error, .. } = om
        .actor::<AccountActor>("late")
        .cast(AccountMsg::Deposit(1))
        .unwrap_err();
    assert!(matches!(error, Error::ShuttingDown { .. }), "{error}");

    let none = Overmind::builder()
        .register::<AccountActor>()
        .spawn()
        .await
        .unwrap_err();
    assert!(none.to_string().contains("data_dir"), "{none}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_is_an_unknown_outcome_not_a_lost_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HeldStore {
        inner: SledStore::open(dir.path()).unwrap(),
        save_started: Notify::new(),
        permits: Semaphore::new(0),
    });
    let om = Overmind::builder()
        .store(store.clone())
        .register::<AccountActor>()
        .spawn()
        .await
        .unwrap();
    let slow = om.actor::<AccountActor>("slow");
    // The save is held, so the reply cannot arrive in time.
    let err = slow
        .call(
            |r| AccountMsg::DepositAndGet(3, r),
            Some(Duration::from_millis(20)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { key, .. } if key.id() == "slow"),
        "{err}"
    );
    store.permits.add_permits(1);
    assert_eq!(
        balance(&om, "slow").await,
        3,
        "the message was still handled and stored"
    );
    store.permits.add_permits(100);
    om.shutdown().await.unwrap();
}

/// A parent in the application's own tree, for `spawn_linked`.
struct Parent;

impl ractor::Actor for Parent {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ractor::ActorRef<()>,
        _: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_parent_supervisor_is_a_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..25 {
        let (parent, parent_ended) = ractor::Actor::spawn(None, Parent, ()).await.unwrap();
        let om = Overmind::builder()
            .data_dir(dir.path())
            .register::<AccountActor>()
            .spawn_linked(parent.get_cell())
            .await
            .expect("overmind starts");
        let id = format!("acct-{round}");
        let actor = om.actor::<AccountActor>(&id);
        for _ in 0..5 {
            actor.cast(AccountMsg::Deposit(1)).unwrap();
        }
        // ractor kills a stopped actor's whole subtree at once; Overmind must notice on its
        // own, handle and store every message it accepted, and refuse new ones.
        parent.stop(None);
        parent_ended.await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match actor.call(AccountMsg::Balance, None).await {
                Err(Error::ShuttingDown { .. }) => break,
                Ok(balance) => assert!(balance <= 5, "round {round}: balance {balance}"),
                Err(other) => panic!("round {round}: {other}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: Overmind did not shut down after its parent stopped"
            );
            tokio::task::yield_now().await;
        }
        // Without anyone calling `shutdown`, the store is flushed and released.
        let reopened = loop {
            match Overmind::builder()
                .data_dir(dir.path())
                .register::<AccountActor>()
                .spawn()
                .await
            {
                Ok(om) => break om,
                Err(e) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {round}: the data directory was not released: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            balance(&reopened, &id).await,
            5,
            "round {round}: every accepted cast was stored"
        );
        // The shutdown the parent started is the one `shutdown` reports.
        om.shutdown().await.unwrap();
        drop(om);
        reopened.shutdown().await.unwrap();
    }
}

/// A parent that reports the names of its children as they end.
struct Watching;

impl ractor::Actor for Watching {
    type Msg = ();
    type State = tokio::sync::mpsc::UnboundedSender<Option<String>>;
    type Arguments = tokio::sync::mpsc::UnboundedSender<Option<String>>;

    async fn pre_start(
        &self,
        _: ractor::ActorRef<()>,
        ended: Self::Arguments,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(ended)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ractor::ActorRef<()>,
        event: ractor::SupervisionEvent,
        ended: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        if let ractor::SupervisionEvent::ActorTerminated(cell, ..) = event {
            let _ = ended.send(cell.get_name());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_is_named_in_its_parents_supervision_events() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let (parent, _) = ractor::Actor::spawn(None, Watching, tx).await.unwrap();
    let om = Overmind::builder()
        .data_dir(dir.path())
        .register::<AccountActor>()
        .spawn_linked(parent.get_cell())
        .await
        .expect("overmind starts");
    let name = om
        .supervisor()
        .get_name()
        .expect("the supervisor has a name");
    assert!(
        name.starts_with(overmind_ractor::SUPERVISOR_NAME_PREFIX),
        "{name}"
    );
    om.shutdown().await.unwrap();
    let reported = tokio::time::timeout(Duration::from_secs(30), ended.recv())
        .await
        .expect("the parent heard of the supervisor's end");
    assert_eq!(reported, Some(Some(name)));
    parent.stop(None);
}
