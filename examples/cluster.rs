//! Three nodes on loopback, thousands of accounts, one node leaving and one killed.
//!
//! ```text
//! cargo run --release --example cluster --features cluster [-- --zookeeper HOST:PORT --postgres URL]
//! ```
//!
//! Without `--zookeeper`/`--postgres` it starts a private ZooKeeper and PostgreSQL (Debian's
//! packages: `apt-get install zookeeper postgresql`). The example runs itself again as each
//! node: `cluster --node NAME ...`.
//!
//! What a cluster user writes differs from the single-node quickstart in one line: the message
//! type derives `VirtualMessage`, so it can travel to the node that owns the actor. Its fields
//! and replies are ordinary serde types (struct variants, the application's own structs and
//! enums, a `Result` reply).

use std::{
    collections::BTreeMap,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use overmind_ractor::{Overmind, cluster::ClusterConfig, core::store::PostgresStore, prelude::*};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

/// The only change for a cluster: the derive.
#[derive(VirtualMessage)]
enum AccountMsg {
    Deposit {
        amount: i64,
        memo: String,
    },
    Withdraw {
        amount: i64,
        reply: RpcReplyPort<Result<Receipt, Declined>>,
    },
    Balance(RpcReplyPort<i64>),
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    balance: i64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Declined {
    InsufficientFunds { balance: i64, wanted: i64 },
}

#[derive(Default)]
struct AccountActor;

#[virtual_actor(kind = "account", passivate_after = "10m")]
impl Actor for AccountActor {
    type Msg = AccountMsg;
    type State = Account;

    async fn handle(
        &self,
        _: ActorRef<AccountMsg>,
        msg: AccountMsg,
        account: &mut Account,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AccountMsg::Deposit { amount, .. } => account.balance += amount,
            AccountMsg::Withdraw { amount, reply } => {
                let outcome = if amount > account.balance {
                    Err(Declined::InsufficientFunds {
                        balance: account.balance,
                        wanted: amount,
                    })
                } else {
                    account.balance -= amount;
                    Ok(Receipt {
                        balance: account.balance,
                    })
                };
                let _ = reply.send(outcome);
            }
            AccountMsg::Balance(reply) => {
                let _ = reply.send(account.balance);
            }
        }
        Ok(())
    }
}

const ACCOUNTS: usize = 5_000;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next();
    args.next()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match arg("--node") {
        Some(node) => run_node(&node).await,
        None => orchestrate().await,
    }
}

// ---- one node ----

