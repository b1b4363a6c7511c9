//! ZooKeeper membership against a real ZooKeeper: joins, views, stability, leader failover,
//! graceful leave, and the errors a misconfigured node gets.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use overmind_core::{
    ActorKey, StateStore, StoreError, Version,
    membership::{
        LinkSecurity, Membership, MembershipError, NodeView, ZooKeeperConfig, ZooKeeperMembership,
    },
    store::{BoxFuture, MemoryStore, Stored},
};
use overmind_tests::zookeeper::ZooKeeper;
use zookeeper_client as zk;

/// A ZooKeeper, and the store that keeps the cluster's epoch floor: every member of a cluster
/// shares one.
struct Servers {
    zk: ZooKeeper,
    store: Arc<MemoryStore>,
}

impl Servers {
    fn start() -> Self {
        Self {
            zk: ZooKeeper::start(),
            store: Arc::new(MemoryStore::new()),
        }
    }

    fn store(&self) -> Arc<dyn StateStore> {
        self.store.clone()
    }
}

fn config(servers: &Servers, node: &str) -> ZooKeeperConfig {
    // The address is only published here; nothing connects to it in these tests.
    let mut cfg = ZooKeeperConfig::new(servers.zk.connect(), "test", node, "127.0.0.1:1", "cookie");
    cfg.session_timeout = Duration::from_secs(2);
    cfg.join_timeout = Duration::from_secs(20);
    cfg
}

