//! The short fault-injection suite: every fault alone, then a random mix, against real node
//! processes, ZooKeeper and PostgreSQL, with client processes recording histories. Violations
//! must be 0. The long soak: `cargo run --release -p overmind-tests --features cluster --bin
//! overmind-faults -- --runs 20 --seconds 60`.

use overmind_tests::faults::{self, Binaries, Fault, Options, Plan, Workload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_alone_and_mixed_keeps_both_invariants() {
    let bins = Binaries {
        node: env!("CARGO_BIN_EXE_overmind-test-node").into(),
        client: env!("CARGO_BIN_EXE_overmind-test-client").into(),
    };
    let mut reports = Vec::new();
    // The wipe has its own test (`recovery.rs`); mixed runs include it.
    let singles = Fault::ALL
        .into_iter()
        .filter(|f| *f != Fault::ZooKeeperWipe);
    for (i, fault) in singles.enumerate() {
        let seconds = if matches!(fault, Fault::RollingRestart | Fault::Scale) {
            24
        } else {
            14
        };
        reports.push(faults::run(&bins, Plan::Single(fault), i as u64 + 1, seconds).await);
    }
    reports.push(faults::run(&bins, Plan::Mixed, 42, 30).await);
    // Every increment keyed and retried until acknowledged: each is applied exactly once.
    let keyed = Options {
        workload: Workload::Idempotent,
        ..Options::default()
    };
    reports.push(faults::run_with(&bins, Plan::Mixed, 43, 24, keyed).await);
    // A three-server ZooKeeper: its leader killed (the quorum holds), then two of its servers
    // (the quorum is lost, and nodes stop serving within their lease), each restarted.
    let ensemble = Options {
        ensemble: true,
        ..Options::default()
    };
    for (i, fault) in Fault::ENSEMBLE.into_iter().enumerate() {
        let seed = 50 + i as u64;
        reports.push(faults::run_with(&bins, Plan::Single(fault), seed, 16, ensemble).await);
    }
    let violations = faults::summarize(&reports);
    assert_eq!(violations, 0, "see the violations above");
    for r in &reports {
        assert!(
            r.outcome.acked > 100,
            "{}: the workload ran ({} acknowledged)",
            r.plan,
            r.outcome.acked
        );
        assert!(
            r.outcome.activations > 0,
            "{}: activations were recorded",
            r.plan
        );
    }
    // Planned moves fail no call: every node left and came back, or a new node joined and
    // left, and no call failed or hung. Nor does losing one ZooKeeper server of three.
    for plan in ["RollingRestart", "Scale", "ZooKeeperServerKill"] {
        let moves = reports
            .iter()
            .find(|r| r.plan == plan)
            .expect("a planned move");
        assert_eq!(
            (moves.outcome.failed, moves.outcome.timeouts),
            (0, 0),
            "calls failed during {plan}: {:?}",
            moves.outcome.errors
        );
    }
}
