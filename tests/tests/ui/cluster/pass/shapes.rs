// Every shape a message may have, encoded as for another node and decoded again.
use std::collections::BTreeMap;

use overmind_ractor::{cluster::fuzz, prelude::*};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Payment {
    Card { last4: u16 },
    Voucher(String),
    Free,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Declined {
    reason: String,
}

#[derive(Debug, VirtualMessage)]
enum ShopMsg {
    Open,
    Rename(String),
    Add { sku: String, quantity: u32, prices: BTreeMap<String, u64> },
    Pay { payment: Payment, reply: RpcReplyPort<Result<u64, Declined>> },
    // The reply port may be anywhere among the fields.
    Quote(RpcReplyPort<Option<u64>>, String),
}

#[derive(Debug, PartialEq, VirtualMessage)]
struct Ping {
    n: u64,
}

#[derive(Debug, PartialEq, VirtualMessage)]
struct Tick;

// Items of the user's named like the generated code's variables change nothing.
#[allow(non_upper_case_globals, non_camel_case_types, dead_code)]
mod clashes {
    use overmind_ractor::prelude::*;

    pub const variant: &str = "x";
    pub const other: &str = "y";
    pub const args: u8 = 0;
    pub const call: u8 = 0;
    pub const error: u8 = 0;
    pub const field0: u8 = 0;
    pub type Result = ();
    pub type Option = ();

    #[derive(Debug, VirtualMessage)]
    pub enum Msg {
        r#type(u8),
        Get { r#ref: u8, reply: RpcReplyPort<u8> },
    }
}

// A message written by a macro_rules, its reply type passed as a fragment.
macro_rules! message {
    ($name:ident, $reply:ty) => {
        #[derive(Debug, VirtualMessage)]
        enum $name {
            Ask(RpcReplyPort<$reply>),
        }
    };
}
message!(Generated, Vec<String>);

fn round_trip<M: VirtualMessage>(msg: M, call: bool) -> M {
    let (variant, args) = fuzz::encode_message(msg).expect("encodes");
    fuzz::decode_message::<M>(&variant, &args, call).expect("decodes")
}

fn port<T>() -> RpcReplyPort<T> {
    RpcReplyPort::from(overmind_ractor::ractor::concurrency::oneshot().0)
}

fn main() {
    assert!(matches!(round_trip(ShopMsg::Open, false), ShopMsg::Open));
    assert!(matches!(round_trip(ShopMsg::Rename("b".into()), false), ShopMsg::Rename(n) if n == "b"));
    let prices = BTreeMap::from([("a".to_owned(), 3)]);
    match round_trip(ShopMsg::Add { sku: "a".into(), quantity: 2, prices: prices.clone() }, false) {
        ShopMsg::Add { sku, quantity, prices: p } => assert_eq!((sku.as_str(), quantity, p), ("a", 2, prices)),
        other => panic!("{other:?}"),
    }
    match round_trip(ShopMsg::Pay { payment: Payment::Card { last4: 4242 }, reply: port() }, true) {
        ShopMsg::Pay { payment, .. } => assert_eq!(payment, Payment::Card { last4: 4242 }),
        other => panic!("{other:?}"),
    }
    assert!(matches!(round_trip(ShopMsg::Quote(port(), "q".into()), true), ShopMsg::Quote(_, q) if q == "q"));
    assert_eq!(round_trip(Ping { n: 7 }, false), Ping { n: 7 });
    assert_eq!(round_trip(Tick, false), Tick);

    let (variant, _) = fuzz::encode_message(clashes::Msg::r#type(1)).expect("encodes");
    assert_eq!(variant, "type", "a raw identifier travels without its r#");
    assert!(matches!(round_trip(clashes::Msg::r#type(4), false), clashes::Msg::r#type(4)));
    assert!(matches!(round_trip(clashes::Msg::Get { r#ref: 2, reply: port() }, true), clashes::Msg::Get { r#ref: 2, .. }));
    assert!(matches!(round_trip(Generated::Ask(port()), true), Generated::Ask(_)));

    // A call variant that arrives as a cast, and a cast as a call, are refused.
    let (variant, args) = fuzz::encode_message(ShopMsg::Quote(port(), "q".into())).expect("encodes");
    assert!(fuzz::decode_message::<ShopMsg>(&variant, &args, false).is_err());
    let (variant, args) = fuzz::encode_message(ShopMsg::Open).expect("encodes");
    assert!(fuzz::decode_message::<ShopMsg>(&variant, &args, true).is_err());
    assert!(fuzz::decode_message::<ShopMsg>("Close", &[], false).is_err());
}
