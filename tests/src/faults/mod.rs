//! The fault-injection suite: real node processes, real ZooKeeper and PostgreSQL, client
//! processes recording histories, and faults injected through signals and TCP proxies.
//!
//! Every node reaches ZooKeeper through a proxy of its own, and every other node through a
//! proxy per direction, so a test can cut one node off from ZooKeeper, or from its peers,
//! without touching the rest. After each run [`check::check`] verifies the histories, the
//! activations the nodes logged, and the stored values.

pub mod check;
pub mod proxy;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use overmind_core::{
    ActorKey, StateStore,
    codec::{self, Record},
    store::PostgresStore,
};
use serde::Deserialize;

use crate::rng::Rng;
use crate::{
    cluster::{Node, NodeSpec},
    ensemble::Ensemble,
    postgres::Postgres,
    process::free_port,
    zookeeper::ZooKeeper,
};
use check::wall_us;
use check::{Event, Op, Outcome};
use proxy::Proxy;

/// The faults the suite injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a node under load, restart it a few seconds later.
    Kill,
    /// SIGSTOP a node for longer than the session timeout, then SIGCONT.
    Pause,
    /// Kill ZooKeeper and start it again.
    ZooKeeperRestart,
    /// Kill ZooKeeper, delete its data directory, and start it again on the same port: every
    /// session, member and view is lost, while the store keeps the leases and the epoch floor.
    ZooKeeperWipe,
    /// Cut one node off from ZooKeeper, then heal.
    ZooKeeperCut,
    /// Cut one node off from its peers, then heal.
    PeerCut,
    /// Restart every node in turn, gracefully.
    RollingRestart,
    /// Scale out and back in under load: a new node (a new name) joins, then leaves with
    /// `shutdown`; twice. A planned move: no call may fail.
    Scale,
    /// With a ZooKeeper ensemble: kill its leader server, restart it later. The quorum holds:
    /// no call may fail.
    ZooKeeperServerKill,
    /// With a ZooKeeper ensemble: kill two of its three servers (the leader among them), so
    /// the quorum is lost and nodes stop serving within their lease; restart them.
    ZooKeeperQuorumLoss,
}

impl Fault {
    /// Every fault, in the order a short run goes through them. The planned moves (rolling
    /// restarts, scaling) come last: a mixed run picks from the others.
    pub const ALL: [Fault; 8] = [
        Fault::Kill,
        Fault::Pause,
        Fault::ZooKeeperRestart,
        Fault::ZooKeeperCut,
        Fault::PeerCut,
        Fault::ZooKeeperWipe,
        Fault::RollingRestart,
        Fault::Scale,
    ];

    /// The faults that need a ZooKeeper ensemble ([`Options::ensemble`]).
    pub const ENSEMBLE: [Fault; 2] = [Fault::ZooKeeperServerKill, Fault::ZooKeeperQuorumLoss];

    /// The faults a mixed run picks from: all but the planned moves.
    pub const MIXED: [Fault; 6] = [
        Fault::Kill,
        Fault::Pause,
        Fault::ZooKeeperRestart,
        Fault::ZooKeeperCut,
        Fault::PeerCut,
        Fault::ZooKeeperWipe,
    ];
}

/// What a run injects.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// One fault, once.
    Single(Fault),
    /// Faults chosen at random, one after another, for the whole run.
    Mixed,
}

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Increments and reads; an increment whose outcome is left open is not retried.
    Plain,
    /// Increments with idempotency keys, each retried with its key until acknowledged, and
    /// reads: the checker's effect count then finds any increment applied twice.
    Idempotent,
}

/// How a run is made, besides its plan.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// More actors made active before the clients start (and again after each step of
    /// [`Fault::Scale`]), so planned moves hand many activations over.
    pub warm: usize,
    pub workload: Workload,
    /// Run ZooKeeper as an ensemble of three servers instead of one (for
    /// [`Fault::ENSEMBLE`]; its data cannot be wiped).
    pub ensemble: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            warm: 0,
            workload: Workload::Plain,
            ensemble: false,
        }
    }
}

