//! The Overmind supervisor: the ractor actor a user spawns into their application. Every
//! activation is its child; stopping it shuts Overmind down gracefully.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::overmind::Inner;

pub(crate) struct Supervisor {
    /// Keeps the Overmind alive while it runs, so activations can always be given one.
    pub(crate) inner: Arc<Inner>,
}

/// The supervisor takes no messages of its own.
#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
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
        // of the host itself — not of a user handler, which the host catches — is news.
        if let SupervisionEvent::ActorFailed(cell, reason) = event {
            tracing::error!(actor = %cell.get_id(), %reason, "an activation host crashed");
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        // Stopped by the application's own supervision tree: shut down gracefully before
        // ractor kills the remaining children.
        if let Err(e) = crate::overmind::shutdown_runtime(&self.inner.rt).await {
            tracing::error!(error = %e, "flushing the store at shutdown failed");
        }
        Ok(())
    }
}
