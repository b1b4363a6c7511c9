//! Fingerprints of state types' serde shapes.
//!
//! States are stored with bincode, which is not self-describing: bytes written for one
//! Rust type and read as another are misread, or refused with a confusing error, or worse,
//! read as plausible garbage. So each stored state carries a [`Fingerprint`] of its type's
//! *shape*, and a state type that changed without anyone declaring it (a field added,
//! removed, renamed, retyped or moved, a variant added...) is noticed on load.
//!
//! [`trace`] finds the shape by deserializing the type from a tracing `Deserializer` that
//! answers as bincode would and records what the type's `Deserialize` asks for. It needs no
//! value of the type and no derive beyond serde's own.
//!
//! ```
//! use overmind_core::schema;
//!
//! #[derive(serde::Deserialize)]
//! struct Account {
//!     owner: String,
//!     balance: i64,
//!     frozen: Option<Reason>,
//! }
//!
//! #[derive(serde::Deserialize)]
//! enum Reason {
//!     Fraud,
//!     Court { case: u64 },
//! }
//!
//! let shape = schema::trace::<Account>()?;
//! assert_eq!(
//!     shape.description(),
//!     "struct{owner:str,balance:i64,frozen:option<enum{Fraud:unit,Court:struct{case:u64}}>}"
//! );
//! assert!(shape.fingerprint().is_known());
//! # Ok::<(), schema::TraceError>(())
//! ```
//!
//! # What the shape holds
//!
//! What decides the bytes bincode writes, and the names that decide how serde reads them:
//!
//! - primitives: `bool`, `i8` to `i128`, `u8` to `u128`, `f32`, `f64`, `char`, `str`
//!   (`&str` and `String` alike), `bytes` (borrowed or owned), `unit`, `unit_struct`;
//! - `option<T>`, `seq<T>`, `map<K,V>`, `tuple(A,B,...)` (arrays are tuples, as in serde);
//! - structs with their field names in declaration order: `struct{a:T,b:U}`; tuple structs
//!   `tuple_struct(T,U)`; newtype structs `newtype(T)`;
//! - enums with every variant in declaration order, each with its name and kind:
//!   `enum{A:unit,B:newtype(T),C:tuple(T,U),D:struct{x:T}}`;
//! - a named container (struct or enum) met again, recursively or not, is `#k`: the k-th
//!   container written out, counting from 1 in the order of the text.
//!
//! Not the names of types: a state type kept under a new name for a migration
//! (`ProfileV2`) has the fingerprint `Profile` had. Fields that serde skips are not read,
//! so they are not in the shape; fields with a `#[serde(default)]` are (bincode writes
//! them). A name that is not made of ASCII letters, digits and `_` is quoted: `"a:b"`.
//!
//! # Stability
//!
//! Fingerprints are stored for years: the description and its hash (FNV-1a, 64 bits) never
//! change for a shape once released, whatever the platform, build or Rust version. The
//! tests pin golden values. Only the shape of what bincode reads enters the text, never a
//! `TypeId` or a `type_name` (which vary between builds and compilers).
//!
//! # How it traces
//!
//! A pass deserializes one value. Structs are read as tuples of their fields (as bincode
//! does), an `Option` as `Some`, a sequence or map with one element, and an enum as one
//! variant, picked by index; passes continue until every variant of every enum met has
//! been read. A type met again inside itself is read *quietly* (`None`, empty, a variant
//! that ends) so that recursive types end. Leaves get candidate values; a validating
//! `Deserialize` that refuses one (a `NonZeroU32` refuses 0, a date parser refuses `""`)
//! is retried with the next: 0 and 1, an RFC 3339 date, a UUID, an IP address, a URL,
//! 16 or 32 zero bytes, and a few more. Named containers are told apart by `TypeId` (of
//! types made `'static`), so same-named types from different modules stay apart.
//!
//! # Limits
//!
//! A type whose `Deserialize` calls `deserialize_any` or `deserialize_ignored_any`
//! (untagged and internally tagged enums, `#[serde(flatten)]`, `serde_json::Value`) is
//! [`TraceError::Unsupported`]: bincode cannot decode it either. A validating type that
//! refuses every candidate is [`TraceError::Untraceable`], as is a shape that depends on
//! the values read ([`TraceError::Inconsistent`]). Nesting deeper than 256 levels is
//! [`TraceError::TooDeep`] (an infinite type such as `struct S(Box<S>)` is). A trace costs
//! microseconds to a few milliseconds: cache it per type.