async fn run_node(node: &str) -> Result<(), Box<dyn std::error::Error>> {
    let zookeeper = arg("--zookeeper").ok_or("--zookeeper is required")?;
    let postgres = arg("--postgres").ok_or("--postgres is required")?;
    let store = Arc::new(PostgresStore::connect(&postgres, 16).await?);
    let config = ClusterConfig::new(zookeeper, "example", node, "example-cookie")
        .session_timeout(Duration::from_secs(3));
    let overmind = Overmind::builder()
        .store(store)
        .cluster(config)
        .register::<AccountActor>()
        .spawn()
        .await?;
    println!("ready");
    // Commands from the orchestrator, one per line.
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.as_str() {
            "deposit" => {
                let started = Instant::now();
                for chunk in (0..ACCOUNTS).collect::<Vec<_>>().chunks(100) {
                    let calls = chunk.iter().map(|i| {
                        let account = overmind.actor::<AccountActor>(format!("acct-{i}"));
                        async move {
                            account.cast(AccountMsg::Deposit {
                                amount: 13,
                                memo: "opening deposit".into(),
                            })?;
                            // A call after the cast: answered once the deposit is stored.
                            let withdrawn = account
                                .call(|reply| AccountMsg::Withdraw { amount: 3, reply }, None)
                                .await?;
                            withdrawn
                                .map_err(|d| Box::<dyn std::error::Error>::from(format!("{d:?}")))
                        }
                    });
                    for result in futures::future::join_all(calls).await {
                        result?;
                    }
                }
                println!(
                    "deposited 13 into {ACCOUNTS} accounts and withdrew 3 in {:?}",
                    started.elapsed()
                );
                let declined = overmind
                    .actor::<AccountActor>("acct-0")
                    .call(
                        |reply| AccountMsg::Withdraw {
                            amount: 1_000,
                            reply,
                        },
                        None,
                    )
                    .await?;
                println!("withdrawing 1000 from acct-0: {declined:?}");
                println!("placement: {}", placement(&overmind));
            }
            "check" => {
                let started = Instant::now();
                let (mut total, mut retried, mut first_error) = (0, 0, None);
                for i in 0..ACCOUNTS {
                    let account = overmind.actor::<AccountActor>(format!("acct-{i}"));
                    // A call in flight when its node dies has an unknown outcome and fails;
                    // a client retries it (a balance read is safe to repeat).
                    loop {
                        match account
                            .call(AccountMsg::Balance, Some(Duration::from_secs(30)))
                            .await
                        {
                            Ok(balance) => break total += balance,
                            Err(e) if retried < 100 => {
                                retried += 1;
                                first_error.get_or_insert(e.to_string());
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                let retries = match first_error {
                    Some(e) => format!("{retried} retries, the first after: {e}"),
                    None => "no retries".to_owned(),
                };
                println!(
                    "all {ACCOUNTS} accounts answered in {:?} ({retries}); total balance {total} (expected {})",
                    started.elapsed(),
                    ACCOUNTS as i64 * 10
                );
                println!("placement: {}", placement(&overmind));
            }
            "leave" => {
                overmind.shutdown().await?;
                println!("left");
                return Ok(());
            }
            other => println!("unknown command {other:?}"),
        }
    }
    Ok(())
}

fn placement(overmind: &Overmind) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..ACCOUNTS {
        if let Some(owner) = overmind.owner_of::<AccountActor>(&format!("acct-{i}")) {
            *counts.entry(owner).or_default() += 1;
        }
    }
    counts
        .iter()
        .map(|(n, c)| format!("{n}={c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- the orchestrator ----

struct Child {
    name: &'static str,
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    async fn start(
        name: &'static str,
        zookeeper: &str,
        postgres: &str,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut process = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "--node",
                name,
                "--zookeeper",
                zookeeper,
                "--postgres",
                postgres,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = process.stdin.take().ok_or("no stdin")?;
        let lines = BufReader::new(process.stdout.take().ok_or("no stdout")?).lines();
        let mut child = Self {
            name,
            process,
            stdin,
            lines,
        };
        let first = child.line().await?;
        if first != "ready" {
            return Err(format!("{name}: {first}").into());
        }
        println!("  node {name} joined");
        Ok(child)
    }

    async fn line(&mut self) -> Result<String, Box<dyn std::error::Error>> {
        Ok(self
            .lines
            .next_line()
            .await?
            .ok_or(format!("node {} exited", self.name))?)
    }

    /// Sends a command and prints the node's answer (`lines` lines).
    async fn ask(&mut self, command: &str, lines: usize) -> Result<(), Box<dyn std::error::Error>> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        for _ in 0..lines {
            let line = self.line().await?;
            println!("  [{}] {line}", self.name);
        }
        Ok(())
    }
}

async fn orchestrate() -> Result<(), Box<dyn std::error::Error>> {
    println!("Overmind cluster example: 3 nodes on loopback, {ACCOUNTS} accounts\n");
    // Private servers unless given; they stop when this process ends.
    let zk = match arg("--zookeeper") {
        Some(_) => None,
        None => Some(overmind_tests::zookeeper::ZooKeeper::start()),
    };
    let pg = match arg("--postgres") {
        Some(_) => None,
        None => Some(overmind_tests::postgres::Postgres::start()),
    };
    let zookeeper =
        arg("--zookeeper").unwrap_or_else(|| zk.as_ref().map(|z| z.connect()).unwrap_or_default());
    let postgres =
        arg("--postgres").unwrap_or_else(|| pg.as_ref().map(|p| p.url()).unwrap_or_default());
    println!("ZooKeeper at {zookeeper}, PostgreSQL at {postgres}");

    let mut n1 = Child::start("n1", &zookeeper, &postgres).await?;
    let n2 = Child::start("n2", &zookeeper, &postgres).await?;
    let mut n3 = Child::start("n3", &zookeeper, &postgres).await?;
    // Let the three-member view settle before placing anything.
    tokio::time::sleep(Duration::from_millis(500)).await;

    println!("\n1. Deposits through n1; each account lives on the node the ring assigns:");
    n1.ask("deposit", 3).await?;

    println!("\n2. n3 leaves gracefully: its accounts move to n1 and n2 with their balances.");
    n3.ask("leave", 1).await?;
    n1.ask("check", 2).await?;

    println!("\n3. n2 is killed (SIGKILL): its accounts come back on n1 once its session expires.");
    let mut n2 = n2;
    n2.process.kill().await?;
    let killed = Instant::now();
    n1.ask("check", 2).await?;
    println!(
        "  (n2 died {:?} ago; its accounts waited for its 3 s session to expire)",
        killed.elapsed()
    );

    n1.ask("leave", 1).await?;
    Ok(())
}
