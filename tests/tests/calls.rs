//! Calls between virtual actors on one node: a call's timeout travels with it (a call still
//! queued when it passes is withdrawn and reported as not handled), a call that would wait
//! for itself is refused at once, a repeated idempotent call is applied once, and `myself`
//! keeps working as a ractor `ActorRef`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use overmind_ractor::{Error, Overmind, prelude::*};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// Fails the test instead of hanging when a call that should fail at once does not.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Hops {
    /// Messages handled that changed the state.
    handled: u32,
}

#[derive(VirtualMessage)]
enum HopMsg {
    /// Calls the first id of `path` with the rest of it, and replies with how many actors
    /// the chain went through (or the error a call in it met).
    Via(Vec<String>, RpcReplyPort<Result<u32, String>>),
    /// Counts, then waits for a permit from the test.
    Hold(RpcReplyPort<u32>),
    /// Counts.
    Touch(RpcReplyPort<u32>),
    /// Counts; a cast.
    Bump,
    /// Replies with the count.
    Count(RpcReplyPort<u32>),
    /// Counts, without replying before the handler returns.
    TouchReplyLater(RpcReplyPort<u32>),
    /// Stops `myself` from the handler.
    StopMyself(RpcReplyPort<u32>),
    /// Sends `Touch` to `myself`, replying through the test's port when it is handled.
    TouchViaMyself(RpcReplyPort<u32>),
}

struct Hopper {
    overmind: Overmind,
    held: Arc<Semaphore>,
    starts: Arc<AtomicUsize>,
}

#[virtual_actor(kind = "hop", remembered_calls = 3)]
impl Actor for Hopper {
    type Msg = HopMsg;
    type State = Hops;

    async fn pre_start(
        &self,
        _myself: ActorRef<HopMsg>,
        activation: Activation<Hops>,
    ) -> Result<Hops, ActorProcessingErr> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(activation.into_state_or_default())
    }

    async fn handle(
        &self,
        myself: ActorRef<HopMsg>,
        msg: HopMsg,
        hops: &mut Hops,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HopMsg::Via(mut path, reply) => {
                let result = if path.is_empty() {
                    Ok(1)
                } else {
                    let next = path.remove(0);
                    let called = self
                        .overmind
                        .actor::<Hopper>(&next)
                        .call(|r| HopMsg::Via(path, r), None)
                        .await;
                    match called {
                        Ok(Ok(n)) => Ok(n + 1),
                        Ok(Err(e)) => Err(e),
                        Err(e @ Error::CallCycle { .. }) => Err(format!("cycle: {e}")),
                        Err(e) => Err(format!("other: {e}")),
                    }
                };
                let _ = reply.send(result);
            }
            HopMsg::Hold(reply) => {
                hops.handled += 1;
                self.held.acquire().await?.forget();
                let _ = reply.send(hops.handled);
            }
            HopMsg::Touch(reply) => {
                hops.handled += 1;
                let _ = reply.send(hops.handled);
            }
            HopMsg::Bump => hops.handled += 1,
            HopMsg::Count(reply) => {
                let _ = reply.send(hops.handled);
            }
            HopMsg::TouchReplyLater(reply) => {
                hops.handled += 1;
                let handled = hops.handled;
                tokio::spawn(async move {
                    let _ = reply.send(handled);
                });
            }
            HopMsg::StopMyself(reply) => {
                hops.handled += 1;
                let _ = reply.send(hops.handled);
                myself.stop(None);
            }
            HopMsg::TouchViaMyself(reply) => {
                myself.cast(HopMsg::Touch(reply))?;
            }
        }
        Ok(())
    }
}

struct Fixture {
    overmind: Overmind,
    held: Arc<Semaphore>,
    starts: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    start_in(tempfile::tempdir().expect("a temporary directory")).await
}

async fn start_in(dir: tempfile::TempDir) -> Fixture {
    let held = Arc::new(Semaphore::new(0));
    let starts = Arc::new(AtomicUsize::new(0));
    let (h, s) = (held.clone(), starts.clone());
    let overmind = Overmind::builder()
        .data_dir(dir.path())
        .register_with(move |overmind| Hopper {
            overmind: overmind.clone(),
            held: h.clone(),
            starts: s.clone(),
        })
        .spawn()
        .await
        .expect("overmind starts");
    Fixture {
        overmind,
        held,
        starts,
        _dir: dir,
    }
}

