//! A cluster recovers by itself when ZooKeeper loses its data or holds a view no leader
//! published: real node processes, ZooKeeper and PostgreSQL.

use std::time::{Duration, Instant};

use overmind_core::{StateStore, membership::ZooKeeperConfig, store::PostgresStore};
use overmind_tests::{
    cluster::{Node, NodeSpec},
    faults::{self, Binaries, Fault, Plan},
    postgres::Postgres,
    zookeeper::ZooKeeper,
};
use serde_json::{Value, json};
use zookeeper_client as zk;

const BIN: &str = env!("CARGO_BIN_EXE_overmind-test-node");
const CLUSTER: &str = "hostile";
/// The test node's default cookie.
const COOKIE: &str = "test-cookie";

/// Kills ZooKeeper under load, deletes its data directory and starts it again. The suite's
/// checker then requires every acknowledged increment in the final values, no stale read and
/// no overlapping activations; after the run every actor must answer within a deadline with
/// its stored value (no lease is stuck), and every node must be at an epoch above the one
/// before the wipe (the store's epoch floor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_losing_its_data_under_load_loses_nothing_and_every_actor_serves_again() {
    let bins = Binaries {
        node: env!("CARGO_BIN_EXE_overmind-test-node").into(),
        client: env!("CARGO_BIN_EXE_overmind-test-client").into(),
    };
    let report = faults::run(&bins, Plan::Single(Fault::ZooKeeperWipe), 11, 16).await;
    let violations = faults::summarize(std::slice::from_ref(&report));
    assert_eq!(violations, 0, "see the violations above");
    assert!(
        report.faults.iter().any(|f| f.contains("wiped")),
        "{:?}",
        report.faults
    );
    assert!(
        report.outcome.acked > 100,
        "the workload ran ({} acknowledged)",
        report.outcome.acked
    );
}

async fn node(zk: &ZooKeeper, pg: &Postgres, name: &str) -> Node {
    Node::start(NodeSpec::new(BIN, zk, pg, CLUSTER, name))
        .await
        .unwrap_or_else(|e| panic!("node {name}: {e}"))
}

/// Adds 1 to every counter through each node in turn; every value must be the previous one
/// plus 1 (values continue).
async fn touch_all(nodes: &[Node], expected: &mut i64) {
    const N: usize = 24;
    for n in nodes {
        let (values, errors) = n.touch("ctr-", N, 1).await;
        *expected += 1;
        assert!(errors.is_empty(), "through {}: {errors:?}", n.name);
        assert!(
            values.len() == N && values.iter().all(|v| v == expected),
            "through {}: {values:?}, expected {expected} everywhere",
            n.name
        );
    }
}

fn is_view_at(e: &Value, epoch: u64) -> bool {
    e["event"] == "view" && e["epoch"] == epoch && e["stable"] == epoch && e["member"] == true
}

/// Writes a view record with the cluster's own credential, as a compromised or buggy client
/// could: nodes refuse it, keep serving, and the leader replaces it with a recovery view just
/// above the store's epoch floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_no_leader_published_is_refused_and_the_cluster_keeps_serving() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let nodes = [
        node(&zk, &pg, "a").await,
        node(&zk, &pg, "b").await,
        node(&zk, &pg, "c").await,
    ];
    for n in &nodes {
        n.wait_stable(&["a", "b", "c"]).await;
    }
    let mut expected = 0;
    touch_all(&nodes, &mut expected).await;

    let store = PostgresStore::connect(&pg.url(), 2).await.expect("store");
    let credential = ZooKeeperConfig::new(zk.connect(), CLUSTER, "x", "x", COOKIE).credential();
    let insider = zk::Client::connector()
        .with_auth("digest", credential.as_bytes())
        .connect(&zk.connect())
        .await
        .expect("connect to ZooKeeper");
    let view = format!("/overmind/{CLUSTER}/view");
    let far = store.epoch_floor(CLUSTER).await.expect("floor") + 1000;
    let hostile = [
        json!({"epoch": u64::MAX, "stable": u64::MAX,
            "history": [{"epoch": u64::MAX, "members": []}]}),
        json!({"epoch": far, "stable": far, "history": [{"epoch": far, "members": []}]}),
    ];
    for record in hostile {
        let floor = store.epoch_floor(CLUSTER).await.expect("floor");
        insider
            .set_data(&view, record.to_string().as_bytes(), None)
            .await
            .expect("the credential may write");
        // Every actor keeps answering, through every node, while the leader waits out the
        // leases and then installs the recovery view.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            touch_all(&nodes, &mut expected).await;
            let recovered = nodes
                .iter()
                .all(|n| n.events().iter().any(|e| is_view_at(e, floor + 1)));
            if recovered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no recovery view at epoch {} within 60 s",
                floor + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        touch_all(&nodes, &mut expected).await;
    }
    let floor = store.epoch_floor(CLUSTER).await.expect("floor");
    for n in &nodes {
        let adopted: Vec<u64> = n
            .events()
            .iter()
            .filter(|e| e["event"] == "view")
            .filter_map(|e| e["epoch"].as_u64())
            .collect();
        assert!(
            adopted.iter().all(|e| *e <= floor) && adopted.windows(2).all(|w| w[0] <= w[1]),
            "{} adopted only epochs a leader published: {adopted:?} (floor {floor})",
            n.name
        );
    }
}
