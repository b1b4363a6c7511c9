use overmind_ractor::{prelude::*, ractor::ActorProcessingErr};

// No Default and no pre_start: the macro cannot make a new actor's state.
#[derive(serde::Serialize, serde::Deserialize)]
struct Balance(i64);

#[derive(Default)]
struct A;

#[virtual_actor(kind = "a")]
impl Actor for A {
    type Msg = ();
    type State = Balance;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut Balance) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn main() {}
