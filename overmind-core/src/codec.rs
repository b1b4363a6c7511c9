//! How state is turned into bytes, and the record those bytes are stored in.
//!
//! The state codec is serde + bincode 2 (standard configuration: varint integers, little
//! endian). It is kept behind these few functions so it can be replaced; the record's format
//! version is what makes that possible without losing data. Nodes encode the frames they
//! exchange with the same functions.
//!
//! # Bytes from outside
//!
//! What these functions decode comes from disk, a database or another node, so a decode must
//! never cost more than the bytes it was given allow: bincode trusts the lengths it reads,
//! and 10 bytes declaring a 2^60-byte string made it allocate that much and abort the process.
//! So [`decode_state`]:
//!
//! - refuses an input longer than [`MAX_ENCODED_LEN`] (and [`encode_state`] refuses to
//!   produce one, so nothing written here is unreadable for its size);
//! - takes strings and byte strings from the input slice, so each is at most as long as the
//!   bytes that are there (never allocated by a declared length);
//! - refuses a sequence or map that declares more entries than the input can hold, and never
//!   preallocates for more than the input's length;
//! - refuses values nested more than 128 levels deep, as serde_json does (a recursive type
//!   nested deeper could overflow the stack);
//! - runs bincode with a decode limit (16 × [`MAX_ENCODED_LEN`]: bincode charges up to 16
//!   bytes per input byte, for a one-byte `u128`), a backstop if anything reaches bincode's
//!   own length-trusting paths.
//!
//! Every failure is a [`CodecError::Decode`]. [`Record::decode`] reads explicit lengths and
//! checks each against the bytes that remain.
//!
//! # The record
//!
//! ```text
//! magic "OVMD" | format u16 LE | kind len u8 | kind | lease tag u8 [lease] | flags u8 [schema] [applied] | crc32 u32 LE | payload
//! lease   = epoch u64 LE | activation u64 LE | node len u16 LE | node
//! flags: bit 0 = the record holds a state (payload); a lease can be taken before there is one
//!        bit 1 = the record holds applied calls (format 5)
//! schema  = state version u32 LE | shape fingerprint u64 LE   (format 4, only with a state)
//! applied = len u32 LE | the idempotent calls applied, encoded as a state ([`crate::applied`])
//!
//! format 5 (written for a record with applied calls): as format 4, plus the applied calls
//! format 4 (written for every other record, so the release before 5 still reads it): as
//!          format 3, plus the schema that wrote the payload
//! format 3: the crc32 covers every byte but its own (magic through flags, then the payload);
//!           lease tag 0 or 1; no flag bits but bit 0
//! format 2: the crc32 covers the payload only
//! format 1: no flags byte (every record held a state); the crc32 covers the payload only
//! ```
//!
//! Formats 1 to 3 are still read; their states are [`SchemaId::LEGACY`] (version 1, shape
//! unknown). Format 3 covers the header because a damaged lease epoch that still decodes
//! would lock the actor out under an epoch nobody holds; now it is refused as damage
//! instead ([`RecordError::Checksum`]). Format 4 says which schema wrote a state, so a state
//! type that changed is migrated or refused instead of misread ([`crate::schema`]).

mod guard;

use std::fmt;

use serde::{Serialize, de::DeserializeOwned};

use crate::schema::Fingerprint;

/// The magic bytes every record starts with.
pub const RECORD_MAGIC: [u8; 4] = *b"OVMD";
/// The record format this build writes. Decoders accept every format up to this one.
pub const RECORD_FORMAT: u16 = 5;

/// The longest encoding [`encode_state`] produces and [`decode_state`] accepts: 64 MiB.
/// (A frame between nodes is limited further, by ractor_cluster's 16 MiB.)
pub const MAX_ENCODED_LEN: usize = 64 << 20;

const HAS_STATE: u8 = 1;
const HAS_APPLIED: u8 = 2;
/// The bytes of a format-4 schema: state version and fingerprint.
const SCHEMA_LEN: usize = 4 + 8;

/// bincode's standard configuration with a decode limit no valid input up to
/// [`MAX_ENCODED_LEN`] reaches (see the module docs). Encoding ignores the limit.
fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ 16 * MAX_ENCODED_LEN }>,
> {
    bincode::config::standard().with_limit::<{ 16 * MAX_ENCODED_LEN }>()
}

