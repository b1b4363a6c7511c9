//! What routers send each other: an envelope around a user message (encoded by its
//! `VirtualMessage` derive), and the reply to a call.
//!
//! Both are decoded here, so a damaged or foreign frame becomes a typed error instead of a
//! panic. They are decoded with [`codec::decode_state`], which is bounded by the bytes it is
//! given (no declared length makes it allocate), and no frame longer than [`MAX_FRAME_LEN`]
//! is read or written.

use std::{sync::Arc, time::Duration};

use overmind_core::{
    ActorKey, MAX_ID_LEN, applied::validate_key, codec, membership::view::MAX_EPOCH, validate_kind,
};
use serde::{Deserialize, Serialize};

use crate::{
    ActivationError, Error, PersistError,
    engine::current::{Chain, Link, MAX_CHAIN},
    engine::reply::CallMeta,
};

/// The first byte of every frame: the wire format version. Version 3 carries a call's
/// timeout and chain; version 2 carried user messages in `VirtualMessage`'s encoding
/// (version 1 carried ractor's). Frames of any other version are refused whole, so nodes of
/// releases that cannot understand each other say so.
const WIRE_VERSION: u8 = 3;

/// The longest call timeout a frame may carry (a week): longer ones are refused as damaged.
const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;

/// A user message on its way to the node that owns its actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) kind: String,
    pub(crate) id: String,
    /// The sender's epoch: a receiver that is behind waits to catch up before routing.
    pub(crate) epoch: u64,
    /// How many routers forwarded it already (bounded, so a moving actor cannot ping-pong).
    pub(crate) hops: u8,
    /// The message: its variant's name and its encoded fields.
    pub(crate) variant: String,
    pub(crate) args: Vec<u8>,
    /// For a call, its timeout and chain (empty for a cast).
    pub(crate) call: CallInfo,
}

/// What a call carries besides its message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CallInfo {
    /// What was left of the caller's timeout when the frame was sent, in milliseconds: the
    /// owner does not start the handler once it has passed.
    pub(crate) timeout_ms: Option<u64>,
    /// The actors whose handlers wait for this call, outermost first.
    pub(crate) chain: Vec<Link>,
    /// The call's idempotency key, if it has one.
    pub(crate) idempotency_key: Option<String>,
    /// A cast whose sender waits for a reply saying it was handled and stored.
    pub(crate) acknowledged: bool,
}

impl CallInfo {
    pub(crate) fn from_meta(meta: &CallMeta) -> Self {
        Self {
            // Rounded up: a call with time left is not refused as already expired.
            timeout_ms: meta.remaining().map(|left| {
                left.as_nanos()
                    .div_ceil(1_000_000)
                    .min(MAX_TIMEOUT_MS as u128) as u64
            }),
            chain: meta.chain.links().to_vec(),
            idempotency_key: meta.idempotency_key.as_deref().map(str::to_owned),
            acknowledged: meta.acknowledged,
        }
    }

    /// The call's metadata on the receiving node (its timeout counted from now).
    pub(crate) fn into_meta(self) -> CallMeta {
        let meta = CallMeta::new(
            self.timeout_ms.map(Duration::from_millis),
            Chain::from_links(self.chain),
        )
        .with_idempotency_key(self.idempotency_key.map(Arc::from));
        if self.acknowledged {
            meta.acknowledged()
        } else {
            meta
        }
    }

    /// Takes `elapsed` off what is left of the call's timeout.
    pub(crate) fn spend(&mut self, elapsed: Duration) {
        if let Some(ms) = &mut self.timeout_ms {
            *ms = ms.saturating_sub(elapsed.as_millis() as u64);
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.timeout_ms.is_some_and(|ms| ms > MAX_TIMEOUT_MS) {
            return Err(format!("a call timeout over {MAX_TIMEOUT_MS} ms"));
        }
        if self.chain.len() > MAX_CHAIN {
            return Err(format!(
                "a chain of {} calls, more than {MAX_CHAIN}",
                self.chain.len()
            ));
        }
        if let Some(key) = &self.idempotency_key {
            validate_key(key).map_err(|e| e.to_string())?;
        }
        for link in &self.chain {
            validate_kind(&link.kind).map_err(|e| e.to_string())?;
            if link.id.is_empty() || link.id.len() > MAX_ID_LEN {
                return Err("an actor id in the call chain is empty or too long".into());
            }
        }
        Ok(())
    }
}

/// The answer to a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The reply value, encoded with serde + bincode.
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
    DeleteFailed(String),
    ReplyNotSent(String),
    OutcomeUnknown(String),
    Expired,
}