/// The ZooKeeper a run uses: one server, or an ensemble.
enum Coordinator {
    Single(ZooKeeper),
    Ensemble(Ensemble),
}

impl Coordinator {
    /// Each server's client address.
    fn servers(&self) -> Vec<SocketAddr> {
        let connect = match self {
            Self::Single(zk) => zk.connect(),
            Self::Ensemble(e) => e.connect(),
        };
        connect
            .split(',')
            .map(|a| a.parse().expect("a ZooKeeper address"))
            .collect()
    }

    fn connect(&self) -> String {
        match self {
            Self::Single(zk) => zk.connect(),
            Self::Ensemble(e) => e.connect(),
        }
    }
}

/// The binaries a run starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub node: PathBuf,
    pub client: PathBuf,
}

/// One run's report.
#[derive(Debug, Clone)]
pub struct Report {
    pub plan: String,
    pub faults: Vec<String>,
    pub outcome: Outcome,
}

const NODES: usize = 3;
const CLIENTS: usize = 3;
const ACTORS: u64 = 24;
const SESSION_MS: u64 = 2000;
const CLUSTER: &str = "faults";

struct Cluster {
    bins: Binaries,
    zk: Coordinator,
    pg: Postgres,
    dir: tempfile::TempDir,
    names: Vec<String>,
    listen: Vec<u16>,
    control: Vec<u16>,
    /// Per node, a proxy to each ZooKeeper server.
    zk_proxies: Vec<Vec<Proxy>>,
    links: HashMap<(usize, usize), Proxy>,
    nodes: Vec<Option<Node>>,
    paused: Vec<bool>,
    kills: HashMap<String, Vec<u64>>,
    /// The store's epoch floor when ZooKeeper's data was last wiped: every view after it must
    /// be newer.
    wiped_at_epoch: Option<u64>,
    /// The names of the nodes that joined and left while scaling (their events count too).
    extra_names: Vec<String>,
    /// Actors made active (read once) besides the checked ones, so that planned moves hand
    /// many activations over.
    warm: usize,
}

impl Cluster {
    async fn start(bins: &Binaries, ensemble: bool) -> Cluster {
        let zk = tokio::task::block_in_place(|| match ensemble {
            false => Coordinator::Single(ZooKeeper::start()),
            true => Coordinator::Ensemble(Ensemble::start(3)),
        });
        let pg = tokio::task::block_in_place(Postgres::start);
        let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
        let listen: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let control: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let mut zk_proxies = Vec::new();
        for _ in 0..NODES {
            let mut proxies = Vec::new();
            for server in zk.servers() {
                proxies.push(Proxy::start(server).await);
            }
            zk_proxies.push(proxies);
        }
        let mut links = HashMap::new();
        for from in 0..NODES {
            for (to, &port) in listen.iter().enumerate() {
                if from != to {
                    let upstream: SocketAddr = ([127, 0, 0, 1], port).into();
                    links.insert((from, to), Proxy::start(upstream).await);
                }
            }
        }
        let mut cluster = Cluster {
            bins: bins.clone(),
            zk,
            pg,
            dir: tempfile::tempdir().expect("temp dir"),
            names,
            listen,
            control,
            zk_proxies,
            links,
            nodes: (0..NODES).map(|_| None).collect(),
            paused: vec![false; NODES],
            kills: HashMap::new(),
            wiped_at_epoch: None,
            extra_names: Vec::new(),
            warm: 0,
        };
        for i in 0..NODES {
            cluster.start_node(i).await;
        }
        cluster.wait_all_stable().await;
        cluster
    }

