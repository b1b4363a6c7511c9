//! The fault-injection soak: random mixes of faults (or chosen ones) against real node
//! processes, ZooKeeper and PostgreSQL, checked after every run. Exits 1 on any violation.
//!
//! ```text
//! cargo run --release -p overmind-tests --features cluster --bin overmind-faults -- \
//!     --runs 20 --seconds 60 [--seed 1] [--warm 0] [--idempotent 1] [--ensemble 1] [--plan Mixed|Kill|Pause|ZooKeeperRestart|ZooKeeperCut|PeerCut|ZooKeeperWipe|RollingRestart|Scale|ZooKeeperServerKill|ZooKeeperQuorumLoss]
//! ```
//!
//! `--ensemble 1` runs ZooKeeper as three servers (the two ensemble plans always do; a mixed
//! run on an ensemble does not wipe ZooKeeper's data).
//!
//! `--warm N` makes N more actors active before the load starts (and after each join and
//! leave of `Scale`), so planned moves hand that many activations over. `--idempotent 1`
//! gives every increment an idempotency key and retries it until acknowledged.

use overmind_tests::faults::{self, Binaries, Fault, Options, Plan, Workload};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let flags = overmind_tests::process::flags();
    let num = |k: &str, d: u64| {
        flags.get(k).map_or(Ok(d), |v| {
            v.parse()
                .map_err(|_| format!("--{k} takes a whole number, not {v:?}"))
        })
    };
    let (runs, seconds, seed, warm) = match (
        num("runs", 5),
        num("seconds", 30),
        num("seed", 1),
        num("warm", 0),
    ) {
        (Ok(r), Ok(s), Ok(e), Ok(w)) => (r, s, e, w as usize),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let plan = match flags.get("plan").map(String::as_str) {
        None | Some("Mixed") => Plan::Mixed,
        Some(name) => match Fault::ALL
            .iter()
            .chain(&Fault::ENSEMBLE)
            .find(|f| format!("{f:?}") == name)
        {
            Some(f) => Plan::Single(*f),
            None => {
                eprintln!(
                    "unknown plan {name}; expected Mixed or one of {:?} {:?}",
                    Fault::ALL,
                    Fault::ENSEMBLE
                );
                std::process::exit(2);
            }
        },
    };
    // The node and client binaries sit next to this one.
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    let bins = Binaries {
        node: dir.join("overmind-test-node"),
        client: dir.join("overmind-test-client"),
    };
    if !bins.node.exists() || !bins.client.exists() {
        eprintln!(
            "build the node and client first: cargo build --release -p overmind-tests --features cluster --bins"
        );
        std::process::exit(2);
    }
    let mut reports = Vec::new();
    for run in 0..runs {
        let workload = match flags.get("idempotent").map(String::as_str) {
            Some("1") => Workload::Idempotent,
            _ => Workload::Plain,
        };
        let options = Options {
            warm,
            workload,
            ensemble: flags.get("ensemble").map(String::as_str) == Some("1")
                || Fault::ENSEMBLE
                    .iter()
                    .any(|f| matches!(plan, Plan::Single(p) if p == *f)),
        };
        let report = faults::run_with(&bins, plan, seed + run, seconds, options).await;
        println!(
            "run {}/{runs}: {} violations",
            run + 1,
            report.outcome.violations.len()
        );
        reports.push(report);
    }
    let violations = faults::summarize(&reports);
    std::process::exit(i32::from(violations > 0));
}
