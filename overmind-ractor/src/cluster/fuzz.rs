//! Entry points for Overmind's fuzz harness (`overmind-fuzz` in the tests crate) and its
//! hostile-peer tests, which must reach the wire format private to this crate. Hidden: not a
//! public API, and it changes without notice.

use std::sync::Arc;

use super::wire::{Envelope, Reply, WireError};
use crate::{
    VirtualMessage,
    engine::{message::Incoming, reply::Gate},
};

/// Decodes `bytes` as a router decodes an envelope from a peer: the message's variant and
/// arguments, for [`decode_message`].
pub fn decode_envelope(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    Envelope::decode(bytes)
        .map(|e| (e.variant, e.args))
        .map_err(|e| e.to_string())
}

/// Decodes `bytes` as a caller decodes a reply frame from a peer: Ok if it is a reply, a
/// value or an error.
pub fn decode_reply(bytes: &[u8]) -> Result<(), String> {
    Reply::decode(bytes).map_err(|e| e.to_string())?;
    let _ = reply_payload(bytes);
    Ok(())
}

/// Decodes a router's reply frame as a peer reads it: the reply's bytes, or the error it
/// carries, as text.
pub fn reply_payload(bytes: &[u8]) -> Result<Vec<u8>, String> {
    match Reply::decode(bytes) {
        Ok(Reply::Ok(bytes)) => Ok(bytes),
        Ok(Reply::Err(e)) => Err(format!("{e:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Decodes a batch of release notices as a router does: Ok if it is one.
pub fn decode_release_notices(args: &[u8]) -> Result<(), String> {
    super::release::ReleaseBatch::decode(args)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A batch of release notices: `node`'s activations that stopped, by actor id. A seed.
pub fn release_notices(node: &str, released: &[(&str, u64)]) -> Vec<u8> {
    super::release::ReleaseBatch {
        node: node.to_owned(),
        released: released
            .iter()
            .map(|(id, a)| ((*id).to_owned(), *a))
            .collect(),
    }
    .encode()
}

/// Decodes a user message as a router does once the envelope decoded: `variant` and `args`
/// as `VirtualMessage` encoded them, with a reply port if `call`.
pub fn decode_message<M: VirtualMessage>(
    variant: &str,
    args: &[u8],
    call: bool,
) -> Result<M, String> {
    let decode = |incoming| {
        super::inbound::decode_message::<M>("fuzz", variant, args, incoming)
            .map_err(|e| e.to_string())
    };
    if !call {
        return decode(None);
    }
    let key = overmind_core::ActorKey::new("fuzz", "fuzz").map_err(|e| e.to_string())?;
    let mut incoming = Incoming::new(Arc::new(Gate::new(key)), Default::default());
    decode(Some(&mut incoming))
}

/// A message as it leaves for another node: its variant and its encoded fields (a seed, or
/// what a test sends a router as a peer would). A call's reply port is dropped.
pub fn encode_message<M: VirtualMessage>(msg: M) -> Result<(String, Vec<u8>), String> {
    match msg.__encode() {
        Ok(encoded) => Ok((encoded.variant.to_owned(), encoded.args)),
        Err(unsent) => Err(unsent.reason),
    }
}

/// A valid envelope frame: seeds for the harness, and a way for a test to call a router
/// directly, as a peer would.
pub fn envelope(
    kind: &str,
    id: &str,
    epoch: u64,
    hops: u8,
    variant: &str,
    args: &[u8],
) -> Result<Vec<u8>, String> {
    Envelope {
        kind: kind.to_owned(),
        id: id.to_owned(),
        epoch,
        hops,
        variant: variant.to_owned(),
        args: args.to_vec(),
        call: super::wire::CallInfo::default(),
    }
    .encode()
}

/// Valid reply frames: `Ok(payload)`, and one of each error.
pub fn replies(payload: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(payload).into_owned();
    [
        Reply::Ok(payload.to_vec()),
        Reply::Err(WireError::HandlerFailed(text.clone())),
        Reply::Err(WireError::ActivationFailed(text.clone())),
        Reply::Err(WireError::PersistFailed(text.clone())),
        Reply::Err(WireError::NoReply),
        Reply::Err(WireError::Timeout),
        Reply::Err(WireError::Unavailable(text.clone())),
        Reply::Err(WireError::BadFrame(text.clone())),
        Reply::Err(WireError::Other(text.clone())),
        Reply::Err(WireError::DeleteFailed(text.clone())),
        Reply::Err(WireError::ReplyNotSent(text.clone())),
        Reply::Err(WireError::OutcomeUnknown(text)),
    ]
    .iter()
    .map(Reply::encode)
    .collect()
}
