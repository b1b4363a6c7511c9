//! A stress run of the embedded sled store through the [`StateStore`] contract: many writers
//! doing conditional saves on shared keys while readers load them, with restarts (close and
//! reopen) between rounds. It checks what the contract promises:
//!
//! - per key, the acknowledged saves form one chain: the values 1, 2, 3, … each acknowledged
//!   exactly once (a second acknowledgement of one value would mean a conditional check let
//!   two writers through);
//! - a reader never sees a value go backwards, nor a value nobody wrote;
//! - after a round, and again after reopening, every key holds its last acknowledged value.
//!
//! `overmind-sled-stress` runs it from the command line; a short pass runs in the test suite.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use overmind_core::{
    ActorKey, StateStore, Version,
    store::{SledStore, StoreError},
};
use parking_lot::Mutex;

use crate::rng::Rng;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent writers.
    pub writers: usize,
    /// Concurrent readers.
    pub readers: usize,
    /// Keys shared by all writers (fewer keys, more conflicts).
    pub keys: usize,
    /// Rounds; the store is closed and reopened between them.
    pub rounds: usize,
    /// How long each round writes.
    pub round_time: Duration,
    /// Seed for the workload.
    pub seed: u64,
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Acknowledged saves.
    pub saves: u64,
    /// Saves refused with a version conflict (expected under contention).
    pub conflicts: u64,
    /// Loads by readers.
    pub loads: u64,
    /// Restarts (close and reopen).
    pub restarts: u64,
}

/// The acknowledged saves of each key, as a chain.
struct Model {
    keys: Vec<Mutex<Chain>>,
}

/// One key's acknowledged saves. Acknowledgements can be recorded out of order (a writer may
/// be overtaken between its save and recording it), so they wait in `pending` until the chain
/// reaches them.
#[derive(Default)]
struct Chain {
    /// The newest value whose every predecessor is accounted for, and its version.
    head: (u64, Version),
    /// Value → (the version its save expected, the version it got).
    pending: std::collections::BTreeMap<u64, (Version, Version)>,
}

impl Chain {
    fn acknowledge(
        &mut self,
        key: &ActorKey,
        value: u64,
        expected: Version,
        got: Version,
    ) -> Result<(), String> {
        if value <= self.head.0 || self.pending.insert(value, (expected, got)).is_some() {
            return Err(format!(
                "{key}: value {value} was acknowledged twice: two conditional saves expecting one version both succeeded"
            ));
        }
        while let Some((expected, got)) = self.pending.remove(&(self.head.0 + 1)) {
            if expected != self.head.1 {
                return Err(format!(
                    "{key}: the save of value {} expected {expected}, but value {} was stored as {}",
                    self.head.0 + 1,
                    self.head.0,
                    self.head.1
                ));
            }
            self.head = (self.head.0 + 1, got);
        }
        Ok(())
    }
}

struct Counters {
    saves: AtomicU64,
    conflicts: AtomicU64,
    loads: AtomicU64,
}

fn key(i: usize) -> ActorKey {
    match ActorKey::new("stress", format!("k{i}")) {
        Ok(key) => key,
        Err(e) => unreachable!("a fixed, valid key: {e}"),
    }
}

/// A value: the counter, then filler of a varying size (so pages split and merge).
fn encode(value: u64, filler: usize) -> Vec<u8> {
    let mut bytes = value.to_be_bytes().to_vec();
    bytes.resize(8 + filler, (value % 251) as u8);
    bytes
}

fn decode(key: &ActorKey, bytes: &[u8]) -> Result<u64, String> {
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| format!("{key}: a value of {} bytes", bytes.len()))?;
    let value = u64::from_be_bytes(head);
    if bytes[8..].iter().any(|b| *b != (value % 251) as u8) {
        return Err(format!("{key}: the filler of value {value} is damaged"));
    }
    Ok(value)
}

/// Runs the stress in `dir` (on the current tokio runtime, which should be multi-threaded).
pub async fn run(dir: &Path, cfg: &Config) -> Result<Report, String> {
    let model = Arc::new(Model {
        keys: (0..cfg.keys)
            .map(|_| Mutex::new(Chain::default()))
            .collect(),
    });
    let counters = Arc::new(Counters {
        saves: AtomicU64::new(0),
        conflicts: AtomicU64::new(0),
        loads: AtomicU64::new(0),
    });
    let mut restarts = 0;
    for round in 0..cfg.rounds {
        let store = Arc::new(SledStore::open(dir).map_err(|e| e.to_string())?);
        if round > 0 {
            restarts += 1;
        }
        verify(&*store, &model, "after reopening").await?;
        one_round(&store, &model, &counters, cfg, round).await?;
        verify(&*store, &model, "after the round").await?;
        store.close();
    }
    Ok(Report {
        saves: counters.saves.load(Ordering::Relaxed),
        conflicts: counters.conflicts.load(Ordering::Relaxed),
        loads: counters.loads.load(Ordering::Relaxed),
        restarts,
    })
}

