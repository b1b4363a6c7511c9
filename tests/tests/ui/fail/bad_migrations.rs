use overmind_ractor::{prelude::*, ractor::ActorProcessingErr};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct V1 {
    n: u8,
}

#[derive(Default, Serialize, Deserialize)]
struct V2 {
    n: u16,
}

#[derive(Default)]
struct A;

// A migration from the current version (state_version defaults to 1), reported at the option.
#[virtual_actor(kind = "a", migrate_from(1 = V1))]
impl Actor for A {
    type Msg = ();
    type State = V2;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut V2) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[derive(Default)]
struct B;

// No `From<V1> for V2`: reported at the state type.
#[virtual_actor(kind = "b", state_version = 2, migrate_from(1 = V1))]
impl Actor for B {
    type Msg = ();
    type State = V2;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut V2) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[derive(Default)]
struct C;

// A version of 0, and both ways of declaring migrations.
#[virtual_actor(kind = "c", state_version = 0, migrations = "m", migrate_from(1 = V1))]
impl Actor for C {
    type Msg = ();
    type State = V2;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut V2) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn main() {}
