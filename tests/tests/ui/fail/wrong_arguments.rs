use overmind_ractor::{prelude::*, ractor::ActorProcessingErr};

#[derive(Default)]
struct A;

// A virtual actor's Arguments are Activation<State>; it is never spawned by hand.
#[virtual_actor(kind = "a")]
impl Actor for A {
    type Msg = ();
    type State = u8;
    type Arguments = String;
    async fn pre_start(&self, _: ActorRef<()>, _: String) -> Result<u8, ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut u8) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn main() {}
