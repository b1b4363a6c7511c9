// Everything written out: Arguments, an init hook in pre_start, options, a renamed crate path.
use overmind_ractor as om;
use om::{Activation, VirtualActor, virtual_actor};
use om::ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

#[derive(serde::Serialize, serde::Deserialize)]
struct Profile {
    name: String,
}

enum ProfileMsg {
    Rename(String),
    Name(RpcReplyPort<String>),
}

struct ProfileActor {
    default_name: String,
}

#[virtual_actor(kind = "user.profile-v2", passivate_after = "1h30m", crate = "om")]
impl Actor for ProfileActor {
    type Msg = ProfileMsg;
    type State = Profile;
    type Arguments = Activation<Profile>;

    async fn pre_start(&self, _: ActorRef<ProfileMsg>, a: Activation<Profile>) -> Result<Profile, ActorProcessingErr> {
        Ok(a.into_state_or_else(|key| Profile { name: format!("{} {}", self.default_name, key.id()) }))
    }

    async fn handle(&self, _: ActorRef<ProfileMsg>, msg: ProfileMsg, p: &mut Profile) -> Result<(), ActorProcessingErr> {
        match msg {
            ProfileMsg::Rename(n) => p.name = n,
            ProfileMsg::Name(r) => {
                let _ = r.send(p.name.clone());
            }
        }
        Ok(())
    }
}

// A state in its third version, reading the two before it through a chain of `From`s.
#[derive(serde::Serialize, serde::Deserialize)]
struct ScoreV1(u8);
#[derive(serde::Serialize, serde::Deserialize)]
struct ScoreV2 {
    points: u16,
}
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Score {
    points: u32,
}
impl From<ScoreV1> for ScoreV2 {
    fn from(v: ScoreV1) -> Self {
        ScoreV2 { points: v.0.into() }
    }
}
impl From<ScoreV2> for Score {
    fn from(v: ScoreV2) -> Self {
        Score { points: v.points.into() }
    }
}

#[derive(Default)]
struct ScoreActor;

#[virtual_actor(kind = "score", state_version = 3, migrate_from(2 = ScoreV2, 1 = ScoreV1), crate = "om")]
impl Actor for ScoreActor {
    type Msg = ();
    type State = Score;
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut Score) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

const _: () = assert!(<ScoreActor as VirtualActor>::STATE_VERSION == 3);

#[virtual_actor(kind = "pinned", passivate_after = "never")]
impl Actor for Pinned {
    type Msg = ();
    type State = ();
    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}
struct Pinned;

fn main() {
    let _ = ProfileActor { default_name: String::new() };
    assert_eq!(<ProfileActor as VirtualActor>::PASSIVATE_AFTER, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(<Pinned as VirtualActor>::PASSIVATE_AFTER, None);
}
