//! Node processes for multi-node tests: each node is its own OS process (the
//! `overmind-test-node` binary), driven over stdin/stdout.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::{Notify, oneshot},
};

use crate::{postgres::Postgres, process, zookeeper::ZooKeeper};

/// A running node process.
pub struct Node {
    pub name: String,
    pub pid: u32,
    child: Child,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    events: Arc<Mutex<Vec<Value>>>,
    event: Arc<Notify>,
    next: AtomicU64,
}

/// How to start a node.
pub struct NodeSpec<'a> {
    pub bin: &'a str,
    /// The ZooKeeper connection string (a server's, or a proxy's).
    pub zk: String,
    /// The PostgreSQL URL.
    pub pg: String,
    pub cluster: String,
    pub name: String,
    pub extra: Vec<(&'a str, String)>,
}

impl<'a> NodeSpec<'a> {
    /// A node of cluster `cluster` on these servers.
    pub fn new(bin: &'a str, zk: &ZooKeeper, pg: &Postgres, cluster: &str, name: &str) -> Self {
        Self {
            bin,
            zk: zk.connect(),
            pg: pg.url(),
            cluster: cluster.to_owned(),
            name: name.to_owned(),
            extra: Vec::new(),
        }
    }
}

/// What [`Node::touch_timed`] saw.
pub struct Touched {
    /// Each call's value, `i64::MIN` for a failure.
    pub values: Vec<i64>,
    /// The first errors.
    pub errors: Vec<String>,
    /// The slowest single call.
    pub slowest: Duration,
    /// The calls' 99th percentile.
    pub p99: Duration,
    /// The actor the slowest call went to.
    pub slowest_id: String,
    /// When the slowest call began, by the node's clock.
    pub slowest_at: std::time::SystemTime,
}

