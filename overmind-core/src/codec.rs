//! How state is turned into bytes, and the record those bytes are stored in.
//!
//! The state codec is serde + bincode 2 (standard configuration). It is kept behind these few
//! functions so it can be replaced; the record's format version is what makes that possible
//! without losing data.
//!
//! A stored record is:
//!
//! ```text
//! magic "OVMD" | format u16 LE | kind len u8 | kind | lease tag u8 [lease] | flags u8 | crc32 u32 LE | payload
//! lease = epoch u64 LE | activation u64 LE | node len u16 LE | node
//! flags: bit 0 = the record holds a state (payload); a lease can be taken before there is one
//! ```
//!
//! Format 1 had no flags byte (every record held a state); it is still read.
//!
//! The CRC covers the payload, so a record damaged in a way that still decodes is refused
//! rather than served.

use serde::{Serialize, de::DeserializeOwned};

/// The magic bytes every record starts with.
pub const RECORD_MAGIC: [u8; 4] = *b"OVMD";
/// The record format this build writes. Decoders accept every format up to this one.
pub const RECORD_FORMAT: u16 = 2;

const HAS_STATE: u8 = 1;

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A state that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// serde/bincode refused to encode the value.
    #[error("cannot encode {type_name}: {reason}")]
    Encode {
        /// The Rust type being encoded.
        type_name: &'static str,
        /// bincode's explanation.
        reason: String,
    },
    /// The bytes are not a valid encoding of the type.
    #[error("cannot decode {type_name}: {reason}")]
    Decode {
        /// The Rust type being decoded.
        type_name: &'static str,
        /// bincode's explanation.
        reason: String,
    },
}

/// Encodes a state value.
pub fn encode_state<S: Serialize>(state: &S) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(state, bincode_config()).map_err(|e| CodecError::Encode {
        type_name: std::any::type_name::<S>(),
        reason: e.to_string(),
    })
}

/// Decodes a state value; every byte must be used.
pub fn decode_state<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, CodecError> {
    let err = |reason: String| CodecError::Decode {
        type_name: std::any::type_name::<S>(),
        reason,
    };
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| err(e.to_string()))?;
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

/// One stored actor state with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The kind the state belongs to; checked on load.
    pub kind: String,
    /// The lease of the activation that wrote the record, if any.
    pub lease: Option<Lease>,
    /// The encoded state; `None` for a record that only holds a lease (an actor that has
    /// not stored a state yet).
    pub payload: Option<Vec<u8>>,
}

/// A stored record that cannot be read. It is reported, never overwritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// The payload does not match its checksum.
    #[error("payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the payload as read.
        computed: u32,
    },
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
    /// Encodes the record in the current format.
    pub fn encode(&self) -> Vec<u8> {
        let kind = self.kind.as_bytes();
        let lease_len = self.lease.as_ref().map_or(0, |l| 18 + l.node.len());
        let payload: &[u8] = self.payload.as_deref().unwrap_or_default();
        let mut out =
            Vec::with_capacity(4 + 2 + 1 + kind.len() + 1 + lease_len + 1 + 4 + payload.len());
        out.extend_from_slice(&RECORD_MAGIC);
        out.extend_from_slice(&RECORD_FORMAT.to_le_bytes());
        // Kinds are at most 64 bytes (validated where keys are made); clamp defensively.
        let kind = &kind[..kind.len().min(u8::MAX as usize)];
        out.push(kind.len() as u8);
        out.extend_from_slice(kind);
        match &self.lease {
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
        out.push(if self.payload.is_some() { HAS_STATE } else { 0 });
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Decodes a record of any supported format.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        if r.take(4, "magic")? != RECORD_MAGIC {
            return Err(RecordError::BadMagic);
        }
        let format = u16::from_le_bytes(r.array("format")?);
        if format == 0 || format > RECORD_FORMAT {
            return Err(RecordError::UnsupportedFormat { found: format });
        }
        let kind_len = r.take(1, "kind length")?[0] as usize;
        let kind = r.text(kind_len, "kind")?;
        let lease = match r.take(1, "lease tag")?[0] {
            0 => None,
            _ => {
                let epoch = u64::from_le_bytes(r.array("lease epoch")?);
                let activation = u64::from_le_bytes(r.array("lease activation")?);
                let node_len = u16::from_le_bytes(r.array("lease node length")?) as usize;
                let node = r.text(node_len, "lease node")?;
                Some(Lease {
                    epoch,
                    node,
                    activation,
                })
            }
        };
        let flags = if format >= 2 {
            r.take(1, "flags")?[0]
        } else {
            HAS_STATE
        };
        let stored = u32::from_le_bytes(r.array("checksum")?);
        let payload = r.0.to_vec();
        let computed = crc32fast::hash(&payload);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
        Ok(Self {
            kind,
            lease,
            payload: (flags & HAS_STATE != 0).then_some(payload),
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

    fn text(&mut self, n: usize, what: &'static str) -> Result<String, RecordError> {
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError::NotUtf8(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Account {
        balance: i64,
        owner: String,
    }

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
                payload: Some(vec![1, 2, 3]),
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

    #[test]
    fn a_lease_can_be_held_without_a_state_and_format_1_is_still_read() {
        let lease_only = Record {
            kind: "k".into(),
            lease: Some(Lease {
                epoch: 3,
                node: "n".into(),
                activation: 1,
            }),
            payload: None,
        };
        assert_eq!(Record::decode(&lease_only.encode()).unwrap(), lease_only);
        // A format-1 record, as the first release wrote it: no flags byte, always a state.
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"OVMD");
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.push(1);
        v1.push(b'k');
        v1.push(0);
        v1.extend_from_slice(&crc32fast::hash(b"st").to_le_bytes());
        v1.extend_from_slice(b"st");
        let decoded = Record::decode(&v1).unwrap();
        assert_eq!(decoded.payload.as_deref(), Some(&b"st"[..]));
        assert_eq!(decoded.lease, None);
    }

    #[test]
    fn damaged_records_are_refused() {
        let bytes = Record {
            kind: "k".into(),
            lease: None,
            payload: Some(b"hello".to_vec()),
        }
        .encode();
        assert_eq!(Record::decode(b"nope"), Err(RecordError::BadMagic));
        for cut in 0..bytes.len() - 5 {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            Record::decode(&flipped),
            Err(RecordError::Checksum { .. })
        ));
        let mut future = bytes;
        future[4] = 9;
        assert_eq!(
            Record::decode(&future),
            Err(RecordError::UnsupportedFormat { found: 9 })
        );
    }
}
