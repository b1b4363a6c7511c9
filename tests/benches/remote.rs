//! Remote call latency through Overmind against a raw ractor_cluster RPC between the same two
//! node processes, in the same run; and the time from a node's death to its actors serving
//! again. Starts its own ZooKeeper and PostgreSQL.
//!
//! `cargo bench -p overmind-tests --features cluster --bench remote`

use std::time::{Duration, Instant};

use overmind_tests::{
    cluster::{Node, NodeSpec},
    postgres::Postgres,
    zookeeper::ZooKeeper,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_overmind-test-node");

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let start = |name: &'static str| Node::start(NodeSpec::new(BIN, &zk, &pg, "bench", name));
    let a = start("a").await.expect("node a");
    let mut b = start("b").await.expect("node b");
    a.wait_stable(&["a", "b"]).await;
    b.wait_stable(&["a", "b"]).await;

    let mut rows = Vec::new();
    for _ in 0..3 {
        let r = a
            .request(json!({"op": "bench", "target": "b", "n": 3000}))
            .await;
        assert!(r.get("err").is_none(), "{r}");
        rows.push(r);
    }
    let med = |key: &str, stat: &str| {
        let mut v: Vec<f64> = rows
            .iter()
            .map(|r| r[key][stat].as_f64().unwrap_or(f64::NAN))
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "Remote calls between two node processes on loopback (median of 3 rounds x 3000 calls)\n"
    );
    println!("{:<52} {:>10} {:>10}", "", "median", "p99");
    for (label, key) in [
        ("raw ractor_cluster RPC (echo actor)", "raw"),
        ("Overmind call, actor on the other node", "overmind_remote"),
        (
            "Overmind call, actor on this node (reference)",
            "overmind_local",
        ),
    ] {
        println!(
            "{label:<52} {:>8.1}µs {:>8.1}µs",
            med(key, "median"),
            med(key, "p99")
        );
    }
    println!(
        "\nratio Overmind remote / raw ractor_cluster: {:.2}x (median), {:.2}x (p99)",
        med("overmind_remote", "median") / med("raw", "median"),
        med("overmind_remote", "p99") / med("raw", "p99")
    );

    // Time from a node's death to its actors serving again (session timeout 2 s).
    let (_, errors) = a.touch("k", 200, 1).await;
    assert!(errors.is_empty(), "{errors:?}");
    let owners = a.owners("k", 200).await;
    let key = owners
        .iter()
        .position(|o| o.as_deref() == Some("b"))
        .map(|i| format!("k{i}"))
        .expect("b owns a key");
    let killed = Instant::now();
    b.kill().await;
    let mut attempts = 0;
    loop {
        attempts += 1;
        if a.get_within(&key, Duration::from_millis(500)).await == Ok(1) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "never served again"
        );
    }
    println!(
        "\nnode killed (SIGKILL), 2 s session timeout: its actors serving again after {:?} ({attempts} calls)",
        killed.elapsed()
    );
}
