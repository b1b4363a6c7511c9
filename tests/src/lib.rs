//! Shared fixtures for Overmind's integration tests.

#![allow(missing_docs)] // reason: test support, not a public API

pub mod accounts;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod ensemble;
#[cfg(feature = "cluster")]
pub mod faults;
pub mod fuzz;
pub mod postgres;
pub mod process;
pub mod rng;
pub mod sled_stress;
pub mod zookeeper;

/// Installs a tracing subscriber once, honouring `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
