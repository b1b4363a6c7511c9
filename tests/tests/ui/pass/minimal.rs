// No `type Arguments`, no `pre_start`: the macro supplies them.
use overmind_ractor::{prelude::*, ractor::ActorProcessingErr};

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    n: u64,
}

#[derive(Default)]
struct CounterActor;

#[virtual_actor(kind = "counter")]
impl Actor for CounterActor {
    type Msg = u64;
    type State = Counter;

    async fn handle(&self, _: ActorRef<u64>, by: u64, state: &mut Counter) -> Result<(), ActorProcessingErr> {
        state.n += by;
        Ok(())
    }
}

fn main() {
    assert_eq!(<CounterActor as VirtualActor>::KIND, "counter");
    assert_eq!(
        <CounterActor as VirtualActor>::PASSIVATE_AFTER,
        Some(std::time::Duration::from_secs(600))
    );
}