    async fn start_node(&mut self, i: usize) {
        let routes: Vec<String> = (0..NODES)
            .filter(|&j| j != i)
            .map(|j| {
                format!(
                    "127.0.0.1:{}={}",
                    self.listen[j],
                    self.links[&(i, j)].addr()
                )
            })
            .collect();
        let events = self
            .dir
            .path()
            .join(format!("events-{}.jsonl", self.names[i]));
        let spec = NodeSpec {
            bin: self.bins.node.to_str().unwrap_or_default(),
            zk: self.zk_proxies[i]
                .iter()
                .map(Proxy::addr)
                .collect::<Vec<_>>()
                .join(","),
            pg: self.pg.url(),
            cluster: CLUSTER.into(),
            name: self.names[i].clone(),
            extra: vec![
                ("listen", format!("127.0.0.1:{}", self.listen[i])),
                ("control-port", self.control[i].to_string()),
                ("events", events.display().to_string()),
                ("route", routes.join(",")),
                ("session-timeout-ms", SESSION_MS.to_string()),
                ("unavailable-ms", "8000".into()),
            ],
        };
        let node = Node::start(spec)
            .await
            .unwrap_or_else(|e| panic!("node {}: {e}", self.names[i]));
        self.nodes[i] = Some(node);
        self.paused[i] = false;
    }

    /// Activates the warm actors (`warm-0`, `warm-1`, ...) through the first running node:
    /// wherever they live now, they are active there.
    async fn warm_up(&self) {
        if self.warm == 0 {
            return;
        }
        let Some(node) = self.nodes.iter().flatten().next() else {
            return;
        };
        let (_, errors) = node.touch("warm-", self.warm, 0).await;
        if !errors.is_empty() {
            eprintln!("warming {} actors: {errors:?}", self.warm);
        }
    }

    /// Starts a node that is not one of the cluster's own: a new name, reaching ZooKeeper and
    /// its peers directly (no proxies, so no cut applies to it). Clients do not call it; it
    /// serves the actors the ring gives it, reached through the other nodes.
    async fn start_extra(&mut self) -> Node {
        let name = format!("x{}", self.extra_names.len());
        let events = self.dir.path().join(format!("events-{name}.jsonl"));
        let spec = NodeSpec {
            bin: self.bins.node.to_str().unwrap_or_default(),
            zk: self.zk.connect(),
            pg: self.pg.url(),
            cluster: CLUSTER.into(),
            name: name.clone(),
            extra: vec![
                ("listen", format!("127.0.0.1:{}", free_port())),
                ("events", events.display().to_string()),
                ("session-timeout-ms", SESSION_MS.to_string()),
                ("unavailable-ms", "8000".into()),
            ],
        };
        self.extra_names.push(name.clone());
        Node::start(spec)
            .await
            .unwrap_or_else(|e| panic!("node {name}: {e}"))
    }

    async fn wait_all_stable(&self) {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        for node in self.nodes.iter().flatten() {
            node.wait_stable(&names).await;
        }
    }

