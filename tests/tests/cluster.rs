//! Multi-process cluster tests: real ZooKeeper, real PostgreSQL, each node its own process.

use std::time::{Duration, Instant};

use overmind_tests::{
    cluster::{Node, NodeSpec},
    postgres::Postgres,
    zookeeper::ZooKeeper,
};

const BIN: &str = env!("CARGO_BIN_EXE_overmind-test-node");

async fn node(zk: &ZooKeeper, pg: &Postgres, name: &str) -> Node {
    node_with(zk, pg, name, vec![])
        .await
        .unwrap_or_else(|e| panic!("node {name}: {e}"))
}

async fn node_with(
    zk: &ZooKeeper,
    pg: &Postgres,
    name: &str,
    extra: Vec<(&str, String)>,
) -> Result<Node, String> {
    Node::start(NodeSpec {
        extra,
        ..NodeSpec::new(BIN, zk, pg, "test", name)
    })
    .await
}

fn count_by_owner(owners: &[Option<String>]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for o in owners {
        *counts
            .entry(o.clone().expect("every key has an owner"))
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_10000_actors_and_a_fourth_takes_a_quarter() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, b, c) = (
        node(&zk, &pg, "a").await,
        node(&zk, &pg, "b").await,
        node(&zk, &pg, "c").await,
    );
    for n in [&a, &b, &c] {
        n.wait_stable(&["a", "b", "c"]).await;
    }
    const N: usize = 10_000;
    let owners = a.owners("acct-", N).await;
    assert_eq!(
        owners,
        b.owners("acct-", N).await,
        "a and b agree on every owner"
    );
    assert_eq!(
        owners,
        c.owners("acct-", N).await,
        "a and c agree on every owner"
    );
    let counts = count_by_owner(&owners);
    for (node, n) in &counts {
        let share = *n as f64 / (N as f64 / 3.0);
        assert!(
            (0.85..=1.15).contains(&share),
            "{node} owns {n} of {N}: {counts:?}"
        );
    }

    // Every actor, written through one node, is activated where the ring says.
    let (values, errors) = a.touch("acct-", N, 1).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(values.iter().all(|v| *v == 1));
    for (n, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        let s = n.stats().await;
        assert_eq!(
            s["active"].as_u64(),
            Some(counts[name] as u64),
            "{name}: {s}"
        );
        // Activations stay local: a node holds stubs for its two peers' process-group members
        // (a router and the test node's echo actor each), not for the thousands of actors they run.
        assert_eq!(
            s["remote_actors"].as_u64(),
            Some(4),
            "{name} mirrors remote actors: {s}"
        );
    }

    // A fourth node joins: about a quarter of the actors move to it, and no other moves.
    let before: Vec<serde_json::Value> =
        futures::future::join_all([&a, &b, &c].map(|n| n.stats())).await;
    let d = node(&zk, &pg, "d").await;
    for n in [&a, &b, &c, &d] {
        n.wait_stable(&["a", "b", "c", "d"]).await;
    }
    let after_owners = d.owners("acct-", N).await;
    assert_eq!(after_owners, a.owners("acct-", N).await);
    let moved: Vec<usize> = (0..N).filter(|&i| owners[i] != after_owners[i]).collect();
    assert!(
        moved
            .iter()
            .all(|&i| after_owners[i].as_deref() == Some("d")),
        "keys only move to the new node"
    );
    let share = moved.len() as f64 / N as f64;
    assert!(
        (0.20..=0.30).contains(&share),
        "{} of {N} moved",
        moved.len()
    );
    for (i, (n, name)) in [(&a, "a"), (&b, "b"), (&c, "c")].into_iter().enumerate() {
        let s = n.stats().await;
        let lost = moved
            .iter()
            .filter(|&&k| owners[k].as_deref() == Some(name))
            .count() as u64;
        assert_eq!(
            s["moved"].as_u64(),
            Some(lost),
            "{name} stopped exactly the actors it lost: {s}"
        );
        assert_eq!(
            s["active"].as_u64(),
            Some(counts[name] as u64 - lost),
            "{name}: {s}"
        );
        assert_eq!(
            s["activations"], before[i]["activations"],
            "{name} re-activated nothing"
        );
    }
    // The moved actors come back on d with their state.
    let (values, errors) = b.touch("acct-", N, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(values.iter().all(|v| *v == 1), "every actor kept its state");
    let ds = d.stats().await;
    assert_eq!(ds["activations"].as_u64(), Some(moved.len() as u64), "{ds}");
    // Thousands of activations ran on a, b and c when d linked to them; d holds stubs only
    // for their process-group members: a router and the test node's echo actor each.
    let remote = d.stats().await["remote_actors"].as_u64().unwrap();
    assert_eq!(remote, 6, "d mirrors remote activations");
    for (n, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        let s = n.stats().await;
        assert_eq!(
            s["moved"].as_u64(),
            Some(
                moved
                    .iter()
                    .filter(|&&k| owners[k].as_deref() == Some(name))
                    .count() as u64
            )
        );
    }
}

async fn three(zk: &ZooKeeper, pg: &Postgres) -> (Node, Node, Node) {
    let (a, b, c) = (
        node(zk, pg, "a").await,
        node(zk, pg, "b").await,
        node(zk, pg, "c").await,
    );
    for n in [&a, &b, &c] {
        n.wait_stable(&["a", "b", "c"]).await;
    }
    (a, b, c)
}

fn owned_by(owners: &[Option<String>], name: &str, prefix: &str) -> Vec<String> {
    owners
        .iter()
        .enumerate()
        .filter(|(_, o)| o.as_deref() == Some(name))
        .map(|(i, _)| format!("{prefix}{i}"))
        .collect()
}

/// A message of the application's own serde types (a struct variant carrying an enum with
/// struct variants, a `Result` reply of its own types holding a map) travels to the owner and
/// its reply back, through a node that does not own the actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_the_applications_own_types_travels_between_nodes() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, b) = (node(&zk, &pg, "a").await, node(&zk, &pg, "b").await);
    for n in [&a, &b] {
        n.wait_stable(&["a", "b"]).await;
    }
    let owners = a.owners("apply-", 40).await;
    let id = owned_by(&owners, "b", "apply-")
        .into_iter()
        .next()
        .expect("b owns one of 40");
    let apply = |n: i64, note: Option<&str>| {
        a.request(serde_json::json!({"op": "apply", "id": id.clone(), "n": n, "note": note}))
    };

    let applied = apply(5, Some("red fish blue fish")).await;
    let text = applied["ok"]
        .as_str()
        .unwrap_or_else(|| panic!("{applied}"));
    assert!(
        text.contains("before: 0, after: 5") && text.contains(r#""fish": 2"#),
        "{text}"
    );
    let refused = apply(-10, Some("")).await;
    assert_eq!(
        refused["refused"].as_str(),
        Some("WouldGoNegative { value: 5, by: -10 }"),
        "{refused}"
    );
    assert_eq!(b.get(&id).await, Ok(5), "the refusal changed nothing");
    let reset = apply(0, None).await;
    let text = reset["ok"].as_str().unwrap_or_else(|| panic!("{reset}"));
    assert!(text.contains("before: 5, after: 0"), "{text}");
    assert_eq!(b.get(&id).await, Ok(0));
}

/// A call's timeout travels with it: the owner does not start a call whose timeout passed
/// while it waited behind a busy handler, so a caller that gave up is not applied later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_drops_a_call_whose_timeout_passed_in_its_queue() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, b) = (node(&zk, &pg, "a").await, node(&zk, &pg, "b").await);
    for n in [&a, &b] {
        n.wait_stable(&["a", "b"]).await;
    }
    let owners = a.owners("dl-", 40).await;
    let id = owned_by(&owners, "b", "dl-")
        .into_iter()
        .next()
        .expect("b owns one of 40");
    assert_eq!(a.add(&id, 1).await, Ok(1));
    // Held far longer than the late call's timeout, or than its frame could take to arrive.
    let hold = a.request(serde_json::json!({"op": "hold", "id": id, "ms": 5_000}));
    let late = async {
        b.wait_event("the hold starts", Duration::from_secs(30), |e| {
            e["event"] == "holding" && e["id"] == id.as_str()
        })
        .await
        .expect("the actor is held in its handler");
        a.request(serde_json::json!({"op": "add", "id": id, "n": 10, "timeout_ms": 300}))
            .await
    };
    let (held, late) = tokio::join!(hold, late);
    assert_eq!(held["ok"], 1, "{held}");
    let error = late["err"].as_str().unwrap_or_else(|| panic!("{late}"));
    assert!(error.contains("within 300ms"), "{error}");
    assert_eq!(a.get(&id).await, Ok(1), "the late add was never applied");
    assert_eq!(b.get(&id).await, Ok(1));
}

