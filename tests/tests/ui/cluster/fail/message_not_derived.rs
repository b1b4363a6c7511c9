use overmind_ractor::{Overmind, prelude::*};

#[derive(RactorMessage)]
enum Msg {
    Add(u64),
}

#[derive(Default)]
struct Counter;

#[virtual_actor(kind = "counter")]
impl Actor for Counter {
    type Msg = Msg;
    type State = u64;

    async fn handle(&self, _: ActorRef<Msg>, _: Msg, _: &mut u64) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn main() {
    let _ = Overmind::builder().register::<Counter>();
}
