//! The calls an actor applied under an idempotency key, with their replies.
//!
//! Kept in the actor's record ([`crate::codec::Record::applied`]) and written in the same
//! save as the state the call produced, so a retry of a call finds it applied exactly when
//! its effect is stored. Bounded: an actor keeps its most recent calls only (a number its
//! kind chooses, and at most [`MAX_APPLIED_LEN`] bytes of keys and replies), and a reply
//! only up to [`MAX_KEPT_REPLY_LEN`] bytes.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// The longest reply kept with an applied call, in bytes (encoded). A retry of a call whose
/// reply was longer learns that it was applied, without the reply.
pub const MAX_KEPT_REPLY_LEN: usize = 64 << 10;

/// The most bytes of keys and replies an actor keeps: older calls are forgotten first, so
/// the applied calls always encode (and every save stays bounded).
pub const MAX_APPLIED_LEN: usize = 4 << 20;

/// Why an idempotency key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyKeyError {
    /// The key is empty.
    #[error("an idempotency key cannot be empty")]
    Empty,
    /// The key is too long.
    #[error("an idempotency key is at most {MAX_IDEMPOTENCY_KEY_LEN} bytes; this one is {0}")]
    TooLong(usize),
}

/// Checks an idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] bytes.
pub fn validate_key(key: &str) -> Result<(), IdempotencyKeyError> {
    match key.len() {
        0 => Err(IdempotencyKeyError::Empty),
        n if n > MAX_IDEMPOTENCY_KEY_LEN => Err(IdempotencyKeyError::TooLong(n)),
        _ => Ok(()),
    }
}

/// One applied call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedCall {
    /// Its idempotency key.
    pub key: String,
    /// Its reply, encoded; `None` if the handler did not reply before it returned, or the
    /// reply was longer than [`MAX_KEPT_REPLY_LEN`].
    pub reply: Option<Vec<u8>>,
}

/// An actor's most recent applied calls, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedCalls {
    calls: VecDeque<AppliedCall>,
    /// The bytes of their keys and replies.
    len: usize,
}

impl AppliedCall {
    fn len(&self) -> usize {
        self.key.len() + self.reply.as_ref().map_or(0, Vec::len)
    }
}

impl AppliedCalls {
    /// The applied call with this key, if it is still kept.
    pub fn find(&self, key: &str) -> Option<&AppliedCall> {
        self.calls.iter().rev().find(|c| c.key == key)
    }

    /// Records a call as applied, keeping at most `keep` calls (the oldest are forgotten).
    /// Records a call as applied, keeping at most `keep` calls and [`MAX_APPLIED_LEN`]
    /// bytes (the oldest are forgotten).
    pub fn record(&mut self, key: String, reply: Option<Vec<u8>>, keep: usize) {
        let reply = reply.filter(|r| r.len() <= MAX_KEPT_REPLY_LEN);
        let call = AppliedCall { key, reply };
        self.len += call.len();
        self.calls.push_back(call);
        while self.calls.len() > keep || self.len > MAX_APPLIED_LEN {
            match self.calls.pop_front() {
                Some(old) => self.len -= old.len(),
                None => break,
            }
        }
    }

    /// How many calls are kept.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The encoding stored in a record (empty for none).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        if self.calls.is_empty() {
            return Ok(Vec::new());
        }
        codec::encode_state(&self.calls)
    }

    /// Decodes what a record holds, bounded by its bytes; refuses a key no writer makes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let calls: VecDeque<AppliedCall> = codec::decode_state(bytes)?;
        if let Some(bad) = calls.iter().find(|c| validate_key(&c.key).is_err()) {
            return Err(CodecError::Decode {
                type_name: "AppliedCalls",
                reason: format!("an idempotency key of {} bytes", bad.key.len()),
            });
        }
        let len = calls.iter().map(AppliedCall::len).sum();
        Ok(Self { calls, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_recent_calls_are_kept_and_round_trip() {
        let mut applied = AppliedCalls::default();
        assert_eq!(applied.encode().unwrap(), Vec::<u8>::new());
        for i in 0..5u8 {
            applied.record(format!("k{i}"), Some(vec![i]), 3);
        }
        assert_eq!(applied.len(), 3);
        assert!(applied.find("k1").is_none(), "the oldest are forgotten");
        assert_eq!(applied.find("k4").unwrap().reply, Some(vec![4]));
        applied.record("big".into(), Some(vec![0; MAX_KEPT_REPLY_LEN + 1]), 3);
        assert_eq!(applied.find("big").unwrap().reply, None, "too long to keep");
        let bytes = applied.encode().unwrap();
        assert_eq!(AppliedCalls::decode(&bytes).unwrap(), applied);
    }

    #[test]
    fn the_kept_bytes_are_bounded_whatever_the_count() {
        let mut applied = AppliedCalls::default();
        for i in 0..200 {
            applied.record(format!("k{i}"), Some(vec![0; MAX_KEPT_REPLY_LEN]), 100_000);
        }
        assert!(applied.len() < 200);
        assert!(applied.find("k199").is_some(), "the newest is kept");
        assert!(applied.encode().unwrap().len() <= MAX_APPLIED_LEN + 64 * applied.len());
    }

    #[test]
    fn hostile_bytes_are_typed_errors() {
        assert!(AppliedCalls::decode(&[0xff; 12]).is_err());
        let long = VecDeque::from([AppliedCall {
            key: "x".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1),
            reply: None,
        }]);
        let bytes = codec::encode_state(&long).unwrap();
        assert!(AppliedCalls::decode(&bytes).is_err());
        assert_eq!(validate_key(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            validate_key(&"x".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)),
            Err(IdempotencyKeyError::TooLong(MAX_IDEMPOTENCY_KEY_LEN + 1))
        );
    }
}
