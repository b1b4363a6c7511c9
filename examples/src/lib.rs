//! Examples for Overmind live in this directory; run them with `cargo run --example <name>`.
