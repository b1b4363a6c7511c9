//! `#[derive(VirtualMessage)]` in a cluster build: the shapes it accepts travel and come back
//! intact, and what cannot travel is reported at the field or type that is wrong.
#![cfg(feature = "cluster")]

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/cluster/pass/*.rs");
    t.compile_fail("tests/ui/cluster/fail/*.rs");
}
