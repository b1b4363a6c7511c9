use overmind_ractor::{prelude::*, ractor::ActorProcessingErr};

#[derive(Default)]
struct A;

// Unknown option, reported at its name.
#[virtual_actor(kind = "a", passivate = "5m")]
impl Actor for A {
    type Msg = ();
    type State = u8;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut u8) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[derive(Default)]
struct B;

// A bad duration and a bad kind, both reported, each at its literal.
#[virtual_actor(kind = "bank/account", passivate_after = "5 minutes")]
impl Actor for B {
    type Msg = ();
    type State = u8;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut u8) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[derive(Default)]
struct C;

// No kind at all.
#[virtual_actor(passivate_after = "0s")]
impl Actor for C {
    type Msg = ();
    type State = u8;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut u8) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn main() {}
