//! Messages that can be sent to an actor on another node: the [`VirtualMessage`] trait,
//! written by `#[derive(VirtualMessage)]`.
//!
//! A message leaves as its variant's name and its fields (every field but the reply port),
//! encoded with serde + bincode as one tuple. A call's reply port stays with the caller; the
//! reply comes back as bytes and is decoded into it. On the receiving side the decoding is
//! bounded by the bytes received, and every failure is a [`DecodeError`], never a panic.

use std::{any::Any, future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc};

use overmind_core::codec;
use ractor::RpcReplyPort;
use serde::{Serialize, de::DeserializeOwned};

use super::reply::{CallMeta, Gate, Relay, ReplyCodec, Settle};
use crate::Error;

/// A virtual actor's message type that can travel to the node owning its actor.
///
/// Derive it: `#[derive(VirtualMessage)]` on the message enum. Every field must implement
/// serde's `Serialize` and `Deserialize` (numbers, strings, collections, `Option`, `Result`,
/// your own `#[derive(Serialize, Deserialize)]` types), except the `RpcReplyPort<T>` of a
/// call variant, whose `T` must. Tuple, struct and unit variants are all allowed. With the
/// `cluster` feature the derive also implements `ractor::Message` for the type.
///
/// Without the `cluster` feature every type implements it and the derive adds nothing, so a
/// single-node application needs neither the derive nor serde on its messages.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to another node",
    label = "a virtual actor's message type in a cluster",
    note = "add `#[derive(VirtualMessage)]` to `{Self}` (and serde's `Serialize, Deserialize` to the types of its fields)"
)]
pub trait VirtualMessage: ractor::Message {
    /// The message as it leaves for another node, or the message back with why it cannot.
    #[doc(hidden)]
    fn __encode(self) -> Result<Encoded, Unsent<Self>> {
        Err(Unsent {
            message: self,
            reason: "its type does not derive VirtualMessage".into(),
        })
    }

    /// The message that arrived from another node as `variant` with `args`; `call` is there
    /// if the sender waits for a reply.
    #[doc(hidden)]
    fn __decode(
        variant: &str,
        args: &[u8],
        call: Option<&mut Incoming>,
    ) -> Result<Self, DecodeError> {
        let _ = (args, call);
        Err(DecodeError::UnknownVariant {
            variant: variant.to_owned(),
        })
    }
}

/// A message ready to leave: its variant, its encoded fields, and for a call where its reply
/// goes.
#[doc(hidden)]
pub struct Encoded {
    pub(crate) variant: &'static str,
    pub(crate) args: Vec<u8>,
    pub(crate) reply: Option<ReplyTo>,
}

impl Encoded {
    /// A cast: nothing comes back.
    pub fn cast(variant: &'static str, args: Vec<u8>) -> Self {
        Self {
            variant,
            args,
            reply: None,
        }
    }

    /// A call: the reply's bytes are decoded as `T` and sent to `port`.
    pub fn call<T: DeserializeOwned + Send + 'static>(
        variant: &'static str,
        args: Vec<u8>,
        port: RpcReplyPort<T>,
    ) -> Self {
        let reply: ReplyTo = Box::new(move |bytes: &[u8]| {
            // A peer's bytes run the reply type's `Deserialize`, which may panic.
            let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                codec::decode_state::<T>(bytes).map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("its decoding panicked".into()));
            match decoded {
                Ok(value) => port.send(value).map_err(|_| ReplyFailed::CallerGone),
                Err(reason) => Err(ReplyFailed::Decode {
                    reason,
                    port: Box::new(port),
                }),
            }
        });
        Self {
            variant,
            args,
            reply: Some(reply),
        }
    }
}

/// Decodes a call's reply and hands it to the caller's port.
pub(crate) type ReplyTo = Box<dyn FnOnce(&[u8]) -> Result<(), ReplyFailed> + Send>;

/// Why a reply that arrived did not reach its caller.
pub(crate) enum ReplyFailed {
    /// Its bytes are not a reply of the call's type. The caller's port comes back, so that
    /// it stays open until the caller has been given this error (its closing would tell the
    /// caller "no reply" first).
    Decode {
        reason: String,
        port: Box<dyn Any + Send>,
    },
    /// The caller stopped waiting.
    CallerGone,
}

/// A message that could not be encoded, given back.
#[doc(hidden)]
pub struct Unsent<M> {
    pub(crate) message: M,
    pub(crate) reason: String,
}

impl<M> Unsent<M> {
    /// `message` could not be encoded because of `error`.
    pub fn new(message: M, error: codec::CodecError) -> Self {
        Self {
            message,
            reason: error.to_string(),
        }
    }
}

/// Compiles only for a type that can travel between nodes: the derive checks each field (and
/// each reply type) with it, so an error names the field.
#[doc(hidden)]
#[inline(always)]
pub fn can_travel<T: Serialize + DeserializeOwned>() {}

/// The longest encoding of a message's fields: 15 MiB, so that the message with its envelope
/// fits the 16 MiB a link between nodes carries. A longer message is refused at the sender
/// and handed back.
pub(crate) const MAX_MESSAGE_LEN: usize = 15 << 20;

/// Encodes a variant's fields (every one but its reply port), as a tuple of references; at
/// most [`MAX_MESSAGE_LEN`] bytes.
#[doc(hidden)]
pub fn encode_args<T: Serialize>(fields: &T) -> Result<Vec<u8>, codec::CodecError> {
    let args = codec::encode_state(fields)?;
    if args.len() > MAX_MESSAGE_LEN {
        return Err(codec::CodecError::Encode {
            type_name: std::any::type_name::<T>(),
            reason: format!(
                "{} bytes, more than the {MAX_MESSAGE_LEN} a message between nodes may have",
                args.len()
            ),
        });
    }
    Ok(args)
}

