//! The contract every [`StateStore`] must pass (feature `testkit`).
//!
//! Implementations call [`run_contract`] with an [`Opener`] that opens the store over the same
//! data each time (the first call sees an empty store), and [`check_against_model`] with a
//! factory of fresh openers. Failures panic with a description, as tests do.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use overmind_core::{store::{MemoryStore, StateStore}, testkit};
//! let store = Arc::new(MemoryStore::new());
//! let mut opener = testkit::Opener::new(move || {
//!     let store = store.clone();
//!     async move { Ok(store as Arc<dyn StateStore>) }
//! });
//! testkit::run_contract(&mut opener).await;
//! # }
//! ```

use std::{collections::BTreeMap, future::Future, sync::Arc};

use proptest::{prelude::*, test_runner::TestRunner};

use crate::{
    ActorKey,
    store::{BoxFuture, StateStore, StoreError, Version},
};

type OpenFn = dyn FnMut() -> BoxFuture<'static, Result<Arc<dyn StateStore>, StoreError>> + Send;

/// Opens a store, again and again, over the same data.
pub struct Opener(Box<OpenFn>);

impl Opener {
    /// Wraps an async open function.
    pub fn new<F, Fut>(mut open: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Arc<dyn StateStore>, StoreError>> + Send + 'static,
    {
        Self(Box::new(move || Box::pin(open())))
    }

    /// Opens the store; panics if it cannot.
    pub async fn open(&mut self) -> Arc<dyn StateStore> {
        match (self.0)().await {
            Ok(store) => store,
            Err(e) => panic!("cannot open the store under test: {e}"),
        }
    }
}

fn key(kind: &'static str, id: &str) -> ActorKey {
    match ActorKey::new(kind, id) {
        Ok(k) => k,
        Err(e) => panic!("bad test key: {e}"),
    }
}

async fn must_save(
    store: &dyn StateStore,
    k: &ActorKey,
    expected: Version,
    bytes: &[u8],
) -> Version {
    match store.save(k, expected, bytes).await {
        Ok(v) => {
            assert!(!v.is_absent(), "save returned the ABSENT version");
            v
        }
        Err(e) => panic!("save {k} expecting {expected} failed: {e}"),
    }
}

async fn must_load(store: &dyn StateStore, k: &ActorKey) -> Option<(Version, Vec<u8>)> {
    match store.load(k).await {
        Ok(found) => found.map(|s| (s.version, s.bytes)),
        Err(e) => panic!("load {k} failed: {e}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{what}: expected a version conflict, got {other:?}"),
    }
}

/// Runs every contract check; the opener must start from an empty store.
pub async fn run_contract(opener: &mut Opener) {
    let store = opener.open().await;
    let s = &*store;
    let alice = key("account", "alice");

    // Missing entries load as None.
    assert_eq!(
        must_load(s, &alice).await,
        None,
        "a fresh store has no entries"
    );

    // Create only if absent; then conditional replacement.
    let v1 = must_save(s, &alice, Version::ABSENT, b"one").await;
    assert_eq!(must_load(s, &alice).await, Some((v1, b"one".to_vec())));
    assert_conflict(
        s.save(&alice, Version::ABSENT, b"x").await,
        "create over an existing entry",
    );
    let v2 = must_save(s, &alice, v1, b"two").await;
    assert_ne!(v1, v2, "a save must change the version");
    assert_conflict(
        s.save(&alice, v1, b"stale").await,
        "save with a stale version",
    );
    assert_eq!(
        must_load(s, &alice).await,
        Some((v2, b"two".to_vec())),
        "a refused save changes nothing"
    );

    // Conditional delete; versions are never reused, even after a delete.
    assert_conflict(s.delete(&alice, v1).await, "delete with a stale version");
    if let Err(e) = s.delete(&alice, v2).await {
        panic!("delete failed: {e}");
    }
    assert_eq!(must_load(s, &alice).await, None, "deleted entries are gone");
    let v3 = must_save(s, &alice, Version::ABSENT, b"three").await;
    assert!(
        v3 != v1 && v3 != v2,
        "versions must not be reused after a delete"
    );
    assert_conflict(
        s.save(&alice, v2, b"aba").await,
        "a version from before the delete",
    );

    // Keys are independent, including ones whose parts would run together.
    let ab_c = key("ab", "c");
    let a_bc = key("a", "bc");
    let vab = must_save(s, &ab_c, Version::ABSENT, b"ab/c").await;
    must_save(s, &a_bc, Version::ABSENT, b"a/bc").await;
    assert_eq!(must_load(s, &ab_c).await, Some((vab, b"ab/c".to_vec())));

    // Empty, binary and large values; unicode ids.
    let odd = key("account", "ünïcødé / spaces");
    let big: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let vo = must_save(s, &odd, Version::ABSENT, b"").await;
    assert_eq!(must_load(s, &odd).await, Some((vo, Vec::new())));
    let vo = must_save(s, &odd, vo, &big).await;
    assert_eq!(must_load(s, &odd).await, Some((vo, big.clone())));

    // Racing writers expecting the same version: exactly one wins.
    let race = key("account", "race");
    let base = must_save(s, &race, Version::ABSENT, b"base").await;
    let attempts = futures_join_all((0..16u8).map(|i| {
        let store = store.clone();
        let race = race.clone();
        async move { store.save(&race, base, &[i]).await }
    }))
    .await;
    let winners = attempts.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        winners, 1,
        "exactly one racing writer must win: {attempts:?}"
    );
    assert!(
        attempts
            .iter()
            .all(|r| r.as_ref().map_or_else(StoreError::is_conflict, |_| true)),
        "losers must see conflicts: {attempts:?}"
    );

