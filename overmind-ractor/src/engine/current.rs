//! The key of the virtual actor whose handler is running, for [`VirtualActorRef::actor_key`],
//! and the chain of calls that handler's message belongs to, so a call that would wait for
//! an actor already waiting in the chain is refused.
//!
//! Activations are not named after their key: ractor's names are one process-wide registry,
//! and every activation would pay for an entry (two Overminds in one process would even
//! clash). Instead the host sets a task-local around each call into the user's actor. The
//! key is moved into the task-local and taken back after the call, so a message costs no
//! clone and no reference count.

use std::{fmt, future::Future, sync::Arc};

use overmind_core::ActorKey;
use ractor::{ActorId, ActorRef};

struct Current {
    actor: ActorId,
    key: ActorKey,
    /// The actors waiting, each in a handler, for the call this handler runs.
    chain: Chain,
}

/// The actors whose handlers wait, each for the next, on a call: outermost first. Empty for a
/// call made outside any virtual actor's handler. Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Chain(Option<Arc<[Link]>>);

/// One actor in a [`Chain`], as it travels between nodes (its kind may not be registered on
/// every node).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Link {
    pub(crate) kind: String,
    pub(crate) id: String,
}

/// The longest chain of calls, each waiting on the next, that Overmind follows. A call
/// nested deeper is refused (it is far more likely a runaway recursion than a design).
pub(crate) const MAX_CHAIN: usize = 64;

impl Chain {
    pub(crate) fn from_links(links: Vec<Link>) -> Self {
        if links.is_empty() {
            Self(None)
        } else {
            Self(Some(links.into()))
        }
    }

    pub(crate) fn links(&self) -> &[Link] {
        self.0.as_deref().unwrap_or_default()
    }

    /// Whether `key`'s handler is waiting in this chain.
    pub(crate) fn contains(&self, key: &ActorKey) -> bool {
        self.links()
            .iter()
            .any(|l| l.kind == key.kind() && l.id == key.id())
    }

    /// This chain with `key` appended: what a call made from `key`'s handler carries.
    fn then(&self, key: &ActorKey) -> Self {
        let mut links = self.links().to_vec();
        links.push(Link {
            kind: key.kind().to_owned(),
            id: key.id().to_owned(),
        });
        Self(Some(links.into()))
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, link) in self.links().iter().enumerate() {
            if i > 0 {
                f.write_str(" → ")?;
            }
            write!(f, "{}/{}", link.kind, link.id)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chain({self})")
    }
}

/// The chain a call made here carries: in a virtual actor's handler, that handler's chain
/// followed by its actor; elsewhere, empty.
pub(crate) fn outgoing() -> Chain {
    CURRENT
        .try_with(|c| c.chain.then(&c.key))
        .unwrap_or_default()
}

tokio::task_local! {
    static CURRENT: Current;
}

/// Runs `f` (a call into the user's actor `actor`, for a message that came with `chain`) with
/// the actor's key at hand: `key` is lent to the task-local for the call and put back after
/// it.
pub(crate) async fn scope<F: Future>(
    actor: ActorId,
    key: &mut Option<ActorKey>,
    chain: Chain,
    f: F,
) -> F::Output {
    let Some(lent) = key.take() else {
        return f.await;
    };
    let scoped = CURRENT.scope(
        Current {
            actor,
            key: lent,
            chain,
        },
        f,
    );
    tokio::pin!(scoped);
    let out = scoped.as_mut().await;
    *key = scoped.as_mut().take_value().map(|c| c.key);
    out
}

/// Whether this task is running a handler of the actor `key`.
pub(crate) fn in_handler_of(key: &ActorKey) -> bool {
    CURRENT.try_with(|c| c.key == *key).unwrap_or(false)
}

/// The key of a virtual actor, from its own `ActorRef`.
///
/// ```
/// use overmind_ractor::{prelude::*, VirtualActorRef};
/// # #[derive(serde::Serialize, serde::Deserialize, Default)] struct Profile { greeted: u32 }
/// # enum ProfileMsg { Greet(RpcReplyPort<String>) }
/// # #[derive(Default)] struct ProfileActor;
///
/// #[virtual_actor(kind = "profile")]
/// impl Actor for ProfileActor {
///     type Msg = ProfileMsg;
///     type State = Profile;
///
///     async fn handle(&self, myself: ActorRef<ProfileMsg>, msg: ProfileMsg, profile: &mut Profile)
///         -> Result<(), ActorProcessingErr> {
///         let ProfileMsg::Greet(reply) = msg;
///         profile.greeted += 1;
///         let key = myself.actor_key().expect("inside its own handler");
///         let _ = reply.send(format!("hello from {}", key.id()));
///         Ok(())
///     }
/// }
/// ```
pub trait VirtualActorRef {
    /// This activation's key (kind and id), when called from one of the virtual actor's own
    /// handlers (`pre_start`, `handle`, `post_start`, `handle_supervisor_evt`, `post_stop`)
    /// on `myself`. `None` anywhere else: on another actor's ref, or on a task the handler
    /// spawned.
    fn actor_key(&self) -> Option<ActorKey>;
}

impl<M: ractor::Message> VirtualActorRef for ActorRef<M> {
    fn actor_key(&self) -> Option<ActorKey> {
        let id = self.get_id();
        CURRENT
            .try_with(|c| (c.actor == id).then(|| c.key.clone()))
            .ok()
            .flatten()
    }
}
