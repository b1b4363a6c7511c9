use overmind_ractor::{prelude::*, ractor::ActorProcessingErr};

#[derive(Default)]
struct NotSerde {
    open_file: Option<std::fs::File>,
}

#[derive(Default)]
struct A;

#[virtual_actor(kind = "a")]
impl Actor for A {
    type Msg = ();
    type State = NotSerde;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut NotSerde) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn main() {}
