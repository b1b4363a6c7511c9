//! A cluster node for multi-process tests: joins through ZooKeeper, stores in PostgreSQL, and
//! takes JSON-line commands on stdin, answering on stdout (with `"req"` echoed). It also prints
//! an event for every view it sees.
//!
//! Usage: `overmind-test-node --zk HOST:PORT --cluster NAME --node NAME --store URL
//! [--cookie C] [--session-timeout-ms N] [--unavailable-ms N] [--state-v2 1]`; with
//! `--state-v2 1` it runs the next release of the counter (`state_version = 2`).

use std::{collections::BTreeMap, io::Write, sync::Arc, time::Duration};

use overmind_core::store::PostgresStore;
use overmind_ractor::{
    Error, Overmind,
    cluster::ClusterConfig,
    prelude::*,
    ractor::{ActorProcessingErr, ActorRef, RpcReplyPort},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    value: i64,
}

#[derive(VirtualMessage)]
enum CounterMsg {
    Add(i64),
    AddAndGet(i64, RpcReplyPort<i64>),
    Get(RpcReplyPort<i64>),
    /// Holds the actor in its handler for this many milliseconds (announcing it with a
    /// `holding` event), then replies with the value.
    Hold(u64, RpcReplyPort<i64>),
    /// A message as an application writes one: a struct variant carrying the user's enum,
    /// answered with a `Result` of the user's types.
    Apply {
        change: Change,
        reply: RpcReplyPort<Result<Applied, Refusal>>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Change {
    Add { by: i64, note: String },
    Reset,
}

#[derive(Debug, Serialize, Deserialize)]
struct Applied {
    before: i64,
    after: i64,
    /// The note of the change, counted by word.
    words: BTreeMap<String, u32>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Refusal {
    WouldGoNegative { value: i64, by: i64 },
}

/// The `Apply` handler, shared by both counters: a change that would leave the value below
/// zero is refused.
fn apply(value: &mut i64, change: Change) -> Result<Applied, Refusal> {
    let before = *value;
    let (after, note) = match change {
        Change::Add { by, .. } if before + by < 0 => {
            return Err(Refusal::WouldGoNegative { value: before, by });
        }
        Change::Add { by, note } => (before + by, note),
        Change::Reset => (0, String::new()),
    };
    *value = after;
    let mut words = BTreeMap::new();
    for word in note.split_whitespace() {
        *words.entry(word.to_owned()).or_insert(0) += 1;
    }
    Ok(Applied {
        before,
        after,
        words,
    })
}

/// The `Hold` handler, shared by both counters.
async fn hold(me: &ActorRef<CounterMsg>, ms: u64, value: i64, reply: RpcReplyPort<i64>) {
    let id = me
        .actor_key()
        .map(|k| k.id().to_owned())
        .unwrap_or_default();
    emit(json!({"event": "holding", "id": id}));
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let _ = reply.send(value);
}

#[derive(Default)]
struct CounterActor;

/// Calls along a path of actors of its kind, which may live on any node.
#[derive(VirtualMessage)]
enum HopMsg {
    /// Calls the first id of the path with the rest; replies with how many actors the chain
    /// went through, or the error a call in it met.
    Via(Vec<String>, RpcReplyPort<Result<u32, String>>),
}

struct HopActor {
    overmind: Overmind,
}

#[virtual_actor(kind = "hop")]
impl Actor for HopActor {
    type Msg = HopMsg;
    type State = ();

    async fn handle(
        &self,
        _myself: ActorRef<HopMsg>,
        msg: HopMsg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let HopMsg::Via(mut path, reply) = msg;
        let result = if path.is_empty() {
            Ok(1)
        } else {
            let next = path.remove(0);
            let called = self
                .overmind
                .actor::<HopActor>(next)
                .call(|r| HopMsg::Via(path, r), None)
                .await;
            match called {
                Ok(Ok(n)) => Ok(n + 1),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(e.to_string()),
            }
        };
        let _ = reply.send(result);
        Ok(())
    }
}

/// A plain ractor_cluster actor: the baseline for remote call latency.
#[derive(RactorClusterMessage)]
enum EchoMsg {
    #[rpc]
    Ping(u64, RpcReplyPort<u64>),
}

struct Echo;

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<EchoMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<EchoMsg>,
        msg: EchoMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let EchoMsg::Ping(n, reply) = msg;
        let _ = reply.send(n);
        Ok(())
    }
}

fn echo_group(node: &str) -> String {
    format!("bench/echo/{node}")
}

#[virtual_actor(kind = "counter", passivate_after = "10m")]
impl Actor for CounterActor {
    type Msg = CounterMsg;
    type State = Counter;

