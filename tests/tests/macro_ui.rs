//! `#[virtual_actor]` accepts what it should and reports misuse at the right span.
//!
//! Single-node builds only: with ractor's `cluster` feature the UI cases' plain message types
//! would need derives, which is not what these cases test.
#![cfg(not(feature = "cluster"))]

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
