//! Fuzzes every decoder of bytes from disk, a database, ZooKeeper or another node (see
//! `overmind_tests::fuzz`), and prints the executions per target. Exits non-zero if a decoder
//! panicked or a valid input did not decode; an allocation over a case's cap aborts the
//! process (so does a stack overflow). With the same seed, a run repeats its inputs.
//!
//! Usage: `overmind-fuzz [--seconds N] [--seed S]` (default 10 s, seed 1). The long pass:
//! `cargo run --release -p overmind-tests --features cluster --bin overmind-fuzz -- --seconds 600`

use std::time::Duration;

/// Tracks every allocation, so each case can be capped.
#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn main() {
    let args = overmind_tests::process::flags();
    let seconds: f64 = args
        .get("seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let seed: u64 = args.get("seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    // The message targets spawn ractor's reply bridges: give them a runtime to run on.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _guard = rt.enter();
    let targets = overmind_tests::fuzz::targets();
    let per_target = Duration::from_secs_f64(seconds / targets.len() as f64);
    println!(
        "fuzzing {} targets, {per_target:.2?} each, seed {seed}",
        targets.len()
    );
    // Decoders the harness calls catch some panics themselves (ractor's `from_bytes`), and
    // every escaping one is counted: keep the default hook from printing thousands.
    std::panic::set_hook(Box::new(|_| {}));
    let limit = |budget: Option<usize>| {
        let limit = budget.map_or(usize::MAX, |b| ALLOC.allocated().saturating_add(b));
        let _ = ALLOC.set_limit(limit);
    };
    let stats = overmind_tests::fuzz::run(&targets, per_target, seed, &limit, |name| {
        // On stderr at once: an abort names the target it happened in.
        eprintln!("fuzzing {name}");
    });
    let _ = std::panic::take_hook();
    let mut failed = false;
    println!(
        "{:<44} {:>12} {:>10} {:>7} {:>9}",
        "target", "executions", "decoded", "panics", "bad seeds"
    );
    for s in &stats {
        println!(
            "{:<44} {:>12} {:>10} {:>7} {:>9}",
            s.name, s.executions, s.decoded, s.panics, s.bad_seeds
        );
        if let Some(input) = &s.first_panic {
            println!("  first panicking input: {input:02x?}");
        }
        failed |= s.panics > 0 || s.bad_seeds > 0;
    }
    let total: u64 = stats.iter().map(|s| s.executions).sum();
    let panics: u64 = stats.iter().map(|s| s.panics).sum();
    println!("total: {total} executions, {panics} panics, 0 aborts");
    if failed {
        std::process::exit(1);
    }
}
