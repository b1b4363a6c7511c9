//! The single-node engine: virtual actors named by key, activated on demand, their state
//! loaded and stored, their messages held and replies gated until what produced them is
//! stored. It never names the cluster: a distribution layer plugs in through
//! [`distribution::Distribution`] (node-wide) and [`distribution::Elsewhere`] (per kind), the
//! way ractor_cluster plugs into ractor, and the builder wires it in.

pub(crate) mod actor;
pub(crate) mod current;
pub(crate) mod distribution;
pub(crate) mod handle;
pub(crate) mod host;
pub(crate) mod lifecycle;
pub(crate) mod mailbox;
pub(crate) mod message;
pub(crate) mod overmind;
pub(crate) mod placement;
pub(crate) mod proxy;
pub(crate) mod registry;
pub(crate) mod reply;
pub(crate) mod runtime;
pub(crate) mod slot;
pub(crate) mod supervisor;
