//! Both built-in stores pass the shared store contract.

use std::sync::Arc;

use overmind_core::{
    store::{MemoryStore, SledStore, StateStore},
    testkit::{self, Opener},
};

fn memory_opener() -> Opener {
    // A memory store "reopens" to the same data: it models a store that outlives its clients.
    let store = Arc::new(MemoryStore::new());
    Opener::new(move || {
        let store = store.clone();
        async move { Ok(store as Arc<dyn StateStore>) }
    })
}

fn sled_opener() -> (tempfile::TempDir, Opener) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let opener = Opener::new(move || {
        let path = path.clone();
        async move { SledStore::open(&path).map(|s| Arc::new(s) as Arc<dyn StateStore>) }
    });
    (dir, opener)
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    testkit::run_contract(&mut memory_opener()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_meets_the_contract() {
    let (_dir, mut opener) = sled_opener();
    testkit::run_contract(&mut opener).await;
}

#[test]
fn memory_store_matches_the_model() {
    testkit::check_against_model(256, memory_opener);
}

#[test]
fn sled_store_matches_the_model_across_restarts() {
    let mut dirs = Vec::new();
    testkit::check_against_model(64, || {
        let (dir, opener) = sled_opener();
        dirs.push(dir);
        opener
    });
}