    async fn handle(
        &self,
        me: ActorRef<CounterMsg>,
        msg: CounterMsg,
        c: &mut Counter,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Add(n) => c.value += n,
            CounterMsg::AddAndGet(n, reply) => {
                c.value += n;
                let _ = reply.send(c.value);
            }
            CounterMsg::Get(reply) => {
                let _ = reply.send(c.value);
            }
            CounterMsg::Hold(ms, reply) => hold(&me, ms, c.value, reply).await,
            CounterMsg::Apply { change, reply } => {
                let _ = reply.send(apply(&mut c.value, change));
            }
        }
        Ok(())
    }
}

/// The counter's state as the next release stores it (`--state-v2`): the same value, and a
/// count of the updates since the migration.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CounterV2 {
    value: i64,
    updates: u64,
}

impl From<Counter> for CounterV2 {
    fn from(old: Counter) -> Self {
        Self {
            value: old.value,
            updates: 0,
        }
    }
}

#[derive(Default)]
struct CounterV2Actor;

#[virtual_actor(
    kind = "counter",
    passivate_after = "10m",
    state_version = 2,
    migrate_from(1 = Counter)
)]
impl Actor for CounterV2Actor {
    type Msg = CounterMsg;
    type State = CounterV2;

    async fn handle(
        &self,
        me: ActorRef<CounterMsg>,
        msg: CounterMsg,
        c: &mut CounterV2,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Add(n) => {
                c.value += n;
                c.updates += 1;
            }
            CounterMsg::AddAndGet(n, reply) => {
                c.value += n;
                c.updates += 1;
                let _ = reply.send(c.value);
            }
            CounterMsg::Get(reply) => {
                let _ = reply.send(c.value);
            }
            CounterMsg::Hold(ms, reply) => hold(&me, ms, c.value, reply).await,
            CounterMsg::Apply { change, reply } => {
                let applied = apply(&mut c.value, change);
                c.updates += u64::from(applied.is_ok());
                let _ = reply.send(applied);
            }
        }
        Ok(())
    }
}

