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
pub use engine::handle::{RELIABLE_ATTEMPT_TIMEOUT, VirtualRef};
pub use engine::message::VirtualMessage;
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
pub use overmind_macros::{VirtualMessage, virtual_actor};

// On a single node no message leaves, so every type is one.
#[cfg(not(feature = "cluster"))]
impl<T: Send + 'static> VirtualMessage for T {}

/// The ractor version Overmind runs on, for the paths `#[virtual_actor]` generates.
pub use ractor;

/// Support for the code `#[virtual_actor]` and `#[derive(VirtualMessage)]` generate. Not a
/// public API.
#[doc(hidden)]
pub mod __private {
    use crate::Activation;

    pub use crate::engine::message::{
        DecodeError, Encoded, Incoming, Unsent, can_travel, decode_args, encode_args, no_reply,
        reply_port,
    };

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
        Activation, Overmind, VirtualActor, VirtualActorRef, VirtualMessage, VirtualRef,
        virtual_actor,
    };
    pub use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
    /// With the `cluster` feature ractor needs every message type of the application to
    /// implement `ractor::Message`: derive `VirtualMessage` for a virtual actor's messages
    /// (it implements both), and `RactorMessage` for your other actors' messages.
    #[cfg(feature = "cluster")]
    pub use ractor_cluster::{RactorClusterMessage, RactorMessage};
}

/// What `#[derive(VirtualMessage)]` expands to: with the `cluster` feature, `ractor::Message`
/// and `VirtualMessage` for the type; without it, nothing (every type is a message then).
#[cfg(feature = "cluster")]
#[doc(hidden)]
#[macro_export]
macro_rules! __virtual_message {
    ($ty:ty { $($body:tt)* }) => {
        #[automatically_derived]
        impl $crate::ractor::Message for $ty {}
        #[automatically_derived]
        impl $crate::VirtualMessage for $ty { $($body)* }
    };
}

/// What `#[derive(VirtualMessage)]` expands to: with the `cluster` feature, `ractor::Message`
/// and `VirtualMessage` for the type; without it, nothing (every type is a message then).
#[cfg(not(feature = "cluster"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __virtual_message {
    ($ty:ty { $($body:tt)* }) => {};
}

/// ractor_cluster, for the derives and TLS types a cluster user needs.
#[cfg(feature = "cluster")]
pub use ractor_cluster;
/// tokio-rustls, to configure TLS between nodes.
#[cfg(feature = "cluster")]
pub use tokio_rustls;
