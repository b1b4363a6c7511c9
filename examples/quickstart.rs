//! Bank accounts as virtual actors. Run it twice: the balances continue from the first run.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use overmind_ractor::{Overmind, prelude::*};
use serde::{Deserialize, Serialize};

/// The state Overmind stores after every message.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
    deposits: u32,
}

/// An ordinary ractor message type.
enum AccountMsg {
    Deposit(i64),
    Withdraw(i64, RpcReplyPort<Result<i64, String>>),
    Balance(RpcReplyPort<i64>),
}

#[derive(Default)]
struct AccountActor;

/// An ordinary ractor actor; the attribute makes it virtual.
#[virtual_actor(kind = "account", passivate_after = "5m")]
impl Actor for AccountActor {
    type Msg = AccountMsg;
    type State = Account;

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        account: &mut Account,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AccountMsg::Deposit(amount) => {
                account.balance += amount;
                account.deposits += 1;
            }
            AccountMsg::Withdraw(amount, reply) => {
                let result = if amount <= account.balance {
                    account.balance -= amount;
                    Ok(account.balance)
                } else {
                    Err(format!(
                        "insufficient funds: balance is {}",
                        account.balance
                    ))
                };
                let _ = reply.send(result);
            }
            AccountMsg::Balance(reply) => {
                let _ = reply.send(account.balance);
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = std::env::var("OVERMIND_DATA").unwrap_or_else(|_| "./overmind-data".into());
    let overmind = Overmind::builder()
        .data_dir(&data_dir)
        .register::<AccountActor>()
        .spawn()
        .await?;
    println!("Overmind quickstart — state lives in {data_dir} (delete it to start over)\n");

    for (id, deposit) in [("alice", 100), ("bob", 40), ("carol", 7)] {
        // A handle: nothing is spawned until the first message.
        let account = overmind.actor::<AccountActor>(id);
        let before = account.call(AccountMsg::Balance, None).await?;
        account.cast(AccountMsg::Deposit(deposit))?;
        // The reply arrives only after the deposit is stored on disk.
        let after = account.call(AccountMsg::Balance, None).await?;
        println!("{id:>6}: balance {before:>5} → {after:>5} (deposited {deposit})");
    }

    let bob = overmind.actor::<AccountActor>("bob");
    match bob
        .call(|reply| AccountMsg::Withdraw(1_000, reply), None)
        .await?
    {
        Ok(left) => println!("\n   bob withdrew 1000, {left} left"),
        Err(refused) => println!("\n   bob cannot withdraw 1000: {refused}"),
    }

    let stats = overmind.stats();
    println!(
        "\n{} activations, {} writes ({} handler runs changed nothing and wrote nothing)",
        stats.activations, stats.writes, stats.skipped_writes
    );
    println!("Run it again: the balances continue where this run left them.");
    overmind.shutdown().await?;
    Ok(())
}