fn emit(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Log lines name the node after the time: the nodes of a test share one stderr.
struct NodeTime(String);

impl tracing_subscriber::fmt::time::FormatTime for NodeTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(w)?;
        write!(w, " [{}]", self.0)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = overmind_tests::process::flags();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,ractor_cluster=error".into()),
        )
        .with_timer(NodeTime(args.get("node").cloned().unwrap_or_default()))
        .with_writer(std::io::stderr)
        .init();
    let get = |k: &str| args.get(k).cloned().unwrap_or_default();
    let ms = |k: &str, default: u64| {
        Duration::from_millis(args.get(k).and_then(|v| v.parse().ok()).unwrap_or(default))
    };
    let store = match PostgresStore::connect(&get("store"), 16).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            emit(json!({"event": "failed", "error": e.to_string()}));
            std::process::exit(1);
        }
    };
    let cookie = args
        .get("cookie")
        .cloned()
        .unwrap_or_else(|| "test-cookie".into());
    let mut config = ClusterConfig::new(get("zk"), get("cluster"), get("node"), cookie)
        .session_timeout(ms("session-timeout-ms", 2000))
        .unavailable_after(ms("unavailable-ms", 20_000))
        .join_timeout(Duration::from_secs(60));
    if let Some(listen) = args.get("listen").and_then(|l| l.parse().ok()) {
        config = config.listen(listen);
    }
    // --route ADVERTISED=VIA,ADVERTISED=VIA: reach peers through the test's proxies.
    for route in args
        .get("route")
        .map(|r| r.split(',').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if let Some((advertised, via)) = route.split_once('=') {
            config = config.route_peer(advertised, via);
        }
    }
    if let Some(dir) = args.get("tls-dir") {
        let read = |f: &str| std::fs::read(std::path::Path::new(dir).join(f)).unwrap_or_default();
        match overmind_ractor::cluster::Tls::from_pem(
            &read("node.pem"),
            &read("node.key"),
            &read("ca.pem"),
            "overmind.test",
        ) {
            Ok(tls) => config = config.tls(tls),
            Err(e) => {
                emit(json!({"event": "failed", "error": e.to_string()}));
                std::process::exit(1);
            }
        }
    }
    let mut builder = Overmind::builder().store(store).cluster(config);
    if let Some(path) = args.get("events") {
        // One line per activation start and stop, flushed at once: the fault checker reads
        // these after the run (a killed process loses nothing already written).
        let file = std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("events file"),
        );
        let node = get("node");
        builder = builder.on_activation(move |e| {
            let at = overmind_tests::faults::check::unix_us(e.at);
            let kind = match e.kind {
                overmind_ractor::ActivationEventKind::Started => "start",
                overmind_ractor::ActivationEventKind::Stopped => "stop",
            };
            let line = json!({"node": node, "key": e.key.id(), "activation": e.activation, "kind": kind, "at": at});
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
            }
        });
    }
    let v2 = args.contains_key("state-v2");
    let builder = if v2 {
        builder.register::<CounterV2Actor>()
    } else {
        builder.register::<CounterActor>()
    };
    let builder = builder.register_with(|overmind| HopActor {
        overmind: overmind.clone(),
    });
    let overmind = match builder.spawn().await {
        Ok(om) => om,
        Err(e) => {
            emit(json!({"event": "failed", "error": e.to_string()}));
            std::process::exit(1);
        }
    };
    let addr = overmind
        .cluster_info()
        .members
        .iter()
        .find(|(n, _)| *n == get("node"))
        .map(|(_, a)| a.clone())
        .unwrap_or_default();
    if let Ok((echo, _)) = Actor::spawn(None, Echo, ()).await {
        overmind_ractor::ractor::pg::join(echo_group(&get("node")), vec![echo.get_cell()]);
    }
    emit(
        json!({"event": "ready", "node": overmind.cluster_info().node, "pid": std::process::id(), "addr": addr}),
    );

    // Report every view this node installs, and when its lease comes and goes.
    let watcher = overmind.clone();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let info = watcher.cluster_info();
            let seen = (info.epoch, info.stable, info.is_member, info.serving);
            if last != Some(seen) {
                last = Some(seen);
                let members: Vec<&String> = info.members.iter().map(|(n, _)| n).collect();
                emit(
                    json!({"event": "view", "epoch": info.epoch, "stable": info.stable, "members": members,
                            "member": info.is_member, "serving": info.serving, "t_ms": now_ms() as u64}),
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    // Client processes talk to this node over TCP, with the same commands.
    let control = std::sync::Arc::new(Control::default());
    if let Some(port) = args.get("control-port").and_then(|p| p.parse::<u16>().ok()) {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => {
                let om = overmind.clone();
                tokio::spawn(serve_clients(listener, om, control.clone(), v2));
            }
            Err(e) => emit(json!({"event": "failed", "error": format!("control port: {e}")})),
        }
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(cmd) = serde_json::from_str::<Value>(&line) else {
            emit(json!({"error": format!("bad command: {line}")}));
            continue;
        };
        let om = overmind.clone();
        let req = cmd["req"].clone();
        let op = cmd["op"].as_str().unwrap_or_default().to_owned();
        if op == "shutdown" {
            // Stop taking client requests, let the ones running finish, then leave.
            control
                .closing
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while control.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let result = om.shutdown().await;
            emit(json!({"req": req, "ok": result.is_ok()}));
            std::process::exit(0);
        }
        tokio::spawn(async move {
            let reply = handle_any(v2, &om, &op, &cmd).await;
            let mut reply = reply;
            reply["req"] = req;
            emit(reply);
        });
    }
}

