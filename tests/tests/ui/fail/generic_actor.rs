use overmind_ractor::{prelude::*, ractor::ActorProcessingErr};

struct A<T>(std::marker::PhantomData<T>);

#[virtual_actor(kind = "a")]
impl<T: Send + Sync + 'static> Actor for A<T> {
    type Msg = ();
    type State = u8;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut u8) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn main() {}