/// Joins and acknowledges every view, as the runtime does once it has applied it.
async fn join(servers: &Servers, node: &str) -> Arc<ZooKeeperMembership> {
    let m = ZooKeeperMembership::join(config(servers, node), servers.store())
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
    let zk = Servers::start();
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
    let zk = Servers::start();
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
    let zk = Servers::start();
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
    let zk = Servers::start();
    let _a = join(&zk, "a").await;
    let mut wrong = config(&zk, "b");
    wrong.cookie = "not the cookie".into();
    let err = ZooKeeperMembership::join(wrong, zk.store())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::CookieMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("same cookie"), "{err}");

    // Right cookie, but TLS where the cluster links in plain TCP: it could never reach anyone.
    let mut tls = config(&zk, "t");
    tls.links = LinkSecurity::MutualTls;
    let err = ZooKeeperMembership::join(tls, zk.store())
        .await
        .unwrap_err();
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
        ZooKeeperMembership::join(bad, zk.store()).await,
        Err(MembershipError::Config(_))
    ));

    // Nothing listens on this port: it is bound, not listening, so no test beside this one can
    // take it meanwhile.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let mut down = config(&zk, "d");
    down.connect = format!("127.0.0.1:{}", reserved.local_addr().unwrap().port());
    // However long joining may take, a ZooKeeper that cannot be reached fails within the
    // connect timeout (5 s by default).
    down.join_timeout = Duration::from_secs(60);
    let started = Instant::now();
    let err = ZooKeeperMembership::join(down, zk.store())
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("cannot reach ZooKeeper at 127.0.0.1:"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_waits_for_its_old_session() {
    let zk = Servers::start();
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
        let store = zk.store();
        async move { ZooKeeperMembership::join(cfg, store).await }
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

/// A raw ZooKeeper session: an outsider (no credential, or a wrong one), or an insider holding
/// the cluster's credential.
async fn raw_client(servers: &Servers, credential: Option<&str>) -> zk::Client {
    let mut connector = zk::Client::connector();
    if let Some(credential) = credential {
        connector = connector.with_auth("digest", credential.as_bytes());
    }
    connector
        .with_session_timeout(Duration::from_secs(5))
        .connect(&servers.zk.connect())
        .await
        .expect("connect to ZooKeeper")
}

fn credential(servers: &Servers, cookie: &str) -> String {
    let mut cfg = config(servers, "any");
    cfg.cookie = cookie.into();
    cfg.credential()
}

fn is_stable_with(v: &NodeView, members: &[&str]) -> bool {
    names(v) == members && v.view.stable() == v.view.epoch() && v.is_member()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_can_neither_change_nor_read_a_cluster() {
    let zk = Servers::start();
    let a = join(&zk, "a").await;
    let b = join(&zk, "b").await;
    let v = wait_view(&a, "a stable view of a, b", |v| {
        is_stable_with(v, &["a", "b"])
    })
    .await;
    let member = format!("/overmind/test/members/m-{:010}", v.member.expect("a").id);
    let wrong = credential(&zk, "not the cookie");
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    for (who, client) in [
        ("an unauthenticated client", raw_client(&zk, None).await),
        (
            "a client with a wrong cookie",
            raw_client(&zk, Some(&wrong)).await,
        ),
    ] {
        let no_auth = Some(zk::Error::NoAuth);
        for path in [
            "/overmind/test",
            "/overmind/test/members",
            "/overmind/test/view",
            member.as_str(),
        ] {
            let set = client.set_data(path, b"{}", None).await.err();
            assert_eq!(set, no_auth, "{who}: set {path}");
            assert_eq!(
                client.get_data(path).await.err(),
                no_auth,
                "{who}: read {path}"
            );
            assert_eq!(
                client.get_acl(path).await.err(),
                no_auth,
                "{who}: ACL of {path}"
            );
            let acl = client.set_acl(path, &zk::Acls::anyone_all(), None).await;
            assert_eq!(acl.err(), no_auth, "{who}: set the ACL of {path}");
        }
        for path in ["/overmind/test/view", member.as_str()] {
            let delete = client.delete(path, None).await.err();
            assert_eq!(delete, no_auth, "{who}: delete {path}");
        }
        let create = client.create("/overmind/test/members/m-9999999999", b"{}", &open);
        assert_eq!(create.await.err(), no_auth, "{who}: create a member");
        let register = client.create("/overmind/test/members/m-", b"{}", &ephemeral);
        assert_eq!(register.await.err(), no_auth, "{who}: register");
        let create = client.create("/overmind/test/other", b"", &open);
        assert_eq!(create.await.err(), no_auth, "{who}: create beside the view");
        // The shared parent: no one changes it, and a live cluster's root is never empty.
        let set = client.set_data("/overmind", b"x", None).await.err();
        assert_eq!(set, no_auth, "{who}: set /overmind");
        let acl = client
            .set_acl("/overmind", &zk::Acls::anyone_all(), None)
            .await;
        assert_eq!(acl.err(), no_auth, "{who}: set the ACL of /overmind");
        let delete = client.delete("/overmind/test", None).await;
        assert_eq!(
            delete.err(),
            Some(zk::Error::NotEmpty),
            "{who}: delete the root"
        );
    }
    // The cluster keeps serving: a third member joins and every lease holds.
    let c = join(&zk, "c").await;
    for m in [&a, &b, &c] {
        wait_view(m, "a stable view of a, b, c", |v| {
            is_stable_with(v, &["a", "b", "c"])
        })
        .await;
        assert!(m.lease().is_valid(), "{} serves", m.node());
    }
    // A second cluster with another cookie creates its own root beside this one.
    let mut other = config(&zk, "o");
    other.cluster = "other".into();
    other.cookie = "another cookie".into();
    let o = ZooKeeperMembership::join(other, Arc::new(MemoryStore::new()))
        .await
        .expect("a second cluster joins");
    wait_view(&o, "its own view", |v| names(v) == ["o"]).await;
    // The credential operators are told to use reads the cluster.
    let operator = raw_client(&zk, Some(&credential(&zk, "cookie"))).await;
    let (view, _) = operator
        .get_data("/overmind/test/view")
        .await
        .expect("read");
    assert!(String::from_utf8_lossy(&view).contains("\"c\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_an_older_release_created_open_is_secured() {
    let zk = Servers::start();
    let old = raw_client(&zk, None).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for path in [
        "/overmind",
        "/overmind/test",
        "/overmind/test/members",
        "/overmind/test/view",
    ] {
        old.create(path, b"", &open).await.expect("create open");
    }
    // The older release left a view at epoch 57, and records leased up to it; its store has
    // no epoch floor. The epochs continue from 57 rather than start again below it.
    let old_view = serde_json::json!({"epoch": 57, "stable": 57,
        "history": [{"epoch": 57, "members": [{"id": 1, "name": "gone", "addr": "127.0.0.1:1"}]}]});
    old.set_data("/overmind/test/view", old_view.to_string().as_bytes(), None)
        .await
        .expect("write the old view");
    assert_eq!(zk.store.epoch_floor("test").await.expect("floor"), 0);
    let a = join(&zk, "a").await;
    let v = wait_view(&a, "a stable view of a", |v| is_stable_with(v, &["a"])).await;
    assert_eq!(
        v.view.epoch(),
        58,
        "continued from the older release's view"
    );
    assert_eq!(zk.store.epoch_floor("test").await.expect("floor"), 58);
    for path in [
        "/overmind/test",
        "/overmind/test/members",
        "/overmind/test/view",
    ] {
        let set = old.set_data(path, b"{}", None).await.err();
        assert_eq!(set, Some(zk::Error::NoAuth), "set {path}");
        let read = old.get_data(path).await.err();
        assert_eq!(read, Some(zk::Error::NoAuth), "read {path}");
    }
    // The shared parent is narrowed, not closed: anyone may still create a cluster beside it.
    let (acls, _) = old.get_acl("/overmind").await.expect("readable");
    let wanted = zk::Permission::CREATE | zk::Permission::READ | zk::Permission::DELETE;
    assert_eq!(acls, [zk::Acl::new(wanted, zk::AuthId::anyone())]);
    let set = old.set_data("/overmind", b"x", None).await.err();
    assert_eq!(set, Some(zk::Error::NoAuth));
    let b = join(&zk, "b").await;
    wait_view(&b, "a stable view of a, b", |v| {
        is_stable_with(v, &["a", "b"])
    })
    .await;
}

/// Records every epoch a member adopts.
fn record_epochs(m: &ZooKeeperMembership) -> Arc<parking_lot::Mutex<Vec<u64>>> {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut views = m.views();
    let out = seen.clone();
    tokio::spawn(async move {
        loop {
            let epoch = views.borrow_and_update().as_ref().map(|v| v.view.epoch());
            out.lock().extend(epoch);
            if views.changed().await.is_err() {
                return;
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_no_leader_published_is_refused_and_replaced() {
    let zk = Servers::start();
    let a = join(&zk, "a").await;
    let b = join(&zk, "b").await;
    let v = wait_view(&b, "a stable view of a, b", |v| {
        is_stable_with(v, &["a", "b"])
    })
    .await;
    let epoch = v.view.epoch();
    let seen = record_epochs(&b);
    let insider = raw_client(&zk, Some(&credential(&zk, "cookie"))).await;
    let far = epoch + 1000;
    let hostile = [
        serde_json::json!({"epoch": u64::MAX, "stable": u64::MAX,
            "history": [{"epoch": u64::MAX, "members": []}]})
        .to_string(),
        // In range, but no leader raised the floor to it: a jump nothing explains.
        serde_json::json!({"epoch": far, "stable": far, "history": [{"epoch": far, "members": []}]})
            .to_string(),
        "not a view".to_owned(),
    ];
    for record in hostile {
        let floor = zk.store.epoch_floor("test").await.expect("floor");
        insider
            .set_data("/overmind/test/view", record.as_bytes(), None)
            .await
            .expect("an insider may write");
        // The leader replaces it with a recovery view just above the floor, which becomes
        // stable once both have applied it.
        let v = wait_view(&b, "the recovery view, stable", |v| {
            v.view.epoch() == floor + 1 && is_stable_with(v, &["a", "b"])
        })
        .await;
        assert!(v.view.epoch() < far);
        for m in [&a, &b] {
            assert!(m.lease().is_valid(), "{} kept serving", m.node());
        }
    }
    // Deleting the view node is recovered from the same way.
    let floor = zk.store.epoch_floor("test").await.expect("floor");
    insider
        .delete("/overmind/test/view", None)
        .await
        .expect("delete");
    wait_view(&a, "the recovery view after a delete", |v| {
        v.view.epoch() == floor + 1 && is_stable_with(v, &["a", "b"])
    })
    .await;
    let seen = seen.lock().clone();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen.iter().all(|e| *e <= floor + 1),
        "b adopted only epochs a leader published, never going back: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_losing_its_data_is_recovered_above_the_epoch_floor() {
    let mut zk = Servers::start();
    let a = join(&zk, "a").await;
    let b = join(&zk, "b").await;
    let before = wait_view(&a, "a stable view of a, b", |v| {
        is_stable_with(v, &["a", "b"])
    })
    .await;
    let epoch = before.view.epoch();
    tokio::task::block_in_place(|| zk.zk.wipe());
    for m in [&a, &b] {
        let after = wait_view(m, "a stable view above the lost epochs", |v| {
            v.view.epoch() > epoch && is_stable_with(v, &["a", "b"])
        })
        .await;
        assert!(m.lease().is_valid());
        // Sequence numbers started again, but no process took an id it held before.
        let me = after.member.expect("a member");
        let old = before.view.member(m.node()).expect("was a member");
        assert_ne!(
            me.id,
            old.id,
            "{} took its old member id {} again",
            m.node(),
            old.id
        );
    }
    let floor = zk.store.epoch_floor("test").await.expect("floor");
    let now = a.views().borrow().as_ref().map(|v| v.view.epoch());
    assert_eq!(now, Some(floor), "the floor is the published epoch");
}

/// A store that keeps states but no epoch floor (a custom store written before floors).
struct NoFloor(MemoryStore);

impl StateStore for NoFloor {
    fn name(&self) -> &'static str {
        "no-floor"
    }
    fn load<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
        self.0.load(key)
    }
    fn save<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        self.0.save(key, expected, bytes)
    }
    fn delete<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.delete(key, expected)
    }
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.0.flush()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_an_epoch_floor_is_a_clear_error() {
    let zk = Servers::start();
    let started = Instant::now();
    let err = ZooKeeperMembership::join(config(&zk, "a"), Arc::new(NoFloor(MemoryStore::new())))
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::Config(_)), "{err}");
    assert!(err.to_string().contains("epoch floor"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "fails at once");
}
