use overmind_ractor::virtual_actor;

#[virtual_actor(kind = "account")]
struct AccountActor;

fn main() {}
