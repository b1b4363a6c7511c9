//! Planned moves under load: three node processes keep calling warm actors in a closed loop
//! (64 calls at a time per node) while a fourth node joins and then leaves with `shutdown`,
//! twice. For each step it prints the time from the command to a stable view on every node,
//! the slowest call made during the step (an upper bound on any moved actor's wait), and the
//! calls' 99th percentile during the step against the same loops' 99th percentile before the
//! first step, measured in the same run. Fails if any call failed. Starts its own ZooKeeper
//! and PostgreSQL.
//!
//! `cargo bench -p overmind-tests --features cluster --bench moves`
//! (`OVERMIND_BENCH_ACTORS`, default 20000, sets how many actors are warm.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use overmind_tests::{
    cluster::{Node, NodeSpec},
    postgres::Postgres,
    zookeeper::ZooKeeper,
};

const BIN: &str = env!("CARGO_BIN_EXE_overmind-test-node");
const GROUPS: usize = 10;

/// One round of a load loop: a group of actors, called 64 at a time.
struct Round {
    start: Instant,
    end: Instant,
    slowest: Duration,
    slowest_id: String,
    slowest_at: std::time::SystemTime,
    p99: Duration,
    failed: Vec<String>,
}

/// A join or a leave, from the command to a stable view on every remaining node.
struct Step {
    what: &'static str,
    start: Instant,
    start_wall: std::time::SystemTime,
    stable: Instant,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let actors: usize = std::env::var("OVERMIND_BENCH_ACTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let group_size = actors.div_ceil(GROUPS);
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let start = |name: &'static str| Node::start(NodeSpec::new(BIN, &zk, &pg, "moves", name));
    let (a, b, c) = (
        start("a").await.expect("node a"),
        start("b").await.expect("node b"),
        start("c").await.expect("node c"),
    );
    for n in [&a, &b, &c] {
        n.wait_stable(&["a", "b", "c"]).await;
    }
    let warm = Instant::now();
    for g in 0..GROUPS {
        let (_, errors) = a.touch(&format!("load{g}-"), group_size, 1).await;
        assert!(errors.is_empty(), "{errors:?}");
    }
    println!(
        "{} actors warm on 3 nodes in {:?}\n",
        group_size * GROUPS,
        warm.elapsed()
    );

    let (a, b, c) = (Arc::new(a), Arc::new(b), Arc::new(c));
    let running = Arc::new(AtomicBool::new(true));
    let mut loops = Vec::new();
    for n in [a.clone(), b.clone(), c.clone()] {
        let running = running.clone();
        loops.push(tokio::spawn(async move {
            let mut rounds = Vec::new();
            let mut i = 0;
            while running.load(Ordering::SeqCst) {
                let group = format!("load{}-", i % GROUPS);
                let start = Instant::now();
                let touched = n.touch_timed(&group, group_size, 1).await;
                rounds.push(Round {
                    start,
                    end: Instant::now(),
                    slowest: touched.slowest,
                    slowest_id: touched.slowest_id,
                    slowest_at: touched.slowest_at,
                    p99: touched.p99,
                    failed: touched.errors,
                });
                i += 1;
            }
            rounds
        }));
    }
    // A steady state first, then two cycles of a join and a leave, each after a quiet spell.
    let settle = Duration::from_secs(3);
    tokio::time::sleep(settle).await;
    let moves_began = Instant::now();
    let mut steps = Vec::new();
    for _ in 0..2 {
        let (begun, begun_wall) = (Instant::now(), std::time::SystemTime::now());
        let mut d = start("d").await.expect("node d");
        for n in [&*a, &*b, &*c, &d] {
            n.wait_stable(&["a", "b", "c", "d"]).await;
        }
        steps.push(Step {
            what: "join",
            start: begun,
            start_wall: begun_wall,
            stable: Instant::now(),
        });
        tokio::time::sleep(settle).await;
        let (begun, begun_wall) = (Instant::now(), std::time::SystemTime::now());
        assert!(d.shutdown().await, "d leaves cleanly");
        for n in [&*a, &*b, &*c] {
            n.wait_stable(&["a", "b", "c"]).await;
        }
        steps.push(Step {
            what: "leave",
            start: begun,
            start_wall: begun_wall,
            stable: Instant::now(),
        });
        tokio::time::sleep(settle).await;
    }
    running.store(false, Ordering::SeqCst);
    let mut rounds = Vec::new();
    for l in loops {
        rounds.extend(l.await.expect("load loop"));
    }

    let before: Vec<&Round> = rounds.iter().filter(|r| r.end < moves_began).collect();
    let p99_before = before.iter().map(|r| r.p99).max().unwrap_or_default();
    let calls = rounds.len() * group_size;
    let failed: Vec<&String> = rounds.iter().flat_map(|r| &r.failed).collect();
    println!(
        "{calls} calls in {} rounds of {group_size}; before the moves: worst round p99 {p99_before:?}\n",
        rounds.len()
    );
    println!(
        "{:<6} {:>16} {:>22} {:>16} {:>14}",
        "step", "command→stable", "slowest call in step", "p99 in step", "p99 / before"
    );
    for step in &steps {
        // Rounds that overlap the step, up to the stable view (and the round it ended in).
        let during: Vec<&Round> = rounds
            .iter()
            .filter(|r| r.end >= step.start && r.start <= step.stable)
            .collect();
        let worst = during.iter().max_by_key(|r| r.slowest);
        let slowest = worst.map(|r| r.slowest).unwrap_or_default();
        let p99 = during.iter().map(|r| r.p99).max().unwrap_or_default();
        println!(
            "{:<6} {:>16.1?} {:>22.1?} {:>16.1?} {:>13.2}x",
            step.what,
            step.stable - step.start,
            slowest,
            p99,
            p99.as_secs_f64() / p99_before.as_secs_f64().max(1e-9)
        );
        if let Some(r) = worst {
            let after = |t: std::time::SystemTime| {
                t.duration_since(step.start_wall)
                    .map_or_else(|e| -(e.duration().as_secs_f64()), |d| d.as_secs_f64())
            };
            println!(
                "       slowest call: actor {}, began {:+.3}s after the command",
                r.slowest_id,
                after(r.slowest_at)
            );
        }
    }
    println!("\nfailed calls: {}", failed.len());
    assert!(failed.is_empty(), "failed calls: {failed:?}");
}
