use overmind_ractor::virtual_actor;

struct AccountActor;

#[virtual_actor(kind = "account")]
impl AccountActor {
    fn new() -> Self {
        AccountActor
    }
}

fn main() {}
