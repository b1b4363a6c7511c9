//! What routers send each other: an envelope around a user message (encoded by ractor's own
//! `RactorClusterMessage` serialization), and the reply to a call.
//!
//! Both are decoded here, never by `BytesConvertable::from_bytes` (which cannot fail), so a
//! damaged or foreign frame becomes a typed error instead of a panic.

use overmind_core::{ActorKey, codec};
use serde::{Deserialize, Serialize};

use crate::{ActivationError, Error, PersistError};

/// The first byte of every frame: the wire format version.
const WIRE_V1: u8 = 1;

/// A user message on its way to the node that owns its actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) kind: String,
    pub(crate) id: String,
    /// The sender's epoch: a receiver that is behind waits to catch up before routing.
    pub(crate) epoch: u64,
    /// How many routers forwarded it already (bounded, so a moving actor cannot ping-pong).
    pub(crate) hops: u8,
    /// ractor's serialized message: the variant name and its encoded fields.
    pub(crate) variant: String,
    pub(crate) args: Vec<u8>,
}

/// The answer to a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The reply's bytes, as ractor's serialization of the reply type produced them.
    Ok(Vec<u8>),
    /// Why there is no reply.
    Err(WireError),
}

/// An [`Error`] as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireError {
    HandlerFailed(String),
    ActivationFailed(String),
    PersistFailed(String),
    NoReply,
    Timeout,
    Unavailable(String),
    BadFrame(String),
    Other(String),
}

fn frame<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![WIRE_V1];
    // Encoding our own plain structs cannot fail.
    out.extend(codec::encode_state(value).unwrap_or_default());
    out
}

fn unframe<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    let bad = |reason: String| Error::BadFrame {
        reason: format!("{what}: {reason}"),
    };
    match bytes.split_first() {
        Some((&WIRE_V1, body)) => codec::decode_state(body).map_err(|e| bad(e.to_string())),
        Some((v, _)) => Err(bad(format!("unknown wire version {v}"))),
        None => Err(bad("empty frame".into())),
    }
}

impl Envelope {
    pub(crate) fn encode(&self) -> Vec<u8> {
        frame(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        unframe(bytes, "envelope")
    }
}

impl Reply {
    pub(crate) fn encode(&self) -> Vec<u8> {
        frame(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        unframe(bytes, "reply")
    }

    pub(crate) fn from_result(result: Result<Vec<u8>, Error>) -> Self {
        match result {
            Ok(bytes) => Self::Ok(bytes),
            Err(e) => Self::Err(WireError::from(&e)),
        }
    }
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        match e {
            Error::HandlerFailed { reason, .. } => Self::HandlerFailed(reason.clone()),
            Error::ActivationFailed { cause, .. } => Self::ActivationFailed(cause.to_string()),
            Error::PersistFailed { cause, .. } => Self::PersistFailed(cause.to_string()),
            Error::NoReply { .. } => Self::NoReply,
            Error::Timeout { .. } => Self::Timeout,
            Error::Unavailable { reason, .. } => Self::Unavailable(reason.clone()),
            Error::ShuttingDown { .. } => Self::Unavailable("its node is shutting down".into()),
            Error::BadFrame { reason } => Self::BadFrame(reason.clone()),
            other => Self::Other(other.to_string()),
        }
    }
}

impl WireError {
    /// The error for the caller, naming the actor.
    pub(crate) fn into_error(
        self,
        key: &ActorKey,
        node: &str,
        timeout: std::time::Duration,
    ) -> Error {
        let key = key.clone();
        match self {
            Self::HandlerFailed(reason) => Error::HandlerFailed { key, reason },
            Self::ActivationFailed(m) => Error::ActivationFailed {
                key,
                cause: ActivationError::Remote(m),
            },
            Self::PersistFailed(m) => Error::PersistFailed {
                key,
                cause: PersistError::Remote(m),
            },
            Self::NoReply => Error::NoReply { key },
            Self::Timeout => Error::Timeout { key, timeout },
            Self::Unavailable(reason) => Error::Unavailable {
                key,
                reason: format!("{reason} (on node {node})"),
            },
            Self::BadFrame(reason) => Error::BadFrame {
                reason: format!("node {node} could not decode: {reason}"),
            },
            Self::Other(reason) => Error::Unavailable {
                key,
                reason: format!("node {node}: {reason}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_a_typed_error() {
        let env = Envelope {
            kind: "account".into(),
            id: "alice".into(),
            epoch: 3,
            hops: 0,
            variant: "Deposit".into(),
            args: vec![0, 0, 0, 0, 0, 0, 0, 1, 7],
        };
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        let reply = Reply::Err(WireError::HandlerFailed("boom".into()));
        assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
        for garbage in [&b""[..], b"\x01", b"\x02abc", b"\x01\xff\xff\xff\xff\xff"] {
            assert!(
                matches!(Envelope::decode(garbage), Err(Error::BadFrame { .. })),
                "{garbage:?}"
            );
        }
    }
}
