#![doc = include_str!("../../README.md")]
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod actor;
mod builder;
mod error;
mod handle;
mod host;
mod lifecycle;
mod overmind;
mod registry;
mod reply;
mod runtime;
mod slot;
mod supervisor;

pub use actor::{Activation, VirtualActor};
pub use builder::OvermindBuilder;
pub use error::{ActivationError, Error, PersistError, SendError, StartError};
pub use handle::VirtualRef;
pub use overmind::{Overmind, Stats};
#[cfg(feature = "sled")]
pub use overmind_core::store::SledStore;
pub use overmind_core::{
    self as core, ActorKey, KeyError, StateStore, StoreError, Version, store::MemoryStore,
};
pub use overmind_macros::virtual_actor;
pub use supervisor::SupervisorMsg;

/// The ractor version Overmind runs on, for the paths `#[virtual_actor]` generates.
pub use ractor;

/// What a virtual actor's module usually needs.
pub mod prelude {
    pub use crate::{Activation, Overmind, VirtualActor, VirtualRef, virtual_actor};
    pub use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
}
