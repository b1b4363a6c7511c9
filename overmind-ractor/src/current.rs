//! The key of the virtual actor whose handler is running, for [`VirtualActorRef::actor_key`].
//!
//! Activations are not named after their key: ractor's names are one process-wide registry,
//! and every activation would pay for an entry (two Overminds in one process would even
//! clash). Instead the host sets a task-local around each call into the user's actor; it
//! costs a reference-count increment per message.

use std::{future::Future, sync::Arc};

use overmind_core::ActorKey;
use ractor::{ActorCell, ActorId, ActorRef};

struct Current {
    actor: ActorId,
    key: Arc<ActorKey>,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// Runs `f` (a call into the user's actor hosted by `cell`) with the actor's key at hand.
pub(crate) async fn scope<F: Future>(cell: &ActorCell, key: &Arc<ActorKey>, f: F) -> F::Output {
    let current = Current {
        actor: cell.get_id(),
        key: key.clone(),
    };
    CURRENT.scope(current, f).await
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
            .try_with(|c| (c.actor == id).then(|| (*c.key).clone()))
            .ok()
            .flatten()
    }
}