mod de;
mod model;
mod render;
mod tracer;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::de::DeserializeOwned;

/// A 64-bit fingerprint of a serde shape: the FNV-1a hash of its [`Shape::description`].
///
/// 0 is reserved for [`Fingerprint::UNKNOWN`]: records written before fingerprints existed,
/// or a type that could not be traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// No fingerprint: the shape is not known. Never equal to a traced fingerprint.
    pub const UNKNOWN: Fingerprint = Fingerprint(0);

    /// Whether this is a real fingerprint rather than [`Fingerprint::UNKNOWN`].
    pub const fn is_known(self) -> bool {
        self.0 != 0
    }

    /// The fingerprint of a description: FNV-1a (64 bits) of its UTF-8 bytes, with a hash
    /// of 0 (reserved for [`Fingerprint::UNKNOWN`]) mapped to 1.
    pub const fn of_description(description: &str) -> Fingerprint {
        const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let bytes = description.as_bytes();
        let mut hash = OFFSET_BASIS;
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(PRIME);
            i += 1;
        }
        Fingerprint(if hash == 0 { 1 } else { hash })
    }
}

/// 16 lowercase hex digits, or `unknown` for [`Fingerprint::UNKNOWN`].
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_known() {
            write!(f, "{:016x}", self.0)
        } else {
            f.write_str("unknown")
        }
    }
}

/// The traced shape of a type (see the [module docs](self) for what it holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    description: String,
    fingerprint: Fingerprint,
}

impl Shape {
    fn from_description(description: String) -> Shape {
        Shape {
            fingerprint: Fingerprint::of_description(&description),
            description,
        }
    }

    /// The fingerprint of the [description](Shape::description).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The canonical text the fingerprint hashes; readable, to show what changed.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// Traces `T`'s shape as bincode sees it.
///
/// Runs several passes (an enum shows one variant per encounter per pass), which costs
/// microseconds to a few milliseconds: callers cache the result per type. The result is
/// the same on every call, build and platform.
pub fn trace<T: DeserializeOwned>() -> Result<Shape, TraceError> {
    let (root, entries) = tracer::trace::<T>()?;
    Ok(Shape::from_description(render::describe(&root, &entries)))
}

/// Why a type's shape could not be traced. `type_name` is the traced type's
/// `std::any::type_name` (for people: it is not stable between compilers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The type's `Deserialize` needs a self-describing format (`deserialize_any`,
    /// `deserialize_ignored_any`): untagged or internally tagged enums, `#[serde(flatten)]`,
    /// `serde_json::Value`... bincode cannot decode it either.
    #[error("cannot trace the shape of `{type_name}`: {what}")]
    Unsupported {
        /// The traced type.
        type_name: &'static str,
        /// What asked for what, and where.
        what: String,
    },
    /// A validating `Deserialize` refused every candidate value at a site, or the type
    /// has no value the tracer could find (an enum whose every variant recurses).
    #[error("cannot trace the shape of `{type_name}`: at {site}: {reason}")]
    Untraceable {
        /// The traced type.
        type_name: &'static str,
        /// Where: the innermost named type, its variant and field.
        site: String,
        /// The last refusal.
        reason: String,
    },
    /// The type nests deeper than `limit` levels; an infinite type (`struct S(Box<S>)`, a
    /// `Deserialize` that always recurses) does.
    #[error(
        "cannot trace the shape of `{type_name}`: nested deeper than {limit} levels (is it infinite?)"
    )]
    TooDeep {
        /// The traced type.
        type_name: &'static str,
        /// The depth bound.
        limit: usize,
    },
    /// Not every variant of every enum was reached within `limit` passes.
    #[error(
        "cannot trace the shape of `{type_name}`: enum variants still unread after {limit} passes"
    )]
    TooManyPasses {
        /// The traced type.
        type_name: &'static str,
        /// The pass bound.
        limit: usize,
    },
    /// The type is too large to trace: more than `limit` values read over all passes
    /// (types that repeat types that repeat types... grow exponentially).
    #[error("cannot trace the shape of `{type_name}`: more than {limit} values to read")]
    TooLarge {
        /// The traced type.
        type_name: &'static str,
        /// The bound on values read.
        limit: usize,
    },
    /// A container was read with two different shapes: its shape depends on the values
    /// read, which a fingerprint cannot capture.
    #[error(
        "cannot trace the shape of `{type_name}`: `{container}` reads differently depending on its values"
    )]
    Inconsistent {
        /// The traced type.
        type_name: &'static str,
        /// The container read two ways.
        container: &'static str,
    },
}