async fn one_round(
    store: &Arc<SledStore>,
    model: &Arc<Model>,
    counters: &Arc<Counters>,
    cfg: &Config,
    round: usize,
) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..cfg.writers {
        let (store, model, counters, stop) =
            (store.clone(), model.clone(), counters.clone(), stop.clone());
        let seed = cfg.seed ^ ((round as u64) << 32) ^ (w as u64 + 1);
        tasks.spawn(async move { write(&store, &model, &counters, &stop, seed).await });
    }
    for r in 0..cfg.readers {
        let (store, model, counters, stop) =
            (store.clone(), model.clone(), counters.clone(), stop.clone());
        let seed = cfg.seed ^ ((round as u64) << 32) ^ (0x5eed_0000 + r as u64);
        tasks.spawn(async move { read(&store, &model, &counters, &stop, seed).await });
    }
    let deadline = Instant::now() + cfg.round_time;
    let mut failure = None;
    loop {
        let done = tokio::select! {
            done = tasks.join_next() => done,
            _ = tokio::time::sleep_until(deadline.into()), if !stop.load(Ordering::Relaxed) => {
                stop.store(true, Ordering::Relaxed);
                continue;
            }
        };
        let Some(done) = done else { break };
        let outcome = done
            .map_err(|e| format!("a stress task panicked: {e}"))
            .and_then(|r| r);
        if let Err(e) = outcome {
            stop.store(true, Ordering::Relaxed);
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

async fn write(
    store: &SledStore,
    model: &Model,
    counters: &Counters,
    stop: &AtomicBool,
    seed: u64,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::Relaxed) {
        let i = rng.below(model.keys.len());
        let key = key(i);
        let (value, version) = match store.load(&key).await.map_err(|e| e.to_string())? {
            None => (0, Version::ABSENT),
            Some(stored) => (decode(&key, &stored.bytes)?, stored.version),
        };
        let next = value + 1;
        match store
            .save(&key, version, &encode(next, rng.below(2048)))
            .await
        {
            Ok(got) => {
                model.keys[i].lock().acknowledge(&key, next, version, got)?;
                counters.saves.fetch_add(1, Ordering::Relaxed);
            }
            Err(StoreError::Conflict { .. }) => {
                counters.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(format!("{key}: save failed: {e}")),
        }
    }
    Ok(())
}

async fn read(
    store: &SledStore,
    model: &Model,
    counters: &Counters,
    stop: &AtomicBool,
    seed: u64,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let mut seen = vec![0u64; model.keys.len()];
    while !stop.load(Ordering::Relaxed) {
        let i = rng.below(model.keys.len());
        let key = key(i);
        // Read the model first: the store can be ahead of it (a save not yet recorded) but
        // never behind what was acknowledged before the load began.
        let acknowledged = model.keys[i].lock().head.0;
        let loaded = match store.load(&key).await.map_err(|e| e.to_string())? {
            None => 0,
            Some(stored) => decode(&key, &stored.bytes)?,
        };
        if loaded < acknowledged || loaded < seen[i] {
            return Err(format!(
                "{key}: read value {loaded} after {} was acknowledged and {} was read",
                acknowledged, seen[i]
            ));
        }
        seen[i] = loaded;
        counters.loads.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Every key holds exactly its last acknowledged value and version.
async fn verify(store: &dyn StateStore, model: &Model, when: &str) -> Result<(), String> {
    for (i, last) in model.keys.iter().enumerate() {
        let key = key(i);
        let (value, version) = {
            let chain = last.lock();
            if let Some(gap) = chain.pending.keys().next() {
                return Err(format!(
                    "{key} {when}: value {gap} was acknowledged, but value {} never was",
                    chain.head.0 + 1
                ));
            }
            chain.head
        };
        let stored = store.load(&key).await.map_err(|e| e.to_string())?;
        let found = match &stored {
            None => (0, Version::ABSENT),
            Some(s) => (decode(&key, &s.bytes)?, s.version),
        };
        if found != (value, version) {
            return Err(format!(
                "{key} {when}: holds value {} ({}), but the last acknowledged save was {value} ({version})",
                found.0, found.1
            ));
        }
    }
    Ok(())
}

/// The access pattern of the overhead benchmark's raw baseline, which Overmind's store avoids:
/// `threads` threads each inserting and calling `flush` on one sled database at once, for
/// `time`. Returns the writes done. Kept to tell sled's own behaviour under concurrent
/// flushes apart from the store's (one flusher thread).
pub fn raw_concurrent_flushes(dir: &Path, threads: usize, time: Duration) -> Result<u64, String> {
    let db = sled::open(dir).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + time;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let key = format!("raw-{t}-{}", n % 1024);
                    db.insert(key.as_bytes(), encode(n, (n % 2048) as usize))
                        .map_err(|e| e.to_string())?;
                    db.flush().map_err(|e| e.to_string())?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w
            .join()
            .map_err(|_| "a raw writer thread panicked".to_string())??;
    }
    Ok(total)
}
