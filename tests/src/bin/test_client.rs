//! A workload client for the fault-injection suite: increments and reads counters through the
//! nodes' control ports, and records every operation — invoke and completion times, outcome
//! and value — as JSON lines. The outcome `r` is `ok` (with the value `v`), `fail` (an error
//! that says the operation did not take effect, in `err`) or `timeout` (indeterminate: no
//! answer, or an error that leaves open whether it took effect, in `err`).
//!
//! Usage: `overmind-test-client --nodes ADDR,ADDR --actors N --seconds S --workers W --seed X
//! --name NAME --out FILE [--think-ms N]`

use std::{io::Write, time::Duration};

use overmind_tests::{faults::check::wall_us, rng::Rng};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

type Conn = (
    tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    tokio::net::tcp::OwnedWriteHalf,
);

/// One request on a connection, with a deadline; `None` when the node did not answer.
async fn ask(conn: &mut Conn, cmd: &Value, deadline: Duration) -> Option<Value> {
    let line = format!("{cmd}\n");
    let exchange = async {
        conn.1.write_all(line.as_bytes()).await.ok()?;
        let reply = conn.0.next_line().await.ok()??;
        serde_json::from_str::<Value>(&reply).ok()
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .ok()
        .flatten()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = overmind_tests::process::flags();
    let num = |k: &str, d: u64| args.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let nodes: Vec<String> = args
        .get("nodes")
        .map(|n| n.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let (actors, seconds, workers, seed) = (
        num("actors", 30),
        num("seconds", 10),
        num("workers", 4),
        num("seed", 1),
    );
    let think = Duration::from_millis(num("think-ms", 1));
    let name = args.get("name").cloned().unwrap_or_else(|| "client".into());
    let out = args
        .get("out")
        .cloned()
        .unwrap_or_else(|| "history.jsonl".into());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);

    let mut tasks = Vec::new();
    for w in 0..workers {
        let (nodes, name) = (nodes.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_mul(1000).wrapping_add(w));
            let mut history = Vec::new();
            let mut conns: Vec<Option<Conn>> = nodes.iter().map(|_| None).collect();
            let mut at = (w as usize + seed as usize) % nodes.len().max(1);
            let mut req = 0u64;
            while tokio::time::Instant::now() < deadline {
                let key = format!("ctr-{}", rng.next_u64() % actors);
                let increment = rng.next_u64() % 10 < 6;
                req += 1;
                let cmd = if increment {
                    json!({"op": "add", "id": key, "n": 1, "timeout_ms": 4000, "req": req})
                } else {
                    json!({"op": "get", "id": key, "timeout_ms": 4000, "req": req})
                };
                if conns[at].is_none() {
                    if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&nodes[at])).await {
                        let _ = s.set_nodelay(true);
                        let (r, w) = s.into_split();
                        conns[at] = Some((BufReader::new(r).lines(), w));
                    }
                }
                let Some(conn) = conns[at].as_mut() else {
                    // Nothing was sent: try the next node.
                    at = (at + 1) % nodes.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let t0 = wall_us();
                let reply = ask(conn, &cmd, Duration::from_secs(5)).await;
                let t1 = wall_us();
                if reply.as_ref().is_some_and(|r| r["not_executed"] == true) {
                    // The node refused it unexecuted (it is shutting down): go elsewhere.
                    conns[at] = None;
                    at = (at + 1) % nodes.len();
                    continue;
                }
                let op = if increment { "inc" } else { "read" };
                let record = match &reply {
                    Some(r) if r["ok"].is_i64() => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "ok", "v": r["ok"], "node": at}),
                    // An error that leaves the outcome open is recorded as indeterminate,
                    // like a call with no answer: the message may have been applied.
                    Some(r) if r["unknown"] == true => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "timeout", "err": r["err"], "node": at}),
                    Some(r) => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "fail", "err": r["err"], "node": at}),
                    None => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "timeout", "node": at}),
                };
                if reply.is_none() {
                    // This node did not answer: the connection may be stuck; try the next one.
                    conns[at] = None;
                    at = (at + 1) % nodes.len();
                } else if reply.as_ref().is_some_and(|r| r.get("err").is_some()) && rng.next_u64() % 4 == 0 {
                    at = (at + 1) % nodes.len();
                }
                history.push(record);
                tokio::time::sleep(think).await;
            }
            let _ = name;
            history
        }));
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).expect("history file"));
    for task in tasks {
        if let Ok(history) = task.await {
            for record in history {
                let _ = writeln!(file, "{record}");
            }
        }
    }
    let _ = file.flush();
}
