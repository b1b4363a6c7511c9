// On a single node no message leaves: the derive adds nothing, so fields need no serde.
use overmind_ractor::{prelude::*, ractor::ActorProcessingErr};

#[derive(VirtualMessage)]
enum Msg {
    Watch(std::sync::mpsc::Sender<u64>),
    Get(RpcReplyPort<std::time::Instant>),
}

#[derive(Default)]
struct Watched;

#[virtual_actor(kind = "watched")]
impl Actor for Watched {
    type Msg = Msg;
    type State = u64;

    async fn handle(&self, _: ActorRef<Msg>, msg: Msg, n: &mut u64) -> Result<(), ActorProcessingErr> {
        if let Msg::Watch(tx) = msg {
            let _ = tx.send(*n);
        }
        Ok(())
    }
}

fn main() {
    let _ = overmind_ractor::Overmind::builder().register::<Watched>();
}