    check_epoch_floors(&store).await;

    if let Err(e) = s.flush().await {
        panic!("flush failed: {e}");
    }

    // Everything survives a reopen.
    drop(store);
    let store = opener.open().await;
    let s = &*store;
    assert_eq!(
        floor(s.epoch_floor("contract").await),
        1_000_000,
        "the epoch floor after a reopen"
    );
    assert_eq!(
        floor(s.raise_epoch_floor("contract", 7).await),
        1_000_000,
        "a reopened floor never goes down"
    );
    assert_eq!(
        must_load(s, &alice).await,
        Some((v3, b"three".to_vec())),
        "after reopen"
    );
    assert_eq!(must_load(s, &odd).await, Some((vo, big)), "after reopen");
    let v4 = must_save(s, &alice, v3, b"four").await;
    assert!(
        ![v1, v2, v3].contains(&v4),
        "versions must not be reused after a reopen"
    );
}

fn floor(result: Result<u64, StoreError>) -> u64 {
    result.unwrap_or_else(|e| panic!("epoch floor operation failed: {e}"))
}

/// The epoch floor: starts at 0, only rises, is kept per cluster, and racing raises leave the
/// largest.
async fn check_epoch_floors(store: &Arc<dyn StateStore>) {
    let s = &**store;
    assert_eq!(
        floor(s.epoch_floor("contract").await),
        0,
        "a new cluster's floor"
    );
    assert_eq!(floor(s.raise_epoch_floor("contract", 5).await), 5);
    assert_eq!(floor(s.epoch_floor("contract").await), 5);
    assert_eq!(
        floor(s.raise_epoch_floor("contract", 3).await),
        5,
        "a lower raise leaves the floor where it is"
    );
    assert_eq!(floor(s.raise_epoch_floor("contract", 5).await), 5);
    assert_eq!(
        floor(s.epoch_floor("other").await),
        0,
        "floors are per cluster"
    );
    let raises = futures_join_all((1..=16u64).map(|i| {
        let store = store.clone();
        async move { store.raise_epoch_floor("contract", i * 62_500).await }
    }))
    .await;
    for r in raises {
        assert!(
            floor(r) >= 62_500,
            "a raise returns at least what it asked for"
        );
    }
    assert_eq!(
        floor(s.epoch_floor("contract").await),
        1_000_000,
        "the largest of racing raises wins"
    );
    let top = i64::MAX as u64;
    assert_eq!(floor(s.raise_epoch_floor("top", top).await), top);
}

async fn futures_join_all<F: Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => panic!("a racing writer panicked: {e}"),
        }
    }
    out
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    /// Save to key `k`, naming the current version, ABSENT, or some stale version.
    Save {
        k: usize,
        expect: Expect,
        value: Vec<u8>,
    },
    Delete {
        k: usize,
        expect: Expect,
    },
    Load {
        k: usize,
    },
    /// Close the store and open it again over the same data.
    Restart,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Current,
    Absent,
    Stale(usize),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let k = 0..4usize;
    let expect = prop_oneof![
        6 => Just(Expect::Current),
        2 => Just(Expect::Absent),
        1 => (0..8usize).prop_map(Expect::Stale),
    ];
    prop_oneof![
        6 => (k.clone(), expect.clone(), proptest::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(k, expect, value)| Op::Save { k, expect, value }),
        2 => (k.clone(), expect).prop_map(|(k, expect)| Op::Delete { k, expect }),
        3 => k.prop_map(|k| Op::Load { k }),
        1 => Just(Op::Restart),
    ]
}

