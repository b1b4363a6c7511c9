//! Passivation and shutdown, on tokio's paused clock where timers matter.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use overmind_ractor::{
    Error, Overmind,
    prelude::*,
    ractor::{ActorProcessingErr, ActorRef, RpcReplyPort},
};
use overmind_tests::accounts::{AccountActor, AccountMsg};
use tokio::sync::{Notify, Semaphore};

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_actor_passivates_and_the_next_message_reactivates_it() {
    let dir = tempfile::tempdir().unwrap();
    let om = Overmind::builder()
        .data_dir(dir.path())
        .register::<AccountActor>()
        .spawn()
        .await
        .unwrap();
    let alice = om.actor::<AccountActor>("alice");
    alice
        .call(|r| AccountMsg::DepositAndGet(10, r), None)
        .await
        .unwrap();
    assert_eq!(om.stats().active, 1);

    // Not yet: 4 of the 5 idle minutes.
    tokio::time::sleep(Duration::from_secs(4 * 60)).await;
    assert_eq!((om.stats().active, om.stats().passivations), (1, 0));
    // Activity resets the clock.
    alice.call(AccountMsg::Balance, None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4 * 60)).await;
    assert_eq!(
        om.stats().passivations,
        0,
        "a read in between keeps it active"
    );

    tokio::time::sleep(Duration::from_secs(61)).await;
    let stats = om.stats();
    assert_eq!(
        (stats.active, stats.passivations),
        (0, 1),
        "stopped after 5 idle minutes"
    );

    assert_eq!(
        alice.call(AccountMsg::Balance, None).await.unwrap(),
        10,
        "reactivated from storage"
    );
    assert_eq!(om.stats().activations, 2);
    om.shutdown().await.unwrap();
}

/// An actor whose passivation can be held at post_stop by the test.
struct Held {
    stopping: Arc<Notify>,
    release: Arc<Semaphore>,
}

#[derive(VirtualMessage)]
enum HeldMsg {
    Add(i64),
    Get(RpcReplyPort<i64>),
}

#[virtual_actor(kind = "held", passivate_after = "1m")]
impl Actor for Held {
    type Msg = HeldMsg;
    type State = i64;

    async fn handle(
        &self,
        _: ActorRef<HeldMsg>,
        msg: HeldMsg,
        n: &mut i64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HeldMsg::Add(k) => *n += k,
            HeldMsg::Get(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<HeldMsg>, _: &mut i64) -> Result<(), ActorProcessingErr> {
        self.stopping.notify_one();
        self.release.acquire().await?.forget();
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn messages_sent_while_an_activation_stops_go_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let stopping = Arc::new(Notify::new());
    let release = Arc::new(Semaphore::new(0));
    let om = Overmind::builder()
        .data_dir(dir.path())
        .register_with({
            let (stopping, release) = (stopping.clone(), release.clone());
            move |_| Held {
                stopping: stopping.clone(),
                release: release.clone(),
            }
        })
        .spawn()
        .await
        .unwrap();
    let h = om.actor::<Held>("h");
    h.cast(HeldMsg::Add(1)).unwrap();
    assert_eq!(h.call(HeldMsg::Get, None).await.unwrap(), 1);

    // Passivation begins and is held inside post_stop.
    stopping.notified().await;
    assert_eq!(om.stats().passivations, 1);
    for _ in 0..10 {
        h.cast(HeldMsg::Add(1)).unwrap();
    }
    let get = tokio::spawn({
        let h = h.clone();
        async move { h.call(HeldMsg::Get, None).await }
    });
    release.add_permits(1);
    assert_eq!(
        get.await.unwrap().unwrap(),
        11,
        "nothing sent during the stop was dropped"
    );
    assert_eq!(om.stats().activations, 2);

    release.add_permits(10);
    om.shutdown().await.unwrap();
}

#[derive(VirtualMessage)]
struct Ping;

#[virtual_actor(kind = "forever", passivate_after = "never")]
impl Actor for Forever {
    type Msg = Ping;
    type State = u8;
    async fn handle(
        &self,
        _: ActorRef<Ping>,
        _: Ping,
        _: &mut u8,
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}
#[derive(Default)]
struct Forever;

#[tokio::test(start_paused = true)]
async fn never_means_never() {
    let dir = tempfile::tempdir().unwrap();
    let om = Overmind::builder()
        .data_dir(dir.path())
        .register::<Forever>()
        .spawn()
        .await
        .unwrap();
    om.actor::<Forever>("f").cast(Ping).unwrap();
    wait_for("activation", || om.stats().active == 1).await;
    tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
    assert_eq!((om.stats().active, om.stats().passivations), (1, 0));
    om.shutdown().await.unwrap();
    assert_eq!(om.stats().active, 0, "shutdown stops it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_messages_in_flight_loses_no_accepted_message() {
    let dir = tempfile::tempdir().unwrap();
    let om = Overmind::builder()
        .data_dir(dir.path())
        .register::<AccountActor>()
        .spawn()
        .await
        .unwrap();
    const ACTORS: usize = 10;
    const WORKERS: usize = 40;
    // Per actor: increments acknowledged by calls, plus casts accepted.
    let counted: Arc<Vec<AtomicI64>> = Arc::new((0..ACTORS).map(|_| AtomicI64::new(0)).collect());
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (om, counted) = (om.clone(), counted.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            loop {
                let a = i % ACTORS;
                let handle = om.actor::<AccountActor>(format!("acct-{a}"));
                let accepted = if i % 3 == 0 {
                    handle.cast(AccountMsg::Deposit(1)).map_err(Error::from)
                } else {
                    handle
                        .call(|r| AccountMsg::DepositAndGet(1, r), None)
                        .await
                        .map(drop)
                };
                match accepted {
                    Ok(()) => {
                        counted[a].fetch_add(1, Ordering::SeqCst);
                    }
                    Err(Error::ShuttingDown { .. }) => return,
                    Err(e) => panic!("unexpected error: {e}"),
                }
                i += WORKERS;
            }
        }));
    }
    wait_for("load", || {
        counted
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum::<i64>()
            >= 2_000
    })
    .await;
    om.shutdown().await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let stats = om.stats();
    assert_eq!(stats.active, 0, "every activation stopped");

    let om = Overmind::builder()
        .data_dir(dir.path())
        .register::<AccountActor>()
        .spawn()
        .await
        .unwrap();
    for a in 0..ACTORS {
        let b = om
            .actor::<AccountActor>(format!("acct-{a}"))
            .call(AccountMsg::Balance, None)
            .await
            .unwrap();
        assert_eq!(
            b,
            counted[a].load(Ordering::SeqCst),
            "acct-{a}: accepted = stored"
        );
    }
    om.shutdown().await.unwrap();
}