    /// Waits until every live node reports a stable view of all members (the last events).
    async fn wait_settled(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            let mut settled = true;
            for node in self.nodes.iter().flatten() {
                let s = node.stats().await;
                settled &= s["member"] == true && s["serving"] == true && s["epoch"] == s["stable"];
            }
            if settled {
                let epochs: Vec<serde_json::Value> =
                    futures::future::join_all(self.nodes.iter().flatten().map(|n| n.stats())).await;
                if epochs.windows(2).all(|w| w[0]["epoch"] == w[1]["epoch"]) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    async fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.nodes[i].take() {
            self.kills
                .entry(self.names[i].clone())
                .or_default()
                .push(wall_us());
            node.kill().await;
        }
    }

    fn cut_peers(&self, i: usize, cut: bool) {
        for ((from, to), proxy) in &self.links {
            if *from == i || *to == i {
                if cut { proxy.cut() } else { proxy.heal() }
            }
        }
    }

    /// Injects one fault and heals it.
    async fn inject(&mut self, fault: Fault, i: usize) -> String {
        let name = self.names[i].clone();
        match fault {
            Fault::Kill => {
                self.kill(i).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.start_node(i).await;
                format!("SIGKILL {name}, restarted")
            }
            Fault::Pause => {
                if let Some(node) = &self.nodes[i] {
                    node.pause();
                    self.paused[i] = true;
                    tokio::time::sleep(Duration::from_millis(SESSION_MS * 5 / 2)).await;
                    node.resume();
                    self.paused[i] = false;
                }
                format!("SIGSTOP {name} for {} ms, SIGCONT", SESSION_MS * 5 / 2)
            }
            Fault::ZooKeeperRestart => {
                match &mut self.zk {
                    Coordinator::Single(zk) => zk.kill(),
                    Coordinator::Ensemble(e) => (0..e.size()).for_each(|s| e.kill(s)),
                }
                tokio::time::sleep(Duration::from_millis(1500)).await;
                tokio::task::block_in_place(|| match &mut self.zk {
                    Coordinator::Single(zk) => zk.restart(),
                    Coordinator::Ensemble(e) => (0..e.size()).for_each(|s| e.restart(s)),
                });
                "ZooKeeper killed, restarted".into()
            }
            Fault::ZooKeeperServerKill | Fault::ZooKeeperQuorumLoss => {
                let Coordinator::Ensemble(e) = &mut self.zk else {
                    return format!("{fault:?} skipped: ZooKeeper is a single server");
                };
                let leader = e.leader().unwrap_or(0);
                let mut killed = vec![leader];
                if fault == Fault::ZooKeeperQuorumLoss {
                    killed.push((leader + 1) % e.size());
                }
                for &s in &killed {
                    e.kill(s);
                }
                tokio::time::sleep(Duration::from_millis(SESSION_MS * 3)).await;
                for &s in &killed {
                    e.restart(s);
                }
                let size = e.size();
                tokio::task::block_in_place(|| e.wait_for_quorum(size, Duration::from_secs(60)));
                format!(
                    "{} of {size} ZooKeeper servers killed (the leader among them) for {} ms, restarted",
                    killed.len(),
                    SESSION_MS * 3
                )
            }
            Fault::ZooKeeperWipe => {
                // The store's epoch floor: no epoch published before the wipe is above it.
                let store = PostgresStore::connect(&self.pg.url(), 1)
                    .await
                    .expect("the store");
                let floor = store.epoch_floor(CLUSTER).await.expect("the epoch floor");
                store.close();
                let Coordinator::Single(zk) = &mut self.zk else {
                    return "ZooKeeperWipe skipped: an ensemble's data is not wiped".into();
                };
                self.wiped_at_epoch = Some(floor);
                tokio::task::block_in_place(|| zk.wipe());
                format!("ZooKeeper's data wiped at epoch {floor}, restarted")
            }
            Fault::ZooKeeperCut => {
                self.zk_proxies[i].iter().for_each(Proxy::cut);
                tokio::time::sleep(Duration::from_millis(SESSION_MS * 2)).await;
                self.zk_proxies[i].iter().for_each(Proxy::heal);
                format!("{name} cut from ZooKeeper for {} ms", SESSION_MS * 2)
            }
            Fault::PeerCut => {
                self.cut_peers(i, true);
                tokio::time::sleep(Duration::from_millis(SESSION_MS * 2)).await;
                self.cut_peers(i, false);
                format!("{name} cut from its peers for {} ms", SESSION_MS * 2)
            }
            Fault::RollingRestart => {
                for j in 0..NODES {
                    if let Some(mut node) = self.nodes[j].take() {
                        node.shutdown().await;
                    }
                    self.start_node(j).await;
                    if let Some(node) = &self.nodes[j] {
                        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
                        node.wait_stable(&names).await;
                    }
                }
                "rolling restart of every node".into()
            }
            Fault::Scale => {
                let own: Vec<String> = self.names.clone();
                for _ in 0..2 {
                    let mut extra = self.start_extra().await;
                    let mut grown: Vec<&str> = own.iter().map(String::as_str).collect();
                    grown.push(&extra.name);
                    for node in self.nodes.iter().flatten().chain([&extra]) {
                        node.wait_stable(&grown).await;
                    }
                    self.warm_up().await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    extra.shutdown().await;
                    let names: Vec<&str> = own.iter().map(String::as_str).collect();
                    for node in self.nodes.iter().flatten() {
                        node.wait_stable(&names).await;
                    }
                    self.warm_up().await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                format!("scaled out to {} and back, twice", self.names.len() + 1)
            }
        }
    }

    /// Heals whatever is still broken: cuts, pauses, dead nodes.
    async fn heal_all(&mut self) {
        for proxy in self.zk_proxies.iter().flatten() {
            proxy.heal();
        }
        for proxy in self.links.values() {
            proxy.heal();
        }
        for i in 0..NODES {
            if self.paused[i] {
                if let Some(node) = &self.nodes[i] {
                    node.resume();
                }
                self.paused[i] = false;
            }
            if self.nodes[i].is_none() {
                self.start_node(i).await;
            }
        }
    }

    fn start_clients(
        &self,
        seconds: u64,
        seed: u64,
        workload: Workload,
    ) -> Vec<(tokio::process::Child, PathBuf)> {
        let nodes: Vec<String> = self
            .control
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        (0..CLIENTS)
            .map(|c| {
                let out = self.dir.path().join(format!("history-{c}.jsonl"));
                let child = tokio::process::Command::new(&self.bins.client)
                    .args(["--nodes", &nodes.join(",")])
                    .args([
                        "--actors",
                        &ACTORS.to_string(),
                        "--seconds",
                        &seconds.to_string(),
                    ])
                    .args([
                        "--workers",
                        "3",
                        "--seed",
                        &(seed * 10 + c as u64 + 1).to_string(),
                    ])
                    .args(["--name", &format!("c{c}")])
                    .args([
                        "--idempotent",
                        if workload == Workload::Idempotent {
                            "1"
                        } else {
                            "0"
                        },
                    ])
                    .arg("--out")
                    .arg(&out)
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("start a client");
                (child, out)
            })
            .collect()
    }

    /// After the faults healed: every actor serves again, with its stored value, within a
    /// deadline (no lease is stuck), and no view reused an epoch from before a wipe.
    async fn check_serving(&self, finals: &BTreeMap<String, i64>) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(node) = self.nodes.iter().flatten().next() else {
            return vec!["no node is running after the faults healed".into()];
        };
        for (id, stored) in finals {
            match node.get_within(id, Duration::from_secs(30)).await {
                Ok(value) if value == *stored => {}
                Ok(value) => problems.push(format!(
                    "{id} serves {value} after the faults healed, but {stored} is stored"
                )),
                Err(e) => {
                    problems.push(format!("{id} does not serve after the faults healed: {e}"))
                }
            }
        }
        if let Some(wiped) = self.wiped_at_epoch {
            for node in self.nodes.iter().flatten() {
                let epoch = node.stats().await["epoch"].as_u64().unwrap_or(0);
                if epoch <= wiped {
                    problems.push(format!(
                        "{} is at epoch {epoch}, not above epoch {wiped} from before ZooKeeper's data was wiped",
                        node.name
                    ));
                }
            }
        }
        problems
    }

    async fn finals(&self) -> BTreeMap<String, i64> {
        #[derive(Deserialize)]
        struct Counter {
            value: i64,
        }
        let store = PostgresStore::connect(&self.pg.url(), 2)
            .await
            .expect("the store");
        let mut out = BTreeMap::new();
        for i in 0..ACTORS {
            let id = format!("ctr-{i}");
            let key = ActorKey::new("counter", id.clone()).expect("key");
            let value = match store.load(&key).await.expect("load") {
                None => 0,
                Some(stored) => {
                    let record =
                        Record::decode_for(&stored.bytes, "counter").expect("a readable record");
                    record
                        .payload
                        .map(|p| {
                            codec::decode_state::<Counter>(&p.bytes)
                                .expect("a counter")
                                .value
                        })
                        .unwrap_or(0)
                }
            };
            out.insert(id, value);
        }
        out
    }
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs one plan for `seconds` of workload.
pub async fn run(bins: &Binaries, plan: Plan, seed: u64, seconds: u64) -> Report {
    run_with(bins, plan, seed, seconds, Options::default()).await
}

/// [`run`], made as `options` say. Every activation's events are checked, the warm ones'
/// too.
pub async fn run_with(
    bins: &Binaries,
    plan: Plan,
    seed: u64,
    seconds: u64,
    options: Options,
) -> Report {
    let mut rng = Rng::new(seed);
    let mut cluster = Cluster::start(bins, options.ensemble).await;
    cluster.warm = options.warm;
    cluster.warm_up().await;
    let started = Instant::now();
    let clients = cluster.start_clients(seconds, seed, options.workload);
    let until = started + Duration::from_secs(seconds);
    let mut faults = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    match plan {
        Plan::Single(fault) => {
            let i = rng.below(NODES);
            faults.push(cluster.inject(fault, i).await);
        }
        Plan::Mixed => {
            while Instant::now() + Duration::from_secs(8) < until {
                let fault = Fault::MIXED[rng.below(Fault::MIXED.len())]; // planned moves run alone
                let i = rng.below(NODES);
                faults.push(cluster.inject(fault, i).await);
                tokio::time::sleep(Duration::from_millis(500 + rng.below(1500) as u64)).await;
            }
        }
    }
    let mut histories = Vec::new();
    for (mut child, out) in clients {
        // Idempotent clients retry for a while after the run: wait for that too.
        let _ = tokio::time::timeout(Duration::from_secs(seconds + 90), child.wait()).await;
        histories.push(out);
    }
    cluster.heal_all().await;
    let settled = cluster.wait_settled().await;
    let end_of_run = wall_us();
    let finals = cluster.finals().await;
    let ops: Vec<Op> = histories.iter().flat_map(|p| read_lines::<Op>(p)).collect();
    let events: Vec<Event> = cluster
        .names
        .iter()
        .chain(&cluster.extra_names)
        .flat_map(|n| read_lines::<Event>(&cluster.dir.path().join(format!("events-{n}.jsonl"))))
        .collect();
    let mut outcome = check::check(&ops, &events, &cluster.kills, end_of_run, &finals);
    if !settled {
        outcome
            .violations
            .push("the cluster did not settle after the faults were healed".into());
    }
    outcome
        .violations
        .extend(cluster.check_serving(&finals).await);
    let keys = match options.workload {
        Workload::Plain => "",
        Workload::Idempotent => "+keys",
    };
    Report {
        plan: match plan {
            Plan::Single(f) => format!("{f:?}{keys}"),
            Plan::Mixed => format!("Mixed{keys}"),
        },
        faults,
        outcome,
    }
}

/// Prints a table of reports and the totals; returns the number of violations.
pub fn summarize(reports: &[Report]) -> usize {
    println!(
        "\n{:<18} {:>7} {:>7} {:>7} {:>8} {:>9} {:>10}  faults",
        "run", "ops", "acked", "failed", "timeouts", "activated", "violations"
    );
    let mut total = Outcome::default();
    let mut faults = 0;
    for r in reports {
        let o = &r.outcome;
        println!(
            "{:<18} {:>7} {:>7} {:>7} {:>8} {:>9} {:>10}  {}",
            r.plan,
            o.ops,
            o.acked,
            o.failed,
            o.timeouts,
            o.activations,
            o.violations.len(),
            r.faults.join("; ")
        );
        for v in o.violations.iter().take(10) {
            println!("    VIOLATION {v}");
        }
        for (e, n) in &o.errors {
            println!("    {n:>5} x {e}");
        }
        total.ops += o.ops;
        total.acked += o.acked;
        total.failed += o.failed;
        total.timeouts += o.timeouts;
        total.activations += o.activations;
        total.violations.extend(o.violations.iter().cloned());
        faults += r.faults.len();
    }
    println!(
        "\nruns {}, faults injected {faults}, operations {}, acknowledged increments {}, failed {}, timed out {}, violations {}",
        reports.len(),
        total.ops,
        total.acked,
        total.failed,
        total.timeouts,
        total.violations.len()
    );
    total.violations.len()
}
