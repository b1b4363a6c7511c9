//! Crash safety: a child process writing through Overmind is killed with SIGKILL mid-stream,
//! restarted, killed again; every write it acknowledged is on disk.

use std::{collections::HashMap, process::Stdio};

use overmind_ractor::Overmind;
use overmind_tests::accounts::{AccountActor, AccountMsg};
use tokio::io::{AsyncBufReadExt, BufReader};

const ROUNDS: usize = 5;
const ACKS_PER_ROUND: usize = 1_000;

/// Runs the child until it has acknowledged `acks` deposits, then SIGKILLs it.
/// Returns the highest acknowledged balance per account.
async fn write_then_kill(dir: &std::path::Path, acks: usize) -> HashMap<String, i64> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crash-child"))
        .arg(dir)
        .arg("8")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn crash-child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut seen = 0;
    while seen < acks {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the child keeps acknowledging")
            .expect("read")
            .expect("the child exited early");
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("ack"), "{line}");
        let id = parts.next().expect("id").to_owned();
        let balance: i64 = parts.next().expect("balance").parse().expect("number");
        let max = acked.entry(id).or_default();
        *max = (*max).max(balance);
        seen += 1;
    }
    // SIGKILL while its writers are still going.
    child.kill().await.expect("kill");
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<String, i64> = HashMap::new();
    for round in 0..ROUNDS {
        for (id, balance) in write_then_kill(dir.path(), ACKS_PER_ROUND).await {
            let max = acked.entry(id).or_default();
            *max = (*max).max(balance);
        }
        // Reopen what the dead process left and compare.
        let om = Overmind::builder()
            .data_dir(dir.path())
            .register::<AccountActor>()
            .spawn()
            .await
            .expect("the data directory opens after a crash");
        for (id, acked_balance) in &acked {
            let account = om.actor::<AccountActor>(id.clone());
            let stored = account
                .call(AccountMsg::Balance, None)
                .await
                .expect("balance");
            let history = account
                .call(AccountMsg::History, None)
                .await
                .expect("history");
            assert!(
                stored >= *acked_balance,
                "round {round}: {id} acknowledged {acked_balance} but only {stored} is stored"
            );
            assert_eq!(
                history.len() as i64,
                stored,
                "{id}: state is internally consistent"
            );
        }
        om.shutdown().await.unwrap();
    }
    assert!(acked.values().sum::<i64>() >= (ROUNDS * ACKS_PER_ROUND / 2) as i64);
}
