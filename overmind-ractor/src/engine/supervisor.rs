//! Overmind's supervisors.
//!
//! Two instances of one actor type: the *Overmind supervisor*, which a user may link into their
//! own supervision tree, and the *activations' supervisor*, which is linked to nothing and is
//! the parent of every activation's `myself` proxy (and, in a cluster, of the router).
//!
//! They are kept apart because ractor ends a stopped actor's whole subtree with a kill, at
//! once, without running `post_stop`: activations under the user's tree would be killed with
//! accepted messages still queued and unsaved. Outside it they keep running while Overmind,
//! noticing that its supervisor ended (however it ended), shuts down gracefully.

use std::sync::atomic::{AtomicU64, Ordering};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

/// One of Overmind's supervisors. See the [module docs](self).
pub(crate) struct Supervisor;

/// The name of every Overmind supervisor (the one [`crate::Overmind::supervisor`] returns)
/// starts with this, followed by a number unique in the process: match it in the
/// supervision events of your own tree.
pub const SUPERVISOR_NAME_PREFIX: &str = "overmind-supervisor-";

/// The name of every activations' supervisor starts with this.
const ACTIVATIONS_NAME_PREFIX: &str = "overmind-activations-";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The names of a new Overmind's two supervisors.
pub(crate) struct Names {
    /// The Overmind supervisor's.
    pub(crate) overmind: String,
    /// The activations' supervisor's.
    pub(crate) activations: String,
}

impl Names {
    pub(crate) fn next() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            overmind: format!("{SUPERVISOR_NAME_PREFIX}{n}"),
            activations: format!("{ACTIVATIONS_NAME_PREFIX}{n}"),
        }
    }
}

/// The supervisors take no messages of their own. (With ractor's `cluster` feature, the
/// cluster module implements `ractor::Message` for it.)
#[derive(Debug)]
pub enum SupervisorMsg {}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        // Activations end all the time (passivation); their lifecycles handle it. Only a crash
        // of a proxy itself (it runs no user code) is news.
        if let SupervisionEvent::ActorFailed(cell, reason) = event {
            tracing::error!(actor = %cell.get_id(), %reason, "an activation's proxy crashed");
        }
        Ok(())
    }
}
