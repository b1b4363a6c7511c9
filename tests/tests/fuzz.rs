//! The short pass of the fuzz harness (`overmind_tests::fuzz`), as a child process so an
//! abort (an allocation over a case's cap, a stack overflow) fails this test instead of
//! killing the test runner. The cluster build adds the wire and message decoders.

use std::process::Command;

#[test]
fn no_decoder_of_outside_bytes_panics_or_aborts() {
    let out = Command::new(env!("CARGO_BIN_EXE_overmind-fuzz"))
        .args(["--seconds", "3", "--seed", "1"])
        .output()
        .expect("run overmind-fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the fuzz pass failed ({}); its last target is the last line of:\n{stderr}\n{stdout}",
        out.status
    );
    assert!(stdout.contains(", 0 panics, 0 aborts"), "{stdout}");
}