/// Client requests: whether the node is closing, and how many run.
#[derive(Default)]
struct Control {
    closing: std::sync::atomic::AtomicBool,
    in_flight: std::sync::atomic::AtomicUsize,
}

/// Serves JSON-line commands from client processes, answering each line with one line. Once
/// the node is closing, a request is answered with `not_executed` (the client goes elsewhere).
async fn serve_clients(
    listener: tokio::net::TcpListener,
    om: Overmind,
    control: std::sync::Arc<Control>,
    v2: bool,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;
    while let Ok((stream, _)) = listener.accept().await {
        let (om, control) = (om.clone(), control.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(cmd) = serde_json::from_str::<Value>(&line) else {
                    return;
                };
                control.in_flight.fetch_add(1, Ordering::SeqCst);
                let mut reply = if control.closing.load(Ordering::SeqCst) {
                    json!({"err": "this node is shutting down", "not_executed": true})
                } else {
                    let op = cmd["op"].as_str().unwrap_or_default().to_owned();
                    handle_any(v2, &om, &op, &cmd).await
                };
                control.in_flight.fetch_sub(1, Ordering::SeqCst);
                reply["req"] = cmd["req"].clone();
                if write
                    .write_all(format!("{reply}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// A call's answer: its value, or its error and whether the message may have taken effect.
fn result(r: Result<i64, Error>) -> Value {
    match r {
        Ok(v) => json!({"ok": v}),
        Err(e) => json!({"err": e.to_string(), "unknown": e.may_have_taken_effect()}),
    }
}

/// A command, for whichever counter this node registered.
async fn handle_any(v2: bool, om: &Overmind, op: &str, cmd: &Value) -> Value {
    if v2 {
        handle::<CounterV2Actor>(om, op, cmd).await
    } else {
        handle::<CounterActor>(om, op, cmd).await
    }
}

async fn handle<A: overmind_ractor::VirtualActor<Msg = CounterMsg>>(
    om: &Overmind,
    op: &str,
    cmd: &Value,
) -> Value {
    let id = cmd["id"].as_str().unwrap_or_default().to_owned();
    let n = cmd["n"].as_i64().unwrap_or(0);
    let timeout = cmd["timeout_ms"].as_u64().map(Duration::from_millis);
    match op {
        "add" => result(
            om.actor::<A>(id)
                .call(|r| CounterMsg::AddAndGet(n, r), timeout)
                .await,
        ),
        "get" => result(om.actor::<A>(id).call(CounterMsg::Get, timeout).await),
        "add_once" => {
            let key = cmd["key"].as_str().unwrap_or_default().to_owned();
            result(
                om.actor::<A>(id)
                    .call_idempotent(key, |r| CounterMsg::AddAndGet(n, r), timeout)
                    .await,
            )
        }
        "apply" => {
            let change = match cmd["note"].as_str() {
                Some(note) => Change::Add {
                    by: n,
                    note: note.to_owned(),
                },
                None => Change::Reset,
            };
            let outcome = om
                .actor::<A>(id)
                .call(|reply| CounterMsg::Apply { change, reply }, timeout)
                .await;
            match outcome {
                Ok(Ok(applied)) => json!({"ok": format!("{applied:?}")}),
                Ok(Err(refusal)) => json!({"refused": format!("{refusal:?}")}),
                Err(e) => json!({"err": e.to_string()}),
            }
        }
        "hold" => {
            let ms = cmd["ms"].as_u64().unwrap_or(0);
            result(
                om.actor::<A>(id)
                    .call(|r| CounterMsg::Hold(ms, r), timeout)
                    .await,
            )
        }
        "delete" => match om.delete::<A>(id).await {
            Ok(()) => json!({"ok": 0}),
            Err(e) => json!({"err": e.to_string()}),
        },
        "list" => {
            let limit = cmd["limit"].as_u64().unwrap_or(1000) as usize;
            match om.list::<A>(cmd["after"].as_str(), limit).await {
                Ok(ids) => json!({"ids": ids}),
                Err(e) => json!({"err": e.to_string()}),
            }
        }
        "via" => {
            let path: Vec<String> = serde_json::from_value(cmd["path"].clone()).unwrap_or_default();
            let called = om
                .actor::<HopActor>(id)
                .call(|r| HopMsg::Via(path, r), timeout)
                .await;
            match called {
                Ok(Ok(n)) => json!({"ok": n}),
                Ok(Err(e)) => json!({"refused": e}),
                Err(e) => json!({"err": e.to_string()}),
            }
        }
        "cast_reliably" => {
            let key = cmd["key"].as_str().unwrap_or_default().to_owned();
            match om
                .actor::<A>(id)
                .cast_reliably(key, move || CounterMsg::Add(n))
            {
                Ok(()) => json!({"ok": 0}),
                Err(e) => json!({"err": e.to_string()}),
            }
        }
        "cast" => match om.actor::<A>(id).cast(CounterMsg::Add(n)) {
            Ok(()) => json!({"ok": 0}),
            Err(e) => json!({"err": e.to_string()}),
        },
        "owners" => {
            let prefix = cmd["prefix"].as_str().unwrap_or_default();
            let count = cmd["count"].as_u64().unwrap_or(0);
            let owners: Vec<Option<String>> = (0..count)
                .map(|i| om.owner_of::<A>(&format!("{prefix}{i}")))
                .collect();
            json!({"owners": owners})
        }
        "touch" => {
            // Sends `n` (0: a read) to `count` actors, 64 at a time; reports failures.
            let prefix = cmd["prefix"].as_str().unwrap_or_default().to_owned();
            let count = cmd["count"].as_u64().unwrap_or(0);
            let mut errors = Vec::new();
            let mut values = Vec::new();
            let mut took_all = Vec::with_capacity(count as usize);
            let mut slowest_call = None;
            let ids: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
            for chunk in ids.chunks(64) {
                let calls = chunk.iter().map(|id| {
                    let h = om.actor::<A>(id.clone());
                    async move {
                        let t0 = std::time::Instant::now();
                        let at = std::time::SystemTime::now();
                        let r = if n == 0 {
                            h.call(CounterMsg::Get, timeout).await
                        } else {
                            h.call(|r| CounterMsg::AddAndGet(n, r), timeout).await
                        };
                        (r, t0.elapsed(), at, id)
                    }
                });
                for (r, took, at, id) in futures::future::join_all(calls).await {
                    if slowest_call.as_ref().is_none_or(|(t, _, _)| took > *t) {
                        slowest_call = Some((took, at, id.clone()));
                    }
                    took_all.push(took);
                    match r {
                        Ok(v) => values.push(v),
                        Err(e) => {
                            values.push(i64::MIN);
                            errors.push(e.to_string());
                        }
                    }
                }
            }
            errors.truncate(5);
            took_all.sort();
            let slowest = took_all.last().copied().unwrap_or_default();
            let p99 = took_all
                .get(took_all.len().saturating_sub(1) * 99 / 100)
                .copied()
                .unwrap_or_default();
            // Which call was slowest, and when it began (ms since the Unix epoch), to find it
            // in the nodes' logs.
            let (slowest_id, slowest_at_ms) =
                slowest_call.map_or((String::new(), 0), |(_, at, id)| {
                    let ms = at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    (id, ms)
                });
            json!({"values": values, "errors": errors,
                   "slowest_us": slowest.as_micros() as u64, "p99_us": p99.as_micros() as u64,
                   "slowest_id": slowest_id, "slowest_at_ms": slowest_at_ms})
        }
        "stats" => {
            let s = om.stats();
            let info = om.cluster_info();
            let remote = om.remote_actor_count().await;
            json!({"active": s.active, "activations": s.activations, "moved": s.moved, "writes": s.writes, "remote_actors": remote,
                   "epoch": info.epoch, "stable": info.stable, "serving": info.serving, "member": info.is_member})
        }
        "groups" => {
            let groups: Vec<(String, usize)> =
                overmind_ractor::ractor::pg::which_scopes_and_groups()
                    .into_iter()
                    .map(|k| {
                        let n = overmind_ractor::ractor::pg::get_scoped_members(
                            &k.get_scope(),
                            &k.get_group(),
                        )
                        .len();
                        (k.get_group(), n)
                    })
                    .collect();
            json!({"groups": groups})
        }
        "bench" => {
            bench(
                om,
                cmd["target"].as_str().unwrap_or_default(),
                cmd["n"].as_u64().unwrap_or(2000) as usize,
            )
            .await
        }
        other => json!({"err": format!("unknown op {other:?}")}),
    }
}

/// Per-call latencies (µs): raw ractor_cluster calls to the echo actor on `target`, and
/// Overmind calls to a virtual actor that `target` owns, over the same link; and, for
/// reference, Overmind calls to an actor on this node.
async fn bench(om: &Overmind, target: &str, n: usize) -> Value {
    let me = om.cluster_info().node;
    let key_on = |node: &str| {
        (0..)
            .map(|i| format!("bench-{i}"))
            .find(|k| om.owner_of::<CounterActor>(k).as_deref() == Some(node))
    };
    let (Some(remote_key), Some(local_key)) = (key_on(target), key_on(&me)) else {
        return json!({"err": "no key"});
    };
    // The link to the target may still be coming up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let echo = loop {
        if let Some(echo) = overmind_ractor::ractor::pg::get_members(&echo_group(target))
            .into_iter()
            .next()
        {
            break echo;
        }
        if std::time::Instant::now() > deadline {
            return json!({"err": "no echo actor visible"});
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let echo: ActorRef<EchoMsg> = echo.into();
    let stats = |us: &mut Vec<f64>| {
        us.sort_by(f64::total_cmp);
        json!({"median": us[us.len() / 2], "p99": us[us.len() * 99 / 100]})
    };
    let remote = om.actor::<CounterActor>(remote_key);
    let local = om.actor::<CounterActor>(local_key);
    let raw_call = || async {
        matches!(
            echo.call(|r| EchoMsg::Ping(1, r), None).await,
            Ok(overmind_ractor::ractor::rpc::CallResult::Success(1))
        )
    };
    // Interleaved, call by call, so the raw baseline and Overmind see the same conditions
    // (scheduler, loopback, other load on the machine).
    let (mut raw, mut virt, mut loc) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n + n / 5 {
        let t = std::time::Instant::now();
        assert!(raw_call().await, "a raw call failed");
        let t_raw = t.elapsed();
        let t = std::time::Instant::now();
        assert!(
            remote.call(CounterMsg::Get, None).await.is_ok(),
            "a remote call failed"
        );
        let t_virt = t.elapsed();
        let t = std::time::Instant::now();
        assert!(
            local.call(CounterMsg::Get, None).await.is_ok(),
            "a local call failed"
        );
        let t_loc = t.elapsed();
        if i >= n / 5 {
            // The first fifth warms up.
            raw.push(t_raw.as_secs_f64() * 1e6);
            virt.push(t_virt.as_secs_f64() * 1e6);
            loc.push(t_loc.as_secs_f64() * 1e6);
        }
    }
    json!({"raw": stats(&mut raw), "overmind_remote": stats(&mut virt), "overmind_local": stats(&mut loc)})
}
