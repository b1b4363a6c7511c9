//! What Overmind costs over the raw baselines, measured in the same run:
//!
//! - a call to an activated virtual actor vs a raw ractor `call` to the same actor type;
//! - a persisted message (sled, durable before the reply) vs a raw sled insert + flush;
//! - persisted throughput with many actors at once (group commit) vs raw sled writers;
//! - activating new ids vs spawning the same actors raw;
//! - stopping many activations at once vs stopping as many raw actors;
//! - reading a stored state with the schema check vs decoding it bare.
//!
//! `cargo bench -p overmind-ractor --bench overhead` (release build). Prints medians of
//! several rounds and the ratios. `-- NAME` runs only the sections named `schema`, `calls`,
//! `persisted`, `activation` or `stopping` that contain NAME.

use std::{sync::Arc, time::Instant};

use overmind_ractor::{Activation, ActorKey, Overmind, prelude::*};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(VirtualMessage)]
enum AccountMsg {
    Deposit(i64, RpcReplyPort<i64>),
    Balance(RpcReplyPort<i64>),
}

#[derive(Default)]
struct AccountActor;

#[virtual_actor(kind = "account")]
impl Actor for AccountActor {
    type Msg = AccountMsg;
    type State = Account;

    async fn handle(
        &self,
        _: ActorRef<AccountMsg>,
        msg: AccountMsg,
        a: &mut Account,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AccountMsg::Deposit(n, reply) => {
                a.balance += n;
                let _ = reply.send(a.balance);
            }
            AccountMsg::Balance(reply) => {
                let _ = reply.send(a.balance);
            }
        }
        Ok(())
    }
}

const ROUNDS: usize = 7;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median over rounds of the time per operation, in nanoseconds.
async fn per_op<F, Fut>(ops: usize, mut round: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    round(ops / 10).await; // warm up
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        round(ops).await;
        samples.push(start.elapsed().as_nanos() as f64 / ops as f64);
    }
    median(samples)
}

