//! Stress for the embedded sled store: many writers doing conditional saves on shared keys,
//! readers loading them, the store closed and reopened between rounds. Exits 1 on any
//! violation of the store contract.
//!
//! ```text
//! cargo run --release -p overmind-tests --bin overmind-sled-stress -- \
//!     --seconds 300 [--writers 64] [--readers 8] [--keys 512] [--rounds 4] [--seed 1] [--dir PATH]
//! ```
//!
//! `--raw-flushers N` runs sled itself instead, with N threads each inserting and flushing at
//! once (the overhead benchmark's raw baseline), which the store never does.

use std::time::Duration;

use overmind_tests::sled_stress::{self, Config};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let flags = overmind_tests::process::flags();
    let num = |k: &str, d: u64| -> u64 {
        match flags.get(k).map(|v| v.parse::<u64>()) {
            None => d,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                eprintln!("--{k} takes a whole number");
                std::process::exit(2);
            }
        }
    };
    let rounds = num("rounds", 4).max(1);
    let cfg = Config {
        writers: num("writers", 64) as usize,
        readers: num("readers", 8) as usize,
        keys: num("keys", 512).max(1) as usize,
        rounds: rounds as usize,
        round_time: Duration::from_secs(num("seconds", 20)) / rounds as u32,
        seed: num("seed", 1),
    };
    let temp = match flags.get("dir") {
        Some(_) => None,
        None => match tempfile::tempdir() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("cannot make a temporary directory: {e}");
                std::process::exit(2);
            }
        },
    };
    let dir = match (&temp, flags.get("dir")) {
        (Some(t), _) => t.path().to_path_buf(),
        (None, Some(d)) => d.into(),
        (None, None) => unreachable!("one of them is set above"),
    };
    if flags.contains_key("raw-flushers") {
        let threads = num("raw-flushers", 8) as usize;
        let time = Duration::from_secs(num("seconds", 20));
        println!("raw sled: {threads} threads inserting and flushing at once for {time:?}");
        match sled_stress::raw_concurrent_flushes(&dir, threads, time) {
            Ok(writes) => println!("ok: {writes} writes"),
            Err(e) => {
                eprintln!("FAILED: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    println!("sled stress: {cfg:?} in {}", dir.display());
    let started = std::time::Instant::now();
    match sled_stress::run(&dir, &cfg).await {
        Ok(report) => {
            let secs = started.elapsed().as_secs_f64();
            println!(
                "ok: {} acknowledged saves ({:.0}/s), {} conflicts, {} loads, {} restarts in {secs:.1} s",
                report.saves,
                report.saves as f64 / secs,
                report.conflicts,
                report.loads,
                report.restarts
            );
        }
        Err(violation) => {
            eprintln!("VIOLATION: {violation}");
            std::process::exit(1);
        }
    }
}