/// A state that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// serde/bincode refused to encode the value, or its encoding is too long.
    #[error("cannot encode {type_name}: {reason}")]
    Encode {
        /// The Rust type being encoded.
        type_name: &'static str,
        /// bincode's explanation.
        reason: String,
    },
    /// The bytes are not a valid encoding of the type, or decoding them would cost more than
    /// their length allows.
    #[error("cannot decode {type_name}: {reason}")]
    Decode {
        /// The Rust type being decoded.
        type_name: &'static str,
        /// bincode's explanation.
        reason: String,
    },
}

/// Writes into a vector, refusing to grow it past [`MAX_ENCODED_LEN`], so an oversized
/// state fails before it is all in memory.
struct Capped<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for Capped<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        if bytes.len() > MAX_ENCODED_LEN - self.0.len() {
            return Err(bincode::error::EncodeError::Other(
                "the encoding is longer than MAX_ENCODED_LEN (64 MiB)",
            ));
        }
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Encodes a state value; at most [`MAX_ENCODED_LEN`] bytes.
pub fn encode_state<S: Serialize>(state: &S) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_state_into(state, &mut out)?;
    Ok(out)
}

/// Encodes a state value into `out`, replacing its contents and reusing its capacity (a
/// caller that encodes on every message allocates nothing once the buffer is large enough).
pub fn encode_state_into<S: Serialize>(state: &S, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.clear();
    bincode::serde::encode_into_writer(state, Capped(out), bincode_config()).map_err(|e| {
        CodecError::Encode {
            type_name: std::any::type_name::<S>(),
            reason: e.to_string(),
        }
    })
}

/// Decodes a state value; every byte must be used. Bounded by the input (module docs).
pub fn decode_state<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, CodecError> {
    let err = |reason: String| CodecError::Decode {
        type_name: std::any::type_name::<S>(),
        reason,
    };
    if bytes.len() > MAX_ENCODED_LEN {
        return Err(err(format!(
            "{} bytes is more than the {MAX_ENCODED_LEN} an encoding may have",
            bytes.len()
        )));
    }
    let budget = guard::Budget::new(bytes.len());
    let root = guard::Root::<S> {
        budget: &budget,
        ty: std::marker::PhantomData,
    };
    let (value, used) = bincode::serde::seed_decode_from_slice(root, bytes, bincode_config())
        .map_err(|e| match e {
            // No valid input reaches the limit: only a declared length does.
            bincode::error::DecodeError::LimitExceeded => {
                err("a length it declares is longer than any input may be".into())
            }
            e => err(e.to_string()),
        })?;
    if used != bytes.len() {
        return Err(err(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Who may write a record: the activation holding it. Saves by anyone else are fenced off.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The membership epoch the activation was granted in.
    pub epoch: u64,
    /// The node hosting the activation.
    pub node: String,
    /// A number unique to the activation on that node.
    pub activation: u64,
}

/// Which schema of a kind's state wrote a payload: the version the application declared
/// for its state type, and the fingerprint of that type's serde shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemaId {
    /// The state version declared with the kind (`state_version`, default 1).
    pub version: u32,
    /// The state type's shape; [`Fingerprint::UNKNOWN`] for states stored before records
    /// carried one.
    pub fingerprint: Fingerprint,
}

impl SchemaId {
    /// What a state stored by a record format before 4 is taken to be: version 1 (the
    /// default every kind had), shape unknown.
    pub const LEGACY: SchemaId = SchemaId {
        version: 1,
        fingerprint: Fingerprint::UNKNOWN,
    };
}

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "version {} (shape {})", self.version, self.fingerprint)
    }
}

/// An encoded state and the schema that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The schema the bytes were encoded with.
    pub schema: SchemaId,
    /// The encoded state ([`encode_state`]).
    pub bytes: Vec<u8>,
}

/// One stored actor state with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The kind the state belongs to; checked on load.
    pub kind: String,
    /// The lease of the activation that wrote the record, if any.
    pub lease: Option<Lease>,
    /// The encoded state; `None` for a record that only holds a lease (an actor that has
    /// not stored a state yet).
    pub payload: Option<Payload>,
    /// The idempotent calls the actor applied, encoded ([`crate::applied::AppliedCalls`]);
    /// empty if none. Stored in the same write as the state they produced.
    pub applied: Vec<u8>,
}

