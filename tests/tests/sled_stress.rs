//! A short pass of the sled stress (the long one: `overmind-sled-stress`, see the README).

use std::time::Duration;

use overmind_tests::sled_stress::{self, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_saves_hold_under_many_writers_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        writers: 64,
        readers: 8,
        keys: 128,
        rounds: 3,
        round_time: Duration::from_secs(2),
        seed: 7,
    };
    let report = sled_stress::run(dir.path(), &cfg).await.unwrap();
    assert_eq!(report.restarts, 2);
    assert!(report.saves > 0 && report.loads > 0, "{report:?}");
}
