//! Checks a fault-injection run: the client histories, the activation events the nodes
//! logged, and the final stored values.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

/// One client operation.
#[derive(Debug, Clone, Deserialize)]
pub struct Op {
    pub k: String,
    pub op: String,
    pub t0: u64,
    pub t1: u64,
    pub r: String,
    #[serde(default)]
    pub v: Option<i64>,
    #[serde(default)]
    pub err: Option<String>,
}

/// One activation event, as a node logged it.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub node: String,
    pub key: String,
    pub activation: u64,
    pub kind: String,
    pub at: u64,
}

/// What a run did, and what went wrong.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub ops: usize,
    pub acked: usize,
    pub failed: usize,
    pub timeouts: usize,
    pub activations: usize,
    pub violations: Vec<String>,
    /// Distinct error messages clients saw, with counts.
    pub errors: BTreeMap<String, usize>,
}

/// When one activation served.
#[derive(Debug)]
struct Span {
    key: String,
    node: String,
    activation: u64,
    start: u64,
    end: u64,
}

/// Serving spans from the events. A span without a stop ends at the node's first kill after
/// its start, or at `end_of_run`.
fn spans(events: &[Event], kills: &HashMap<String, Vec<u64>>, end_of_run: u64) -> Vec<Span> {
    let mut open: BTreeMap<(String, u64), (String, u64)> = BTreeMap::new();
    let mut done = Vec::new();
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.at);
    for e in sorted {
        let id = (e.node.clone(), e.activation);
        match e.kind.as_str() {
            "start" => {
                open.insert(id, (e.key.clone(), e.at));
            }
            _ => {
                if let Some((key, start)) = open.remove(&id) {
                    done.push(Span {
                        key,
                        node: e.node.clone(),
                        activation: e.activation,
                        start,
                        end: e.at.max(start),
                    });
                }
            }
        }
    }
    for ((node, activation), (key, start)) in open {
        let end = kills
            .get(&node)
            .and_then(|ks| ks.iter().copied().filter(|k| *k >= start).min())
            .unwrap_or(end_of_run);
        done.push(Span {
            key,
            node,
            activation,
            start,
            end,
        });
    }
    done
}

/// Checks everything; `finals` are the stored values at the end.
pub fn check(
    ops: &[Op],
    events: &[Event],
    kills: &HashMap<String, Vec<u64>>,
    end_of_run: u64,
    finals: &BTreeMap<String, i64>,
) -> Outcome {
    let mut out = Outcome {
        ops: ops.len(),
        acked: ops.iter().filter(|o| o.r == "ok" && o.op == "inc").count(),
        failed: ops.iter().filter(|o| o.r == "fail").count(),
        timeouts: ops.iter().filter(|o| o.r == "timeout").count(),
        ..Outcome::default()
    };
    for op in ops.iter().filter(|o| o.r != "ok") {
        let text = op
            .err
            .clone()
            .unwrap_or_else(|| "no answer from the node (timeout)".into());
        // Strip the actor's name so the same error on different actors counts once.
        let text = text.replace(&op.k, "<id>");
        *out.errors.entry(text).or_default() += 1;
    }
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.k.as_str()).or_default().push(op);
    }
    for (key, ops) in &by_key {
        let final_value = finals.get(*key).copied().unwrap_or(0);
        let incs: Vec<&&Op> = ops.iter().filter(|o| o.op == "inc").collect();
        let acked: Vec<i64> = incs
            .iter()
            .filter(|o| o.r == "ok")
            .filter_map(|o| o.v)
            .collect();
        // 1. Every acknowledged increment is in the final state, and nothing else appears.
        if let Some(max) = acked.iter().max() {
            if final_value < *max {
                out.violations.push(format!(
                    "{key}: increment acknowledged with {max}, final value {final_value}"
                ));
            }
        }
        // Effects are counted: every acknowledged increment took effect once, and of the
        // others only those whose outcome was left open may have (a definite failure says
        // it did not; an idempotent increment retried counts once).
        let open = incs.iter().filter(|o| o.r == "timeout").count();
        if final_value < acked.len() as i64 || final_value > (acked.len() + open) as i64 {
            out.violations.push(format!(
                "{key}: final value {final_value} outside [{} acknowledged, {} acknowledged or indeterminate] ({} increments invoked)",
                acked.len(),
                acked.len() + open,
                incs.len()
            ));
        }
        let mut distinct = acked.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != acked.len() {
            out.violations.push(format!(
                "{key}: two acknowledged increments returned the same value"
            ));
        }
        // 3. Real-time order: an operation that began after another completed sees its effect.
        let mut done: Vec<&&Op> = ops
            .iter()
            .filter(|o| o.r == "ok" && o.v.is_some())
            .collect();
        done.sort_by_key(|o| o.t1);
        let mut prefix_max = Vec::with_capacity(done.len());
        let mut m = i64::MIN;
        for o in &done {
            m = m.max(o.v.unwrap_or(i64::MIN));
            prefix_max.push(m);
        }
        let mut inc_starts: Vec<u64> = incs.iter().map(|o| o.t0).collect();
        inc_starts.sort_unstable();
        for b in &done {
            let v = b.v.unwrap_or_default();
            let before = done.partition_point(|a| a.t1 < b.t0);
            if before > 0 {
                let seen = prefix_max[before - 1];
                let ok = if b.op == "inc" { v > seen } else { v >= seen };
                if !ok && out.violations.len() < 20 {
                    out.violations.push(format!(
                        "{key}: {} returned {v} at {}, after an operation that completed with {seen}",
                        b.op, b.t1
                    ));
                }
            }
            // No operation sees more increments than were invoked before it completed.
            let invoked = inc_starts.partition_point(|t| *t < b.t1) as i64;
            if v > invoked && out.violations.len() < 20 {
                out.violations.push(format!(
                    "{key}: {} returned {v}, only {invoked} increments invoked",
                    b.op
                ));
            }
        }
    }
    // 2. No two activations of an actor served at overlapping times.
    let spans = spans(events, kills, end_of_run);
    out.activations = spans.len();
    let mut by_key: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in &spans {
        by_key.entry(s.key.as_str()).or_default().push(s);
    }
    for (key, mut spans) in by_key {
        spans.sort_by_key(|s| s.start);
        // Every span must end before any later one starts.
        let mut latest: Option<&Span> = None;
        for b in spans {
            if let Some(a) = latest {
                if b.start < a.end && out.violations.len() < 40 {
                    out.violations.push(format!(
                        "{key}: activation {}/{} served until {} but {}/{} started at {}",
                        a.node, a.activation, a.end, b.node, b.activation, b.start
                    ));
                }
            }
            if latest.is_none_or(|a| b.end > a.end) {
                latest = Some(b);
            }
        }
    }
    out
}

