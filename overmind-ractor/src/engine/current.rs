//! The key of the virtual actor whose handler is running, for [`VirtualActorRef::actor_key`].
//!
//! Activations are not named after their key: ractor's names are one process-wide registry,
//! and every activation would pay for an entry (two Overminds in one process would even
//! clash). Instead the host sets a task-local around each call into the user's actor. The
//! key is moved into the task-local and taken back after the call, so a message costs no
//! clone and no reference count.

use std::future::Future;

use overmind_core::ActorKey;
use ractor::{ActorId, ActorRef};

struct Current {
    actor: ActorId,
    key: ActorKey,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// Runs `f` (a call into the user's actor `actor`) with the actor's key at hand: `key` is
/// lent to the task-local for the call and put back after it.
pub(crate) async fn scope<F: Future>(
    actor: ActorId,
    key: &mut Option<ActorKey>,
    f: F,
) -> F::Output {
    let Some(lent) = key.take() else {
        return f.await;
    };
    let scoped = CURRENT.scope(Current { actor, key: lent }, f);
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
