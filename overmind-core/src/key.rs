//! Actor keys: the `(kind, id)` pair that names a virtual actor everywhere — in handles, in the
//! store, on the hash ring and on the wire.

use std::fmt;

/// The longest kind name, in bytes.
pub const MAX_KIND_LEN: usize = 64;
/// The longest actor id, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// Why a kind or an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Kinds are short ASCII names; they are part of every stored key, so they must never be ambiguous.
    #[error(
        "invalid actor kind {kind:?}: use 1 to {MAX_KIND_LEN} characters from A-Z, a-z, 0-9, '_', '-', '.'"
    )]
    InvalidKind {
        /// The kind as given.
        kind: String,
    },
    /// Ids are any text except the empty string and NUL, up to [`MAX_ID_LEN`] bytes.
    #[error("invalid id for actor kind {kind:?}: {reason}")]
    InvalidId {
        /// The kind the id was meant for.
        kind: String,
        /// What is wrong with the id.
        reason: &'static str,
    },
}

/// Checks a kind name: 1 to [`MAX_KIND_LEN`] bytes of `[A-Za-z0-9_.-]`.
pub fn validate_kind(kind: &str) -> Result<(), KeyError> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidKind {
            kind: kind.to_owned(),
        })
    }
}

fn validate_id(kind: &str, id: &str) -> Result<(), KeyError> {
    let reason = if id.is_empty() {
        "the id is empty"
    } else if id.len() > MAX_ID_LEN {
        "the id is longer than 1024 bytes"
    } else if id.contains('\0') {
        "the id contains a NUL character"
    } else {
        return Ok(());
    };
    Err(KeyError::InvalidId {
        kind: kind.to_owned(),
        reason,
    })
}

/// The name of one virtual actor: its kind (one registered actor type) and its id within the kind.
///
/// ```
/// use overmind_core::ActorKey;
/// let key = ActorKey::new("account", "alice")?;
/// assert_eq!(key.to_string(), "account/alice");
/// assert!(ActorKey::new("account", "").is_err());
/// # Ok::<(), overmind_core::KeyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorKey {
    kind: &'static str,
    id: Box<str>,
}

impl ActorKey {
    /// Builds a key, checking both parts.
    pub fn new(kind: &'static str, id: impl Into<String>) -> Result<Self, KeyError> {
        validate_kind(kind)?;
        let id: String = id.into();
        validate_id(kind, &id)?;
        Ok(Self {
            kind,
            id: id.into_boxed_str(),
        })
    }

    /// The actor's kind.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The actor's id within its kind.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key's bytes in a byte-ordered store: the kind, a NUL, the id. Unambiguous because
    /// neither part may contain NUL.
    pub fn storage_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.kind.len() + 1 + self.id.len());
        out.extend_from_slice(self.kind.as_bytes());
        out.push(0);
        out.extend_from_slice(self.id.as_bytes());
        out
    }
}

impl fmt::Display for ActorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

impl fmt::Debug for ActorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorKey({}/{:?})", self.kind, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_checked() {
        for good in ["account", "chat-room", "user_profile", "v1.Account", "A"] {
            assert!(validate_kind(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "a b", "ä", "a\0b", &"k".repeat(MAX_KIND_LEN + 1)] {
            assert!(validate_kind(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(ActorKey::new("k", "alice").is_ok());
        assert!(ActorKey::new("k", "with/slash and spaces ✓").is_ok());
        assert!(ActorKey::new("k", "x".repeat(MAX_ID_LEN)).is_ok());
        let err = ActorKey::new("k", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid id for actor kind \"k\": the id is empty"
        );
        assert!(ActorKey::new("k", "a\0").is_err());
        assert!(ActorKey::new("k", "x".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn storage_keys_do_not_collide_across_kinds() {
        let a = ActorKey::new("ab", "c").unwrap().storage_key();
        let b = ActorKey::new("a", "bc").unwrap().storage_key();
        assert_ne!(a, b);
        assert_eq!(a, b"ab\0c");
    }
}