type Model = BTreeMap<usize, (Version, Vec<u8>)>;

fn version_for(k: usize, expect: Expect, model: &Model, seen: &[Version]) -> Version {
    match expect {
        Expect::Current => model.get(&k).map_or(Version::ABSENT, |(v, _)| *v),
        Expect::Absent => Version::ABSENT,
        Expect::Stale(i) if !seen.is_empty() => seen[i % seen.len()],
        Expect::Stale(_) => Version(u64::MAX),
    }
}

const MODEL_IDS: [&str; 4] = ["a", "b", "c", "d"];

async fn run_model(opener: &mut Opener, ops: &[Op]) -> Result<(), String> {
    let keys: Vec<ActorKey> = MODEL_IDS.iter().map(|id| key("model", id)).collect();
    let mut model = Model::new();
    // Every version the store ever returned, for stale expectations and the no-reuse check.
    let mut seen: Vec<Version> = Vec::new();
    let mut store = opener.open().await;
    for (step, op) in ops.iter().enumerate() {
        let ctx = |what: String| format!("step {step} {op:?}: {what}");
        match op {
            Op::Save { k, expect, value } => {
                let expected = version_for(*k, *expect, &model, &seen);
                let current = model.get(k).map_or(Version::ABSENT, |(v, _)| *v);
                match store.save(&keys[*k], expected, value).await {
                    Ok(v) if expected == current => {
                        if v.is_absent() || seen.contains(&v) {
                            return Err(ctx(format!("version {v} reused or absent")));
                        }
                        seen.push(v);
                        model.insert(*k, (v, value.clone()));
                    }
                    Ok(v) => {
                        return Err(ctx(format!(
                            "accepted {expected} while current is {current} (got {v})"
                        )));
                    }
                    Err(StoreError::Conflict { .. }) if expected != current => {}
                    Err(e) => return Err(ctx(format!("unexpected error {e}"))),
                }
            }
            Op::Delete { k, expect } => {
                let expected = version_for(*k, *expect, &model, &seen);
                let current = model.get(k).map_or(Version::ABSENT, |(v, _)| *v);
                match store.delete(&keys[*k], expected).await {
                    Ok(()) if expected == current => {
                        model.remove(k);
                    }
                    Ok(()) => {
                        return Err(ctx(format!(
                            "deleted at {expected} while current is {current}"
                        )));
                    }
                    Err(StoreError::Conflict { .. }) if expected != current => {}
                    Err(e) => return Err(ctx(format!("unexpected error {e}"))),
                }
            }
            Op::Load { k } => {
                let found = store
                    .load(&keys[*k])
                    .await
                    .map_err(|e| ctx(format!("load failed: {e}")))?
                    .map(|s| (s.version, s.bytes));
                if found.as_ref() != model.get(k) {
                    return Err(ctx(format!(
                        "store has {found:?}, model has {:?}",
                        model.get(k)
                    )));
                }
            }
            Op::Restart => {
                drop(store);
                store = opener.open().await;
            }
        }
    }
    // Finally, the whole store agrees with the model.
    for (k, key) in keys.iter().enumerate() {
        let found = store
            .load(key)
            .await
            .map_err(|e| format!("final load failed: {e}"))?
            .map(|s| (s.version, s.bytes));
        if found.as_ref() != model.get(&k) {
            return Err(format!(
                "final state of {key}: store {found:?}, model {:?}",
                model.get(&k)
            ));
        }
    }
    Ok(())
}

/// Runs random operation sequences, with restarts, against the store and a `BTreeMap` model.
/// `fresh` makes an opener over new, empty data for each case.
pub fn check_against_model(cases: u32, fresh: impl FnMut() -> Opener) {
    // The runner takes a `Fn`; each case needs fresh data from the `FnMut`.
    let fresh = std::cell::RefCell::new(fresh);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a runtime: {e}"),
    };
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&proptest::collection::vec(op_strategy(), 1..60), |ops| {
        let mut opener = (fresh.borrow_mut())();
        rt.block_on(run_model(&mut opener, &ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("the store disagrees with the model: {e}");
    }
}