fn show(what: &str, overmind_ns: f64, base: &str, base_ns: f64) {
    println!(
        "{what:<44} {:>10} vs {base:<28} {:>10}  ratio {:>6.2}x",
        fmt_ns(overmind_ns),
        fmt_ns(base_ns),
        overmind_ns / base_ns
    );
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

async fn calls(flavor: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let om = Overmind::builder()
        .data_dir(dir.path())
        .register::<AccountActor>()
        .spawn()
        .await
        .expect("start");
    let key = ActorKey::new("account", "raw").expect("key");
    let (raw, _) = Actor::spawn(None, AccountActor, Activation::new(key, None))
        .await
        .expect("spawn raw");
    let vref = om.actor::<AccountActor>("alice");
    vref.call(AccountMsg::Balance, None)
        .await
        .expect("activate");

    let n = 100_000;
    let raw_ns = per_op(n, |ops| {
        let raw = raw.clone();
        async move {
            for _ in 0..ops {
                raw.call(AccountMsg::Balance, None).await.expect("raw call");
            }
        }
    })
    .await;
    let om_ns = per_op(n, |ops| {
        let vref = vref.clone();
        async move {
            for _ in 0..ops {
                vref.call(AccountMsg::Balance, None)
                    .await
                    .expect("virtual call");
            }
        }
    })
    .await;
    show(
        &format!("call, activated actor ({flavor})"),
        om_ns,
        "raw ractor call",
        raw_ns,
    );
    raw.stop(None);
    om.shutdown().await.expect("shutdown");
}

async fn persisted(flavor: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let om = Overmind::builder()
        .data_dir(dir.path().join("overmind"))
        .register::<AccountActor>()
        .spawn()
        .await
        .expect("start");
    let db = sled::open(dir.path().join("raw")).expect("raw sled");

    // One writer: every message waits for its own flush.
    let n = 2_000;
    let vref = om.actor::<AccountActor>("writer");
    let om_ns = per_op(n, |ops| {
        let vref = vref.clone();
        async move {
            for _ in 0..ops {
                vref.call(|r| AccountMsg::Deposit(1, r), None)
                    .await
                    .expect("deposit");
            }
        }
    })
    .await;
    let raw_ns = per_op(n, |ops| {
        let db = db.clone();
        async move {
            let mut value = [0u8; 16];
            for i in 0..ops {
                value[..8].copy_from_slice(&(i as u64).to_le_bytes());
                db.insert(b"key", &value[..]).expect("insert");
                {
                    // sled 0.34.7 frees a buffer under an unguarded flush (see the store).
                    let _guard = sled::pin();
                    db.flush().expect("flush");
                }
            }
        }
    })
    .await;
    show(
        &format!("persisted message, 1 writer ({flavor})"),
        om_ns,
        "raw sled insert+flush",
        raw_ns,
    );

    // Many actors at once: their saves share flushes.
    const ACTORS: usize = 64;
    const RAW_THREADS: usize = 8;
    let n = 20_000;
    let refs: Vec<_> = (0..ACTORS)
        .map(|i| om.actor::<AccountActor>(format!("a{i}")))
        .collect();
    let om_ns = per_op(n, |ops| {
        let refs = refs.clone();
        async move {
            let tasks: Vec<_> = refs
                .into_iter()
                .map(|r| {
                    tokio::spawn(async move {
                        for _ in 0..ops / ACTORS {
                            r.call(|p| AccountMsg::Deposit(1, p), None)
                                .await
                                .expect("deposit");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        }
    })
    .await;
    let raw_ns = per_op(n, |ops| {
        let db = db.clone();
        async move {
            let threads: Vec<_> = (0..RAW_THREADS)
                .map(|t| {
                    let db = db.clone();
                    std::thread::spawn(move || {
                        for i in 0..ops / RAW_THREADS {
                            db.insert(format!("k{t}"), &(i as u64).to_le_bytes()[..])
                                .expect("insert");
                            {
                                // sled 0.34.7 frees a buffer under an unguarded flush (see the store).
                                let _guard = sled::pin();
                                db.flush().expect("flush");
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("thread");
            }
        }
    })
    .await;
    show(
        &format!("persisted, {ACTORS} actors at once ({flavor}, per msg)"),
        om_ns,
        &format!("raw sled, {RAW_THREADS} threads ins+flush"),
        raw_ns,
    );
    println!(
        "{:<44} {:>10.0} msgs/s durable vs {:.0} raw writes/s",
        "  throughput",
        1e9 / om_ns,
        1e9 / raw_ns
    );
    om.shutdown().await.expect("shutdown");
}

async fn activation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let om = Overmind::builder()
        .data_dir(dir.path())
        .register::<AccountActor>()
        .spawn()
        .await
        .expect("start");
    let n = 2_000;
    let mut next = 0usize;
    let om_ns = per_op(n, |ops| {
        let om = om.clone();
        let first = next;
        next += ops;
        async move {
            for i in first..first + ops {
                om.actor::<AccountActor>(format!("new-{i}"))
                    .call(AccountMsg::Balance, None)
                    .await
                    .expect("first call");
            }
        }
    })
    .await;
    let raw = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let raw_ns = per_op(n, |ops| {
        let raw = raw.clone();
        async move {
            for i in 0..ops {
                let key = ActorKey::new("account", format!("raw-{i}")).expect("key");
                let (r, _) = Actor::spawn(None, AccountActor, Activation::new(key, None))
                    .await
                    .expect("spawn");
                r.call(AccountMsg::Balance, None).await.expect("call");
                raw.lock().push(r);
            }
        }
    })
    .await;
    show(
        "first message to a new id (activation)",
        om_ns,
        "raw ractor spawn + call",
        raw_ns,
    );
    for r in raw.lock().drain(..) {
        r.stop(None);
    }
    om.shutdown().await.expect("shutdown");
}

/// Stopping many activations at once (what a shutdown, or a node handing its actors over,
/// does) against stopping as many raw ractor actors and waiting for them to end.
async fn stopping() {
    let n: usize = std::env::var("OVERMIND_BENCH_STOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut om_ns = Vec::new();
    let mut raw_ns = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let om = Overmind::builder()
            .data_dir(dir.path())
            .register::<AccountActor>()
            .spawn()
            .await
            .expect("start");
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let a = om.actor::<AccountActor>(format!("s-{i}"));
                async move { a.call(AccountMsg::Balance, None).await.expect("activate") }
            })
            .collect();
        futures::future::join_all(calls).await;
        let start = Instant::now();
        om.shutdown().await.expect("shutdown");
        om_ns.push(start.elapsed().as_nanos() as f64 / n as f64);

        let mut raw = Vec::new();
        for i in 0..n {
            let key = ActorKey::new("account", format!("raw-{i}")).expect("key");
            let (r, h) = Actor::spawn(None, AccountActor, Activation::new(key, None))
                .await
                .expect("spawn");
            r.call(AccountMsg::Balance, None).await.expect("call");
            raw.push((r, h));
        }
        let start = Instant::now();
        let handles: Vec<_> = raw
            .into_iter()
            .map(|(r, h)| {
                r.stop(None);
                h
            })
            .collect();
        futures::future::join_all(handles).await;
        raw_ns.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    show(
        &format!("stopping {n} active actors (shutdown)"),
        median(om_ns),
        "raw ractor stop + join",
        median(raw_ns),
    );
}

/// The schema check an activation runs on a stored state (version and shape against the
/// registered ones, then the decode), against the bare decode it wraps.
fn schema_check() {
    use overmind_ractor::core::{
        codec::{self, Payload},
        migration::{KindSchema, Migrations, Read},
    };
    let schema = KindSchema::<Account>::new("account", 1, Migrations::new()).expect("schema");
    let payload = Payload {
        schema: schema.current(),
        bytes: codec::encode_state(&Account { balance: 42 }).expect("encode"),
    };
    let n = 1_000_000;
    let time = |f: &dyn Fn() -> i64| {
        let mut samples = Vec::new();
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let mut sum = 0i64;
            for _ in 0..n {
                sum = sum.wrapping_add(std::hint::black_box(f()));
            }
            std::hint::black_box(sum);
            samples.push(start.elapsed().as_nanos() as f64 / n as f64);
        }
        median(samples)
    };
    let checked = time(&|| match schema.read(std::hint::black_box(&payload)) {
        Ok(Read::Current(a) | Read::Migrated(a)) => a.balance,
        Err(_) => 0,
    });
    let bare = time(&|| {
        codec::decode_state::<Account>(std::hint::black_box(&payload.bytes))
            .map_or(0, |a| a.balance)
    });
    show(
        "stored state read with the schema check",
        checked,
        "bare decode_state",
        bare,
    );
}

fn main() {
    // `cargo bench --bench overhead -- NAME` runs only the sections whose name contains NAME.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    println!("Overmind overhead (medians of {ROUNDS} rounds; ratio = Overmind / raw)\n");
    if run("schema") {
        schema_check();
    }
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if run("calls") {
        current.block_on(calls("current-thread runtime"));
    }
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if run("calls") {
        multi.block_on(calls("multi-thread runtime, 2 workers"));
    }
    if run("persisted") {
        current.block_on(persisted("current-thread"));
        multi.block_on(persisted("2 workers"));
    }
    if run("activation") {
        multi.block_on(activation());
    }
    if run("stopping") {
        multi.block_on(stopping());
    }
}
