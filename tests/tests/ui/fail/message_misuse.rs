use overmind_ractor::prelude::*;

#[derive(VirtualMessage)]
enum TwoReplies {
    Both(RpcReplyPort<u8>, RpcReplyPort<u8>),
}

#[derive(VirtualMessage)]
enum Generic<T> {
    Put(T),
}

#[derive(VirtualMessage)]
#[virtual_message(krate = "x")]
enum BadOption {
    A,
}

fn main() {}