/// A stored record that cannot be read. It is reported, never overwritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes do not start with [`RECORD_MAGIC`].
    #[error("not an Overmind record (bad magic bytes)")]
    BadMagic,
    /// Written by a newer Overmind.
    #[error("record format {found} is newer than this build understands (up to {RECORD_FORMAT})")]
    UnsupportedFormat {
        /// The format in the record.
        found: u16,
    },
    /// The record ends early.
    #[error("record is truncated: {0}")]
    Truncated(&'static str),
    /// A text field is not UTF-8.
    #[error("record field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// The record does not match its checksum: it was damaged.
    #[error(
        "checksum mismatch, the record is damaged (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes it covers, as read.
        computed: u32,
    },
    /// A format-3 header field holds a value no writer produces (checked after the checksum
    /// matched, so this is a faulty writer rather than damage).
    #[error("record field {0} holds a value no writer produces")]
    Malformed(&'static str),
    /// The record belongs to another kind.
    #[error("record belongs to kind {found:?}, expected {expected:?}")]
    KindMismatch {
        /// The kind in the record.
        found: String,
        /// The kind asked for.
        expected: String,
    },
}

impl Record {
    /// Encodes the record (see [`encode_record`] for the format it is written in).
    pub fn encode(&self) -> Vec<u8> {
        let state = self
            .payload
            .as_ref()
            .map(|p| (p.schema, p.bytes.as_slice()));
        encode_record(&self.kind, self.lease.as_ref(), state, &self.applied)
    }

    /// Decodes a record of any supported format. Allocates no more than `bytes` holds.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        if r.take(4, "magic")? != RECORD_MAGIC {
            return Err(RecordError::BadMagic);
        }
        let format = u16::from_le_bytes(r.array("format")?);
        if format == 0 || format > RECORD_FORMAT {
            return Err(RecordError::UnsupportedFormat { found: format });
        }
        let kind_len = usize::from(r.take(1, "kind length")?[0]);
        let kind = r.take(kind_len, "kind")?;
        let lease = match r.take(1, "lease tag")?[0] {
            0 => None,
            1 => Some(r.lease()?),
            _ if format >= 3 => return Err(RecordError::Malformed("lease tag")),
            // Formats 1 and 2 took any non-zero tag for a lease.
            _ => Some(r.lease()?),
        };
        let flags = if format >= 2 {
            r.take(1, "flags")?[0]
        } else {
            HAS_STATE
        };
        // Only a record that holds a state has a schema; the flags are checked below, under
        // the checksum, so a damaged flag byte reads as truncation or damage either way.
        let schema = if format >= 4 && flags & HAS_STATE != 0 {
            SchemaId {
                version: u32::from_le_bytes(r.array("state version")?),
                fingerprint: Fingerprint(u64::from_le_bytes(r.array("shape fingerprint")?)),
            }
        } else {
            SchemaId::LEGACY
        };
        let applied = if format >= 5 && flags & HAS_APPLIED != 0 {
            let len = u32::from_le_bytes(r.array("applied calls length")?) as usize;
            r.take(len, "applied calls")?
        } else {
            &[]
        };
        let header = &bytes[..bytes.len() - r.0.len()];
        let stored = u32::from_le_bytes(r.array("checksum")?);
        let payload = r.0;
        let computed = if format >= 3 {
            header_and_payload_crc(header, payload)
        } else {
            crc32fast::hash(payload)
        };
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
        // Checked after the checksum, so damage is reported as damage.
        let known = if format >= 5 {
            HAS_STATE | HAS_APPLIED
        } else {
            HAS_STATE
        };
        let empty_applied = flags & HAS_APPLIED != 0 && applied.is_empty();
        if format >= 3
            && (flags & !known != 0
                || (flags & HAS_STATE == 0 && !payload.is_empty())
                || empty_applied)
        {
            return Err(RecordError::Malformed("flags"));
        }
        let kind = String::from_utf8(kind.to_vec()).map_err(|_| RecordError::NotUtf8("kind"))?;
        let lease = lease
            .map(|(epoch, activation, node)| {
                String::from_utf8(node.to_vec())
                    .map(|node| Lease {
                        epoch,
                        node,
                        activation,
                    })
                    .map_err(|_| RecordError::NotUtf8("lease node"))
            })
            .transpose()?;
        Ok(Self {
            kind,
            lease,
            payload: (flags & HAS_STATE != 0).then(|| Payload {
                schema,
                bytes: payload.to_vec(),
            }),
            applied: applied.to_vec(),
        })
    }

    /// Decodes a record and checks that it belongs to `kind`.
    pub fn decode_for(bytes: &[u8], kind: &str) -> Result<Self, RecordError> {
        let record = Self::decode(bytes)?;
        if record.kind != kind {
            return Err(RecordError::KindMismatch {
                found: record.kind,
                expected: kind.to_owned(),
            });
        }
        Ok(record)
    }
}