/// The longest frame a router sends or reads. ractor_cluster drops a link that carries a frame
/// over 16 MiB (its limit on the whole network message); the rest is left for its own fields
/// around ours (variant name, protobuf framing), so a message too large is refused at the
/// sender instead of taking the link down.
pub(crate) const MAX_FRAME_LEN: usize = (16 << 20) - (64 << 10);

// A message's fields, at their longest, fit a frame with the rest of the envelope (kind, id of
// at most 1 KiB, epoch, hops, variant name).
const _: () = assert!(crate::engine::message::MAX_MESSAGE_LEN + (64 << 10) < MAX_FRAME_LEN);

fn frame<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let body = codec::encode_state(value).map_err(|e| e.to_string())?;
    if body.len() >= MAX_FRAME_LEN {
        return Err(format!(
            "its frame would be {} bytes, more than the {MAX_FRAME_LEN} a link between nodes carries",
            body.len() + 1
        ));
    }
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(WIRE_VERSION);
    out.extend(body);
    Ok(out)
}

fn unframe<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    let bad = |reason: String| Error::BadFrame {
        reason: format!("{what}: {reason}"),
    };
    if bytes.len() > MAX_FRAME_LEN {
        return Err(bad(format!(
            "{} bytes, more than the {MAX_FRAME_LEN} a frame may have",
            bytes.len()
        )));
    }
    match bytes.split_first() {
        Some((&WIRE_VERSION, body)) => codec::decode_state(body).map_err(|e| bad(e.to_string())),
        Some((v, _)) => Err(bad(format!(
            "wire version {v}, but this node speaks version {WIRE_VERSION} (is the sender of another release?)"
        ))),
        None => Err(bad("empty frame".into())),
    }
}

impl Envelope {
    /// The frame, or why the message is too large to send.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, String> {
        frame(self)
    }

    /// Decodes an envelope. An epoch no view can reach is refused here, rather than making
    /// the router wait for its view to catch up with it.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let envelope: Self = unframe(bytes, "envelope")?;
        if envelope.epoch > MAX_EPOCH {
            return Err(Error::BadFrame {
                reason: format!(
                    "envelope: epoch {} is out of range (at most {MAX_EPOCH})",
                    envelope.epoch
                ),
            });
        }
        envelope.call.check().map_err(|reason| Error::BadFrame {
            reason: format!("envelope: {reason}"),
        })?;
        Ok(envelope)
    }
}