/// Microseconds since the Unix epoch. Histories and activation events from different
/// processes are compared on this clock.
pub fn unix_us(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// Now, in microseconds since the Unix epoch.
pub fn wall_us() -> u64 {
    unix_us(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(k: &str, op: &str, t0: u64, t1: u64, v: i64) -> Op {
        Op {
            k: k.into(),
            op: op.into(),
            t0,
            t1,
            r: "ok".into(),
            v: Some(v),
            err: None,
        }
    }

    fn ev(node: &str, key: &str, activation: u64, kind: &str, at: u64) -> Event {
        Event {
            node: node.into(),
            key: key.into(),
            activation,
            kind: kind.into(),
            at,
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let ops = [
            op("a", "inc", 0, 10, 1),
            op("a", "read", 20, 30, 1),
            op("a", "inc", 25, 40, 2),
        ];
        let events = [
            ev("n1", "a", 1, "start", 0),
            ev("n1", "a", 1, "stop", 50),
            ev("n2", "a", 2, "start", 60),
        ];
        let finals = BTreeMap::from([("a".to_owned(), 2)]);
        let out = check(&ops, &events, &HashMap::new(), 100, &finals);
        assert!(out.violations.is_empty(), "{:?}", out.violations);
    }

    #[test]
    fn each_kind_of_violation_is_found() {
        let finals = BTreeMap::from([("a".to_owned(), 1)]);
        // A lost acknowledged write.
        let lost = [op("a", "inc", 0, 10, 1), op("a", "inc", 20, 30, 2)];
        assert!(
            !check(&lost, &[], &HashMap::new(), 100, &finals)
                .violations
                .is_empty()
        );
        // A stale read: it began after the increment to 2 completed, and returned 1.
        let stale = [
            op("a", "inc", 0, 10, 1),
            op("a", "inc", 20, 30, 2),
            op("a", "read", 40, 50, 1),
        ];
        let two = BTreeMap::from([("a".to_owned(), 2)]);
        assert!(
            !check(&stale, &[], &HashMap::new(), 100, &two)
                .violations
                .is_empty()
        );
        // A definite failure that took effect: 2 increments, one failed, final value 2.
        let mut failed = op("a", "inc", 20, 30, 0);
        failed.r = "fail".into();
        failed.v = None;
        let applied = [op("a", "inc", 0, 10, 1), failed];
        assert!(
            !check(&applied, &[], &HashMap::new(), 100, &two)
                .violations
                .is_empty()
        );
        // Overlapping activations.
        let overlap = [
            ev("n1", "a", 1, "start", 0),
            ev("n2", "a", 2, "start", 10),
            ev("n1", "a", 1, "stop", 20),
        ];
        assert!(
            !check(&[], &overlap, &HashMap::new(), 100, &finals)
                .violations
                .is_empty()
        );
        // A killed node's activation ends at the kill.
        let killed = [ev("n1", "a", 1, "start", 0), ev("n2", "a", 2, "start", 30)];
        let kills = HashMap::from([("n1".to_owned(), vec![20])]);
        assert!(
            check(&[], &killed, &kills, 100, &finals)
                .violations
                .is_empty()
        );
    }
}
