//! A workload client for the fault-injection suite: increments and reads counters through the
//! nodes' control ports, and records every operation — invoke and completion times, outcome
//! and value — as JSON lines. The outcome `r` is `ok` (with the value `v`), `fail` (an error
//! that says the operation did not take effect, in `err`) or `timeout` (indeterminate: no
//! answer, or an error that leaves open whether it took effect, in `err`).
//!
//! With `--idempotent 1`, each increment carries its own idempotency key and is retried with
//! it (on the next node) until it is acknowledged, so it is recorded once, whatever the
//! attempts: `ok` if one was acknowledged, `timeout` if any attempt left the outcome open.
//!
//! Usage: `overmind-test-client --nodes ADDR,ADDR --actors N --seconds S --workers W --seed X
//! --name NAME --out FILE [--think-ms N] [--idempotent 1]`

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

/// How long after the run an idempotent increment is still retried.
const RETRY_GRACE: Duration = Duration::from_secs(20);

/// What became of one request.
enum Attempt {
    Ok(Value),
    /// A definite failure: it did not take effect.
    Fail(Value),
    /// No answer, or an error that leaves open whether it took effect.
    Open(Value),
    /// Refused unexecuted by a node that is shutting down.
    NotExecuted,
    /// No node could be reached: nothing was sent.
    NotSent,
}

/// A worker's connections to the nodes, and the node it talks to now.
struct Client {
    nodes: Vec<String>,
    conns: Vec<Option<Conn>>,
    at: usize,
    req: u64,
}

impl Client {
    /// Sends `cmd` to the current node (moving on to the next one if it cannot be reached).
    async fn attempt(&mut self, cmd: &Value, rng: &mut Rng) -> Attempt {
        let at = self.at;
        if self.conns[at].is_none() {
            let connect = TcpStream::connect(&self.nodes[at]);
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                self.conns[at] = Some((BufReader::new(r).lines(), w));
            }
        }
        let Some(conn) = self.conns[at].as_mut() else {
            // Nothing was sent: the next attempt tries the next node.
            self.at = (at + 1) % self.nodes.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Attempt::NotSent;
        };
        self.req += 1;
        let mut cmd = cmd.clone();
        cmd["req"] = json!(self.req);
        let Some(reply) = ask(conn, &cmd, Duration::from_secs(5)).await else {
            // This node did not answer: the connection may be stuck; try the next one.
            self.conns[at] = None;
            self.at = (at + 1) % self.nodes.len();
            return Attempt::Open(Value::Null);
        };
        if reply["not_executed"] == true {
            // The node refused it unexecuted (it is shutting down): go elsewhere.
            self.conns[at] = None;
            self.at = (at + 1) % self.nodes.len();
            return Attempt::NotExecuted;
        }
        if reply["ok"].is_i64() {
            return Attempt::Ok(reply["ok"].clone());
        }
        if rng.next_u64() % 4 == 0 {
            self.at = (at + 1) % self.nodes.len();
        }
        if reply["unknown"] == true {
            Attempt::Open(reply["err"].clone())
        } else {
            Attempt::Fail(reply["err"].clone())
        }
    }
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

    let idempotent = num("idempotent", 0) == 1;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (nodes, name) = (nodes.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_mul(1000).wrapping_add(w));
            let mut history = Vec::new();
            let mut client = Client {
                conns: nodes.iter().map(|_| None).collect(),
                at: (w as usize + seed as usize) % nodes.len().max(1),
                nodes,
                req: 0,
            };
            let mut op_number = 0u64;
            while tokio::time::Instant::now() < deadline {
                let key = format!("ctr-{}", rng.next_u64() % actors);
                let increment = rng.next_u64() % 10 < 6;
                op_number += 1;
                let cmd = match (increment, idempotent) {
                    (true, false) => json!({"op": "add", "id": key, "n": 1, "timeout_ms": 4000}),
                    // Each increment has its own key, kept for every retry of it.
                    (true, true) => json!({
                        "op": "add_once", "id": key, "n": 1, "timeout_ms": 4000,
                        "key": format!("{name}-{w}-{op_number}"),
                    }),
                    (false, _) => json!({"op": "get", "id": key, "timeout_ms": 4000}),
                };
                let t0 = wall_us();
                let mut outcome = client.attempt(&cmd, &mut rng).await;
                // An idempotent increment is retried, with its key, until it is acknowledged
                // or the run (and a grace period) is over; left open once, it stays open.
                let mut open = matches!(outcome, Attempt::Open(_));
                while idempotent
                    && increment
                    && !matches!(outcome, Attempt::Ok(_))
                    && tokio::time::Instant::now() < deadline + RETRY_GRACE
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    client.at = (client.at + 1) % client.nodes.len();
                    outcome = client.attempt(&cmd, &mut rng).await;
                    open |= matches!(outcome, Attempt::Open(_));
                }
                let t1 = wall_us();
                let op = if increment { "inc" } else { "read" };
                let node = client.at;
                let record = match outcome {
                    Attempt::NotExecuted | Attempt::NotSent if !open => continue,
                    Attempt::NotExecuted | Attempt::NotSent => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "timeout", "node": node}),
                    Attempt::Ok(v) => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "ok", "v": v, "node": node}),
                    // An error that leaves the outcome open is recorded as indeterminate,
                    // like a call with no answer: the message may have been applied.
                    Attempt::Open(err) => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "timeout", "err": err, "node": node}),
                    Attempt::Fail(err) if open => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "timeout", "err": err, "node": node}),
                    Attempt::Fail(err) => json!({"k": key, "op": op, "t0": t0, "t1": t1, "r": "fail", "err": err, "node": node}),
                };
                history.push(record);
                tokio::time::sleep(think).await;
            }
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