/// Decodes a variant's fields as the tuple of their types; bounded by `args`.
#[doc(hidden)]
pub fn decode_args<T: DeserializeOwned>(
    variant: &'static str,
    args: &[u8],
) -> Result<T, DecodeError> {
    codec::decode_state(args).map_err(|e| DecodeError::Fields {
        variant,
        reason: e.to_string(),
    })
}

/// Why a message from another node could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[doc(hidden)]
pub enum DecodeError {
    /// The message type has no variant of that name.
    #[error("no variant {variant:?}")]
    UnknownVariant {
        /// The variant name that arrived.
        variant: String,
    },
    /// The fields are not an encoding of the variant's field types.
    #[error("variant {variant}: {reason}")]
    Fields {
        /// The variant.
        variant: &'static str,
        /// Why.
        reason: String,
    },
    /// A variant with a reply port arrived without a caller waiting for it.
    #[error("variant {variant} is a call, but it arrived as a cast")]
    CallSentAsCast {
        /// The variant.
        variant: &'static str,
    },
    /// A variant without a reply port arrived with a caller waiting for a reply.
    #[error("variant {variant} is a cast, but it arrived as a call")]
    CastSentAsCall {
        /// The variant.
        variant: &'static str,
    },
}

/// A call that arrived from another node, while its message is decoded: the decoder makes
/// its reply port here, and the receiver takes the relay and the encoded answer afterwards.
#[doc(hidden)]
pub struct Incoming {
    gate: Arc<Gate>,
    meta: CallMeta,
    port: Option<IncomingReply>,
}

/// What the receiver of a call keeps: the relay that gates its reply, and the reply's bytes
/// once the state that produced it is stored.
pub(crate) struct IncomingReply {
    pub(crate) relay: Arc<dyn Settle>,
    pub(crate) answer: Pin<Box<dyn Future<Output = Result<Vec<u8>, Error>> + Send>>,
}

impl Incoming {
    /// For a call that arrived with `meta`.
    pub(crate) fn new(gate: Arc<Gate>, meta: CallMeta) -> Self {
        Self {
            gate,
            meta,
            port: None,
        }
    }

    /// The reply port made while decoding, if the message had one.
    pub(crate) fn take(self) -> Option<IncomingReply> {
        self.port
    }

    /// The reply port for the call's message; its reply is released through the slot's gate,
    /// then encoded for the caller.
    fn reply_port<T: Serialize + DeserializeOwned + Send + 'static>(&mut self) -> RpcReplyPort<T> {
        // An idempotent call's reply is kept with the state, to answer a repeat.
        let codec = self
            .meta
            .idempotency_key
            .is_some()
            .then(ReplyCodec::<T>::serde);
        let (port, relay, caller) = Relay::<T>::new(self.gate.clone(), self.meta.clone(), codec);
        let key = self.gate.key().clone();
        let answer = async move {
            let value = match caller.await {
                Ok(result) => result?,
                Err(_) => return Err(Error::NoReply { key }),
            };
            codec::encode_state(&value).map_err(|e| Error::ReplyNotSent {
                key,
                reason: e.to_string(),
            })
        };
        self.port = Some(IncomingReply {
            relay,
            answer: Box::pin(answer),
        });
        RpcReplyPort::from(port)
    }
}

/// The reply port of a call variant that arrived: refused if it arrived as a cast.
#[doc(hidden)]
pub fn reply_port<T: Serialize + DeserializeOwned + Send + 'static>(
    variant: &'static str,
    call: &mut Option<&mut Incoming>,
) -> Result<RpcReplyPort<T>, DecodeError> {
    match call {
        Some(incoming) => Ok(incoming.reply_port()),
        None => Err(DecodeError::CallSentAsCast { variant }),
    }
}

/// Checks that a variant without a reply port did not arrive as a call.
#[doc(hidden)]
pub fn no_reply(variant: &'static str, call: &Option<&mut Incoming>) -> Result<(), DecodeError> {
    match call {
        Some(_) => Err(DecodeError::CastSentAsCall { variant }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Inner {
        a: u8,
    }

    #[derive(Serialize, Deserialize)]
    struct Flattened {
        #[serde(flatten)]
        inner: Inner,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Number(u8),
        Text(String),
    }

    #[test]
    fn fields_encode_and_decode_as_a_tuple() {
        let args = encode_args(&(&7u8, &"x".to_owned())).expect("encodes");
        let (n, s): (u8, String) = decode_args("V", &args).expect("decodes");
        assert_eq!((n, s.as_str()), (7, "x"));
        let err = decode_args::<(u8, String)>("V", &args[..1]).expect_err("cut short");
        assert!(
            matches!(err, DecodeError::Fields { variant: "V", .. }),
            "{err}"
        );
    }

    #[test]
    fn a_message_longer_than_a_link_carries_is_refused_at_the_sender() {
        let big = vec![0u8; MAX_MESSAGE_LEN];
        let err = encode_args(&(&big,)).expect_err("too long with its length prefix");
        assert!(err.to_string().contains("may have"), "{err}");
    }

    // What the README says of serde attributes bincode cannot serve.
    #[test]
    fn flatten_fails_to_encode_and_untagged_fails_to_decode() {
        let flattened = Flattened {
            inner: Inner { a: 1 },
        };
        assert!(encode_args(&(&flattened,)).is_err());
        let args = encode_args(&(&Untagged::Number(3),)).expect("untagged encodes");
        assert!(decode_args::<(Untagged,)>("V", &args).is_err());
    }
}
