use overmind_ractor::prelude::*;

struct Opaque;

#[derive(VirtualMessage)]
enum Msg {
    Put(Opaque),
    Get(RpcReplyPort<Opaque>),
}

fn main() {}
