//! # overmind-core
//!
//! The parts of [Overmind](https://github.com/overmind-rs/overmind) that need no actor runtime:
//!
//! - [`ActorKey`]: the `(kind, id)` name of a virtual actor;
//! - [`codec`]: how state becomes bytes (serde + bincode 2) and the versioned [`codec::Record`]
//!   it is stored in;
//! - [`store`]: the [`StateStore`] trait — a durable map with conditional (versioned) writes —
//!   with an in-memory and a sled implementation;
//! - [`schema`]: fingerprints of state types' serde shapes, stored with each state so that a
//!   state type changed without a declared migration is caught on load;
//! - [`migration`]: a kind's declared state versions, the migrations from older ones, and the
//!   rule that decides how a stored state is read.
//!
//! Most users depend on `overmind-ractor`, which re-exports what they need from here.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use overmind_core::{ActorKey, codec::{self, Payload, Record, SchemaId}, store::{MemoryStore, StateStore, Version}};
//!
//! let store = MemoryStore::new();
//! let key = ActorKey::new("account", "alice")?;
//! let state = Payload { schema: SchemaId::LEGACY, bytes: codec::encode_state(&42i64)? };
//! let record = Record { kind: "account".into(), lease: None, payload: Some(state), applied: Vec::new() };
//! let v1 = store.save(&key, Version::ABSENT, &record.encode()).await?;
//!
//! // A writer holding an outdated version is refused.
//! assert!(store.save(&key, Version::ABSENT, b"stale").await.unwrap_err().is_conflict());
//!
//! let stored = store.load(&key).await?.expect("saved above");
//! assert_eq!(stored.version, v1);
//! let record = Record::decode_for(&stored.bytes, "account")?;
//! assert_eq!(codec::decode_state::<i64>(&record.payload.expect("a state").bytes)?, 42);
//! # Ok(()) }
//! ```

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
// docs.rs marks what each feature adds.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod applied;
pub mod codec;
mod key;
pub mod membership;
pub mod migration;
pub mod ring;
pub mod schema;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use key::{ActorKey, KeyError, MAX_ID_LEN, MAX_KIND_LEN, validate_kind};
pub use store::{StateStore, StoreError, Version};
