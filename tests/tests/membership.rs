//! ZooKeeper membership against a real ZooKeeper: joins, views, stability, leader failover,
//! graceful leave, and the errors a misconfigured node gets.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use overmind_core::membership::{
    LinkSecurity, Membership, MembershipError, NodeView, ZooKeeperConfig, ZooKeeperMembership,
};
use overmind_tests::zookeeper::ZooKeeper;

fn config(zk: &ZooKeeper, node: &str) -> ZooKeeperConfig {
    // The address is only published here; nothing connects to it in these tests.
    let mut cfg = ZooKeeperConfig::new(zk.connect(), "test", node, "127.0.0.1:1", "cookie");
    cfg.session_timeout = Duration::from_secs(2);
    cfg.join_timeout = Duration::from_secs(20);
    cfg
}

/// Joins and acknowledges every view, as the runtime does once it has applied it.
async fn join(zk: &ZooKeeper, node: &str) -> Arc<ZooKeeperMembership> {
    let m = ZooKeeperMembership::join(config(zk, node))
        .await
        .expect("join");
    let acker = m.clone();
    let mut views = m.views();
    tokio::spawn(async move {
        loop {
            let epoch = views.borrow_and_update().as_ref().map(|v| v.view.epoch());
            if let Some(epoch) = epoch {
                acker.applied(epoch);
            }
            if views.changed().await.is_err() {
                return;
            }
        }
    });
    m
}

async fn wait_view(
    m: &ZooKeeperMembership,
    what: &str,
    cond: impl Fn(&NodeView) -> bool,
) -> NodeView {
    let mut views = m.views();
    let deadline = Duration::from_secs(20);
    let found = tokio::time::timeout(deadline, async {
        loop {
            if let Some(v) = views.borrow_and_update().as_ref() {
                if cond(v) {
                    return v.clone();
                }
            }
            views.changed().await.expect("membership alive");
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{} never saw {what}", m.node()))
}

fn names(v: &NodeView) -> Vec<String> {
    let mut n: Vec<String> = v.view.members().iter().map(|m| m.name.clone()).collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_agree_on_views_and_epochs_become_stable() {
    let zk = ZooKeeper::start();
    let a = join(&zk, "a").await;
    let b = join(&zk, "b").await;
    let c = join(&zk, "c").await;
    let mut seen = Vec::new();
    for m in [&a, &b, &c] {
        let v = wait_view(m, "a stable view of a, b, c", |v| {
            names(v) == ["a", "b", "c"] && v.view.stable() == v.view.epoch()
        })
        .await;
        assert!(v.is_member(), "{} is in its view", m.node());
        assert!(m.lease().is_valid());
        seen.push(v.view.record().clone());
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "every member sees the same record"
    );
    // Every member computes the same owner for every key.
    let views: Vec<NodeView> = [&a, &b, &c]
        .iter()
        .map(|m| m.views().borrow().clone().unwrap())
        .collect();
    for i in 0..10_000 {
        let key = format!("account/{i}");
        let owners: Vec<_> = views
            .iter()
            .map(|v| v.view.owner(&key).map(str::to_owned))
            .collect();
        assert!(owners.windows(2).all(|w| w[0] == w[1]), "{key}: {owners:?}");
        assert!(
            views
                .iter()
                .all(|v| v.view.settled_owner(&key, owners[0].as_deref().unwrap()))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_publishes_when_the_leader_goes() {
    let zk = ZooKeeper::start();
    let a = join(&zk, "a").await; // the lowest sequence number: the leader
    let b = join(&zk, "b").await;
    let c = join(&zk, "c").await;
    wait_view(&c, "all three", |v| names(v).len() == 3).await;
    let epoch = c.views().borrow().as_ref().unwrap().view.epoch();
    let gone = Instant::now();
    a.close(); // the session closes at once: a's member node vanishes
    drop(a);
    let v = wait_view(&c, "a view without the old leader", |v| {
        names(v) == ["b", "c"]
    })
    .await;
    assert!(v.view.epoch() > epoch);
    let took = gone.elapsed();
    // A closed session is noticed at once; an expired one after the session timeout.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    wait_view(&b, "stability without a", |v| {
        names(v) == ["b", "c"] && v.view.stable() == v.view.epoch()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_waits_until_the_cluster_is_stable_without_the_node() {
    let zk = ZooKeeper::start();
    let a = join(&zk, "a").await;
    let b = join(&zk, "b").await;
    wait_view(&a, "both", |v| {
        names(v).len() == 2 && v.view.stable() == v.view.epoch()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(20), b.leave())
        .await
        .expect("leave completes")
        .unwrap();
    let v = wait_view(&a, "a stable view without b", |v| {
        names(v) == ["a"] && v.view.stable() == v.view.epoch()
    })
    .await;
    assert!(v.view.member("b").is_none());
    assert!(!b.lease().is_valid(), "a node that left serves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_nodes_get_clear_errors() {
    let zk = ZooKeeper::start();
    let _a = join(&zk, "a").await;
    let mut wrong = config(&zk, "b");
    wrong.cookie = "not the cookie".into();
    let err = ZooKeeperMembership::join(wrong).await.unwrap_err();
    assert!(
        matches!(err, MembershipError::CookieMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("same cookie"), "{err}");

    // Right cookie, but TLS where the cluster links in plain TCP: it could never reach anyone.
    let mut tls = config(&zk, "t");
    tls.links = LinkSecurity::MutualTls;
    let err = ZooKeeperMembership::join(tls).await.unwrap_err();
    assert!(
        matches!(err, MembershipError::LinkSecurityMismatch { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("plain TCP") && err.to_string().contains("mutual TLS"),
        "{err}"
    );

    let mut bad = config(&zk, "c");
    bad.node = "has space".into();
    assert!(matches!(
        ZooKeeperMembership::join(bad).await,
        Err(MembershipError::Config(_))
    ));

    // Nothing listens on this port: it is bound, not listening, so no test beside this one can
    // take it meanwhile.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let mut down = config(&zk, "d");
    down.connect = format!("127.0.0.1:{}", reserved.local_addr().unwrap().port());
    down.join_timeout = Duration::from_secs(3);
    let started = Instant::now();
    let err = ZooKeeperMembership::join(down).await.unwrap_err();
    assert!(matches!(err, MembershipError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("cannot reach ZooKeeper at 127.0.0.1:"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_waits_for_its_old_session() {
    let zk = ZooKeeper::start();
    let _a = join(&zk, "a").await;
    let first = join(&zk, "b").await;
    let first_id = wait_view(&first, "b", |v| v.is_member())
        .await
        .member
        .unwrap()
        .id;
    // The old incarnation is still registered: the new one waits, then registers once it is gone.
    let second = tokio::spawn({
        let cfg = config(&zk, "b");
        async move { ZooKeeperMembership::join(cfg).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "must not register while the old session lives"
    );
    first.close();
    drop(first);
    let second = second
        .await
        .unwrap()
        .expect("joins after the old session ended");
    let v = wait_view(&second, "the new b", |v| v.is_member()).await;
    assert_ne!(v.member.unwrap().id, first_id, "a new registration");
}
