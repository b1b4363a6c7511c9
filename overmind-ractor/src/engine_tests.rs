//! The engine's rules with no cluster: a placement that says an actor lives elsewhere, and a
//! fake [`Elsewhere`] that records what the engine hands it. (Built without ractor's `cluster`
//! feature, where any type is a ractor message.)

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use overmind_core::{
    ActorKey,
    codec::Lease,
    membership::{Member, NodeView},
    migration::KindSchema,
    store::MemoryStore,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;

use crate::{
    Activation, Error, VirtualActor, VirtualRef,
    engine::{
        distribution::{Elsewhere, NotSent, Outcome},
        placement::{Decision, Placement},
        registry::Kind,
        reply::{CallMeta, Settle},
        runtime::Runtime,
        slot::Deletion,
    },
};

#[derive(Debug)]
enum CounterMsg {
    Add(u64),
    Get(RpcReplyPort<u64>),
}

struct Counter;

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = u64;
    type Arguments = Activation<u64>;

    async fn pre_start(
        &self,
        _: ActorRef<CounterMsg>,
        activation: Activation<u64>,
    ) -> Result<u64, ActorProcessingErr> {
        Ok(activation.into_state_or_default())
    }

    async fn handle(
        &self,
        _: ActorRef<CounterMsg>,
        msg: CounterMsg,
        state: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Add(n) => *state += n,
            CounterMsg::Get(reply) => {
                let _ = reply.send(*state);
            }
        }
        Ok(())
    }
}

impl VirtualActor for Counter {
    type PersistedState = u64;
    const KIND: &'static str = "counter";
}

/// Every actor lives on node `far`.
struct Away {
    changes: watch::Sender<u64>,
}

fn far() -> Member {
    Member {
        id: 2,
        name: "far".into(),
        addr: "127.0.0.1:1".into(),
    }
}

impl Placement for Away {
    fn node(&self) -> &str {
        "near"
    }
    fn epoch(&self) -> u64 {
        1
    }
    fn view(&self) -> Option<NodeView> {
        None
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
    fn unavailable_after(&self) -> Duration {
        Duration::from_secs(30)
    }
    fn distributed(&self) -> bool {
        true
    }
    fn owner(&self, _: &str) -> Option<String> {
        Some(far().name)
    }
    fn new_lease(&self, _: u64, _: u64) -> Option<Lease> {
        None
    }
    fn next_activation(&self) -> u64 {
        0
    }
    fn lease_ended(&self, _: u64) -> Option<std::time::Instant> {
        None
    }
    fn serving(&self) -> bool {
        true
    }
    fn serving_as(&self, _: u64) -> bool {
        true
    }
    fn remote_owner_by_hash(&self, _: u64) -> Option<Member> {
        Some(far())
    }
    fn decide(&self, _: &str) -> Decision {
        Decision::Elsewhere(far())
    }
    fn holds_here(&self, _: &str, _: u64) -> bool {
        false
    }
}

/// What the fake remote node received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Received {
    Add(u64),
    Get,
    Delete,
}

/// Plays the owner's node: records each message and answers a `Get` with 42, or refuses
/// everything.
struct FakeNode {
    received: Mutex<Vec<(String, Received)>>,
    refuse: bool,
}

impl Elsewhere<CounterMsg> for FakeNode {
    fn send(
        &self,
        key: &ActorKey,
        owner: &Member,
        msg: CounterMsg,
        _relay: Option<Arc<dyn Settle>>,
        _meta: &CallMeta,
    ) -> Result<Option<Outcome>, NotSent<CounterMsg>> {
        assert_eq!(owner.name, "far");
        if self.refuse {
            return Err(NotSent::Refused(crate::SendError {
                message: msg,
                error: Error::Unavailable {
                    key: key.clone(),
                    reason: "refused by the fake node".into(),
                },
            }));
        }
        let mut received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        match msg {
            CounterMsg::Add(n) => {
                received.push((key.id().to_owned(), Received::Add(n)));
                Ok(None)
            }
            CounterMsg::Get(reply) => {
                received.push((key.id().to_owned(), Received::Get));
                let (done, outcome) = tokio::sync::oneshot::channel();
                let _ = done.send(
                    reply
                        .send(42)
                        .map_err(|_| Error::NoReply { key: key.clone() }),
                );
                Ok(Some(outcome))
            }
        }
    }

