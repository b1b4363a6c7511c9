//! The cluster on a real three-server ZooKeeper ensemble: with one server killed the quorum
//! holds and no call fails; with two killed the nodes stop serving within their lease; once
//! healed, every actor serves again, and no acknowledged write was lost.

use std::time::{Duration, Instant};

use overmind_tests::{
    cluster::{Node, NodeSpec},
    ensemble::Ensemble,
    postgres::Postgres,
};

const BIN: &str = env!("CARGO_BIN_EXE_overmind-test-node");
const ACTORS: usize = 24;

async fn node(zk: &Ensemble, pg: &Postgres, name: &str) -> Node {
    Node::start(NodeSpec {
        bin: BIN,
        zk: zk.connect(),
        pg: pg.url(),
        cluster: "ensemble".into(),
        name: name.into(),
        // The default session (6 s): a node stops serving 4.8 s after it last heard from a
        // quorum, which a leader election on a busy machine stays well within.
        extra: vec![
            ("session-timeout-ms", "6000".into()),
            ("unavailable-ms", "3000".into()),
        ],
    })
    .await
    .unwrap_or_else(|e| panic!("node {name}: {e}"))
}

/// What the test knows of each actor's value: the increments acknowledged, and those whose
/// outcome is unknown (timed out, or lost with a link: they may or may not have been applied).
struct Ledger {
    ids: Vec<String>,
    acked: Vec<i64>,
    unknown: Vec<i64>,
}

impl Ledger {
    fn new() -> Self {
        Self {
            ids: (0..ACTORS).map(|i| format!("e-{i}")).collect(),
            acked: vec![0; ACTORS],
            unknown: vec![0; ACTORS],
        }
    }

    /// Adds 1 to every actor at once, through the nodes in turn; returns the failures.
    async fn round(&mut self, nodes: &[&Node]) -> Vec<String> {
        let calls = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| nodes[i % nodes.len()].add(id, 1));
        let outcomes = futures::future::join_all(calls).await;
        let mut failures = Vec::new();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(_) => self.acked[i] += 1,
                Err(e) => {
                    // Unavailable: not handled. Anything else may have been.
                    if !e.contains("is unavailable") {
                        self.unknown[i] += 1;
                    }
                    failures.push(e);
                }
            }
        }
        failures
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_serves_through_one_lost_server_and_stops_safely_without_a_quorum() {
    let mut zk = Ensemble::start(3);
    let pg = Postgres::start();
    let (a, b) = (node(&zk, &pg, "a").await, node(&zk, &pg, "b").await);
    for n in [&a, &b] {
        n.wait_stable(&["a", "b"]).await;
    }
    let mut ledger = Ledger::new();
    let failures = ledger.round(&[&a, &b]).await;
    assert!(failures.is_empty(), "{failures:?}");

    // One server down, the leader: the other two elect a new one, and no call fails.
    let leader = zk.leader().expect("a quorum has a leader");
    zk.kill(leader);
    let until = Instant::now() + Duration::from_secs(10);
    let mut rounds = 0;
    while Instant::now() < until {
        let failures = ledger.round(&[&a, &b]).await;
        assert!(
            failures.is_empty(),
            "with the quorum intact, round {rounds} failed: {failures:?}"
        );
        rounds += 1;
    }
    zk.wait_for_quorum(2, Duration::from_secs(30));

    // Two down: no quorum. Within their lease the nodes may still serve; then every call fails.
    let second = (0..zk.size())
        .find(|&i| i != leader)
        .expect("another server");
    zk.kill(second);
    let lost = Instant::now();
    let deadline = lost + Duration::from_secs(30);
    loop {
        let failures = ledger.round(&[&a, &b]).await;
        if failures.len() == ACTORS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes still serving {:?} after the quorum was lost",
            lost.elapsed()
        );
    }
    let stopped = lost.elapsed();
    // And they stay stopped.
    for _ in 0..2 {
        let failures = ledger.round(&[&a, &b]).await;
        assert_eq!(failures.len(), ACTORS, "a call was served without a quorum");
    }

    // Healed: every actor serves again, with every acknowledged increment.
    zk.restart(leader);
    zk.restart(second);
    zk.wait_for_quorum(3, Duration::from_secs(60));
    let healed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, id) in ledger.ids.iter().enumerate() {
        let value = loop {
            match a.get(id).await {
                Ok(v) => break v,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{id} did not serve again after the quorum came back: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (acked, unknown) = (ledger.acked[i], ledger.unknown[i]);
        assert!(
            acked <= value && value <= acked + unknown,
            "{id}: value {value}, {acked} increments acknowledged, {unknown} unknown"
        );
    }
    let serving_again = healed.elapsed();
    let failures = ledger.round(&[&a, &b]).await;
    assert!(failures.is_empty(), "after healing: {failures:?}");
    eprintln!(
        "{rounds} rounds with one server down, all served; without a quorum every call \
         failed after {stopped:?}; every actor served again {serving_again:?} after the quorum \
         was back"
    );
}