impl Node {
    /// Starts a node and waits until it has joined (or failed to).
    pub async fn start(spec: NodeSpec<'_>) -> Result<Node, String> {
        let mut cmd = Command::new(spec.bin);
        cmd.args(["--zk", &spec.zk, "--cluster", &spec.cluster])
            .args(["--node", &spec.name, "--store", &spec.pg]);
        for (flag, value) in &spec.extra {
            cmd.arg(format!("--{flag}")).arg(value);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.bin))?;
        let pid = child.id().unwrap_or_default();
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let event = Arc::new(Notify::new());
        {
            let (pending, events, event) = (pending.clone(), events.clone(), event.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(value) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if let Some(req) = value["req"].as_u64() {
                        if let Some(tx) = pending.lock().remove(&req) {
                            let _ = tx.send(value);
                        }
                    } else if value.get("event").is_some() {
                        events.lock().push(value);
                        event.notify_waiters();
                    }
                }
                events.lock().push(json!({"event": "exited"}));
                event.notify_waiters();
            });
        }
        let node = Node {
            name: spec.name.clone(),
            pid,
            child,
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            events,
            event,
            next: AtomicU64::new(1),
        };
        let first = node
            .wait_event("startup", Duration::from_secs(60), |e| {
                matches!(e["event"].as_str(), Some("ready" | "failed" | "exited"))
            })
            .await?;
        match first["event"].as_str() {
            Some("ready") => Ok(node),
            _ => Err(first["error"]
                .as_str()
                .unwrap_or("the node exited")
                .to_owned()),
        }
    }

    /// Sends a command and waits for its answer.
    pub async fn request(&self, mut cmd: Value) -> Value {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        cmd["req"] = json!(req);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(req, tx);
        let line = format!("{cmd}\n");
        if let Err(e) = self.stdin.lock().await.write_all(line.as_bytes()).await {
            return json!({"err": format!("node {} is gone: {e}", self.name)});
        }
        match tokio::time::timeout(Duration::from_secs(180), rx).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => json!({"err": format!("node {} exited", self.name)}),
            Err(_) => json!({"err": format!("node {} did not answer {cmd}", self.name)}),
        }
    }

    fn result(v: Value) -> Result<i64, String> {
        match v["ok"].as_i64() {
            Some(n) => Ok(n),
            None => Err(v["err"].as_str().unwrap_or("no answer").to_owned()),
        }
    }

    pub async fn add(&self, id: &str, n: i64) -> Result<i64, String> {
        Self::result(self.request(json!({"op": "add", "id": id, "n": n})).await)
    }

    pub async fn get(&self, id: &str) -> Result<i64, String> {
        Self::result(self.request(json!({"op": "get", "id": id})).await)
    }

    /// Deletes the actor, through whichever node owns it.
    pub async fn delete(&self, id: &str) -> Result<(), String> {
        Self::result(self.request(json!({"op": "delete", "id": id})).await).map(|_| ())
    }

    /// The ids with a stored record, from the shared store, in order.
    pub async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, String> {
        let reply = self
            .request(json!({"op": "list", "after": after, "limit": limit}))
            .await;
        match reply["ids"].as_array() {
            Some(ids) => Ok(ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()),
            None => Err(reply["err"].as_str().unwrap_or("no answer").to_owned()),
        }
    }

    pub async fn get_within(&self, id: &str, timeout: Duration) -> Result<i64, String> {
        let timeout_ms = timeout.as_millis() as u64;
        Self::result(
            self.request(json!({"op": "get", "id": id, "timeout_ms": timeout_ms}))
                .await,
        )
    }

    /// The owner, per this node's view, of `prefix0 .. prefix{count-1}`.
    pub async fn owners(&self, prefix: &str, count: usize) -> Vec<Option<String>> {
        let v = self
            .request(json!({"op": "owners", "prefix": prefix, "count": count}))
            .await;
        serde_json::from_value(v["owners"].clone()).unwrap_or_default()
    }

    /// Sends `n` to each of `prefix0 .. prefix{count-1}` (0: reads); returns the values (i64::MIN
    /// for a failure) and the first errors.
    pub async fn touch(&self, prefix: &str, count: usize, n: i64) -> (Vec<i64>, Vec<String>) {
        let touched = self.touch_timed(prefix, count, n).await;
        (touched.values, touched.errors)
    }

    /// [`Self::touch`], with the calls' timing.
    pub async fn touch_timed(&self, prefix: &str, count: usize, n: i64) -> Touched {
        let v = self
            .request(json!({"op": "touch", "prefix": prefix, "count": count, "n": n}))
            .await;
        Touched {
            values: serde_json::from_value(v["values"].clone()).unwrap_or_default(),
            errors: serde_json::from_value(v["errors"].clone()).unwrap_or_default(),
            slowest: Duration::from_micros(v["slowest_us"].as_u64().unwrap_or(0)),
            p99: Duration::from_micros(v["p99_us"].as_u64().unwrap_or(0)),
            slowest_id: v["slowest_id"].as_str().unwrap_or_default().to_owned(),
            slowest_at: std::time::UNIX_EPOCH
                + Duration::from_millis(v["slowest_at_ms"].as_u64().unwrap_or(0)),
        }
    }

    pub async fn stats(&self) -> Value {
        self.request(json!({"op": "stats"})).await
    }

    /// Waits for an event matching `pred` (including ones already seen).
    pub async fn wait_event(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.event.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.events.lock().iter().find(|e| pred(e)) {
                return Ok(e.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!("node {} never saw {what}", self.name));
            }
        }
    }

    /// Waits until this node's view has exactly `members` and is stable.
    pub async fn wait_stable(&self, members: &[&str]) -> Value {
        let mut want: Vec<String> = members.iter().map(|s| s.to_string()).collect();
        want.sort();
        let what = format!("a stable view of {want:?}");
        self.wait_event(&what, Duration::from_secs(60), |e| {
            let mut m: Vec<String> =
                serde_json::from_value(e["members"].clone()).unwrap_or_default();
            m.sort();
            e["event"] == "view" && m == want && e["epoch"] == e["stable"] && e["member"] == true
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// All events so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().clone()
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGSTOP / SIGCONT.
    pub fn pause(&self) {
        process::signal(self.pid, "STOP");
    }

    pub fn resume(&self) {
        process::signal(self.pid, "CONT");
    }

    /// Leaves the cluster gracefully and exits.
    pub async fn shutdown(&mut self) -> bool {
        let v = self.request(json!({"op": "shutdown"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        v["ok"] == true
    }
}