async fn via(f: &Fixture, first: &str, path: &[&str]) -> Result<u32, String> {
    let path = path.iter().map(|s| s.to_string()).collect();
    let actor = f.overmind.actor::<Hopper>(first);
    let call = actor.call(|r| HopMsg::Via(path, r), None);
    tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the chain answers instead of waiting for ever")
        .expect("the first call is answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_would_wait_for_itself_is_refused_at_once() {
    let f = start().await;
    assert_eq!(
        via(&f, "a", &["b", "c"]).await,
        Ok(3),
        "a chain without a cycle"
    );
    for (first, path, called) in [
        ("a", &["a"][..], "hop/a"),
        ("a", &["b", "a"], "hop/a"),
        ("a", &["b", "c", "b"], "hop/b"),
    ] {
        let error = via(&f, first, path).await.unwrap_err();
        assert!(
            error.starts_with("cycle: ")
                && error.contains(&format!("calling {called} would wait for itself")),
            "{first} → {path:?}: {error}"
        );
    }
    // The actors in the refused chains serve on.
    assert_eq!(via(&f, "b", &["a"]).await, Ok(2));
    f.overmind.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_timeout_passes_in_the_queue_is_withdrawn_not_handled() {
    let f = start().await;
    let actor = f.overmind.actor::<Hopper>("q");
    let holding = tokio::spawn({
        let actor = actor.clone();
        async move { actor.call(HopMsg::Hold, None).await }
    });
    // The held handler has started once the permit is awaited: wait for it to be counted.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while f.starts.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the actor never started"
        );
        tokio::task::yield_now().await;
    }
    // Queued behind the held handler, it cannot start within its timeout.
    let queued = actor
        .call(HopMsg::Touch, Some(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(
        matches!(&queued, Error::Expired { key, timeout } if key.id() == "q" && *timeout == Duration::from_millis(50)),
        "{queued}"
    );
    assert!(!queued.may_have_taken_effect(), "{queued}");
    f.held.add_permits(1);
    assert_eq!(holding.await.unwrap().unwrap(), 1);
    assert_eq!(
        actor.call(HopMsg::Touch, None).await.unwrap(),
        2,
        "the withdrawn call was never handled"
    );
    f.held.add_permits(100);
    f.overmind.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_handler_started_in_time_but_ran_long_is_an_unknown_outcome() {
    let f = start().await;
    let actor = f.overmind.actor::<Hopper>("slow");
    let error = actor
        .call(HopMsg::Hold, Some(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::Timeout { .. }), "{error}");
    assert!(error.may_have_taken_effect());
    f.held.add_permits(1);
    assert_eq!(
        actor.call(HopMsg::Touch, None).await.unwrap(),
        2,
        "the timed-out call was handled and stored"
    );
    f.held.add_permits(100);
    f.overmind.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn myself_is_an_actor_ref_that_sends_to_the_activation_and_can_stop_it() {
    let f = start().await;
    let actor = f.overmind.actor::<Hopper>("me");
    assert_eq!(actor.call(HopMsg::TouchViaMyself, None).await.unwrap(), 1);
    assert_eq!(actor.call(HopMsg::StopMyself, None).await.unwrap(), 2);
    // The next message starts a new activation from the stored state.
    assert_eq!(actor.call(HopMsg::Touch, None).await.unwrap(), 3);
    assert_eq!(
        f.starts.load(Ordering::SeqCst),
        2,
        "stopping myself ended the activation"
    );
    f.overmind.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotent_call_is_answered_with_its_first_reply_and_applied_once() {
    let f = start().await;
    let actor = f.overmind.actor::<Hopper>("once");
    let touch = |key: &'static str| actor.call_idempotent(key, HopMsg::Touch, None);
    assert_eq!(touch("k1").await.unwrap(), 1);
    assert_eq!(touch("k1").await.unwrap(), 1, "answered, not applied again");
    assert_eq!(touch("k2").await.unwrap(), 2);
    // Twenty repeats at once, of a key not seen yet: one effect, one answer for all.
    let repeats = futures::future::join_all((0..20).map(|_| touch("k3"))).await;
    assert!(
        repeats.iter().all(|r| r.as_ref().ok() == Some(&3)),
        "{repeats:?}"
    );
    assert_eq!(actor.call(HopMsg::Touch, None).await.unwrap(), 4);

    // The keys are stored with the state: they hold across a restart.
    f.overmind.shutdown().await.unwrap();
    let f = start_in(f._dir).await;
    let actor = f.overmind.actor::<Hopper>("once");
    let touch = |key: &'static str| actor.call_idempotent(key, HopMsg::Touch, None);
    assert_eq!(touch("k3").await.unwrap(), 3, "kept across the restart");
    // Only the last three (`remembered_calls = 3`) are kept: k4 pushes k1 out, so k1 applies.
    assert_eq!(touch("k4").await.unwrap(), 5);
    assert_eq!(
        touch("k1").await.unwrap(),
        6,
        "the oldest key was forgotten"
    );

    // A reply sent after the handler returned is not kept: a repeat says it was applied.
    assert_eq!(
        actor
            .call_idempotent("later", HopMsg::TouchReplyLater, None)
            .await
            .unwrap(),
        7
    );
    let repeat = actor
        .call_idempotent("later", HopMsg::TouchReplyLater, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&repeat, Error::ReplyNotSent { reason, .. } if reason.contains("already applied")),
        "{repeat}"
    );
    assert_eq!(actor.call(HopMsg::Touch, None).await.unwrap(), 8);

    let bad = actor
        .call_idempotent("", HopMsg::Touch, None)
        .await
        .unwrap_err();
    assert!(matches!(&bad, Error::InvalidIdempotencyKey { .. }), "{bad}");
    assert!(!bad.may_have_taken_effect());
    f.overmind.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_cast_is_stored_when_it_returns_and_applied_once() {
    let f = start().await;
    let actor = f.overmind.actor::<Hopper>("acked");
    actor
        .cast_acknowledged("bump-1", HopMsg::Bump, None)
        .await
        .unwrap();
    actor
        .cast_acknowledged("bump-1", HopMsg::Bump, None)
        .await
        .unwrap();
    assert_eq!(
        actor.call(HopMsg::Touch, None).await.unwrap(),
        2,
        "the repeat was not applied"
    );
    // In the background, until it is stored; a repeat of its key changes nothing.
    actor.cast_reliably("bump-2", || HopMsg::Bump).unwrap();
    actor.cast_reliably("bump-2", || HopMsg::Bump).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while actor.call(HopMsg::Count, None).await.unwrap() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bump-2 never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    actor
        .cast_acknowledged("bump-2", HopMsg::Bump, None)
        .await
        .unwrap();
    assert_eq!(actor.call(HopMsg::Count, None).await.unwrap(), 3);
    let bad = actor.cast_reliably("", || HopMsg::Bump).unwrap_err();
    assert!(matches!(bad, Error::InvalidIdempotencyKey { .. }), "{bad}");
    f.overmind.shutdown().await.unwrap();
}

/// A state whose `Serialize` panics on 13: the application's serde code, which Overmind runs
/// when it stores the state.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Fragile {
    #[serde(serialize_with = "unlucky")]
    value: u32,
}

fn unlucky<S: serde::Serializer>(value: &u32, s: S) -> Result<S::Ok, S::Error> {
    assert_ne!(*value, 13, "13 does not serialize");
    s.serialize_u32(*value)
}

#[derive(VirtualMessage)]
enum FragileMsg {
    Set(u32, RpcReplyPort<u32>),
}

#[derive(Default)]
struct FragileActor;

#[virtual_actor(kind = "fragile")]
impl Actor for FragileActor {
    type Msg = FragileMsg;
    type State = Fragile;

    async fn handle(
        &self,
        _myself: ActorRef<FragileMsg>,
        msg: FragileMsg,
        state: &mut Fragile,
    ) -> Result<(), ActorProcessingErr> {
        let FragileMsg::Set(value, reply) = msg;
        let before = state.value;
        state.value = value;
        let _ = reply.send(before);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_states_serialize_fails_the_save_and_the_actor_serves_on() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let overmind = Overmind::builder()
        .data_dir(dir.path())
        .register::<FragileActor>()
        .spawn()
        .await
        .unwrap();
    let actor = overmind.actor::<FragileActor>("f");
    assert_eq!(
        actor.call(|r| FragileMsg::Set(1, r), None).await.unwrap(),
        0
    );
    let failed = actor
        .call(|r| FragileMsg::Set(13, r), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, Error::PersistFailed { cause, .. } if cause.to_string().contains("13 does not serialize")),
        "{failed}"
    );
    let next = actor.call(|r| FragileMsg::Set(2, r), Some(PATIENCE));
    assert_eq!(
        next.await.unwrap(),
        1,
        "a new activation, from the stored state"
    );
    overmind.shutdown().await.unwrap();
}
