//! What makes a ractor actor virtual: the [`VirtualActor`] trait (written for you by
//! `#[virtual_actor]`) and the [`Activation`] its `pre_start` receives.

use std::time::Duration;

use overmind_core::ActorKey;
use ractor::Actor;
use serde::{Serialize, de::DeserializeOwned};

/// A ractor [`Actor`] that Overmind can activate by name, persist and passivate.
///
/// Implemented by `#[virtual_actor(kind = "...")]`; the actor's `State` must be serde
/// serializable and its `Arguments` are an [`Activation`] of that state.
pub trait VirtualActor:
    Actor<State = Self::PersistedState, Arguments = Activation<Self::PersistedState>>
{
    /// The actor's state: loaded on activation, stored after every message.
    type PersistedState: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The kind: the name this actor's state is stored under. Never change it for stored data.
    const KIND: &'static str;

    /// How long an activation may sit idle before it is stopped (its state is already stored).
    /// `None` keeps it until shutdown.
    const PASSIVATE_AFTER: Option<Duration> = Some(Duration::from_secs(600));

    /// The version of the state type (`state_version`; default 1). Raise it whenever
    /// `PersistedState`'s serde shape changes (a field or variant added, removed, renamed,
    /// retyped or moved; not a renamed Rust type or a `#[serde(skip)]` field), and add a
    /// migration from the old version: every stored state says which version wrote it, and
    /// a state is only read as that version's type.
    const STATE_VERSION: u32 = 1;

    /// How many idempotent calls an actor remembers (`remembered_calls`; default 128): a
    /// repeat of one of its most recent calls made with
    /// [`VirtualRef::call_idempotent`](crate::VirtualRef::call_idempotent) is answered with
    /// the first reply instead of being applied again. They are stored with the state, in
    /// the same write, so each one costs its key and its reply (up to 64 KiB) in every save;
    /// at most 4 MiB of keys and replies are kept, whatever the number.
    const REMEMBERED_CALLS: usize = 128;

    /// How states stored by older versions are read (`migrate_from` or `migrations`;
    /// default none).
    fn migrations() -> crate::Migrations<Self::PersistedState> {
        crate::Migrations::new()
    }
}

/// What a virtual actor's `pre_start` receives: its name and its stored state, if it has one.
#[derive(Debug)]
pub struct Activation<S> {
    key: ActorKey,
    stored: Option<S>,
}

impl<S> Activation<S> {
    /// An activation as Overmind would make it. Useful to spawn a virtual actor's type as a
    /// plain ractor actor in a unit test.
    pub fn new(key: ActorKey, stored: Option<S>) -> Self {
        Self { key, stored }
    }

    /// The actor's key.
    pub fn key(&self) -> &ActorKey {
        &self.key
    }

    /// The actor's id within its kind.
    pub fn id(&self) -> &str {
        self.key.id()
    }

    /// Whether nothing is stored for this actor yet.
    pub fn is_new(&self) -> bool {
        self.stored.is_none()
    }

    /// The stored state, if any.
    pub fn stored(&self) -> Option<&S> {
        self.stored.as_ref()
    }

    /// The stored state, or one made by `init` for a new actor.
    pub fn into_state_or_else(self, init: impl FnOnce(&ActorKey) -> S) -> S {
        match self.stored {
            Some(state) => state,
            None => init(&self.key),
        }
    }
}

impl<S: Default> Activation<S> {
    /// The stored state, or `S::default()` for a new actor.
    pub fn into_state_or_default(self) -> S {
        self.stored.unwrap_or_default()
    }
}

/// An activation started or stopped serving (see `OvermindBuilder::on_activation`).
#[derive(Debug, Clone)]
pub struct ActivationEvent {
    /// The actor.
    pub key: ActorKey,
    /// A number unique to the activation on this node (in a cluster, its lease's number).
    pub activation: u64,
    /// What happened.
    pub kind: ActivationEventKind,
    /// When, by the wall clock. A stop caused by the lease running out is dated when the
    /// lease ran out, even if the process only noticed later (after a pause, say).
    pub at: std::time::SystemTime,
}

/// What an [`ActivationEvent`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationEventKind {
    /// The activation is about to handle its first message.
    Started,
    /// The activation handles no more messages.
    Stopped,
}