    fn delete(&self, key: &ActorKey, _: &Member, done: Deletion) {
        let mut received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        received.push((key.id().to_owned(), Received::Delete));
        let _ = done.send(Ok(()));
    }
}

fn kind_away() -> Arc<Kind<Counter>> {
    let placement = Arc::new(Away {
        changes: watch::channel(0).0,
    });
    let rt = Arc::new(Runtime::new(
        placement,
        Arc::new(MemoryStore::new()),
        false,
        tokio::runtime::Handle::current(),
        None,
    ));
    let schema = KindSchema::new(Counter::KIND, 1, Counter::migrations()).expect("a u64 schema");
    Arc::new(Kind::new(rt, schema, Box::new(|_| Counter)))
}

fn key(id: &str) -> ActorKey {
    ActorKey::new(Counter::KIND, id).expect("a valid id")
}

fn node(refuse: bool) -> Arc<FakeNode> {
    Arc::new(FakeNode {
        received: Mutex::new(Vec::new()),
        refuse,
    })
}

fn received(node: &FakeNode) -> Vec<(String, Received)> {
    node.received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

#[tokio::test]
async fn a_slot_whose_actor_lives_elsewhere_forwards_what_it_held_in_order() {
    let kind = kind_away();
    let fake = node(false);
    kind.connect(fake.clone());
    // A handle straight to the local slot: the lifecycle, not the handle, finds the owner.
    let actor = VirtualRef::local(kind.slot(key("a")));
    for n in 1..=3 {
        actor.cast(CounterMsg::Add(n)).expect("accepted");
    }
    let got = actor
        .call(CounterMsg::Get, Some(Duration::from_secs(10)))
        .await;
    assert_eq!(got.expect("the owner's reply"), 42);
    actor.delete().await.expect("deleted by the owner");
    let a = |r| ("a".to_owned(), r);
    assert_eq!(
        received(&fake),
        vec![
            a(Received::Add(1)),
            a(Received::Add(2)),
            a(Received::Add(3)),
            a(Received::Get),
            a(Received::Delete),
        ]
    );
}

#[tokio::test]
async fn a_call_the_owner_refuses_fails_with_its_error() {
    let kind = kind_away();
    kind.connect(node(true));
    let actor = VirtualRef::local(kind.slot(key("b")));
    let got = actor
        .call(CounterMsg::Get, Some(Duration::from_secs(10)))
        .await;
    match got {
        Err(Error::Unavailable { reason, .. }) => assert!(reason.contains("refused"), "{reason}"),
        other => panic!("expected the owner's refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn before_the_node_is_connected_a_routed_message_comes_back() {
    let kind = kind_away();
    let actor = VirtualRef::<Counter>::routed(kind.clone(), key("c"));
    let refused = actor
        .cast(CounterMsg::Add(7))
        .expect_err("no way to the owner yet");
    assert!(matches!(refused.message, CounterMsg::Add(7)));
    assert!(
        refused.error.to_string().contains("not connected"),
        "{}",
        refused.error
    );
    // Held by a slot, the message fails the same way once the lifecycle finds the owner.
    let held = VirtualRef::local(kind.slot(key("c")));
    match held
        .call(CounterMsg::Get, Some(Duration::from_secs(10)))
        .await
    {
        Err(Error::Unavailable { reason, .. }) => {
            assert!(reason.contains("not connected"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Once connected, the routed handle reaches the owner directly.
    let fake = node(false);
    kind.connect(fake.clone());
    actor.cast(CounterMsg::Add(7)).expect("sent");
    assert_eq!(received(&fake), vec![("c".to_owned(), Received::Add(7))]);
}
