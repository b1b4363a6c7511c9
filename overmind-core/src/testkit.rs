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

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::Arc,
};

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
    assert_eq!(
        must_list(s, "a", None, 10).await,
        ["bc"],
        "kind \"a\" alone"
    );
    assert_eq!(
        must_list(s, "ab", None, 10).await,
        ["c"],
        "kind \"ab\" alone"
    );

    let listed = check_listing(s).await;

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
    for (kind, ids) in &listed {
        assert_eq!(
            must_list(s, kind, None, usize::MAX).await,
            *ids,
            "listing kind {kind:?} after a reopen"
        );
    }
    let v4 = must_save(s, &alice, v3, b"four").await;
    assert!(
        ![v1, v2, v3].contains(&v4),
        "versions must not be reused after a reopen"
    );
}

async fn must_list(
    store: &dyn StateStore,
    kind: &str,
    after: Option<&str>,
    limit: usize,
) -> Vec<String> {
    match store.list(kind, after, limit).await {
        Ok(ids) => ids,
        Err(e) => panic!("list {kind:?} after {after:?} limit {limit} failed: {e}"),
    }
}

/// The kinds the listing check writes: each a prefix of the next, so a store that matched a
/// kind as a bare prefix of its keys would list another kind's ids.
const LIST_KINDS: [&str; 3] = ["lis", "list", "listing"];

/// Ids chosen so byte order differs from human collations: case, digits, accents,
/// characters beyond the BMP, shared prefixes, a space and control characters (0x01 sorts
/// just above the NUL that separates kind from id in byte-keyed stores).
const LIST_IDS: [&str; 19] = [
    "a", "b", "é", "z", "Z", "10", "9", "1", "aa", "ab", "a b", "a-", "é!", "e", "日本", "😀",
    "\u{1}x", "\u{7f}", "~",
];

/// `ids` (sorted, unique) after `after`, at most `limit`: what `list` must return.
fn expected_page(ids: &[String], after: Option<&str>, limit: usize) -> Vec<String> {
    ids.iter()
        .filter(|id| after.is_none_or(|after| id.as_str() > after))
        .take(limit)
        .cloned()
        .collect()
}

/// Pages through `kind` with `limit`, checking each page against `expected` (all its ids).
async fn check_paging(s: &dyn StateStore, kind: &str, expected: &[String], limit: usize) {
    let mut after: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let page = must_list(s, kind, after.as_deref(), limit).await;
        assert_eq!(
            page,
            expected_page(expected, after.as_deref(), limit),
            "kind {kind:?}, page after {after:?} of at most {limit}"
        );
        all.extend(page.iter().cloned());
        if page.len() < limit {
            break;
        }
        after = page.last().cloned();
    }
    assert_eq!(
        all, expected,
        "kind {kind:?} paged by {limit} is the whole kind"
    );
}

/// Listing the ids of a kind: only that kind's, in byte order, paged by `after` and `limit`,
/// without deleted entries. Returns each listing kind's ids, for a check after a reopen.
async fn check_listing(s: &dyn StateStore) -> BTreeMap<&'static str, Vec<String>> {
    for kind in LIST_KINDS {
        assert_eq!(
            must_list(s, kind, None, 10).await,
            Vec::<String>::new(),
            "a kind without entries lists nothing"
        );
    }
    // Interleaved writes: every kind gets a share of the ids, some ids in several kinds.
    let mut kinds: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for (i, id) in LIST_IDS.iter().enumerate() {
        for (j, &kind) in LIST_KINDS.iter().enumerate() {
            if (i + j) % 3 != 2 || *id == "a" {
                must_save(s, &key(kind, id), Version::ABSENT, id.as_bytes()).await;
                kinds.entry(kind).or_default().insert((*id).to_owned());
            }
        }
    }
    // `String`'s order is byte order.
    let mut sorted: BTreeMap<&'static str, Vec<String>> = kinds
        .iter()
        .map(|(kind, ids)| (*kind, ids.iter().cloned().collect()))
        .collect();

    for (kind, ids) in &sorted {
        assert_eq!(
            must_list(s, kind, None, usize::MAX).await,
            *ids,
            "kind {kind:?} lists exactly its own ids, in byte order"
        );
        for limit in [1, 2, 3, 1000] {
            check_paging(s, kind, ids, limit).await;
        }
        assert_eq!(
            must_list(s, kind, None, 0).await,
            Vec::<String>::new(),
            "limit 0"
        );
        assert_eq!(
            must_list(s, kind, Some("a"), 0).await,
            Vec::<String>::new(),
            "limit 0 after an id"
        );
        // `after` need not be an id: the page starts where it would be. "a\0" is after "a"
        // and before every longer id that starts with "a".
        for after in [
            "",
            "0",
            "a",
            "a\0",
            "a\0b",
            "a0",
            "Y",
            "e",
            "ea",
            "é",
            "ê",
            "zz",
            "\u{10ffff}",
        ] {
            assert_eq!(
                must_list(s, kind, Some(after), 4).await,
                expected_page(ids, Some(after), 4),
                "kind {kind:?} after {after:?}"
            );
        }
    }
    for kind in ["", "li", "lisa", "list\0", "list\0a", "listing2", "LIST"] {
        assert_eq!(
            must_list(s, kind, None, 100).await,
            Vec::<String>::new(),
            "kind {kind:?} has no entries"
        );
    }

    // Deleted entries are not listed, whether first, last or in the middle of a kind.
    let list = sorted.entry("list").or_default();
    for gone in [
        list[0].clone(),
        list[list.len() - 1].clone(),
        "é".to_owned(),
    ] {
        let k = key("list", &gone);
        let version = match must_load(s, &k).await {
            Some((v, _)) => v,
            None => panic!("{k} was saved"),
        };
        if let Err(e) = s.delete(&k, version).await {
            panic!("delete {k} failed: {e}");
        }
        list.retain(|id| *id != gone);
    }
    let list = list.clone();
    assert_eq!(
        must_list(s, "list", None, usize::MAX).await,
        list,
        "deleted entries are not listed"
    );
    for limit in [1, 2, 3, 1000] {
        check_paging(s, "list", &list, limit).await;
    }
    // A kind whose entries are all deleted lists nothing.
    for id in &sorted["lis"] {
        let k = key("lis", id);
        if let Some((v, _)) = must_load(s, &k).await {
            if let Err(e) = s.delete(&k, v).await {
                panic!("delete {k} failed: {e}");
            }
        }
    }
    sorted.insert("lis", Vec::new());
    assert_eq!(
        must_list(s, "lis", None, 10).await,
        Vec::<String>::new(),
        "a kind whose entries were all deleted"
    );
    assert_eq!(
        must_list(s, "listing", None, usize::MAX).await,
        sorted["listing"],
        "deleting one kind's entries leaves the others"
    );

    check_paging_while_writing(s).await;
    sorted
}

