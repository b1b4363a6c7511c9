//! A process that deposits into accounts through Overmind as fast as it can, printing each
//! acknowledged balance, until it is killed. Used by the crash-safety test.
//!
//! Usage: `crash-child <data dir> <writers>`

use std::io::Write;

use overmind_ractor::Overmind;
use overmind_tests::accounts::{AccountActor, AccountMsg};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(writers)) = (args.next(), args.next()) else {
        eprintln!("usage: crash-child <data dir> <writers>");
        std::process::exit(2);
    };
    let writers: usize = writers.parse().unwrap_or(8);
    let om = match Overmind::builder()
        .data_dir(&dir)
        .register::<AccountActor>()
        .spawn()
        .await
    {
        Ok(om) => om,
        Err(e) => {
            eprintln!("cannot start: {e}");
            std::process::exit(1);
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for w in 0..writers {
        let (om, tx) = (om.clone(), tx.clone());
        tokio::spawn(async move {
            let id = format!("acct-{}", w % 4);
            let account = om.actor::<AccountActor>(id.clone());
            loop {
                match account
                    .call(|r| AccountMsg::DepositAndGet(1, r), None)
                    .await
                {
                    Ok(balance) => {
                        if tx.send(format!("ack {id} {balance}")).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        eprintln!("deposit failed: {e}");
                        std::process::exit(1);
                    }
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        // An ack is printed only after the call returned, i.e. after the write was durable.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}
