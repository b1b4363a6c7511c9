//! Chat rooms and user profiles as virtual actors, with actors messaging other actors:
//! a room fans each post out to its members' inboxes. Run it twice: history persists.
//!
//! ```text
//! cargo run --example chatroom
//! ```

use std::collections::BTreeSet;

use overmind_ractor::{Overmind, prelude::*};
use serde::{Deserialize, Serialize};

const HISTORY: usize = 50;
const INBOX: usize = 20;

// ---- rooms ----

#[derive(Debug, Default, Serialize, Deserialize)]
struct Room {
    /// Not stored: every activation learns its name from Overmind.
    #[serde(skip)]
    name: String,
    members: BTreeSet<String>,
    history: Vec<Post>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Post {
    room: String,
    from: String,
    text: String,
}

enum RoomMsg {
    Join(String),
    Say { from: String, text: String },
    Recent(usize, RpcReplyPort<Vec<Post>>),
}

/// A room keeps the Overmind it was built with, to reach its members' user actors.
struct RoomActor {
    overmind: Overmind,
}

#[virtual_actor(kind = "room", passivate_after = "10m")]
impl Actor for RoomActor {
    type Msg = RoomMsg;
    type State = Room;

    async fn pre_start(
        &self,
        _myself: ActorRef<RoomMsg>,
        activation: Activation<Room>,
    ) -> Result<Room, ActorProcessingErr> {
        let name = activation.id().to_owned();
        println!(
            "  (room {name} activated, {})",
            if activation.is_new() {
                "new"
            } else {
                "from storage"
            }
        );
        let mut room = activation.into_state_or_default();
        room.name = name;
        Ok(room)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RoomMsg>,
        msg: RoomMsg,
        room: &mut Room,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RoomMsg::Join(user) => {
                room.members.insert(user);
            }
            RoomMsg::Say { from, text } => {
                if !room.members.contains(&from) {
                    return Ok(()); // only members may post
                }
                let post = Post {
                    room: room.name.clone(),
                    from,
                    text,
                };
                // Fan out with casts: a room never waits on a user, so no cycle can deadlock.
                for member in &room.members {
                    self.overmind
                        .actor::<UserActor>(member.clone())
                        .cast(UserMsg::Deliver(post.clone()))?;
                }
                room.history.push(post);
                let excess = room.history.len().saturating_sub(HISTORY);
                room.history.drain(..excess);
            }
            RoomMsg::Recent(n, reply) => {
                let start = room.history.len().saturating_sub(n);
                let _ = reply.send(room.history[start..].to_vec());
            }
        }
        Ok(())
    }
}

// ---- users ----

#[derive(Debug, Default, Serialize, Deserialize)]
struct Profile {
    display_name: String,
    inbox: Vec<Post>,
    unread: u32,
}

enum UserMsg {
    SetName(String),
    Deliver(Post),
    ReadInbox(RpcReplyPort<(String, Vec<Post>)>),
}

#[derive(Default)]
struct UserActor;

#[virtual_actor(kind = "user", passivate_after = "30m")]
impl Actor for UserActor {
    type Msg = UserMsg;
    type State = Profile;

    async fn handle(
        &self,
        _myself: ActorRef<UserMsg>,
        msg: UserMsg,
        profile: &mut Profile,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UserMsg::SetName(name) => profile.display_name = name,
            UserMsg::Deliver(post) => {
                profile.inbox.push(post);
                profile.unread += 1;
                let excess = profile.inbox.len().saturating_sub(INBOX);
                profile.inbox.drain(..excess);
            }
            UserMsg::ReadInbox(reply) => {
                profile.unread = 0;
                let _ = reply.send((profile.display_name.clone(), profile.inbox.clone()));
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = std::env::var("OVERMIND_DATA").unwrap_or_else(|_| "./overmind-chat-data".into());
    let overmind = Overmind::builder()
        .data_dir(&data_dir)
        .register_with(|overmind| RoomActor {
            overmind: overmind.clone(),
        })
        .register::<UserActor>()
        .spawn()
        .await?;
    println!("Overmind chatroom — state lives in {data_dir}\n");

    for (id, name) in [("u1", "Ada"), ("u2", "Grace"), ("u3", "Linus")] {
        overmind
            .actor::<UserActor>(id)
            .cast(UserMsg::SetName(name.into()))?;
    }
    let rust = overmind.actor::<RoomActor>("rust");
    let actors = overmind.actor::<RoomActor>("actors");
    for user in ["u1", "u2", "u3"] {
        rust.cast(RoomMsg::Join(user.into()))?;
    }
    actors.cast(RoomMsg::Join("u1".into()))?;
    actors.cast(RoomMsg::Join("u2".into()))?;

    rust.cast(RoomMsg::Say {
        from: "u1".into(),
        text: "Has anyone tried virtual actors in Rust?".into(),
    })?;
    rust.cast(RoomMsg::Say {
        from: "u3".into(),
        text: "Only if they survive a kill -9.".into(),
    })?;
    actors.cast(RoomMsg::Say {
        from: "u2".into(),
        text: "At most one activation per id — even in a partition.".into(),
    })?;
    // Not a member: ignored by the room.
    actors.cast(RoomMsg::Say {
        from: "u3".into(),
        text: "let me in".into(),
    })?;

    // Calls queue behind the casts above, so these see every post.
    let recent = rust.call(|r| RoomMsg::Recent(5, r), None).await?;
    println!(
        "#rust, last {} posts (history persists across runs):",
        recent.len()
    );
    for post in &recent {
        println!("  {}: {}", post.from, post.text);
    }
    // A room sends its fan-out before it answers a later call, so once #actors has answered
    // too, every delivery is queued ahead of the inbox reads below.
    actors.call(|r| RoomMsg::Recent(1, r), None).await?;
    for id in ["u1", "u2", "u3"] {
        let (name, inbox) = overmind
            .actor::<UserActor>(id)
            .call(UserMsg::ReadInbox, None)
            .await?;
        println!("\n{name}'s inbox ({} posts):", inbox.len());
        for post in inbox.iter().rev().take(3) {
            println!("  [{}] {}: {}", post.room, post.from, post.text);
        }
    }
    overmind.shutdown().await?;
    Ok(())
}
