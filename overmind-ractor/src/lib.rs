#![doc = include_str!("../../README.md")]
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
// docs.rs marks what each feature adds.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
#[cfg(feature = "cluster")]
pub mod cluster;
// What only a cluster calls is unused on a single node.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
mod engine;
#[cfg(all(test, not(feature = "cluster")))]
mod engine_tests;
mod error;

pub use builder::OvermindBuilder;
pub use engine::actor::{Activation, ActivationEvent, ActivationEventKind, VirtualActor};
pub use engine::current::VirtualActorRef;
pub use engine::handle::VirtualRef;
pub use engine::overmind::{ClusterInfo, Overmind, Stats};
pub use engine::supervisor::{SUPERVISOR_NAME_PREFIX, SupervisorMsg};
pub use error::{ActivationError, Error, PersistError, SendError, StartError};
pub use overmind_core::migration::{
    MAX_REPORTED_FAILURES, MigrationProgress, Migrations, SchemaError,
};
#[cfg(feature = "sled")]
pub use overmind_core::store::SledStore;
pub use overmind_core::{
    self as core, ActorKey, KeyError, StateStore, StoreError, Version, store::MemoryStore,
};
pub use overmind_macros::virtual_actor;

/// The ractor version Overmind runs on, for the paths `#[virtual_actor]` generates.
pub use ractor;

/// Support for the code `#[virtual_actor]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    use crate::Activation;

    /// The initial state of a new actor when `pre_start` is left to the macro.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` has no `Default`, so Overmind cannot make a new actor's state",
        label = "a virtual actor without `pre_start` needs a `Default` state",
        note = "derive or implement `Default` for `{Self}`, or write `pre_start` to build the initial state from the `Activation`"
    )]
    pub trait DefaultState: Sized {
        /// The stored state, or the default for a new actor.
        fn from_activation(activation: Activation<Self>) -> Self;
    }

    impl<S: Default> DefaultState for S {
        fn from_activation(activation: Activation<Self>) -> Self {
            activation.into_state_or_default()
        }
    }
}

/// What a virtual actor's module usually needs.
pub mod prelude {
    pub use crate::{
        Activation, Overmind, VirtualActor, VirtualActorRef, VirtualRef, virtual_actor,
    };
    pub use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
    /// With the `cluster` feature every message type derives one of these.
    #[cfg(feature = "cluster")]
    pub use ractor_cluster::{RactorClusterMessage, RactorMessage};
}

/// ractor_cluster, for the derives and TLS types a cluster user needs.
#[cfg(feature = "cluster")]
pub use ractor_cluster;
/// tokio-rustls, to configure TLS between nodes.
#[cfg(feature = "cluster")]
pub use tokio_rustls;
