//! The `#[virtual_actor]` attribute and `#[derive(VirtualMessage)]` of
//! [Overmind](https://docs.rs/overmind-ractor).
//!
//! Use it through `overmind-ractor`, which re-exports it and documents it with examples.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod duration;
mod expand;
mod message;
mod parse;

use proc_macro::TokenStream;
use quote::quote;

/// Turns an ordinary ractor `impl Actor for X` into a virtual actor: `X` gets a kind under which
/// its state is stored, and Overmind activates, persists and passivates it.
///
/// Options: `kind = "name"` (required; part of every stored key, so never change it),
/// `passivate_after = "5m"` (units ms, s, m, h, d, or `"never"`; default 10 minutes),
/// `state_version = 3` (the version of the state type; default 1; raise it whenever the
/// state type changes), `migrate_from(1 = StateV1, 2 = StateV2)` (the old state types,
/// read and converted through `From` impls: `StateV1` → `StateV2` → the state),
/// `migrations = "path::to::fn"` (a function returning the kind's `Migrations`, instead of
/// `migrate_from`), `remembered_calls = 128` (how many idempotent calls an actor remembers
/// with its state; default 128), `crate = "path"` (if `overmind-ractor` is renamed in your
/// Cargo.toml).
///
/// `type Arguments` and `pre_start` may be left out: the arguments are then
/// `Activation<State>` and the state starts as the stored one, or `State::default()` for a new id.
///
/// See `overmind_ractor` for a full example.
#[proc_macro_attribute]
pub fn virtual_actor(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = parse::Errors::default();
    let opts = parse::options(args.into(), &mut errors);
    let mut target = match parse::target(item.into(), &mut errors) {
        Ok(target) => target,
        Err(untouched) => {
            let errors = errors.into_tokens();
            return quote!(#untouched #errors).into();
        }
    };
    if opts.kind.is_none() {
        errors.push(
            proc_macro2::Span::call_site(),
            "#[virtual_actor] needs `kind = \"...\"`: the name this actor's state is stored under",
        );
    }
    // Complete the impl even when there are errors, so the item stays valid and the only
    // messages the user sees are ours.
    expand::complete_impl(&mut target, &opts);
    let item = &target.item;
    let virtual_impl = if errors.is_empty() {
        expand::virtual_actor_impl(&target, &opts)
    } else {
        proc_macro2::TokenStream::new()
    };
    let errors = errors.into_tokens();
    quote!(#item #virtual_impl #errors).into()
}

/// Lets a virtual actor's message enum travel to the node that owns its actor (with the
/// `cluster` feature; on a single node it adds nothing).
///
/// Every variant leaves as its name and its fields, encoded with serde + bincode; the fields
/// must implement `Serialize` and `Deserialize`, except a call's `RpcReplyPort<T>` (at most
/// one per variant, anywhere among its fields), whose `T` must. Tuple, struct and unit
/// variants are allowed, and so is a struct (one message); generic types are not. Option: `#[virtual_message(crate = "path")]`
/// if `overmind-ractor` is renamed in your Cargo.toml.
///
/// Renaming a variant, or changing its fields, changes the messages a node understands:
/// during a rolling upgrade, add new variants rather than change old ones.
#[proc_macro_derive(VirtualMessage, attributes(virtual_message))]
pub fn derive_virtual_message(item: TokenStream) -> TokenStream {
    message::derive(item.into()).into()
}