/// An idempotent call retried after its owner was killed is applied exactly once: the key
/// is stored with the state it produced, so a retry on the actor's new owner finds it (and
/// answers with the first reply) exactly when the first attempt's effect was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_retried_across_an_owner_kill_apply_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, mut b, c) = three(&zk, &pg).await;
    const ADDS: usize = 12;
    let ids: Vec<String> = owned_by(&a.owners("once-", 120).await, "b", "once-")
        .into_iter()
        .take(24)
        .collect();
    assert!(ids.len() >= 10, "b owns {} of 120", ids.len());
    let acked = AtomicUsize::new(0);
    let retries = AtomicUsize::new(0);
    // Each id gets ADDS increments, one at a time, each retried with its key until it is
    // acknowledged.
    let adds = ids.iter().map(|id| {
        let (a, acked, retries) = (&a, &acked, &retries);
        async move {
            for j in 0..ADDS {
                let key = format!("{id}-{j}");
                let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
                loop {
                    let reply = a
                        .request(serde_json::json!({
                            "op": "add_once", "id": id, "key": key, "n": 1, "timeout_ms": 3_000
                        }))
                        .await;
                    if reply["ok"].is_i64() {
                        acked.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{id}: {key} never acknowledged: {reply}"
                    );
                    retries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    let kill = async {
        // Killed while every id still has calls to make, with calls in flight.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::SeqCst) < ids.len() * 2 {
            assert!(tokio::time::Instant::now() < deadline, "no calls answered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        b.kill().await;
    };
    tokio::join!(futures::future::join_all(adds), kill);
    assert!(
        retries.load(Ordering::SeqCst) > 0,
        "the kill interrupted no call, so nothing was retried"
    );
    for id in &ids {
        assert_eq!(
            c.get(id).await,
            Ok(ADDS as i64),
            "{id}: each key applied once"
        );
    }
}

/// Reliable casts (a saga's releases, say) sent just before their actors' owner is killed
/// all arrive, each once, on the actors' next owners: the sender repeats each one with its
/// key until it is acknowledged as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_casts_reach_their_actors_once_through_an_owner_kill() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, mut b, c) = three(&zk, &pg).await;
    const CASTS: i64 = 5;
    let ids: Vec<String> = owned_by(&a.owners("rel-", 120).await, "b", "rel-")
        .into_iter()
        .take(24)
        .collect();
    assert!(ids.len() >= 10, "b owns {} of 120", ids.len());
    for id in &ids {
        assert_eq!(a.add(id, 0).await, Ok(0), "{id} is active on b");
    }
    for j in 0..CASTS {
        for id in &ids {
            let cast = serde_json::json!({
                "op": "cast_reliably", "id": id, "key": format!("{id}-{j}"), "n": 1
            });
            assert_eq!(a.request(cast).await["ok"], 0);
        }
    }
    b.kill().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for id in &ids {
        loop {
            let value = c.get_within(id, Duration::from_secs(5)).await;
            if value == Ok(CASTS) {
                break;
            }
            assert!(
                matches!(value, Err(_) | Ok(0..CASTS)),
                "{id}: {value:?}, more than the {CASTS} casts sent"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id}: {value:?} of {CASTS} casts arrived"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A chain of calls that comes back to an actor already waiting in it is refused at once,
/// also when the chain crosses nodes; a chain without a cycle crosses them freely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cycle_across_nodes_is_refused_at_once() {
    use overmind_core::ring::{DEFAULT_VNODES, Ring};
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, b) = (node(&zk, &pg, "a").await, node(&zk, &pg, "b").await);
    for n in [&a, &b] {
        n.wait_stable(&["a", "b"]).await;
    }
    let ring = Ring::new(["a", "b"], DEFAULT_VNODES);
    let on = |name: &str, skip: usize| {
        (0..)
            .map(|i| format!("h{i}"))
            .filter(|id| ring.owner(&format!("hop/{id}")) == Some(name))
            .nth(skip)
            .expect("an id")
    };
    let (x, y, z) = (on("a", 0), on("b", 0), on("b", 1));
    let via = |first: &str, path: &[&str]| {
        a.request(serde_json::json!({
            "op": "via", "id": first, "path": path, "timeout_ms": 20_000
        }))
    };
    let through = via(&x, &[&y, &z]).await;
    assert_eq!(through["ok"], 3, "{through}");
    // x (on a) calls y (on b), whose handler calls x again: refused on b, at once.
    let cycle = via(&x, &[&y, &x]).await;
    let refused = cycle["refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{cycle}"));
    assert!(
        refused.contains(&format!("calling hop/{x} would wait for itself"))
            && refused.contains(&format!("hop/{x} → hop/{y}")),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_hands_its_actors_over_with_their_state() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, mut b, c) = three(&zk, &pg).await;
    const N: usize = 600;
    let (values, errors) = a.touch("k", N, 5).await;
    assert!(
        errors.is_empty() && values.iter().all(|v| *v == 5),
        "{errors:?}"
    );
    let on_b = owned_by(&a.owners("k", N).await, "b", "k");
    assert!(on_b.len() > 100, "b owns a share: {}", on_b.len());
    assert!(b.shutdown().await, "b leaves cleanly");
    for n in [&a, &c] {
        n.wait_stable(&["a", "c"]).await;
    }
    let (values, errors) = c.touch("k", N, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(values.iter().all(|v| *v == 5), "every actor kept its state");
    let sa = a.stats().await;
    let sc = c.stats().await;
    assert_eq!(
        (sa["activations"].as_u64().unwrap() + sc["activations"].as_u64().unwrap()) as usize,
        N,
        "b's actors were activated once each, elsewhere: {sa} {sc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_dies_and_a_new_one_publishes_within_the_session_timeout() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (mut a, b, c) = three(&zk, &pg).await; // a registered first: the leader
    const N: usize = 300;
    let (_, errors) = b.touch("k", N, 1).await;
    assert!(errors.is_empty(), "{errors:?}");
    let key = owned_by(&b.owners("k", N).await, "a", "k")
        .pop()
        .expect("a owns a key");
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let killed = Instant::now();
    a.kill().await;
    // A view without a, published by the new leader.
    let seen = c
        .wait_event("a view without a", Duration::from_secs(30), |e| {
            e["event"] == "view"
                && e["members"]
                    .as_array()
                    .is_some_and(|m| m.len() == 2 && !m.contains(&"a".into()))
        })
        .await
        .unwrap();
    let published_after = seen["t_ms"].as_u64().unwrap().saturating_sub(killed_ms);
    let session_timeout = 2000;
    assert!(
        published_after <= session_timeout + 1000,
        "new view {published_after} ms after the leader died (session timeout {session_timeout} ms)"
    );
    // a's actors serve again, with their state, on their new owners.
    loop {
        match c.get_within(&key, Duration::from_millis(500)).await {
            Ok(v) => {
                assert_eq!(v, 1);
                break;
            }
            Err(_) if killed.elapsed() < Duration::from_secs(30) => {}
            Err(e) => panic!("{key} never served again: {e}"),
        }
    }
    let serving_after = killed.elapsed();
    println!(
        "leader killed: new view after {published_after} ms; its actors serving again after {serving_after:?}"
    );
    let (values, errors) = b.touch("k", N, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(values.iter().all(|v| *v == 1), "no state lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_carries_on_through_a_zookeeper_restart() {
    let mut zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, b, c) = three(&zk, &pg).await;
    const N: usize = 200;
    let (_, errors) = a.touch("k", N, 1).await;
    assert!(errors.is_empty(), "{errors:?}");
    zk.kill();
    // Without ZooKeeper the leases run out: nothing is served (consistency first)...
    b.wait_event("the lease lost", Duration::from_secs(10), |e| {
        e["event"] == "view" && e["serving"] == false
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    zk.restart();
    // ...and once it is back, the sessions resume and every actor answers with its state.
    let (values, errors) = b.touch("k", N, 1).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        values.iter().all(|v| *v == 2),
        "every increment survived: {values:?}"
    );
    let (values, errors) = c.touch("k", N, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(values.iter().all(|v| *v == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_from_an_epoch_the_cluster_has_not_reached_is_refused_with_a_clear_error() {
    use overmind_core::{
        ActorKey, StateStore,
        codec::{self, Lease, Record},
        store::PostgresStore,
    };
    #[derive(serde::Serialize)]
    struct Counter {
        value: i64,
    }
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    // A record whose lease names an epoch this cluster will not reach: written by another
    // cluster sharing the database, say, or before ZooKeeper's data was wiped.
    let store = PostgresStore::connect(&pg.url(), 2).await.unwrap();
    let key = ActorKey::new("counter", "planted").unwrap();
    let planted = Record {
        kind: "counter".into(),
        lease: Some(Lease {
            epoch: 1_000_000,
            node: "elsewhere".into(),
            activation: 1,
        }),
        payload: Some(codec::Payload {
            schema: codec::SchemaId::LEGACY,
            bytes: codec::encode_state(&Counter { value: 5 }).unwrap(),
        }),
        applied: Vec::new(),
    };
    let version = store
        .save(&key, overmind_core::Version::ABSENT, &planted.encode())
        .await
        .unwrap();

    let a = node_with(&zk, &pg, "a", vec![("unavailable-ms", "1500".into())])
        .await
        .unwrap();
    a.wait_stable(&["a"]).await;
    let err = a
        .get_within("planted", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        err.contains("unavailable") && err.contains("epoch 1000000"),
        "the caller learns why: {err}"
    );
    // Nothing was lost or overwritten, and the node serves every other actor.
    let stored = store.load(&key).await.unwrap().unwrap();
    assert_eq!(stored.version, version, "the record is untouched");
    assert_eq!(a.add("other", 1).await, Ok(1));
}

/// Starts a ractor_cluster node in this test process and dials node `a` from it.
async fn dial_as_plain_ractor_node(
    a: &Node,
    name: &str,
    cookie: &str,
) -> ractor::ActorRef<ractor_cluster::NodeServerMessage> {
    let ready = a
        .wait_event("ready", Duration::from_secs(1), |e| e["event"] == "ready")
        .await
        .expect("node a is ready");
    let addr = ready["addr"].as_str().expect("an address").to_owned();
    let server = ractor_cluster::NodeServer::new(
        0,
        cookie.into(),
        name.into(),
        "overmind".into(),
        None,
        None,
    )
    .with_listen_addr([127, 0, 0, 1].into());
    let (server, _) = ractor::Actor::spawn(None, server, ())
        .await
        .expect("a ractor_cluster node");
    ractor_cluster::client_connect(&server, addr.as_str())
        .await
        .expect("dial node a");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_cookie_is_refused() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let a = node(&zk, &pg, "a").await;
    a.wait_stable(&["a"]).await;
    // A node with another cookie cannot join the cluster...
    let refused = node_with(&zk, &pg, "x", vec![("cookie", "not-the-cookie".into())]).await;
    let err = refused.err().expect("refused");
    assert!(err.contains("cookie"), "{err}");
    // ...and ractor_cluster refuses its link, too.
    let server = dial_as_plain_ractor_node(&a, "intruder", "not-the-cookie").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sessions = ractor::call!(server, ractor_cluster::NodeServerMessage::GetSessions).unwrap();
    assert!(sessions.is_empty(), "the link was not kept: {sessions:?}");
    let visible = overmind_ractor::ractor::pg::which_groups()
        .into_iter()
        .any(|g| g.starts_with("overmind/test/router/a/"));
    assert!(!visible, "the intruder does not see node a's router");
    server.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_frame_gets_a_typed_error_and_the_router_carries_on() {
    use overmind_ractor::cluster::fuzz::reply_payload;
    // A cluster of its own: the wrong-cookie test, running beside it in this process, checks
    // that no router of cluster "test" is visible here.
    const CLUSTER: &str = "undecodable";
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let a = node_of_cluster(&zk, &pg, CLUSTER).await;
    a.wait_stable(&["a"]).await;
    // This test process links to node a as a plain ractor_cluster node.
    let server = dial_as_plain_ractor_node(&a, "prober", "test-cookie").await;
    let router = visible_router(CLUSTER, "a").await;
    // Wire version 2 is this release's; version 1 an older release's.
    for garbage in [
        vec![],
        vec![9, 9, 9],
        vec![1, 255, 255, 255, 255],
        vec![2, 255, 255, 255, 255],
    ] {
        let reply = ractor::call_t!(router, RouterMsg::Call, 5000, garbage.clone())
            .expect("the router answers");
        let err = reply_payload(&reply).expect_err("an error, not a reply");
        assert!(err.contains("BadFrame"), "{garbage:?}: {err}");
    }
    // The router survived: node a still serves through it.
    assert_eq!(a.add("k1", 3).await, Ok(3));
    server.stop(None);
}

/// A CA and one node certificate for `overmind.test`, made with the openssl command.
fn tls_material(dir: &std::path::Path, ca_name: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={ca_name}"),
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=overmind.test",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:overmind.test\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write the extensions file");
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "node.pem",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_mutual_tls_and_refuse_a_foreign_certificate() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let good = tempfile::tempdir().unwrap();
    tls_material(good.path(), "cluster CA");
    let tls = |dir: &std::path::Path| vec![("tls-dir", dir.display().to_string())];
    let a = node_with(&zk, &pg, "a", tls(good.path())).await.unwrap();
    let b = node_with(&zk, &pg, "b", tls(good.path())).await.unwrap();
    for n in [&a, &b] {
        n.wait_stable(&["a", "b"]).await;
    }
    let (values, errors) = a.touch("k", 200, 1).await;
    assert!(
        errors.is_empty(),
        "calls between TLS nodes work: {errors:?}"
    );
    assert!(values.iter().all(|v| *v == 1));
    assert!(
        b.stats().await["activations"].as_u64().unwrap() > 0,
        "b served some"
    );

    // A node whose certificate comes from another CA joins ZooKeeper (same cookie) but no link
    // to it comes up: messages for its actors fail rather than reach it.
    let foreign = tempfile::tempdir().unwrap();
    tls_material(foreign.path(), "some other CA");
    let mut extra = tls(foreign.path());
    extra.push(("unavailable-ms", "2000".into()));
    let c = node_with(&zk, &pg, "c", extra).await.unwrap();
    for n in [&a, &b, &c] {
        n.wait_event("a view with c", Duration::from_secs(30), |e| {
            e["event"] == "view" && e["members"].as_array().is_some_and(|m| m.len() == 3)
        })
        .await
        .unwrap();
    }
    let on_c = owned_by(&a.owners("k", 200).await, "c", "k");
    let err = a
        .get_within(&on_c[0], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        err.contains("unavailable") || err.contains("no reply"),
        "{err}"
    );
    assert_eq!(
        c.stats().await["activations"].as_u64(),
        Some(0),
        "nothing reached c"
    );

    // A node without TLS is refused by membership: it could reach no one.
    let plain = node_with(&zk, &pg, "p", vec![]).await;
    let err = plain.err().expect("a plain node cannot join a TLS cluster");
    assert!(err.contains("mutual TLS"), "{err}");
}

/// A router's messages as a peer speaks them. ractor_cluster matches variants by name, so a
/// peer's own type with these variants talks to Overmind's routers (and answers as one).
#[derive(ractor_cluster::RactorClusterMessage)]
enum RouterMsg {
    Cast(Vec<u8>),
    #[rpc]
    Call(Vec<u8>, ractor::RpcReplyPort<Vec<u8>>),
}

/// The router of node `node` of cluster `cluster`, once it is visible to this process.
async fn visible_router(cluster: &str, node: &str) -> ractor::ActorRef<RouterMsg> {
    let prefix = format!("overmind/{cluster}/router/{node}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let group = ractor::pg::which_groups()
            .into_iter()
            .find(|g| g.starts_with(&prefix));
        if let Some(cell) = group.and_then(|g| ractor::pg::get_members(&g).into_iter().next()) {
            return cell.into();
        }
        assert!(
            Instant::now() < deadline,
            "node {node}'s router never became visible"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The arguments `#[derive(VirtualMessage)]` makes for a variant with one `i64` field (a
/// bincode tuple: the value as a zigzag varint). A peer crafts them by hand.
fn i64_args(n: i64) -> Vec<u8> {
    overmind_core::codec::encode_state(&(n,)).expect("an i64 encodes")
}

/// A router that answers every call with the next of its crafted replies.
struct HostileRouter {
    replies: Vec<Vec<u8>>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ractor::Actor for HostileRouter {
    type Msg = RouterMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ractor::ActorRef<Self::Msg>,
        _: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ractor::ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        if let RouterMsg::Call(_, reply) = msg {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = reply.send(self.replies[n % self.replies.len()].clone());
        }
        Ok(())
    }
}

/// A hostile peer that knows the cookie, in this test process: a ractor_cluster node
/// registered in ZooKeeper as member `evil` of `cluster`, whose router answers every call
/// with `replies`, one after the other. The members link to it (and it sees their routers).
struct Hostile {
    server: ractor::ActorRef<ractor_cluster::NodeServerMessage>,
    membership: std::sync::Arc<overmind_core::membership::ZooKeeperMembership>,
    router: ractor::ActorRef<RouterMsg>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    applier: tokio::task::JoinHandle<()>,
}

impl Hostile {
    async fn join(zk: &ZooKeeper, pg: &Postgres, cluster: &str, replies: Vec<Vec<u8>>) -> Self {
        use overmind_core::membership::{Membership, ZooKeeperConfig, ZooKeeperMembership};
        let port = overmind_tests::process::free_port();
        let server = ractor_cluster::NodeServer::new(
            port,
            "test-cookie".into(),
            "evil".into(),
            "overmind".into(),
            None,
            None,
        )
        .with_listen_addr([127, 0, 0, 1].into());
        let (server, _) = ractor::Actor::spawn(None, server, ())
            .await
            .expect("a ractor_cluster node");
        let mut config = ZooKeeperConfig::new(
            zk.connect(),
            cluster,
            "evil",
            format!("127.0.0.1:{port}"),
            "test-cookie",
        );
        config.session_timeout = Duration::from_secs(2);
        // Membership checks views against the epoch floor in the cluster's store.
        let store = overmind_core::store::PostgresStore::connect(&pg.url(), 2)
            .await
            .expect("the cluster's store");
        let membership = ZooKeeperMembership::join(config, std::sync::Arc::new(store))
            .await
            .expect("evil joins the cluster");
        let mut views = membership.views();
        let member = {
            let joined = views.wait_for(|v| v.as_ref().is_some_and(|v| v.member.is_some()));
            let view = tokio::time::timeout(Duration::from_secs(30), joined)
                .await
                .expect("evil enters a view in time")
                .expect("membership runs");
            view.as_ref().and_then(|v| v.member.clone())
        }
        .expect("evil is a member");
        // A member reports each view applied (it holds no actors), so views become stable.
        let applier = {
            let membership = membership.clone();
            tokio::spawn(async move {
                loop {
                    let epoch = views.borrow_and_update().as_ref().map(|v| v.view.epoch());
                    if let Some(epoch) = epoch {
                        membership.applied(epoch);
                    }
                    if views.changed().await.is_err() {
                        return;
                    }
                }
            })
        };
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hostile = HostileRouter {
            replies,
            calls: calls.clone(),
        };
        let (router, _) = ractor::Actor::spawn(None, hostile, ())
            .await
            .expect("the hostile router");
        ractor::pg::join(
            format!("overmind/{cluster}/router/evil/{}", member.id),
            vec![router.get_cell()],
        );
        Self {
            server,
            membership,
            router,
            calls,
            applier,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn leave(self) {
        self.applier.abort();
        self.membership.close();
        self.router.stop(None);
        self.server.stop(None);
    }
}

/// Node `a` of its own cluster (tests in this process see every linked node's routers, so
/// those that link in-process keep their clusters apart).
async fn node_of_cluster(zk: &ZooKeeper, pg: &Postgres, cluster: &str) -> Node {
    Node::start(NodeSpec::new(BIN, zk, pg, cluster, "a"))
        .await
        .unwrap_or_else(|e| panic!("node a of {cluster}: {e}"))
}

/// Issue 8: a peer that knows the cookie killed any node with 10 bytes (the router's decoder
/// allocated a declared 2^60-byte length and the process aborted). Now every crafted frame is
/// answered with a typed error where there is a reply port, dropped where there is none, and
/// the node goes on serving calls through the same router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_with_the_cookie_cannot_kill_a_node_with_crafted_envelopes() {
    use overmind_ractor::cluster::fuzz::{envelope, reply_payload};
    const CLUSTER: &str = "hostile-frames";
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let a = node_of_cluster(&zk, &pg, CLUSTER).await;
    a.wait_stable(&["a"]).await;
    // The peer joins as a member (node a links to it), and talks to a's router directly.
    let hostile = Hostile::join(&zk, &pg, CLUSTER, vec![vec![]]).await;
    a.wait_stable(&["a", "evil"]).await;
    let router = visible_router(CLUSTER, "a").await;
    let owners = a.owners("victim", 100).await;
    let victim = owned_by(&owners, "a", "victim")
        .into_iter()
        .next()
        .expect("a owns some");

    let huge = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let frame = |variant: &str, args: &[u8]| {
        envelope("counter", &victim, 0, 0, variant, args).expect("a small envelope encodes")
    };
    let crafted: Vec<(&str, Vec<u8>)> = vec![
        ("the 10 bytes from issue 8", [&[2][..], &huge].concat()),
        (
            "an envelope whose id declares 2^60 bytes",
            [&[2, 7][..], b"counter", &huge].concat(),
        ),
        ("an unknown variant", frame("Explode", &i64_args(1))),
        (
            // Apply { change: Change::Add { by: 1, note: <2^60 bytes> } }
            "a string field that declares 2^60 bytes",
            frame("Apply", &[&[0, 2][..], &huge].concat()),
        ),
        (
            "an i64 cut short (a varint announcing 8 bytes, then 2)",
            frame("AddAndGet", &[0xfd, 1, 2]),
        ),
        ("a variant index no enum has", frame("Apply", &[7, 2])),
        (
            "trailing bytes after the fields",
            frame("AddAndGet", &[i64_args(1), vec![9]].concat()),
        ),
        (
            "a truncated envelope",
            frame("AddAndGet", &i64_args(1))[..12].to_vec(),
        ),
    ];
    for (what, bytes) in &crafted {
        router
            .cast(RouterMsg::Cast(bytes.clone()))
            .expect("the link takes a cast");
        let reply = ractor::call_t!(router, RouterMsg::Call, 10_000, bytes.clone())
            .unwrap_or_else(|e| panic!("{what}: the router did not answer: {e}"));
        let err = reply_payload(&reply).expect_err(what);
        assert!(err.contains("BadFrame"), "{what}: {err}");
    }

    // A cast variant sent as a call is refused (and not applied).
    let reply = ractor::call_t!(
        router,
        RouterMsg::Call,
        10_000,
        frame("Add", &i64_args(100))
    )
    .expect("the router answers");
    let err = reply_payload(&reply).expect_err("a cast sent as a call");
    assert!(err.contains("BadFrame") && err.contains("cast"), "{err}");

    // The router and the node survived: a real call through the same router, then through
    // the node's own API.
    let reply = ractor::call_t!(
        router,
        RouterMsg::Call,
        10_000,
        frame("AddAndGet", &i64_args(5))
    )
    .expect("the router answers a valid call");
    let value = reply_payload(&reply).expect("a reply, not an error");
    let value: i64 = overmind_core::codec::decode_state(&value).expect("an i64 reply");
    assert_eq!(value, 5, "the call was handled");
    assert_eq!(a.add(&victim, 1).await, Ok(6));
    assert_eq!(hostile.calls(), 0, "nothing was routed to the peer");
    hostile.leave();
}

/// Issue 8: a reply was decoded as an envelope was, so a crafted reply killed the caller.
/// Here the hostile member owns actors too, so node a routes calls for them to it, and it
/// answers each with crafted bytes: a's callers get typed errors, and a keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_reply_from_an_actors_owner_is_a_typed_error_and_the_caller_keeps_serving() {
    const CLUSTER: &str = "hostile-owner";
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let a = node_of_cluster(&zk, &pg, CLUSTER).await;
    a.wait_stable(&["a"]).await;
    let huge = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let replies = vec![
        // Reply::Err(HandlerFailed(<a 2^60-byte string>)): this aborted the caller.
        [&[2, 1, 0][..], &huge].concat(),
        // Reply::Ok(<2^60 bytes>).
        [&[2, 0][..], &huge].concat(),
        vec![],
        vec![9, 9, 9],
        // A well-formed Ok whose payload is an i64 cut short (a varint announcing 8 bytes,
        // then 2), and one with a byte after the i64.
        overmind_ractor::cluster::fuzz::replies(&[0xfd, 1, 2]).swap_remove(0),
        overmind_ractor::cluster::fuzz::replies(&[2, 9]).swap_remove(0),
    ];
    let hostile = Hostile::join(&zk, &pg, CLUSTER, replies.clone()).await;
    a.wait_stable(&["a", "evil"]).await;

    let owners = a.owners("k", 200).await;
    let on_evil = owned_by(&owners, "evil", "k");
    let on_a = owned_by(&owners, "a", "k");
    assert!(
        on_evil.len() >= replies.len() && !on_a.is_empty(),
        "{owners:?}"
    );
    for (i, key) in on_evil.iter().take(replies.len()).enumerate() {
        let err = a
            .get_within(key, Duration::from_secs(20))
            .await
            .expect_err("a crafted reply is not a value");
        // Including the last two, whose frames are sound but whose payload is not an i64.
        assert!(
            err.contains("undecodable frame"),
            "reply {i} ({:02x?}): {err}",
            replies[i]
        );
    }
    assert_eq!(
        hostile.calls(),
        replies.len(),
        "each call reached the hostile owner once"
    );
    // Node a is alive and serves its own actors.
    assert_eq!(a.add(&on_a[0], 1).await, Ok(1));
    assert_eq!(a.get(&on_a[0]).await, Ok(1));
    hostile.leave();
}

/// A delete goes to the owner: it stops the live activation there after the messages before
/// it, deletes the record fenced like a save, and the next message starts a new actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_reaches_the_owner_and_the_next_message_starts_a_new_actor() {
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, b, c) = three(&zk, &pg).await;
    let owners = a.owners("del-", 30).await;
    // An actor owned by another node than the one asked to delete it, for each node.
    let mut tried = 0;
    for (i, owner) in owners.iter().enumerate() {
        let owner = owner.as_deref().expect("an owner");
        let (asker, other) = match owner {
            "a" => (&b, &c),
            "b" => (&c, &a),
            _ => (&a, &b),
        };
        let id = format!("del-{i}");
        assert_eq!(asker.add(&id, 5).await, Ok(5));
        assert_eq!(other.add(&id, 2).await, Ok(7));
        asker.delete(&id).await.expect("deleted");
        assert!(
            !a.list(None, 1000).await.expect("list").contains(&id),
            "{id} is gone from the store"
        );
        // Every node sees a new actor now, starting from the default.
        assert_eq!(other.get(&id).await, Ok(0), "{id} (owned by {owner})");
        assert_eq!(asker.add(&id, 1).await, Ok(1), "{id} (owned by {owner})");
        tried += 1;
        if tried == 6 {
            break;
        }
    }
    assert_eq!(tried, 6);
    // Deleting an id nobody stored is fine.
    a.delete("never-stored").await.expect("deleted");
}

/// Planned moves fail no call: while every node keeps calling actors in a closed loop, a
/// fourth node joins and then leaves with `shutdown`, three times. Counts the failed calls
/// (there must be none) and prints the slowest round. `OVERMIND_MOVE_GROUP` sets the actors
/// per group (default 200; 10 groups) for a longer run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_graceful_leaves_under_load_fail_no_call() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, b, c) = three(&zk, &pg).await;
    // 2,000 actors in 10 groups of 200, by default.
    let group_size: usize = std::env::var("OVERMIND_MOVE_GROUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for g in 0..10 {
        let (_, errors) = a.touch(&format!("load{g}-"), group_size, 1).await;
        assert!(errors.is_empty(), "{errors:?}");
    }
    let (a, b, c) = (Arc::new(a), Arc::new(b), Arc::new(c));
    let running = Arc::new(AtomicBool::new(true));
    // Rounds finished by all loops: each step waits for the load to go on through it.
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load_goes_on = || {
        let finished = finished.clone();
        let from = finished.load(Ordering::SeqCst);
        async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            while finished.load(Ordering::SeqCst) < from + 3 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Set once the first move starts: rounds before it are the steady state.
    let moving = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for n in [a.clone(), b.clone(), c.clone()] {
        let running = running.clone();
        let finished = finished.clone();
        let moving = moving.clone();
        loops.push(tokio::spawn(async move {
            let (mut calls, mut failed) = (0usize, Vec::new());
            let mut worst = Duration::ZERO;
            // The worst per-round 99th percentile, before the moves and during them.
            let (mut steady_p99, mut moving_p99) = (Duration::ZERO, Duration::ZERO);
            let mut round = 0usize;
            while running.load(Ordering::SeqCst) {
                // A group of actors, 64 calls at a time.
                let group = format!("load{}-", round % 10);
                let during = moving.load(Ordering::SeqCst);
                let touched = n.touch_timed(&group, group_size, 1).await;
                worst = worst.max(touched.slowest);
                if during {
                    moving_p99 = moving_p99.max(touched.p99);
                } else {
                    steady_p99 = steady_p99.max(touched.p99);
                }
                calls += touched.values.len();
                failed.extend(touched.errors);
                round += 1;
                finished.fetch_add(1, Ordering::SeqCst);
            }
            (calls, failed, worst, round, steady_p99, moving_p99)
        }));
    }
    load_goes_on().await;
    moving.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let mut d = node(&zk, &pg, "d").await;
        for n in [&*a, &*b, &*c, &d] {
            n.wait_stable(&["a", "b", "c", "d"]).await;
        }
        load_goes_on().await;
        assert!(d.shutdown().await, "d leaves cleanly");
        for n in [&*a, &*b, &*c] {
            n.wait_stable(&["a", "b", "c"]).await;
        }
        load_goes_on().await;
    }
    running.store(false, Ordering::SeqCst);
    let mut failures = Vec::new();
    for l in loops {
        let (calls, failed, worst, rounds, steady_p99, moving_p99) = l.await.expect("load loop");
        println!(
            "{calls} calls in {rounds} rounds, {} failed, slowest call {worst:?}, p99 {steady_p99:?} before the moves, {moving_p99:?} during them",
            failed.len()
        );
        assert!(
            rounds >= 3,
            "the load ran through the moves: {rounds} rounds"
        );
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "failed calls during planned moves: {failures:?}"
    );
}

/// A moved actor is served by its new owner as soon as its old activation has stopped and
/// released it, not once every actor that moved is handed over and the epoch is stable:
/// while one moving actor is held in a long handler on its old owner (so the old owner cannot
/// acknowledge the new epoch), the other actors that move with it already answer on the new
/// node, with their values intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_actor_does_not_hold_up_the_others_that_move() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use overmind_core::ring::{DEFAULT_VNODES, Ring};
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (a, b, c) = three(&zk, &pg).await;
    const N: usize = 200;
    let (_, errors) = a.touch("mv", N, 5).await;
    assert!(errors.is_empty(), "{errors:?}");
    // The actors a fourth node "d" takes over, and their owners before it joins.
    let before = Ring::new(["a", "b", "c"], DEFAULT_VNODES);
    let after = Ring::new(["a", "b", "c", "d"], DEFAULT_VNODES);
    let moving: Vec<(String, String)> = (0..N)
        .map(|i| format!("mv{i}"))
        .filter(|id| after.owner(&format!("counter/{id}")) == Some("d"))
        .map(|id| {
            let old = before.owner(&format!("counter/{id}")).unwrap().to_owned();
            (id, old)
        })
        .collect();
    assert!(moving.len() >= 10, "{} of {N} actors move", moving.len());
    let (held, held_owner) = moving[0].clone();
    let nodes = [("a", &a), ("b", &b), ("c", &c)];
    let on = |name: &str| nodes.iter().find(|(n, _)| *n == name).unwrap().1;
    let caller = if held_owner == "a" { &b } else { &a };
    let hold_done = AtomicBool::new(false);
    // Held for much longer than handing over the others can take on a loaded machine.
    let hold = async {
        let reply = caller
            .request(
                serde_json::json!({"op": "hold", "id": held, "ms": 40_000, "timeout_ms": 60_000}),
            )
            .await;
        hold_done.store(true, Ordering::SeqCst);
        reply
    };
    let others = async {
        on(&held_owner)
            .wait_event("the hold starts", Duration::from_secs(30), |e| {
                e["event"] == "holding" && e["id"] == held.as_str()
            })
            .await
            .expect("the held actor is in its handler");
        let d = node(&zk, &pg, "d").await;
        for (id, _) in &moving[1..] {
            assert_eq!(d.get(id).await, Ok(5), "{id}");
        }
        assert!(
            !hold_done.load(Ordering::SeqCst),
            "the moved actors answered only once the held one was let go"
        );
        d
    };
    let (hold, d) = tokio::join!(hold, others);
    assert_eq!(hold["ok"], 5, "the held call completes: {hold}");
    for n in [&a, &b, &c, &d] {
        n.wait_stable(&["a", "b", "c", "d"]).await;
    }
    assert_eq!(d.get(&held).await, Ok(5), "{held} moved too");
}

/// A new release raises the counter's `state_version` (with `migrate_from(1 = Counter)`):
/// after the cluster restarts on it, every actor reads its old value, the migrated state is
/// stored with the lease the new owner takes, and the old release then refuses the new
/// records instead of misreading them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_upgraded_to_a_new_state_version_migrates_on_activation() {
    use overmind_core::{
        ActorKey, StateStore,
        codec::{self, Record},
        store::PostgresStore,
    };
    let zk = ZooKeeper::start();
    let pg = Postgres::start();
    let (mut a, mut b, mut c) = three(&zk, &pg).await;
    const N: usize = 60;
    let (_, errors) = a.touch("m", N, 7).await;
    assert!(errors.is_empty(), "{errors:?}");
    for n in [&mut a, &mut b, &mut c] {
        assert!(n.shutdown().await);
    }
    let store = PostgresStore::connect(&pg.url(), 2).await.unwrap();
    let schema_of = |bytes: &[u8]| {
        Record::decode(bytes)
            .expect("a readable record")
            .payload
            .expect("a state")
            .schema
    };
    let key = ActorKey::new("counter", "m0").unwrap();
    let before = store.load(&key).await.unwrap().expect("stored");
    assert_eq!(schema_of(&before.bytes).version, 1);

    let v2 = || vec![("state-v2", "1".to_owned())];
    let (a, b, c) = (
        node_with(&zk, &pg, "a", v2()).await.unwrap(),
        node_with(&zk, &pg, "b", v2()).await.unwrap(),
        node_with(&zk, &pg, "c", v2()).await.unwrap(),
    );
    for n in [&a, &b, &c] {
        n.wait_stable(&["a", "b", "c"]).await;
    }
    let (values, errors) = b.touch("m", N, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        values.iter().all(|v| *v == 7),
        "every value read back: {values:?}"
    );
    for i in 0..N {
        let key = ActorKey::new("counter", format!("m{i}")).unwrap();
        let stored = store.load(&key).await.unwrap().expect("stored");
        let record = Record::decode(&stored.bytes).unwrap();
        assert!(record.lease.is_some(), "stored with the new owner's lease");
        let payload = record.payload.expect("a state");
        assert_eq!(payload.schema.version, 2, "m{i} migrated when activated");
        #[derive(serde::Deserialize)]
        struct CounterV2 {
            value: i64,
            updates: u64,
        }
        let state: CounterV2 = codec::decode_state(&payload.bytes).unwrap();
        assert_eq!((state.value, state.updates), (7, 0));
    }
    assert_eq!(c.add("m1", 1).await, Ok(8));

    // A node of the old release joining now cannot read the new states: a named refusal.
    let old = node(&zk, &pg, "d").await;
    for n in [&a, &b, &c, &old] {
        n.wait_stable(&["a", "b", "c", "d"]).await;
    }
    let on_d = owned_by(&old.owners("m", N).await, "d", "m");
    let id = on_d.first().expect("d owns some of them");
    let err = old.get(id).await.unwrap_err();
    assert!(err.contains("newer than this build"), "{err}");
}