/// Paging while entries are written and deleted: every id present throughout is listed once,
/// nothing that never had an entry is listed, and the pages go up in byte order.
async fn check_paging_while_writing(s: &dyn StateStore) {
    const KIND: &str = "listing.moving";
    let steady: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    for id in &steady {
        must_save(s, &key(KIND, id), Version::ABSENT, b"").await;
    }
    let mut written: BTreeSet<String> = steady.iter().cloned().collect();
    let toggled = key(KIND, "s05x");
    let mut toggled_version = None;
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut done = false;
    for round in 0..64 {
        let page = must_list(s, KIND, after.as_deref(), 2).await;
        seen.extend(page.iter().cloned());
        if page.len() < 2 {
            done = true;
            break;
        }
        after = page.last().cloned();
        // One entry behind the cursor, one ahead of it, and one that comes and goes.
        for id in [format!("r{round:02}"), format!("t{round:02}")] {
            must_save(s, &key(KIND, &id), Version::ABSENT, b"").await;
            written.insert(id);
        }
        match toggled_version.take() {
            Some(v) => {
                if let Err(e) = s.delete(&toggled, v).await {
                    panic!("delete {toggled} failed: {e}");
                }
            }
            None => {
                toggled_version = Some(must_save(s, &toggled, Version::ABSENT, b"").await);
                written.insert(toggled.id().to_owned());
            }
        }
    }
    assert!(done, "paging never ended: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "pages go up in byte order, without repeats: {seen:?}"
    );
    for id in &steady {
        assert!(
            seen.contains(id),
            "{id:?} was there throughout the paging but was not listed: {seen:?}"
        );
    }
    for id in &seen {
        assert!(written.contains(id), "{id:?} was never written: {seen:?}");
    }
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
    /// List kind `MODEL_KINDS[kind]` after `MODEL_AFTER[after]` (from the first for `None`).
    List {
        kind: usize,
        after: Option<usize>,
        limit: usize,
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
    let k = 0..MODEL_KEYS.len();
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
        3 => (
            0..MODEL_KINDS.len(),
            proptest::option::of(0..MODEL_AFTER.len()),
            0..6usize,
        )
            .prop_map(|(kind, after, limit)| Op::List { kind, after, limit }),
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

/// The model's keys: ids whose byte order is not their order in any human collation, and
/// kinds that are prefixes of one another.
const MODEL_KEYS: [(&str, &str); 7] = [
    ("model", "a"),
    ("model", "Z"),
    ("model", "é"),
    ("model", "10"),
    ("model", "9"),
    ("mode", "a"),
    ("models", "a"),
];
const MODEL_KINDS: [&str; 4] = ["model", "mode", "models", "mod"];
/// Where a listing starts: ids of the model and places between them.
const MODEL_AFTER: [&str; 8] = ["", "10", "1", "9", "A", "a", "e", "é"];

/// What `list` must return, by the model.
fn model_list(model: &Model, kind: &str, after: Option<&str>, limit: usize) -> Vec<String> {
    let ids: BTreeSet<&str> = model
        .keys()
        .map(|&k| MODEL_KEYS[k])
        .filter(|(k, _)| *k == kind)
        .map(|(_, id)| id)
        .collect();
    ids.into_iter()
        .filter(|id| after.is_none_or(|after| *id > after))
        .take(limit)
        .map(str::to_owned)
        .collect()
}

async fn run_model(opener: &mut Opener, ops: &[Op]) -> Result<(), String> {
    let keys: Vec<ActorKey> = MODEL_KEYS.iter().map(|&(kind, id)| key(kind, id)).collect();
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
            Op::List { kind, after, limit } => {
                let kind = MODEL_KINDS[*kind];
                let after = after.map(|a| MODEL_AFTER[a]);
                let listed = store
                    .list(kind, after, *limit)
                    .await
                    .map_err(|e| ctx(format!("list failed: {e}")))?;
                let expected = model_list(&model, kind, after, *limit);
                if listed != expected {
                    return Err(ctx(format!("store lists {listed:?}, model {expected:?}")));
                }
            }
            Op::Restart => {
                drop(store);
                store = opener.open().await;
            }
        }
    }
    // Finally, the whole store agrees with the model.
    for kind in MODEL_KINDS {
        let listed = store
            .list(kind, None, usize::MAX)
            .await
            .map_err(|e| format!("final list failed: {e}"))?;
        let expected = model_list(&model, kind, None, usize::MAX);
        if listed != expected {
            return Err(format!(
                "final listing of {kind:?}: store {listed:?}, model {expected:?}"
            ));
        }
    }
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