impl Reply {
    /// The frame. A reply too large to send becomes an error reply saying so.
    pub(crate) fn encode(&self) -> Vec<u8> {
        frame(self).unwrap_or_else(|reason| {
            let reason = format!("the reply is too large: {reason}");
            // A value too large means the message was handled; an error too large, not.
            let refusal = Self::Err(match self {
                Self::Ok(_) => WireError::ReplyNotSent(reason),
                Self::Err(_) => WireError::Other(reason),
            });
            // A short error reply always encodes.
            frame(&refusal).unwrap_or_default()
        })
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
            Error::DeleteFailed { cause, .. } => Self::DeleteFailed(cause.to_string()),
            Error::ReplyNotSent { reason, .. } => Self::ReplyNotSent(reason.clone()),
            Error::OutcomeUnknown { reason, .. } => Self::OutcomeUnknown(reason.clone()),
            Error::Expired { .. } => Self::Expired,
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
            Self::DeleteFailed(m) => Error::DeleteFailed {
                key,
                cause: ActivationError::Remote(m),
            },
            Self::ReplyNotSent(reason) => Error::ReplyNotSent {
                key,
                reason: format!("node {node}: {reason}"),
            },
            Self::OutcomeUnknown(reason) => Error::OutcomeUnknown {
                key,
                reason: format!("{reason} (on node {node})"),
            },
            Self::Expired => Error::Expired { key, timeout },
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
            call: CallInfo {
                timeout_ms: Some(1500),
                chain: vec![Link {
                    kind: "cart".into(),
                    id: "c1".into(),
                }],
                idempotency_key: Some("order-17".into()),
                acknowledged: false,
            },
        };
        assert_eq!(Envelope::decode(&env.encode().unwrap()).unwrap(), env);
        let reply = Reply::Err(WireError::HandlerFailed("boom".into()));
        assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
        for garbage in [&b""[..], b"\x01", b"\x02abc", b"\x01\xff\xff\xff\xff\xff"] {
            assert!(
                matches!(Envelope::decode(garbage), Err(Error::BadFrame { .. })),
                "{garbage:?}"
            );
        }
    }

    /// Issue 8: these 10 bytes made the router allocate 2^60 bytes and abort the node; the
    /// same length inside a reply killed the caller.
    #[test]
    fn declared_lengths_in_a_frame_are_typed_errors() {
        let huge = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let envelope = [&[WIRE_VERSION][..], &huge].concat();
        assert!(matches!(
            Envelope::decode(&envelope),
            Err(Error::BadFrame { .. })
        ));
        // Reply::Err(WireError::HandlerFailed(<2^60-byte string>)) and Reply::Ok(<2^60 bytes>).
        for prefix in [&[WIRE_VERSION, 1, 0][..], &[WIRE_VERSION, 0]] {
            let reply = [prefix, &huge].concat();
            assert!(
                matches!(Reply::decode(&reply), Err(Error::BadFrame { .. })),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn an_epoch_no_view_can_reach_is_refused() {
        let envelope = |epoch| Envelope {
            kind: "k".into(),
            id: "i".into(),
            epoch,
            hops: 0,
            variant: "V".into(),
            args: Vec::new(),
            call: CallInfo::default(),
        };
        let max = envelope(MAX_EPOCH).encode().unwrap();
        assert_eq!(Envelope::decode(&max).unwrap().epoch, MAX_EPOCH);
        let beyond = envelope(u64::MAX).encode().unwrap();
        assert!(matches!(
            Envelope::decode(&beyond),
            Err(Error::BadFrame { reason }) if reason.contains("out of range")
        ));
    }

    #[test]
    fn a_call_chain_or_timeout_out_of_bounds_is_refused() {
        let envelope = |call| Envelope {
            kind: "k".into(),
            id: "i".into(),
            epoch: 1,
            hops: 0,
            variant: "V".into(),
            args: Vec::new(),
            call,
        };
        let link = |kind: &str, id: &str| Link {
            kind: kind.into(),
            id: id.into(),
        };
        let refused = [
            CallInfo {
                timeout_ms: Some(u64::MAX),
                chain: Vec::new(),
                idempotency_key: None,
                acknowledged: false,
            },
            CallInfo {
                timeout_ms: None,
                chain: vec![link("k", "i"); MAX_CHAIN + 1],
                idempotency_key: None,
                acknowledged: false,
            },
            CallInfo {
                timeout_ms: None,
                chain: vec![link("no/such kind", "i")],
                idempotency_key: None,
                acknowledged: false,
            },
            CallInfo {
                timeout_ms: None,
                chain: vec![link("k", "")],
                idempotency_key: None,
                acknowledged: false,
            },
            CallInfo {
                timeout_ms: None,
                chain: Vec::new(),
                idempotency_key: Some(String::new()),
                acknowledged: false,
            },
            CallInfo {
                timeout_ms: None,
                chain: Vec::new(),
                idempotency_key: Some("k".repeat(257)),
                acknowledged: false,
            },
        ];
        for call in refused {
            let frame = envelope(call.clone()).encode().unwrap();
            assert!(
                matches!(Envelope::decode(&frame), Err(Error::BadFrame { .. })),
                "{call:?}"
            );
        }
        let longest = CallInfo {
            timeout_ms: Some(MAX_TIMEOUT_MS),
            chain: vec![link("k", "i"); MAX_CHAIN],
            idempotency_key: Some("k".repeat(256)),
            acknowledged: true,
        };
        let frame = envelope(longest.clone()).encode().unwrap();
        assert_eq!(Envelope::decode(&frame).unwrap().call, longest);
    }

    #[test]
    fn a_frame_too_large_for_a_link_is_refused_at_the_sender() {
        let env = Envelope {
            kind: "k".into(),
            id: "i".into(),
            epoch: 1,
            hops: 0,
            variant: "V".into(),
            args: vec![0; MAX_FRAME_LEN],
            call: CallInfo::default(),
        };
        let err = env.encode().unwrap_err();
        assert!(err.contains("more than the"), "{err}");
        // A reply that large becomes an error reply, which the caller can read: the message
        // was handled, so it says the reply was not sent.
        let reply = Reply::decode(&Reply::Ok(vec![0; MAX_FRAME_LEN]).encode()).unwrap();
        assert!(
            matches!(&reply, Reply::Err(WireError::ReplyNotSent(m)) if m.contains("too large")),
            "{reply:?}"
        );
        let error = Reply::Err(WireError::HandlerFailed("x".repeat(MAX_FRAME_LEN)));
        let reply = Reply::decode(&error.encode()).unwrap();
        assert!(
            matches!(&reply, Reply::Err(WireError::Other(m)) if m.contains("too large")),
            "{reply:?}"
        );
        assert!(matches!(
            Reply::decode(&vec![WIRE_VERSION; MAX_FRAME_LEN + 1]),
            Err(Error::BadFrame { .. })
        ));
    }
}