/// Encodes a record from its parts, without copying the state into a [`Record`] first:
/// in [`RECORD_FORMAT`] if `applied` (the encoded applied calls) is not empty, in format 4
/// otherwise.
pub fn encode_record(
    kind: &str,
    lease: Option<&Lease>,
    state: Option<(SchemaId, &[u8])>,
    applied: &[u8],
) -> Vec<u8> {
    let kind = kind.as_bytes();
    let lease_len = lease.map_or(0, |l| 18 + l.node.len());
    let payload: &[u8] = state.map_or(&[], |(_, bytes)| bytes);
    let mut out = Vec::with_capacity(
        4 + 2
            + 1
            + kind.len()
            + 1
            + lease_len
            + 1
            + SCHEMA_LEN
            + 4
            + applied.len()
            + 4
            + payload.len(),
    );
    out.extend_from_slice(&RECORD_MAGIC);
    // Format 4 when there is nothing only format 5 can say: a rollback can still read it.
    let format: u16 = if applied.is_empty() { 4 } else { RECORD_FORMAT };
    out.extend_from_slice(&format.to_le_bytes());
    // Kinds are at most 64 bytes (validated where keys are made); clamp defensively.
    let kind = &kind[..kind.len().min(u8::MAX as usize)];
    out.push(kind.len() as u8);
    out.extend_from_slice(kind);
    match lease {
        None => out.push(0),
        Some(lease) => {
            out.push(1);
            out.extend_from_slice(&lease.epoch.to_le_bytes());
            out.extend_from_slice(&lease.activation.to_le_bytes());
            let node = lease.node.as_bytes();
            let node = &node[..node.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(node.len() as u16).to_le_bytes());
            out.extend_from_slice(node);
        }
    }
    let mut flags = if state.is_some() { HAS_STATE } else { 0 };
    if !applied.is_empty() {
        flags |= HAS_APPLIED;
    }
    out.push(flags);
    if let Some((schema, _)) = state {
        out.extend_from_slice(&schema.version.to_le_bytes());
        out.extend_from_slice(&schema.fingerprint.0.to_le_bytes());
    }
    if !applied.is_empty() {
        // At most MAX_ENCODED_LEN (the applied calls are encoded as a state).
        out.extend_from_slice(&(applied.len() as u32).to_le_bytes());
        out.extend_from_slice(applied);
    }
    let crc = header_and_payload_crc(&out, payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A format-3 record's checksum: every header byte before the checksum, then the payload.
fn header_and_payload_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(header);
    crc.update(payload);
    crc.finalize()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// A lease's fields: epoch, activation and the node's name (still bytes).
    fn lease(&mut self) -> Result<(u64, u64, &'a [u8]), RecordError> {
        let epoch = u64::from_le_bytes(self.array("lease epoch")?);
        let activation = u64::from_le_bytes(self.array("lease activation")?);
        let node_len = usize::from(u16::from_le_bytes(self.array("lease node length")?));
        Ok((epoch, activation, self.take(node_len, "lease node")?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Account {
        balance: i64,
        owner: String,
    }

    /// The 10 bytes from issue 8: a varint declaring a 2^60-byte length.
    const HUGE: [u8; 10] = [1, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];

    #[test]
    fn state_round_trips_and_rejects_trailing_bytes() {
        let a = Account {
            balance: -5,
            owner: "alice".into(),
        };
        let mut bytes = encode_state(&a).unwrap();
        assert_eq!(decode_state::<Account>(&bytes).unwrap(), a);
        bytes.push(0);
        let err = decode_state::<Account>(&bytes).unwrap_err();
        assert!(err.to_string().contains("1 trailing bytes"), "{err}");
    }

    /// The encoding is bincode 2's standard one, unchanged by the bounds: states stored by
    /// earlier builds still read.
    #[test]
    fn the_encoding_is_bincode_standard() {
        let a = Account {
            balance: -5,
            owner: "alice".into(),
        };
        let plain = bincode::serde::encode_to_vec(&a, bincode::config::standard()).unwrap();
        assert_eq!(encode_state(&a).unwrap(), plain);
        let mut m = BTreeMap::new();
        m.insert("k".to_owned(), vec![Some(1u64 << 40), None]);
        let plain = bincode::serde::encode_to_vec(&m, bincode::config::standard()).unwrap();
        assert_eq!(
            decode_state::<BTreeMap<String, Vec<Option<u64>>>>(&plain).unwrap(),
            m
        );
    }

    fn refused<S: DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) -> String {
        match decode_state::<S>(bytes) {
            Err(CodecError::Decode { reason, .. }) => reason,
            other => panic!("{bytes:?} as {}: {other:?}", std::any::type_name::<S>()),
        }
    }

    /// Each of these made bincode allocate the declared length (or loop over it) before the
    /// bounds; now each is a typed error, at once.
    #[test]
    fn declared_lengths_cannot_make_a_decode_allocate_or_loop() {
        let huge = &HUGE[1..];
        // Strings and byte strings: bincode's owned path allocates `len` bytes up front.
        refused::<String>(huge);
        refused::<std::path::PathBuf>(huge);
        refused::<std::ffi::CString>(huge);
        refused::<Account>(&[&[0][..], huge].concat());
        refused::<Option<String>>(&HUGE);
        // Sequences and maps: a declared length is only a size hint, but it is checked.
        refused::<Vec<u8>>(huge);
        refused::<Vec<Vec<u64>>>(huge);
        refused::<HashMap<String, u64>>(huge);
        refused::<BTreeMap<u8, u8>>(huge);
        // Zero-size entries hold no bytes; 2^60 of them would loop for ever.
        let reason = refused::<Vec<()>>(huge);
        assert!(reason.contains("declares"), "{reason}");
        // Lengths beyond usize, and beyond bincode's own limit.
        refused::<String>(&[0xfe; 17]);
        refused::<Vec<u8>>(&[0xfc, 0xff, 0xff, 0xff, 0x7f]);
    }

    #[test]
    fn entries_that_encode_to_nothing_are_allowed_up_to_a_bound() {
        let units = vec![(); guard::ZERO_SIZE_ENTRIES];
        let bytes = encode_state(&units).unwrap();
        assert_eq!(decode_state::<Vec<()>>(&bytes).unwrap(), units);
        let too_many = encode_state(&vec![(); 2 * guard::ZERO_SIZE_ENTRIES]).unwrap();
        refused::<Vec<()>>(&too_many);
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: u8,
        y: u8,
        unit: (),
        marker: std::marker::PhantomData<u64>,
    }

    /// Only lengths the input declares are charged to the entry budget: a struct's fields, a
    /// tuple's or an array's elements are fixed by the type, and may encode to nothing.
    #[test]
    fn lengths_the_type_fixes_are_not_charged() {
        let points = vec![
            Point {
                x: 1,
                y: 2,
                unit: (),
                marker: std::marker::PhantomData,
            };
            20_000
        ];
        let bytes = encode_state(&points).unwrap();
        assert_eq!(decode_state::<Vec<Point>>(&bytes).unwrap(), points);
        let arrays = vec![[7u8; 3]; 20_000];
        let bytes = encode_state(&arrays).unwrap();
        assert_eq!(decode_state::<Vec<[u8; 3]>>(&bytes).unwrap(), arrays);
        let pairs = vec![(1u8, ()); 20_000];
        let bytes = encode_state(&pairs).unwrap();
        assert_eq!(decode_state::<Vec<(u8, ())>>(&bytes).unwrap(), pairs);
    }

    type Mixed = (
        u8,
        Option<String>,
        Vec<u16>,
        BTreeMap<i64, Vec<bool>>,
        Vec<()>,
    );

    proptest::proptest! {
        /// Whatever a state holds, its encoding reads back: the bounds refuse only what no
        /// encoder wrote (or, for entries that encode to nothing, more than 4096 beyond the
        /// input's length).
        #[test]
        fn every_encoding_reads_back(
            value in proptest::collection::vec(
                (
                    proptest::prelude::any::<u8>(),
                    proptest::option::of(".{0,12}"),
                    proptest::collection::vec(proptest::prelude::any::<u16>(), 0..40),
                    proptest::collection::btree_map(proptest::prelude::any::<i64>(), proptest::collection::vec(proptest::prelude::any::<bool>(), 0..5), 0..6),
                    proptest::collection::vec(proptest::prelude::Just(()), 0..50),
                ),
                0..60,
            )
        ) {
            let bytes = encode_state(&value).unwrap();
            let decoded: Vec<Mixed> = decode_state(&bytes).unwrap();
            proptest::prop_assert_eq!(decoded, value);
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Chain {
        End,
        Link(Box<Chain>),
    }

    #[test]
    fn nesting_is_bounded_so_a_recursive_type_cannot_overflow_the_stack() {
        // Legitimately nested values read back.
        let mut chain = Chain::End;
        for _ in 0..guard::MAX_DEPTH - 1 {
            chain = Chain::Link(Box::new(chain));
        }
        let bytes = encode_state(&chain).unwrap();
        // The deepest value allowed needs about 190 KiB of stack in a debug build (1.4 KiB a
        // level); a 512 KiB thread is a quarter of a tokio worker's.
        let decoded = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(move || decode_state::<Chain>(&bytes).map(|_| ()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(decoded, Ok(()));
        // A million levels (one byte each) are refused, not followed.
        let mut deep = vec![1u8; 1_000_000];
        deep.push(0);
        let reason = refused::<Chain>(&deep);
        assert!(reason.contains("nests deeper"), "{reason}");
        // Drop the legit chain iteratively: dropping it recursively is fine at this depth,
        // but keep the test about decoding.
        drop(chain);
    }

    /// A `Serialize` that writes its bytes in one piece (bincode writes a `Vec<u8>` one
    /// element at a time).
    struct Blob(Vec<u8>);

    impl Serialize for Blob {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    #[test]
    fn nothing_longer_than_the_maximum_is_written_or_read() {
        let err = encode_state(&Blob(vec![7; MAX_ENCODED_LEN])).unwrap_err();
        assert!(
            matches!(&err, CodecError::Encode { reason, .. } if reason.contains("MAX_ENCODED_LEN")),
            "{err}"
        );
        let just = encode_state(&Blob(vec![7; MAX_ENCODED_LEN - 5])).unwrap();
        assert_eq!(just.len(), MAX_ENCODED_LEN);
        let read: Vec<u8> = decode_state::<serde_bytes_like::ByteBuf>(&just).unwrap().0;
        assert_eq!(read.len(), MAX_ENCODED_LEN - 5);
        let mut over = just;
        over.push(0);
        let reason = refused::<serde_bytes_like::ByteBuf>(&over);
        assert!(reason.contains("more than the"), "{reason}");
    }

    /// A byte buffer deserialized with `deserialize_byte_buf`, like `serde_bytes::ByteBuf`.
    mod serde_bytes_like {
        #[derive(Debug)]
        pub(super) struct ByteBuf(pub(super) Vec<u8>);

        impl<'de> serde::Deserialize<'de> for ByteBuf {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = ByteBuf;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(v.to_vec()))
                    }
                }
                d.deserialize_byte_buf(V)
            }
        }
    }

    #[test]
    fn records_round_trip_with_and_without_lease() {
        for lease in [
            None,
            Some(Lease {
                epoch: 7,
                node: "node-a".into(),
                activation: 42,
            }),
        ] {
            let record = Record {
                kind: "account".into(),
                lease,
                payload: Some(state(b"\x01\x02\x03")),
                applied: Vec::new(),
            };
            let bytes = record.encode();
            assert_eq!(Record::decode_for(&bytes, "account").unwrap(), record);
            assert_eq!(
                Record::decode_for(&bytes, "room").unwrap_err(),
                RecordError::KindMismatch {
                    found: "account".into(),
                    expected: "room".into()
                }
            );
        }
    }

    /// A payload as format 4 writes it: version 3 of a state with some shape.
    fn state(bytes: &[u8]) -> Payload {
        Payload {
            schema: SchemaId {
                version: 3,
                fingerprint: Fingerprint(0x0123_4567_89ab_cdef),
            },
            bytes: bytes.to_vec(),
        }
    }

    fn leased(payload: Option<&[u8]>) -> Record {
        Record {
            kind: "account".into(),
            lease: Some(Lease {
                epoch: 9,
                node: "node-b".into(),
                activation: 3,
            }),
            payload: payload.map(state),
            applied: Vec::new(),
        }
    }

    /// The record as a format before 4 reads back: its state is the legacy schema.
    fn as_legacy(mut record: Record) -> Record {
        if let Some(p) = &mut record.payload {
            p.schema = SchemaId::LEGACY;
        }
        record
    }

    /// A record as format 1, 2, 3 or 4 wrote it: no applied calls; no schema before format
    /// 4; the checksum covers the payload only (formats 1 and 2); format 1 has no flags byte.
    fn encode_old(record: &Record, format: u16) -> Vec<u8> {
        let mut out = RECORD_MAGIC.to_vec();
        out.extend_from_slice(&format.to_le_bytes());
        out.push(record.kind.len() as u8);
        out.extend_from_slice(record.kind.as_bytes());
        match &record.lease {
            None => out.push(0),
            Some(l) => {
                out.push(1);
                out.extend_from_slice(&l.epoch.to_le_bytes());
                out.extend_from_slice(&l.activation.to_le_bytes());
                out.extend_from_slice(&(l.node.len() as u16).to_le_bytes());
                out.extend_from_slice(l.node.as_bytes());
            }
        }
        if format >= 2 {
            out.push(u8::from(record.payload.is_some()));
        }
        if let (4, Some(p)) = (format, &record.payload) {
            out.extend_from_slice(&p.schema.version.to_le_bytes());
            out.extend_from_slice(&p.schema.fingerprint.0.to_le_bytes());
        }
        let payload = record.payload.as_ref().map_or(&[][..], |p| &p.bytes);
        let crc = if format >= 3 {
            header_and_payload_crc(&out, payload)
        } else {
            crc32fast::hash(payload)
        };
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn format_4_is_still_read() {
        for record in [leased(Some(b"state")), leased(None)] {
            let v4 = encode_old(&record, 4);
            assert_eq!(Record::decode(&v4).unwrap(), record);
        }
        // Format 4 knew no applied calls: its flag is a faulty writer's.
        let mut v4 = encode_old(&leased(None), 4);
        let flags_at = v4.len() - 4 - 1;
        v4[flags_at] |= HAS_APPLIED;
        let crc_at = v4.len() - 4;
        let crc = header_and_payload_crc(&v4[..crc_at], &[]);
        v4[crc_at..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Record::decode(&v4).unwrap_err(),
            RecordError::Malformed("flags")
        );
    }

    #[test]
    fn applied_calls_round_trip_and_every_bit_flip_is_refused() {
        for payload in [Some(&b"state"[..]), None] {
            let record = Record {
                applied: b"applied calls".to_vec(),
                ..leased(payload)
            };
            let bytes = record.encode();
            assert_eq!(Record::decode(&bytes).unwrap(), record);
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert!(Record::decode(&flipped).is_err(), "bit {bit} flipped");
            }
        }
    }

    #[test]
    fn format_3_is_read_as_the_legacy_schema() {
        for record in [leased(Some(b"state")), leased(None)] {
            let v3 = encode_old(&record, 3);
            assert_eq!(Record::decode(&v3).unwrap(), as_legacy(record));
        }
    }

    #[test]
    fn the_schema_is_written_and_covered_by_the_checksum() {
        let record = leased(Some(b"state"));
        let bytes = record.encode();
        assert_eq!(Record::decode(&bytes).unwrap(), record);
        // The schema sits just before the checksum: a changed version is damage.
        let at = bytes.len() - b"state".len() - 4 - SCHEMA_LEN;
        assert_eq!(&bytes[at..at + 4], &3u32.to_le_bytes());
        let mut bumped = bytes.clone();
        bumped[at] = 4;
        assert!(matches!(
            Record::decode(&bumped),
            Err(RecordError::Checksum { .. })
        ));
    }

    #[test]
    fn formats_1_and_2_are_still_read() {
        // Format 1, as the first release wrote it: no flags byte, always a state.
        let v1 = encode_old(&leased(Some(b"st")), 1);
        assert_eq!(Record::decode(&v1).unwrap(), as_legacy(leased(Some(b"st"))));
        for record in [
            leased(Some(b"state")),
            leased(None),
            Record {
                lease: None,
                ..leased(Some(b""))
            },
        ] {
            let v2 = encode_old(&record, 2);
            assert_eq!(
                Record::decode_for(&v2, "account").unwrap(),
                as_legacy(record)
            );
        }
        // Their checksum covered only the payload: a damaged payload is still caught.
        let mut v2 = encode_old(&leased(Some(b"state")), 2);
        *v2.last_mut().unwrap() ^= 1;
        assert!(matches!(
            Record::decode(&v2),
            Err(RecordError::Checksum { .. })
        ));
    }

    #[test]
    fn a_lease_can_be_held_without_a_state() {
        let lease_only = leased(None);
        let bytes = lease_only.encode();
        assert_eq!(
            u16::from_le_bytes([bytes[4], bytes[5]]),
            4,
            "format 4: no applied calls"
        );
        let with_calls = Record {
            applied: b"calls".to_vec(),
            ..lease_only.clone()
        };
        let bytes = with_calls.encode();
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 5, "format 5");
        assert_eq!(Record::decode(&bytes).unwrap(), with_calls);
        assert_eq!(Record::decode(&lease_only.encode()).unwrap(), lease_only);
    }

    /// Issue 8: one flipped byte in the lease epoch locked the actor out under an epoch
    /// nobody held. Every single-bit flip anywhere in a record is now refused, and
    /// a flip in a field the decoder reads by position (lease, flags, schema, checksum,
    /// payload) is reported as damage; a flags byte that comes to claim a state the record
    /// has no room for is truncation.
    #[test]
    fn every_single_bit_flip_of_a_record_is_refused() {
        for record in [leased(Some(b"{\"value\":5}")), leased(None)] {
            let bytes = record.encode();
            let lease_at = 4 + 2 + 1 + record.kind.len() + 1;
            let payload = record.payload.as_ref();
            let flags_at = bytes.len() - 4 - payload.map_or(0, |p| p.bytes.len() + SCHEMA_LEN) - 1;
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let err = Record::decode(&flipped).expect_err(&format!("bit {bit} flipped"));
                if bit / 8 == flags_at && matches!(err, RecordError::Truncated(_)) {
                    // Claiming a state, or applied calls, the record has no room for.
                    assert!(payload.is_none() || bit % 8 == 1, "bit {bit}: {err:?}");
                    continue;
                }
                if bit / 8 >= lease_at + 16 + 2 {
                    assert!(
                        matches!(err, RecordError::Checksum { .. }),
                        "bit {bit}: {err:?}"
                    );
                }
                if (lease_at..lease_at + 16).contains(&(bit / 8)) {
                    assert!(
                        matches!(err, RecordError::Checksum { .. }),
                        "a flip in the lease epoch or activation is damage, bit {bit}: {err:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn damaged_records_are_refused() {
        let bytes = Record {
            kind: "k".into(),
            lease: None,
            payload: Some(state(b"hello")),
            applied: Vec::new(),
        }
        .encode();
        assert_eq!(Record::decode(b"nope"), Err(RecordError::BadMagic));
        for cut in 0..bytes.len() {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut future = bytes.clone();
        future[4] = 9;
        assert_eq!(
            Record::decode(&future),
            Err(RecordError::UnsupportedFormat { found: 9 })
        );
        // Header values no writer produces, under a checksum that matches them.
        let with_crc = |mut header: Vec<u8>, payload: &[u8]| {
            let crc = header_and_payload_crc(&header, payload);
            header.extend_from_slice(&crc.to_le_bytes());
            header.extend_from_slice(payload);
            header
        };
        let head = |tag: u8| {
            let mut h = RECORD_MAGIC.to_vec();
            h.extend_from_slice(&4u16.to_le_bytes());
            h.extend_from_slice(&[1, b'k', tag]);
            h
        };
        assert_eq!(
            Record::decode(&with_crc(head(2), b"")),
            Err(RecordError::Malformed("lease tag"))
        );
        let mut flags = head(0);
        flags.push(0x81);
        flags.extend_from_slice(&[0; SCHEMA_LEN]);
        assert_eq!(
            Record::decode(&with_crc(flags, b"x")),
            Err(RecordError::Malformed("flags"))
        );
        let mut no_state = head(0);
        no_state.push(0);
        assert_eq!(
            Record::decode(&with_crc(no_state, b"stray")),
            Err(RecordError::Malformed("flags"))
        );
    }

    #[test]
    fn a_record_decode_allocates_no_more_than_its_input() {
        // A lease node length of 65535 with 3 bytes behind it is truncation, not a read.
        let mut bytes = RECORD_MAGIC.to_vec();
        bytes.extend_from_slice(&3u16.to_le_bytes());
        bytes.extend_from_slice(&[1, b'k', 1]);
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&u16::MAX.to_le_bytes());
        bytes.extend_from_slice(b"abc");
        assert_eq!(
            Record::decode(&bytes),
            Err(RecordError::Truncated("lease node"))
        );
    }
}
